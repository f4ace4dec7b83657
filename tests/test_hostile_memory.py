"""Hostile files cannot drive memory up (#19 item 3), and conform_image follows check_images'
dtype and finiteness rules (#19 item 10).

A gzip bomb (a valid small image followed by 128 MB of compressed zeros, 130 KB on disk) and a
few-KB file whose header announces 1100**3 voxels: every door refuses them by name, and the
memory traced by Python (tracemalloc: bytes objects and numpy arrays) stays far below the
inflated size, so the stream is never inflated whole.
"""

import gzip
import io
import subprocess
import sys
import tracemalloc
import zlib

import nibabel as nib
import numpy as np
import pytest
import torch

import anatcl_sklearn
from anatcl_sklearn.images import _files

SHAPE = (12, 14, 12)
ZEROS_MB = 128
BOUND = 24 << 20  # far below the 128 MB a whole inflation holds


def _affine():
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (90.0, -126.0, -72.0)
    return affine


def _nifti_bytes(shape=SHAPE, dtype=np.float32):
    data = np.random.default_rng(0).random(shape).astype(dtype)
    return nib.Nifti1Image(data, _affine()).to_bytes()


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A .nii.gz: a valid 12x14x12 image, then 128 MB of zeros in the same gzip stream."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.nii.gz"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    with open(path, "wb") as fh:
        fh.write(comp.compress(_nifti_bytes()))
        fh.writelines(comp.compress(zeros) for _ in range(ZEROS_MB))
        fh.write(comp.flush())
    assert path.stat().st_size < 1 << 20
    return str(path)


@pytest.fixture(scope="module")
def huge(tmp_path_factory):
    """A few-KB .nii.gz whose header announces 1100**3 float32 voxels (5.3 GB)."""
    folder = tmp_path_factory.mktemp("huge")
    raw = bytearray(_nifti_bytes())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])))
    hdr.set_data_shape((1100, 1100, 1100))
    raw[:348] = hdr.binaryblock
    path = folder / "huge.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    return str(path)


def _peak(call):
    tracemalloc.start()
    try:
        try:
            call()
        except (ValueError, TypeError) as exc:
            return tracemalloc.get_traced_memory()[1], exc
        return tracemalloc.get_traced_memory()[1], None
    finally:
        tracemalloc.stop()


def _fitted():
    torch.manual_seed(0)
    est = anatcl_sklearn.AnatCLEmbedder(method="simclr", max_epochs=0, verbose=0)
    return est.fit(np.zeros((2, *SHAPE), np.float32))


@pytest.mark.parametrize("door", ["conform_image", "check_images", "load", "transform"])
def test_a_gzip_bomb_is_refused_in_bounded_memory(bomb, door):
    calls = {
        "conform_image": lambda: anatcl_sklearn.conform_image(bomb, shape=SHAPE,
                                                              affine=_affine()),
        "check_images": lambda: anatcl_sklearn.check_images([bomb], check_finite=True,
                                                            warn_grid=False),
        "load": lambda: anatcl_sklearn.check_images([bomb], warn_grid=False).load(0),
    }
    if door == "transform":
        est = _fitted()
        calls["transform"] = lambda: est.transform([bomb])
    peak, exc = _peak(calls[door])
    assert isinstance(exc, ValueError), exc
    message = str(exc)
    assert bomb in message and "past the end of its voxel data" in message, message
    assert peak < BOUND, f"{door}: {peak / 2**20:.0f} MiB traced"


@pytest.mark.parametrize("door", ["conform_image", "check_images", "load_nifti"])
def test_a_header_announcing_1100_cubed_voxels_is_refused_before_allocating(huge, door):
    calls = {
        "conform_image": lambda: anatcl_sklearn.conform_image(huge, shape=SHAPE,
                                                              affine=_affine()),
        "check_images": lambda: anatcl_sklearn.check_images([huge], warn_grid=False),
        "load_nifti": lambda: _files.load_nifti(huge),
    }
    peak, exc = _peak(calls[door])
    assert isinstance(exc, ValueError), exc
    message = str(exc)
    assert huge in message and "1100x1100x1100" in message, message
    assert f"{_files.MAX_VOXELS}" in message, message
    assert peak < BOUND, f"{door}: {peak / 2**20:.0f} MiB traced"


