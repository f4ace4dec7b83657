"""Real scans in: the OpenBHB grid, conform_image, orientation checks, 4-D files, damaged gzip.

Grids as today's pipelines write them (see ARCHITECTURE.md, "Inputs"): CAT12 >= 12.8's
113x137x113 box, 1 mm RAS maps (fMRIPrep), 2 mm 4-D merged files (FSL-VBM), LAS and RAS
copies of one image.
"""

import gzip
import os
import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import anatcl_sklearn
from anatcl_sklearn import (
    OPENBHB_AFFINE,
    OPENBHB_SHAPE,
    check_images,
    conform_image,
    make_synthetic_brains,
    split_4d,
)
from anatcl_sklearn.images import _conform

# CAT12 >= 12.8 default bounding box (bb = 12): [-84 -120 -72; 84 84 96] at 1.5 mm.
CAT12_BB12_SHAPE = (113, 137, 113)
CAT12_BB12_AFFINE = np.array([[-1.5, 0, 0, 84], [0, 1.5, 0, -120], [0, 0, 1.5, -72], [0, 0, 0, 1.0]])
CAT12_BB12_PAD = ((4, 4), (4, 4), (0, 8))


def _ras_copy(data, affine):
    """The same image with its first axis stored the other way round (LAS <-> RAS)."""
    flip = np.eye(4)
    flip[0, 0] = -1
    flip[0, 3] = data.shape[0] - 1
    return data[::-1].copy(), affine @ flip


@pytest.fixture(scope="module")
def bb12():
    rng = np.random.default_rng(0)
    return rng.random(CAT12_BB12_SHAPE, dtype=np.float32)


# -- the grid in one public place --------------------------------------------------------


def test_openbhb_grid_is_public_read_only_and_used_by_synthetic_brains():
    assert OPENBHB_SHAPE == (121, 145, 121)
    expected = np.diag([-1.5, 1.5, 1.5, 1.0])
    expected[:3, 3] = (90, -126, -72)
    np.testing.assert_array_equal(OPENBHB_AFFINE, expected)
    with pytest.raises(ValueError, match="read-only"):
        OPENBHB_AFFINE[0, 0] = 1.0
    meta = make_synthetic_brains(2, return_images=False, random_state=0)
    np.testing.assert_array_equal(meta.affine, OPENBHB_AFFINE)
    assert anatcl_sklearn.images.OPENBHB_SHAPE is OPENBHB_SHAPE


# -- conform_image ---------------------------------------------------------------------


def test_cat12_bb12_output_conforms_bit_for_bit_to_manual_zero_padding(bb12, tmp_path):
    path = tmp_path / "mwp1sub-01.nii"
    nib.save(nib.Nifti1Image(bb12, CAT12_BB12_AFFINE), path)
    out = conform_image(path)
    assert out.shape == OPENBHB_SHAPE
    np.testing.assert_array_equal(out.affine, OPENBHB_AFFINE)
    data = np.asanyarray(out.dataobj)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, np.pad(bb12, CAT12_BB12_PAD))
    # nibabel's own nearest-neighbour resampling lands on the same array (DESIGN-NOTES)
    from nibabel.processing import resample_from_to

    ref = resample_from_to(nib.load(path), (OPENBHB_SHAPE, OPENBHB_AFFINE), order=0)
    np.testing.assert_array_equal(data, np.asanyarray(ref.dataobj))


def test_las_and_ras_copies_conform_to_the_same_volume(bb12):
    las = nib.Nifti1Image(bb12, CAT12_BB12_AFFINE)
    ras = nib.Nifti1Image(*_ras_copy(bb12, CAT12_BB12_AFFINE))
    assert anatcl_sklearn.images._grid.axcodes(ras.affine) == "RAS"
    np.testing.assert_array_equal(conform_image(las).dataobj, conform_image(ras).dataobj)
    # through interpolation too (2 mm -> 1.5 mm): same values up to float rounding
    two_mm = CAT12_BB12_AFFINE @ np.diag([4 / 3, 4 / 3, 4 / 3, 1])
    part = np.ascontiguousarray(bb12[:80, :100, :80])  # 2 mm voxels: the part inside the grid
    a = conform_image(nib.Nifti1Image(part, two_mm))
    b = conform_image(nib.Nifti1Image(*_ras_copy(part, two_mm)))
    np.testing.assert_allclose(a.dataobj, b.dataobj, atol=1e-6)


