"""Tests of the image input layer: every accepted form, every refusal, laziness and memory."""

import functools
import os
import pickle
import tracemalloc
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from anatcl_sklearn.images import (
    OPENBHB_SHAPE,
    GridWarning,
    ImageCollection,
    check_images,
)

SHAPE = (24, 28, 24)
AFFINE = np.diag([1.5, 1.5, 1.5, 1.0])

# Most tests use small grids on purpose; the grid warning has its own tests.
check = functools.partial(check_images, warn_grid=False)


@pytest.fixture
def volumes():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, *SHAPE)).astype(np.float32)


def _nifti(path, volume, affine=AFFINE):
    nib.save(nib.Nifti1Image(volume, affine), path)
    return path


def _npy(path, volume):
    np.save(path, volume)
    return path


def _paths(tmp_path, volumes, kind):
    """Write each volume as one file of ``kind`` and return the paths as Path objects."""
    out = []
    for i, vol in enumerate(volumes):
        if kind == "nii":
            out.append(_nifti(tmp_path / f"s{i}.nii", vol))
        elif kind == "nii.gz":
            out.append(_nifti(tmp_path / f"s{i}.nii.gz", vol))
        elif kind == "npy3":
            out.append(_npy(tmp_path / f"s{i}.npy", vol))
        elif kind == "npy4":
            out.append(_npy(tmp_path / f"s{i}.npy", vol[None]))
        elif kind == "npy5":
            out.append(_npy(tmp_path / f"s{i}.npy", vol[None, None]))
        elif kind == "npy_fortran":
            out.append(_npy(tmp_path / f"s{i}.npy", np.asfortranarray(vol)))
    return out


def _make_input(kind, volumes, tmp_path):
    if kind == "array4":
        return volumes
    if kind == "array5":
        return volumes[:, None]
    if kind == "float64_array":
        return volumes.astype(np.float64)
    if kind == "tensor":
        return torch.from_numpy(volumes)
    if kind == "tensor5_requires_grad":
        return torch.from_numpy(volumes)[:, None].requires_grad_(True)
    if kind in ("nii", "nii.gz", "npy3", "npy4", "npy5", "npy_fortran"):
        return [str(p) for p in _paths(tmp_path, volumes, kind)]
    if kind == "images":
        return [nib.Nifti1Image(v, AFFINE) for v in volumes]
    if kind == "file_backed_images":
        return [nib.load(p) for p in _paths(tmp_path, volumes, "nii")]
    if kind == "series_of_paths":
        return pd.Series(_paths(tmp_path, volumes, "nii.gz"), index=[10, 20, 30])
    if kind == "object_array":
        return np.array([str(p) for p in _paths(tmp_path, volumes, "npy3")], dtype=object)
    if kind == "str_array":
        return np.array([str(p) for p in _paths(tmp_path, volumes, "npy3")])
    if kind == "tuple_of_paths":
        return tuple(_paths(tmp_path, volumes, "nii"))
    if kind == "mixed":
        return [
            _nifti(tmp_path / "m0.nii.gz", volumes[0]),
            str(_npy(tmp_path / "m1.npy", volumes[1][None])),
            nib.Nifti1Image(volumes[2], AFFINE),
        ]
    raise AssertionError(kind)


INPUT_KINDS = [
    "array4", "array5", "float64_array", "tensor", "tensor5_requires_grad", "nii", "nii.gz",
    "npy3", "npy4", "npy5", "npy_fortran", "images", "file_backed_images", "series_of_paths",
    "object_array", "str_array", "tuple_of_paths", "mixed",
]


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_every_input_kind_gives_the_same_float32_voxels(kind, volumes, tmp_path):
    X = _make_input(kind, volumes, tmp_path)
    images = check(X)
    assert isinstance(images, ImageCollection)
    assert len(images) == 3 and images.shape == SHAPE
    assert len(images.sources) == 3
    for i in range(3):
        vol = images.load(i)
        assert vol.dtype == np.float32 and vol.shape == SHAPE and vol.flags.c_contiguous
        np.testing.assert_array_equal(vol, volumes[i])
    batch = images.load_batch([2, 0])
    assert batch.dtype == np.float32 and batch.shape == (2, *SHAPE)
    np.testing.assert_array_equal(batch, volumes[[2, 0]])