def test_a_short_gzip_announcing_more_than_it_can_hold_is_truncated(tmp_path):
    """Within the voxel bound, but more than deflate can inflate from the file's size."""
    raw = bytearray(_nifti_bytes())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])))
    hdr.set_data_shape((400, 400, 400))
    raw[:348] = hdr.binaryblock
    path = tmp_path / "short.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    for call in (lambda: anatcl_sklearn.check_images([str(path)], warn_grid=False),
                 lambda: anatcl_sklearn.conform_image(str(path), shape=SHAPE, affine=_affine())):
        peak, exc = _peak(call)
        assert isinstance(exc, ValueError) and "is truncated" in str(exc), exc
        assert str(path) in str(exc) and peak < BOUND


def test_a_valid_gzip_still_reads_and_split_4d_refuses_trailing_data(tmp_path, bomb):
    path = tmp_path / "ok.nii.gz"
    path.write_bytes(gzip.compress(_nifti_bytes()))
    volume = anatcl_sklearn.check_images([str(path)], warn_grid=False).load(0)
    expected = np.random.default_rng(0).random(SHAPE).astype(np.float32)
    np.testing.assert_array_equal(volume, expected)
    # a multi-member gzip (e.g. pigz -i, or cat a.gz b.gz) is one stream
    raw = _nifti_bytes()
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))
    np.testing.assert_array_equal(
        anatcl_sklearn.check_images([str(multi)], warn_grid=False).load(0), expected)
    peak, exc = _peak(lambda: anatcl_sklearn.split_4d(bomb))
    assert isinstance(exc, ValueError) and "past the end of its voxel data" in str(exc), exc
    assert peak < BOUND


@pytest.mark.slow
def test_embed_refuses_a_bomb_with_a_low_peak_rss(bomb, huge, tmp_path):
    """The command line end to end, in a fresh process: peak RSS grows far less than 128 MB."""
    ckpt = tmp_path / "w.pth"
    from anatcl_sklearn.models import AnatCLModel

    torch.save({"opts": {"input_shape": list(SHAPE)},
                "model": AnatCLModel("resnet18").state_dict()}, ckpt)
    code = (
        "import resource, sys\n"
        "from anatcl_sklearn.__main__ import main\n"
        "import anatcl_sklearn.cli._embed, torch, nibabel, scipy.ndimage\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        "    code = main(['embed', '--weights', sys.argv[1], '--output', sys.argv[2], *sys.argv[3:]])\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('GROWTH_KB', after - before, 'CODE', code)\n"
    )
    for source in (bomb, huge):
        out = subprocess.run([sys.executable, "-c", code, str(ckpt), str(tmp_path / "o.csv"),
                              source], check=False, capture_output=True, text=True, timeout=300)
        words = out.stdout.split()
        assert "GROWTH_KB" in words, out.stdout + out.stderr
        growth_kb, status = int(words[words.index("GROWTH_KB") + 1]), words[-1]
        assert status == "2", out.stdout + out.stderr
        assert source in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert growth_kb < 48 * 1024, f"{source}: peak RSS grew {growth_kb} KB"


# -- item 10: one dtype rule and one finiteness check ---------------------------------


def test_conform_image_refuses_complex_data_as_check_images_does(tmp_path):
    data = (np.ones(SHAPE) + 1j).astype(np.complex64)
    img = nib.Nifti1Image(data, _affine())
    path = tmp_path / "c.nii.gz"
    nib.save(img, path)
    with pytest.raises(TypeError, match="holds complex values"):
        anatcl_sklearn.check_images([str(path)], warn_grid=False)
    for source in (str(path), img):
        with pytest.raises(TypeError, match="holds complex values"):
            anatcl_sklearn.conform_image(source, shape=SHAPE, affine=_affine())