@pytest.mark.parametrize("interpolation", ["linear", "nearest", "cubic"])
def test_interpolated_paths_agree_with_scipy_affine_transform(interpolation):
    from scipy.ndimage import affine_transform

    rng = np.random.default_rng(1)
    data = rng.random((40, 46, 38)).astype(np.float32)
    src = np.diag([2.0, 2.0, 2.0, 1.0])
    src[:3, 3] = (-40, -50, -30)
    shape, target = (30, 36, 28), np.diag([-2.5, 2.5, 2.5, 1.0])
    target[:3, 3] = (36, -44, -28)
    out = np.asanyarray(conform_image(nib.Nifti1Image(data, src), shape, target,
                                      interpolation).dataobj)
    m = np.linalg.inv(src) @ target
    order = _conform.INTERPOLATIONS[interpolation]
    ref = affine_transform(data, m[:3, :3], m[:3, 3], output_shape=shape, order=order,
                           mode="constant", prefilter=order > 1)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # a swapped axis order on disk (a monomial matrix) gives the same volume
    swapped = np.ascontiguousarray(data.transpose(1, 0, 2))
    out_swapped = conform_image(nib.Nifti1Image(swapped, src[:, [1, 0, 2, 3]]), shape, target,
                                interpolation)
    np.testing.assert_allclose(out_swapped.dataobj, out, atol=1e-5)


def test_fortran_ordered_input_gives_the_same_volume_as_c_ordered():
    rng = np.random.default_rng(2)
    data = rng.random((33, 41, 29)).astype(np.float32)
    src = np.diag([1.0, 1.0, 1.0, 1.0])
    shape, target = (20, 26, 18), np.diag([1.6, 1.6, 1.6, 1.0])
    c = _conform.conform_data(data, src, shape, target)
    f = _conform.conform_data(np.asfortranarray(data), src, shape, target)
    np.testing.assert_array_equal(c, f)
    assert f.flags.c_contiguous


def test_an_image_outside_or_half_outside_the_target_grid_is_refused_by_name(tmp_path):
    data = np.ones((10, 10, 10), np.float32)
    far = np.eye(4)
    far[:3, 3] = 1000  # a native-space scan, a wrong origin: would conform to zeros
    path = tmp_path / "native.nii.gz"
    nib.save(nib.Nifti1Image(data, far), path)
    with pytest.raises(ValueError, match=r"native\.nii\.gz.*only 0\.0% of its non-zero.*75%"):
        conform_image(path, (10, 10, 10), np.eye(4))
    half = np.eye(4)
    half[0, 3] = 5  # half of it beyond the grid's edge: would be cut silently
    with pytest.raises(ValueError, match="only 50.0%"):
        conform_image(nib.Nifti1Image(data, half), (10, 10, 10), np.eye(4))
    with pytest.raises(ValueError, match=r"native\.nii\.gz.*only 0\.0%"):
        check_images([path], conform=((10, 10, 10), np.eye(4))).load(0)
    inside = np.eye(4)
    inside[0, 3] = 1  # 90% inside: accepted, the outer slice cut
    out = np.asanyarray(conform_image(nib.Nifti1Image(data, inside), (10, 10, 10), np.eye(4)).dataobj)
    assert out[1:].all() and not out[0].any()


def test_conform_image_refuses_arrays_4d_images_and_bad_arguments(bb12):
    with pytest.raises(TypeError, match="no affine"):
        conform_image(bb12)
    with pytest.raises(TypeError, match="no affine"):
        import torch

        conform_image(torch.zeros(4, 4, 4))
    with pytest.raises(TypeError, match="NIfTI path or a nibabel image"):
        conform_image(42)
    four_d = nib.Nifti1Image(np.zeros((8, 8, 8, 3), np.float32), np.eye(4))
    with pytest.raises(ValueError, match="4-D image of 8x8x8 voxels with 3 volumes.*split_4d"):
        conform_image(four_d)
    img = nib.Nifti1Image(bb12, CAT12_BB12_AFFINE)
    with pytest.raises(ValueError, match="interpolation='spline' is not supported"):
        conform_image(img, interpolation="spline")
    with pytest.raises(ValueError, match="shape must be 3 positive integers"):
        conform_image(img, shape=(121, 145))
    with pytest.raises(ValueError, match="singular"):
        conform_image(img, affine=np.diag([0, 1, 1, 1.0]))
    with pytest.raises(ValueError, match="non-finite voxels"):
        conform_image(nib.Nifti1Image(np.full((4, 4, 4), np.nan, np.float32), np.eye(4)))


def test_conform_image_reads_a_damaged_gzip_as_an_error(tmp_path, bb12):
    path = _damaged_gz(tmp_path / "bad.nii.gz", nib.Nifti1Image(bb12, CAT12_BB12_AFFINE))
    with pytest.raises(ValueError, match=r"'.*bad\.nii\.gz' is damaged: its gzip data fails"):
        conform_image(path)