def test_sources_and_zooms_describe_the_inputs(volumes, tmp_path):
    paths = _paths(tmp_path, volumes, "nii.gz")
    images = check(paths)
    assert images.sources == [str(p.resolve()) for p in paths]
    assert images.zooms == (1.5, 1.5, 1.5)
    arr = check(volumes)
    assert arr.sources == ["<array index 0>", "<array index 1>", "<array index 2>"]
    assert arr.zooms is None
    npy = check(_paths(tmp_path, volumes, "npy3"))
    assert npy.zooms is None
    imgs = check([nib.Nifti1Image(v, np.diag([2.0, 2.0, 2.0, 1.0])) for v in volumes])
    assert imgs.sources == ["<image #0>", "<image #1>", "<image #2>"]
    assert imgs.zooms == (2.0, 2.0, 2.0)


def test_relative_paths_are_resolved(volumes, tmp_path, monkeypatch):
    _paths(tmp_path, volumes, "npy3")
    monkeypatch.chdir(tmp_path)
    images = check(["s0.npy", "s1.npy"])
    assert images.sources == [str(tmp_path / "s0.npy"), str(tmp_path / "s1.npy")]
    monkeypatch.chdir(os.path.dirname(tmp_path))  # later loads do not depend on the cwd
    np.testing.assert_array_equal(images.load(1), volumes[1])