@pytest.mark.parametrize("stored", [np.float32, np.int16])
def test_an_overflowing_scl_slope_is_refused_by_conform_image_as_by_check_images(tmp_path,
                                                                               stored):
    img = nib.Nifti1Image(np.ones(SHAPE, stored), _affine())
    img.header.set_slope_inter(1e38, 0)
    path = tmp_path / "slope.nii"
    raw = bytearray(img.to_bytes())
    # nibabel's writer rescales float data; write the slope into the stored header directly
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])))
    hdr["scl_slope"], hdr["scl_inter"] = 1e38, 0
    raw[:348] = hdr.binaryblock
    raw[352:] = np.full(SHAPE, 7, stored).tobytes(order="F")
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="non-finite voxel"):
        anatcl_sklearn.check_images([str(path)], check_finite=True, warn_grid=False)
    with pytest.raises(ValueError, match=r"slope\.nii' has 2016 non-finite voxel"):
        anatcl_sklearn.conform_image(str(path), shape=SHAPE, affine=_affine())
    with pytest.raises(ValueError, match="non-finite voxel"):
        anatcl_sklearn.conform_image(str(path))  # resampled, not just reordered


def test_float64_beyond_float32_is_non_finite_for_every_reader():
    data = np.ones(SHAPE)
    data[0, 0, 0] = 1e300
    assert _files.nonfinite_voxels(data) == 1
    assert _files.nonfinite_voxels(np.ones(SHAPE, np.int64)) == 0
    img = nib.Nifti1Image(data, _affine())
    with pytest.raises(ValueError, match="has 1 non-finite voxel"):
        anatcl_sklearn.check_images([img], warn_grid=False)
    with pytest.raises(ValueError, match="has 1 non-finite voxel"):
        anatcl_sklearn.conform_image(img, shape=SHAPE, affine=_affine())
    with pytest.raises(ValueError, match="has 1 non-finite voxel"):
        anatcl_sklearn.check_images([img], warn_grid=False, conform=(SHAPE, _affine()))


def _edited(path, gz, **fields):
    raw = bytearray(_nifti_bytes())
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(bytes(raw[:348])), check=False)
    for key, value in fields.items():
        if key == "dim1":
            hdr["dim"][1] = value
        else:
            hdr[key] = value
    raw[:348] = hdr.binaryblock
    path.write_bytes(gzip.compress(bytes(raw)) if gz else bytes(raw))
    return str(path)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("fields, says", [
    ({"dim1": -5}, r"announces a negative size \(\(-5, 14, 12\)\)"),
    ({"vox_offset": 0}, r"puts the voxel data at byte 0, inside the 352-byte header"),
])
def test_a_damaged_header_is_refused_by_name_at_every_door(tmp_path, gz, fields, says):
    """nibabel reads a vox_offset of 0 as 'the voxels start at byte 0': the header itself."""
    path = _edited(tmp_path / ("bad.nii.gz" if gz else "bad.nii"), gz, **fields)
    with pytest.raises(ValueError, match=says):
        anatcl_sklearn.check_images([path], warn_grid=False)
    with pytest.raises(ValueError, match=says):
        anatcl_sklearn.conform_image(path, shape=SHAPE, affine=_affine())
    with pytest.raises(ValueError, match=says):
        anatcl_sklearn.conform_image(nib.load(path), shape=SHAPE, affine=_affine())


def test_a_sparse_npy_announcing_1100_cubed_voxels_is_refused_by_the_bound(tmp_path):
    """A sparse file passes the size check (it 'holds' every byte it announces) while taking
    no disk: the voxel bound still refuses it before anything is read."""
    path = tmp_path / "sparse.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (1100, 1100, 1100)})
        fh.truncate(fh.tell() + 1100 ** 3 * 4)
    with pytest.raises(ValueError, match=rf"sparse\.npy' announces 1100x1100x1100 voxels .*"
                                         rf"more than the {_files.MAX_VOXELS}"):
        anatcl_sklearn.check_images([str(path)], warn_grid=False)