def test_conform_on_nilearns_mni152_grey_matter_template_matches_an_independent_resampling():
    """A real image nobody here made: nilearn's MNI152 GM template (1 mm, 197x233x189)."""
    nilearn_image = pytest.importorskip("nilearn.image")
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data" / \
        "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
    if not path.is_file():
        pytest.skip(f"nilearn {nilearn.__version__} ships no {path.name}")
    img = nib.load(path)
    assert img.shape == (197, 233, 189)
    ours = np.asanyarray(conform_image(path).dataobj)
    ref = nilearn_image.resample_img(img, target_affine=np.array(OPENBHB_AFFINE),
                                     target_shape=OPENBHB_SHAPE, interpolation="continuous",
                                     force_resample=True, copy_header=True).get_fdata()
    assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] >= 0.99
    assert ours.sum() > 0 and np.isfinite(ours).all()
    # a LAS copy of the template conforms to the same volume
    data = np.asanyarray(img.dataobj, dtype=np.float32)
    las = nib.Nifti1Image(*_ras_copy(data, img.affine))
    assert anatcl_sklearn.images._grid.axcodes(las.affine) == "LAS"
    np.testing.assert_allclose(conform_image(las).dataobj, ours, atol=1e-5)


# -- orientation and consistency checks ---------------------------------------------------


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_mixed_orientations_are_refused_naming_two_files_with_axis_codes(tmp_path, bb12):
    small = bb12[:24, :28, :24]
    las = _save(tmp_path / "las.nii.gz", small, CAT12_BB12_AFFINE)
    ras = _save(tmp_path / "ras.nii.gz", small, _ras_copy(small, CAT12_BB12_AFFINE)[1])
    with pytest.raises(ValueError, match=r"differ in orientation: X\[1\] '.*ras\.nii\.gz' is RAS "
                                         r"with 1\.5x1\.5x1\.5 mm voxels, but X\[0\] '.*las\.nii\.gz'"
                                         r" is LAS with 1\.5x1\.5x1\.5 mm voxels.*conform=True"):
        check_images([las, ras], warn_grid=False)
    # as nibabel images too, and whatever the position of the odd one out
    with pytest.raises(ValueError, match=r"X\[2\] .* is RAS"):
        check_images([las, las, nib.load(ras)], warn_grid=False)


def test_origins_beyond_a_tenth_of_a_voxel_are_refused_header_noise_is_not(tmp_path, bb12):
    small = bb12[:24, :28, :24]
    a = _save(tmp_path / "a.nii", small, CAT12_BB12_AFFINE)
    noisy = CAT12_BB12_AFFINE.copy()
    noisy[:3, 3] += 1e-4  # float32 header rounding
    b = _save(tmp_path / "b.nii", small, noisy)
    assert check_images([a, b], warn_grid=False).shape == small.shape
    shifted = CAT12_BB12_AFFINE.copy()
    shifted[1, 3] += 3.0  # two voxels
    c = _save(tmp_path / "c.nii", small, shifted)
    with pytest.raises(ValueError, match=r"differ in origin: X\[1\] '.*c\.nii' is on \(LAS.*origin "
                                         r"\(84, -117, -72\)\), but X\[0\] '.*a\.nii' is on"):
        check_images([a, c], warn_grid=False)