def test_nifti_scaling_is_applied(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.uniform(-3.0, 40.0, size=SHAPE)
    img = nib.Nifti1Image(data, AFFINE)
    img.header.set_data_dtype(np.uint8)  # nibabel stores uint8 plus scl_slope / scl_inter
    nib.save(img, tmp_path / "scaled.nii.gz")
    on_disk = nib.load(tmp_path / "scaled.nii.gz")
    raw = np.asarray(on_disk.dataobj.get_unscaled())
    slope, inter = on_disk.dataobj.slope, on_disk.dataobj.inter
    assert raw.dtype == np.uint8 and slope != 1.0  # the test really exercises scaling
    vol = check([tmp_path / "scaled.nii.gz"]).load(0)
    np.testing.assert_allclose(vol, raw.astype(np.float64) * slope + inter, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(vol, data, atol=slope)  # within one quantisation step


def test_nifti_trailing_singleton_axis_is_dropped(volumes, tmp_path):
    path = _nifti(tmp_path / "v.nii.gz", volumes[0][..., None])
    assert nib.load(path).shape == (*SHAPE, 1)
    images = check([path, _nifti(tmp_path / "w.nii", volumes[1])])
    assert images.shape == SHAPE
    np.testing.assert_array_equal(images.load(0), volumes[0])
    np.testing.assert_array_equal(images.load(1), volumes[1])


def test_integer_and_bool_inputs_become_float32(tmp_path):
    ints = np.arange(2 * 4 * 5 * 6, dtype=np.int16).reshape(2, 4, 5, 6) - 100
    np.testing.assert_array_equal(check(ints).load(1), ints[1].astype(np.float32))
    mask = ints > 0
    np.testing.assert_array_equal(check(mask).load_batch([0, 1]), mask.astype(np.float32))
    np.save(tmp_path / "u8.npy", ints[0].astype(np.uint8))
    np.testing.assert_array_equal(check([tmp_path / "u8.npy"]).load(0),
                                  ints[0].astype(np.uint8).astype(np.float32))


def test_bfloat16_tensor_is_read_as_float32(volumes):
    tensor = torch.from_numpy(volumes).to(torch.bfloat16)
    images = check(tensor)
    np.testing.assert_array_equal(images.load(0), tensor[0].float().numpy())


def test_load_returns_new_arrays_and_never_touches_the_input(volumes):
    X = volumes.copy()
    X.setflags(write=False)  # read-only input must be accepted as is
    images = check(X)
    vol = images.load(0)
    vol[:] = 123.0
    batch = images.load_batch([0, 1])
    batch[:] = -5.0
    np.testing.assert_array_equal(X, volumes)
    np.testing.assert_array_equal(images.load(0), volumes[0])

    img = nib.Nifti1Image(volumes[0].copy(), AFFINE)
    from_image = check([img]).load(0)
    assert from_image.flags.writeable and from_image.flags.owndata
    from_image[:] = 7.0
    np.testing.assert_array_equal(np.asarray(img.dataobj), volumes[0])


def test_array_is_referenced_not_copied_and_scanned_in_chunks():
    # 84 MB of float64: a whole-array copy or a whole float32 cast would show in the peak.
    X = np.zeros((40, 64, 64, 64), dtype=np.float64)
    X[37, 5, 6, 7] = np.nan
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"<array index 37> has 1 non-finite"):
            check(X)
        images = check(X, check_finite=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.4 * X.nbytes, f"peak {peak} bytes for a {X.nbytes}-byte array"
    X[37, 5, 6, 7] = 4.0  # the collection sees the user's array itself
    assert images.load(37)[5, 6, 7] == 4.0


def test_nonfinite_array_values_are_refused_eagerly(volumes):
    X = volumes.copy()
    X[1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError,
                       match=r"<array index 1> has 1 non-finite voxel.*check_finite=False"):
        check(X)
    images = check(X, check_finite=False)
    assert np.isinf(images.load(1)[0, 0, 0])

    big = volumes.astype(np.float64)
    big[2, 3, 3, 3] = 1e39  # finite in float64, inf once read as float32
    with pytest.raises(ValueError, match=r"<array index 2>.*float32"):
        check(big)

    bad_tensor = torch.from_numpy(X)
    with pytest.raises(ValueError, match=r"<array index 1>"):
        check(bad_tensor)


def test_nonfinite_file_is_refused_at_load_or_eagerly_when_asked(volumes, tmp_path):
    vols = volumes.copy()
    vols[2, 1, 2, 3] = np.nan
    vols[2, 4, 5, 6] = -np.inf
    paths = _paths(tmp_path, vols, "npy3")
    images = check(paths)  # "auto": files are not read now
    np.testing.assert_array_equal(images.load(0), volumes[0])
    with pytest.raises(ValueError, match=r"s2\.npy' has 2 non-finite voxel"):
        images.load(2)
    with pytest.raises(ValueError, match=r"s2\.npy' has 2 non-finite"):
        images.load_batch([0, 2])
    with pytest.raises(ValueError, match=r"s2\.npy' has 2 non-finite"):
        check(paths, check_finite=True)
    assert np.isnan(check(paths, check_finite=False).load(2)[1, 2, 3])

    # In-memory nibabel images cost nothing to scan, so "auto" scans them now.
    with pytest.raises(ValueError, match=r"<image #1> has 2 non-finite"):
        check([nib.Nifti1Image(v, AFFINE) for v in vols[1:]])


def _bad_value_inputs(tmp_path):
    """(X, exception, match) for inputs refused by check_images."""
    vol = np.zeros(SHAPE, dtype=np.float32)
    _nifti(tmp_path / "ok.nii.gz", vol)
    cases = [
        (str(tmp_path / "ok.nii.gz"), TypeError, r"single path.*list of paths"),
        (tmp_path / "ok.nii.gz", TypeError, r"single path.*list of paths"),
        (nib.Nifti1Image(vol, AFFINE), TypeError, r"single 3-D image.*list"),
        (nib.Nifti1Image(np.zeros((*SHAPE, 5), np.float32), AFFINE), TypeError,
         r"4-D image of 24x28x24 voxels with 5 volumes.*split_4d"),
        (vol, ValueError, r"3-D array of shape \(24, 28, 24\), a single volume.*newaxis"),
        ([], ValueError, r"X is empty \(0 images\)"),
        (np.zeros((0, *SHAPE), np.float32), ValueError, r"empty \(0 images"),
        (np.zeros((3, 100)), ValueError, r"2-D array of shape \(3, 100\).*\(n_images, D, H, W\)"),
        (np.zeros(5), ValueError, r"1-D array of shape \(5,\)"),
        (np.zeros((2, 2, *SHAPE)), ValueError, r"\(2, 2, 24, 28, 24\): 2 channels"),
        (np.zeros((2, 1, 1, *SHAPE)), ValueError, r"6-D array"),
        (np.zeros((2, 4, 0, 4)), ValueError, r"empty axis"),
        (np.zeros((2, 4, 4, 4), dtype=object), TypeError, r"non-numeric dtype object"),
        (np.full((2, 4, 4, 4), "a"), TypeError, r"non-numeric dtype <U1"),
        (np.zeros((2, 4, 4, 4), dtype="datetime64[s]"), TypeError, r"non-numeric"),
        (np.zeros((2, 4, 4, 4), dtype=np.complex64), TypeError, r"complex"),
        (torch.zeros(2, 4, 4, 4, dtype=torch.complex64), TypeError, r"complex tensor"),
        ({"a": 1}, TypeError, r"X must be an array.*got dict"),
        (42, TypeError, r"got int"),
        ((p for p in ["a.nii"]), TypeError, r"got generator"),
        (pd.DataFrame({"path": [str(tmp_path / "ok.nii.gz")]}), TypeError,
         r"DataFrame.*X\['path'\]"),
        ([str(tmp_path / "ok.nii.gz"), 1.5], TypeError,
         r"X\[1\] has type float \(1\.5\).*paths \(str or os\.PathLike\).*nibabel images"),
        ([str(tmp_path / "ok.nii.gz"), None], TypeError, r"X\[1\] has type NoneType"),
        ([vol, vol], TypeError, r"X\[0\] is an in-memory ndarray.*np\.stack"),
        ([torch.zeros(SHAPE)], TypeError, r"X\[0\] is an in-memory Tensor"),
        ([b"ok.nii.gz"], TypeError, r"X\[0\] has type bytes"),
        ([[1, 2], [3, 4]], TypeError, r"X\[0\] has type list"),
    ]
    return cases


def test_bad_inputs_get_clear_errors(tmp_path):
    for X, exc, match in _bad_value_inputs(tmp_path):
        with pytest.raises(exc, match=match):
            check(X)


def test_bad_options_are_refused(volumes):
    with pytest.raises(ValueError, match=r'check_finite must be "auto", True or False'):
        check(volumes, check_finite="yes")
    with pytest.raises(TypeError, match="warn_grid must be a bool"):
        check_images(volumes, warn_grid="no")
    with pytest.raises(ValueError, match=r"^subjects is a 3-D array"):
        check(volumes[0], name="subjects")


def test_bad_files_name_the_path(volumes, tmp_path):
    good = _nifti(tmp_path / "good.nii.gz", volumes[0])

    missing = tmp_path / "missing.nii.gz"
    with pytest.raises(FileNotFoundError, match=r"X\[1\]: file not found: '.*missing\.nii\.gz'"):
        check([good, missing])

    for name in ("brain.mgz", "brain.txt", "brain.npz", "brain"):
        (tmp_path / name).write_bytes(b"whatever")
        with pytest.raises(ValueError, match=rf"'.*{name}' has an unsupported file type; "
                                             r"supported: \.nii, \.nii\.gz, \.npy"):
            check([good, tmp_path / name])

    (tmp_path / "dir.nii").mkdir()
    with pytest.raises(ValueError, match=r"dir\.nii' is a directory"):
        check([tmp_path / "dir.nii"])

    (tmp_path / "garbage.npy").write_bytes(os.urandom(300))
    with pytest.raises(ValueError, match=r"could not read '.*garbage\.npy' as a \.npy file") as err:
        check([tmp_path / "garbage.npy"])
    assert err.value.__cause__ is not None

    for name in ("garbage.nii.gz", "garbage.nii", "empty.nii"):
        (tmp_path / name).write_bytes(b"" if name == "empty.nii" else os.urandom(500))
        with pytest.raises(ValueError, match=rf"could not read '.*{name}' as NIfTI") as err:
            check([tmp_path / name])
        assert err.value.__cause__ is not None

    raw = _npy(tmp_path / "short.npy", volumes[0]).read_bytes()
    (tmp_path / "short.npy").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r"'.*short\.npy' is truncated"):
        check([tmp_path / "short.npy"])
    raw = _nifti(tmp_path / "short.nii", volumes[0]).read_bytes()
    (tmp_path / "short.nii").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r"'.*short\.nii' is truncated"):
        check([tmp_path / "short.nii"])

    np.save(tmp_path / "complex.npy", volumes[0].astype(np.complex64))
    with pytest.raises(TypeError, match=r"'.*complex\.npy' holds complex values"):
        check([tmp_path / "complex.npy"])
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(TypeError, match=r"'.*objects\.npy' has non-numeric dtype object"):
        check([tmp_path / "objects.npy"])