def test_conform_true_accepts_mixed_grids_and_reads_them_lazily(tmp_path, bb12, monkeypatch):
    las = _save(tmp_path / "las.nii.gz", bb12, CAT12_BB12_AFFINE)
    ras = _save(tmp_path / "ras.nii.gz", *_ras_copy(bb12, CAT12_BB12_AFFINE))
    on_grid = _save(tmp_path / "grid.nii", np.pad(bb12, CAT12_BB12_PAD), OPENBHB_AFFINE)
    npy = tmp_path / "grid.npy"
    np.save(npy, np.pad(bb12, CAT12_BB12_PAD))  # no affine, but already of the target shape
    calls = []
    real = _conform.conform_data
    monkeypatch.setattr("anatcl_sklearn.images._reading.conform_data",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    images = check_images([las, ras, on_grid, str(npy)], conform=True, warn_grid=False)
    assert calls == []  # headers only
    assert images.shape == OPENBHB_SHAPE and images.conformed
    np.testing.assert_array_equal(images.affine, OPENBHB_AFFINE)
    batch = images.load_batch([0, 1, 2, 3])
    for volume in batch:
        np.testing.assert_array_equal(volume, np.pad(bb12, CAT12_BB12_PAD))
    assert len(calls) == 3  # the .npy is read as it is
    restored = pickle.loads(pickle.dumps(images))
    np.testing.assert_array_equal(restored.load(1), batch[1])


def test_conform_refuses_what_has_no_affine_unless_already_on_the_target_shape(tmp_path):
    wrong = np.zeros((2, 24, 28, 24), np.float32)
    with pytest.raises(ValueError, match=r"X is an array of shape \(24, 28, 24\), which has no "
                                         r"affine, so conform=True cannot place it on the "
                                         r"121x145x121 target grid"):
        check_images(wrong, conform=True)
    np.save(tmp_path / "v.npy", wrong[0])
    with pytest.raises(ValueError, match=r"X\[0\] '.*v\.npy' holds an array of shape .* no affine"):
        check_images([tmp_path / "v.npy"], conform=True)
    right = np.zeros((1, *OPENBHB_SHAPE), np.uint8)
    assert check_images(right, conform=True).shape == OPENBHB_SHAPE
    with pytest.raises(TypeError, match="conform must be True, False or a"):
        check_images(right, conform="yes")


def test_conform_to_a_custom_grid(tmp_path, bb12):
    target = (np.array(OPENBHB_SHAPE) // 2, OPENBHB_AFFINE @ np.diag([2, 2, 2, 1.0]))
    images = check_images([_save(tmp_path / "a.nii", bb12, CAT12_BB12_AFFINE)],
                          conform=(tuple(target[0]), target[1]), warn_grid=False)
    assert images.shape == (60, 72, 60) and images.zooms == (3.0, 3.0, 3.0)
    assert images.load(0).shape == (60, 72, 60)


# -- 4-D files -----------------------------------------------------------------------------


def test_4d_files_are_refused_with_the_remedy_and_split_4d_is_that_remedy(tmp_path):
    rng = np.random.default_rng(3)
    vols = rng.random((24, 28, 24, 3)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    merged = _save(tmp_path / "GM_mod_merg.nii.gz", vols, affine)
    with pytest.raises(TypeError, match=r"X '.*GM_mod_merg.nii.gz' is a 4-D image of 24x28x24 "
                                        r"voxels with 3 volumes.*"
                                        r"split_4d\('.*GM_mod_merg\.nii\.gz'\)"):
        check_images(str(merged))
    with pytest.raises(TypeError, match="4-D image.*split_4d"):
        check_images(nib.load(merged))
    with pytest.raises(ValueError, match=r"X\[1\] '.*GM_mod_merg\.nii\.gz' is a 4-D image"):
        check_images([_save(tmp_path / "one.nii", vols[..., 0], affine), merged])
    parts = split_4d(merged)
    assert len(parts) == 3 and all(p.shape == (24, 28, 24) for p in parts)
    images = check_images(parts, warn_grid=False)
    for t in range(3):
        np.testing.assert_array_equal(images.load(t), vols[..., t])
    assert "volume 2 of" in images.sources[2] and "GM_mod_merg" in images.sources[2]
    restored = pickle.loads(pickle.dumps(images))  # lazy proxies pickle as paths
    np.testing.assert_array_equal(restored.load(1), vols[..., 1])
    # a 3-D image splits into itself
    assert len(split_4d(_save(tmp_path / "three.nii", vols[..., 0], affine))) == 1


def test_split_4d_checks_a_gzipped_file_once_up_front(tmp_path):
    vols = np.random.default_rng(4).random((8, 8, 8, 4)).astype(np.float32)
    path = _damaged_gz(tmp_path / "merged.nii.gz", nib.Nifti1Image(vols, np.eye(4)))
    with pytest.raises(ValueError, match=r"'.*merged\.nii\.gz' is damaged"):
        split_4d(path)


# -- intact files --------------------------------------------------------------------------


def _damaged_gz(path, img):
    """A .nii.gz whose gzip stream decodes without error but whose CRC no longer matches:
    stored (level 0) deflate blocks, one data byte flipped, as a bad copy would."""
    raw = bytearray(gzip.compress(img.to_bytes(), compresslevel=0))
    raw[len(raw) * 2 // 3] ^= 0xFF
    Path(path).write_bytes(bytes(raw))
    return Path(path)


def test_damaged_gzip_used_to_decode_silently_and_is_now_refused_naming_the_file(tmp_path):
    vol = np.random.default_rng(5).random((24, 28, 24)).astype(np.float32)
    good = _save(tmp_path / "good.nii.gz", vol, np.eye(4))
    bad = _damaged_gz(tmp_path / "bad.nii.gz", nib.Nifti1Image(vol, np.eye(4)))
    garbage = np.asanyarray(nib.load(bad).dataobj)  # what nibabel alone returns: no error
    assert garbage.shape == vol.shape and not np.array_equal(garbage, vol)
    images = check_images([good, bad], warn_grid=False)  # headers only: fine
    np.testing.assert_array_equal(images.load(0), vol)
    with pytest.raises(ValueError, match=r"X: '.*bad\.nii\.gz' is damaged: its gzip data fails "
                                         r"the integrity check.*copy or export it again"):
        images.load(1)
    with pytest.raises(ValueError, match=r"'.*bad\.nii\.gz' is damaged"):  # up front
        check_images([good, bad], check_finite=True, warn_grid=False)
    # a nibabel image loaded from the damaged file is read checked too
    with pytest.raises(ValueError, match=r"'.*bad\.nii\.gz' is damaged"):
        check_images([nib.load(bad)], warn_grid=False).load(0)
    # a cut-short file (no gzip trailer) is refused the same way
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[:-8])
    with pytest.raises(ValueError, match=r"'.*cut\.nii\.gz' is damaged"):
        check_images([cut], warn_grid=False).load(0)


def test_nifti2_gz_and_scaled_integer_files_read_through_the_checked_path(tmp_path):
    vol = np.random.default_rng(6).random((10, 12, 10)).astype(np.float32)
    n2 = tmp_path / "v2.nii.gz"
    nib.save(nib.Nifti2Image(vol, np.eye(4)), n2)
    np.testing.assert_array_equal(check_images([n2], warn_grid=False).load(0), vol)
    ints = nib.Nifti1Image((vol * 1000).astype(np.int16), np.eye(4))
    ints.header.set_slope_inter(0.001, 0.0)
    scaled = tmp_path / "scaled.nii.gz"
    nib.save(ints, scaled)
    np.testing.assert_allclose(check_images([scaled], warn_grid=False).load(0), vol, atol=2e-3)


def test_images_is_a_sub_package():
    folder = Path(anatcl_sklearn.__file__).parent / "images"
    assert not (folder.parent / "_images.py").exists()
    assert os.path.basename(check_images.__module__) == "anatcl_sklearn.images._checking"


@pytest.mark.parametrize("bad, says", [(np.nan, "non-finite"), (np.inf, "non-finite"),
                                       (0.0, "singular")])
def test_a_broken_affine_is_refused_by_name_everywhere(tmp_path, bad, says):
    from anatcl_sklearn.images._files import affine_of

    data = np.ones((10, 10, 10), np.float32)
    broken = np.eye(4)
    broken[0, 0] = bad
    img = nib.Nifti1Image(data, np.eye(4))
    img._affine = broken  # what a damaged header yields once read
    with pytest.raises(ValueError, match=f"img \\(in memory\\).*{says}"):
        conform_image(img, (10, 10, 10), np.eye(4))
    with pytest.raises(ValueError, match=rf"X\[0\] <image #0>.*{says}"):
        check_images([img], conform=True)
    with pytest.raises(ValueError, match=rf"X\[0\] <image #0>.*{says}"):
        check_images([img])  # not taken as already on the grid
    with pytest.raises(ValueError, match=rf"'scan\.nii'.*{says}"):
        affine_of(img, "'scan.nii'")


def test_a_file_without_orientation_codes_warns_by_name(tmp_path):
    from anatcl_sklearn.exceptions import GridWarning

    img = nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    path = tmp_path / "uncoded.nii"
    nib.save(img, path)
    with pytest.warns(GridWarning, match=r"uncoded\.nii.*no orientation codes"):
        check_images([path], warn_grid=False)
    coded = tmp_path / "coded.nii"
    nib.save(nib.Nifti1Image(np.ones((10, 10, 10), np.float32), np.eye(4)), coded)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", GridWarning)
        check_images([coded], warn_grid=False)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
@pytest.mark.parametrize("filename", ["pipe.nii", "pipe.nii.gz", "pipe.npy"])
def test_a_fifo_is_refused_by_name_before_it_is_opened(tmp_path, filename):
    import signal

    fifo = tmp_path / filename
    os.mkfifo(fifo)

    def hung(*_):
        raise TimeoutError("the reader blocked on the FIFO")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)  # a reader that opens the FIFO blocks: fail instead of hanging
    try:
        with pytest.raises(ValueError, match=rf"X\[0\] '.*{filename}' is a FIFO"):
            check_images([fifo])
        with pytest.raises(ValueError, match=rf"X\[0\] '.*{filename}' is a FIFO"):
            check_images([fifo], conform=True)
        if filename != "pipe.npy":
            with pytest.raises(ValueError, match=rf"'.*{filename}' is a FIFO.*regular file"):
                conform_image(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