def test_non_3d_volumes_are_refused_naming_source_and_shape(volumes, tmp_path):
    four_d = _nifti(tmp_path / "series.nii.gz", np.stack([volumes[0], volumes[1]], axis=-1))
    with pytest.raises(ValueError, match=r"X\[0\] '.*series\.nii\.gz' is a 4-D image of 24x28x24 "
                                         r"voxels with 2 volumes.*split_4d\('.*series\.nii\.gz'\)"):
        check([four_d])
    flat = _nifti(tmp_path / "slice.nii", volumes[0][:, :, 0])
    with pytest.raises(ValueError, match=r"slice\.nii' holds an array of shape \(24, 28\)"):
        check([flat])
    two = _npy(tmp_path / "two.npy", volumes[:2])
    with pytest.raises(ValueError, match=r"two\.npy' holds an array of shape \(2, 24, 28, 24\)"):
        check([two])
    with pytest.raises(ValueError, match=r"X: <image #0> holds an array of shape \(24, 28\)"):
        check([nib.Nifti1Image(volumes[0][:, :, 0], AFFINE)])


def test_shape_and_voxel_size_mismatches_name_the_first_offender(volumes, tmp_path):
    a = _nifti(tmp_path / "a.nii.gz", volumes[0])
    b = _nifti(tmp_path / "b.nii.gz", volumes[1])
    small = _npy(tmp_path / "small.npy", volumes[2][:20])
    other = _nifti(tmp_path / "other.nii.gz", volumes[2][:, :, :10])
    with pytest.raises(ValueError, match=r"one shape: X\[2\] '.*small\.npy' has shape "
                                         r"\(20, 28, 24\), but X\[0\] '.*a\.nii\.gz' has shape "
                                         r"\(24, 28, 24\)"):
        check([a, b, small, other])
    coarse = _nifti(tmp_path / "coarse.nii.gz", volumes[2], np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"differ in voxel size: X\[2\] '.*coarse\.nii\.gz' is RAS "
                                         r"with 2x2x2 mm voxels, but X\[0\] '.*a\.nii\.gz' is RAS with "
                                         r"1\.5x1\.5x1\.5 mm"):
        check([a, b, coarse])


def test_headers_only_truncated_gzip_fails_at_load_naming_the_path(volumes, tmp_path):
    paths = []
    for i in range(200):
        path = _nifti(tmp_path / f"t{i:03d}.nii.gz", volumes[i % 3])
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])  # header intact, voxel data cut
        paths.append(path)
    images = check(paths)  # passes: no voxel is read by check_images
    assert len(images) == 200 and images.shape == SHAPE
    for i in (0, 117, 199):
        with pytest.raises(ValueError, match=rf"'.*t{i:03d}\.nii\.gz' is damaged: its gzip data "
                                             r"fails the integrity check \(EOFError") as err:
            images.load(i)
        assert err.value.__cause__ is not None
    with pytest.raises(ValueError, match=r"t000\.nii\.gz"):
        check(paths, check_finite=True)  # the eager scan does read voxels


def test_check_images_reads_no_npy_voxels(volumes, tmp_path, monkeypatch):
    calls = []
    real_load = np.load

    def counting_load(*args, **kwargs):
        calls.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", counting_load)
    paths = _paths(tmp_path, volumes, "npy4")
    images = check(paths)
    sub = images.subset([2, 1])
    assert calls == []
    np.testing.assert_array_equal(sub.load(0), volumes[2])
    assert calls == ["r"]  # one memory-mapped open per load
    sub.load_batch([0, 1, 0])
    assert len(calls) == 4
    calls.clear()
    check(paths, check_finite=True)
    assert len(calls) == 3  # eager scan: each file once


def test_loading_a_thousand_files_keeps_memory_flat(tmp_path):
    rng = np.random.default_rng(2)
    shape = (16, 16, 16)  # big enough that holding all 1,000 (16 MB) dwarfs allocator noise
    volume_bytes = 4 * np.prod(shape)
    sums = []
    paths = []
    for i in range(1000):
        vol = rng.normal(size=shape).astype(np.float32)
        sums.append(float(vol.sum(dtype=np.float64)))
        paths.append(_npy(tmp_path / f"v{i:04d}.npy", vol))
    tracemalloc.start()
    try:
        images = check(paths)
        after_check, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        loaded = [float(images.load(i).sum(dtype=np.float64)) for i in range(len(images))]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(loaded, sums, rtol=1e-6)
    total = 1000 * volume_bytes
    # Holding every volume would need `total` bytes; one at a time needs a few volumes.
    assert peak - after_check < 0.05 * total, (peak, after_check, total)
    assert after_check < 0.5 * total  # the collection itself holds paths, not voxels


def test_grid_warning_fires_once_for_other_grids(volumes, tmp_path):
    paths = _paths(tmp_path, volumes, "nii.gz")
    with pytest.warns(GridWarning) as record:
        check_images(paths)
    grid = [w for w in record if issubclass(w.category, GridWarning)]
    assert len(grid) == 1
    assert "24x28x24 voxels (RAS, 1.5x1.5x1.5 mm voxels" in str(grid[0].message)
    assert "121x145x121" in str(grid[0].message)
    assert grid[0].filename == __file__  # points at the caller, not at the library

    with pytest.warns(GridWarning, match=r"24x28x24 voxels,"):
        check_images(volumes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_images(paths, warn_grid=False)
        check_images(volumes, warn_grid=False)


def test_grid_warning_is_silent_on_the_anatcl_grid_and_fires_for_other_voxel_sizes(tmp_path):
    zeros = np.zeros(OPENBHB_SHAPE, dtype=np.uint8)  # compresses to a few kB
    right = _nifti(tmp_path / "openbhb.nii.gz", zeros,
                   np.array([[-1.5, 0, 0, 90], [0, 1.5, 0, -126], [0, 0, 1.5, -72], [0, 0, 0, 1]]))
    wrong_mm = _nifti(tmp_path / "two_mm.nii.gz", zeros, np.diag([2.0, 2.0, 2.0, 1.0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images = check_images([right, right])
        check_images(zeros[None])
        check_images([str(_npy(tmp_path / "grid.npy", zeros))])
    assert images.shape == OPENBHB_SHAPE and images.zooms == (1.5, 1.5, 1.5)
    with pytest.warns(GridWarning, match=r"121x145x121 voxels \(RAS, 2x2x2 mm voxels"):
        check_images([wrong_mm])


def test_subset_and_load_batch_keep_order_and_positions(volumes, tmp_path):
    more = np.concatenate([volumes, volumes[::-1] + 1.0])
    for X in (more, _paths(tmp_path, more, "npy3")):
        images = check(X)
        sub = images.subset([4, 0, 2])
        assert len(sub) == 3 and sub.sources == [images.sources[k] for k in (4, 0, 2)]
        np.testing.assert_array_equal(sub.load_batch(range(3)), more[[4, 0, 2]])
        subsub = sub.subset(np.array([-1, 0]))  # negatives count from the end
        np.testing.assert_array_equal(subsub.load_batch([0, 1]), more[[2, 4]])
        assert subsub.sources == [images.sources[2], images.sources[4]]
        mask = np.array([True, False, True, False, False, True])
        np.testing.assert_array_equal(images.subset(mask).load_batch(slice(None)), more[mask])
        np.testing.assert_array_equal(images.load_batch(slice(None, None, -2)), more[::-2])
        np.testing.assert_array_equal(images.load_batch([1, 1]), more[[1, 1]])
        np.testing.assert_array_equal(images.load(-1), more[-1])
        np.testing.assert_array_equal(images.load(np.int64(3)), more[3])
        assert images.load_batch([]).shape == (0, *SHAPE)
        assert len(images) == 6  # subset leaves the parent alone
        with pytest.raises(IndexError, match="index 6 is out of range for 6 images"):
            images.load(6)
        with pytest.raises(IndexError, match="index 7 is out of range for 3 images"):
            sub.subset([0, 7])
        with pytest.raises(IndexError, match="boolean mask has length 2, expected 6"):
            images.load_batch([True, False])
        with pytest.raises(TypeError, match="image index must be an integer"):
            images.load(True)
        with pytest.raises(TypeError, match="integers or booleans"):
            images.subset([0.5])


def test_pickle_round_trip(volumes, tmp_path):
    paths = _paths(tmp_path, volumes, "nii.gz")
    for X in (paths, volumes, [nib.Nifti1Image(v, AFFINE) for v in volumes],
              [nib.load(p) for p in paths]):
        images = check(X).subset([2, 0])
        restored = pickle.loads(pickle.dumps(images))
        assert restored.shape == images.shape and restored.sources == images.sources
        assert restored.zooms == images.zooms
        np.testing.assert_array_equal(restored.load_batch([0, 1]), volumes[[2, 0]])
    # A path-based collection pickles its paths, not its voxels (cheap for DataLoader workers).
    assert len(pickle.dumps(check(paths))) < volumes[0].nbytes / 10


def test_in_memory_flag(volumes, tmp_path):
    paths = _paths(tmp_path, volumes, "npy3")
    images = [nib.Nifti1Image(v, AFFINE) for v in volumes]
    assert check(volumes).in_memory
    assert check(images).in_memory
    assert not check(paths).in_memory
    assert not check([nib.load(p) for p in _paths(tmp_path, volumes, "nii")]).in_memory
    mixed = check([images[0], paths[1]])
    assert not mixed.in_memory and mixed.subset([0]).in_memory
    memmap = np.lib.format.open_memmap(tmp_path / "all.npy", mode="w+", dtype=np.float32,
                                       shape=volumes.shape)
    memmap[:] = volumes
    assert not check(np.load(tmp_path / "all.npy", mmap_mode="r")).in_memory


def test_files_changed_after_the_check_are_reported(volumes, tmp_path):
    paths = _paths(tmp_path, volumes, "npy3")
    images = check(paths)
    paths[1].unlink()
    with pytest.raises(FileNotFoundError, match=r"'.*s1\.npy' \(it existed when"):
        images.load(1)
    np.save(paths[2], volumes[2][:10])
    with pytest.raises(ValueError, match=r"s2\.npy' now holds an array of shape \(10, 28, 24\)"):
        images.load(2)


def test_a_collection_can_be_checked_again(volumes, tmp_path):
    vols = volumes.copy()
    vols[1, 0, 0, 0] = np.nan
    paths = _paths(tmp_path, vols, "npy3")
    images = check(paths)
    again = check(images)
    assert again.sources == images.sources
    np.testing.assert_array_equal(again.load(0), vols[0])
    with pytest.raises(ValueError, match=r"s1\.npy' has 1 non-finite"):
        check(images.subset([0, 1]), check_finite=True)
    assert np.isnan(check(images, check_finite=False).load(1)[0, 0, 0])
    with pytest.raises(ValueError, match=r"^train: '.*s1\.npy' has 1 non-finite"):
        check(images, name="train").load(1)
