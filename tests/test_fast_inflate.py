"""The fast .nii.gz reader and the threaded read-ahead (issue #21, embed at the CPU's speed).

GzipStream replaces gzip.GzipFile (one zlib inflater per member fed 1 MiB chunks): the same
bytes, the same refusals (truncated, trailing junk, a flipped CRC, ISIZE or deflate byte, a
bomb), bounded reads. ImageCollection._read_ahead decodes in threads but keeps the same
volumes and raises the error of the lowest failing position.
"""

import gzip
import io
import threading
import zlib

import nibabel as nib
import numpy as np
import pytest

from anatcl_sklearn import check_images
from anatcl_sklearn.images import _files, _reading
from anatcl_sklearn.images._inflate import GZIP_CHUNK, GzipStream
from anatcl_sklearn.images._threads import read_in_order

SHAPE = (24, 28, 24)
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _affine():
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (90.0, -126.0, -72.0)
    return affine


def _nii_bytes(seed=0, dtype=np.float32):
    data = np.random.default_rng(seed).random(SHAPE).astype(dtype)
    return nib.Nifti1Image(data, _affine()).to_bytes()


def _write(path, blob):
    path.write_bytes(blob)
    return str(path)


def _stream_all(blob, piece=7919):
    fh = GzipStream(io.BytesIO(blob))
    parts = []
    while chunk := fh.read(piece):
        assert len(chunk) <= piece
        parts.append(chunk)
    return b"".join(parts)


def _nibabel_voxels(path):
    """What nibabel itself reads (stored dtype, scaled), as a load hands it on."""
    return np.ascontiguousarray(np.asanyarray(nib.load(path).dataobj), dtype=np.float32)


# -- the same bytes as gzip ------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["one member", "two members", "zero padding",
                                    "empty last member", "1-byte members"])
def test_the_stream_inflates_what_gzip_inflates(layout):
    # over 1 MiB compressed and inflated: several input chunks and output pieces
    raw = np.random.default_rng(0).bytes(3 << 20) + bytes(2 << 20) + _nii_bytes()
    half = len(raw) // 2
    blob = {
        "one member": gzip.compress(raw),
        "two members": gzip.compress(raw[:half]) + gzip.compress(raw[half:]),
        "zero padding": (gzip.compress(raw[:half]) + bytes(1000) + gzip.compress(raw[half:])
                         + bytes(7)),
        "empty last member": gzip.compress(raw) + gzip.compress(b""),
        "1-byte members": b"".join(gzip.compress(raw[i:i + 1]) for i in range(50))
        + gzip.compress(raw[50:]),
    }[layout]
    assert gzip.decompress(blob) == raw
    assert _stream_all(blob) == raw
    assert _stream_all(blob, piece=GZIP_CHUNK * 3) == raw


def test_the_stream_reads_no_more_than_asked_of_a_bomb():
    bomb = gzip.compress(bytes(64 << 20), compresslevel=9)  # 64 MiB of zeros in ~64 KiB
    fh = GzipStream(io.BytesIO(bomb))
    assert len(fh.read(10)) == 10
    assert len(fh._inflate(5)) <= 5  # zlib's max_length: nothing inflated past what is asked
    assert len(fh.read(GZIP_CHUNK + 3)) == GZIP_CHUNK + 3
    buffer = bytearray(1000)
    assert fh.readinto(buffer) == 1000


@pytest.mark.parametrize("damage", ["truncated", "trailing junk", "junk after padding",
                                    "flipped CRC", "flipped ISIZE", "flipped deflate byte",
                                    "not gzip", "cut trailer"])
def test_the_stream_refuses_what_gzip_refuses(damage):
    good = gzip.compress(_nii_bytes())
    blob = bytearray(good)
    if damage == "truncated":
        blob = blob[:len(blob) // 2]
    elif damage == "trailing junk":
        blob += b"junk"
    elif damage == "junk after padding":
        blob += bytes(10) + b"\x01"
    elif damage == "flipped CRC":
        blob[-8] ^= 0x01
    elif damage == "flipped ISIZE":
        blob[-1] ^= 0x01
    elif damage == "flipped deflate byte":
        blob[len(blob) // 2] ^= 0x10
    elif damage == "not gzip":
        blob = bytearray(_nii_bytes())
    elif damage == "cut trailer":
        blob = blob[:-3]
    with pytest.raises(GZIP_ERRORS):
        gzip.decompress(bytes(blob))
    with pytest.raises(GZIP_ERRORS) as ours:
        _stream_all(bytes(blob))
    if damage in ("truncated", "cut trailer"):
        assert ours.type is EOFError
    if damage in ("trailing junk", "junk after padding", "not gzip"):
        assert ours.type is gzip.BadGzipFile


# -- NIfTI files: nibabel's voxels, and refusals by name ---------------------------------------
@pytest.mark.parametrize("kind", ["float32", "scaled int16", "big-endian float64", "uint8"])
def test_voxels_equal_nibabels_own_reading(tmp_path, kind):
    rng = np.random.default_rng(1)
    if kind == "scaled int16":
        img = nib.Nifti1Image(rng.integers(-3000, 3000, SHAPE).astype(np.int16), _affine())
        img.header.set_slope_inter(0.0037, -1.25)
    elif kind == "big-endian float64":
        img = nib.Nifti1Image(rng.random(SHAPE), _affine())
        img.header.set_data_dtype(">f8")
    else:
        img = nib.Nifti1Image(rng.random(SHAPE).astype(kind) if kind == "float32"
                              else rng.integers(0, 255, SHAPE).astype(kind), _affine())
    path = str(tmp_path / "s.nii.gz")
    nib.save(img, path)
    theirs = nib.load(path)
    ours = _files.load_nifti(path)
    expected = np.asanyarray(theirs.dataobj)
    got = np.asanyarray(ours.dataobj)
    assert got.dtype == expected.dtype  # the scaling's dtype rule, unchanged
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(ours.affine, theirs.affine)
    assert ours.header == theirs.header
    np.testing.assert_array_equal(ours.get_fdata(), theirs.get_fdata())
    for workers in (1, 2):
        images = check_images([path, path])
        images._read_ahead(1 << 30, workers=workers)
        np.testing.assert_array_equal(images.load(1), _nibabel_voxels(path))


def test_each_read_of_a_loaded_image_is_its_own_array(tmp_path):
    path = str(tmp_path / "s.nii.gz")
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), _affine()), path)
    img = _files.load_nifti(path)
    first = np.asanyarray(img.dataobj)
    first[...] = 7
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), 1)  # as a file-backed proxy
    once = _files.load_nifti(path, hand_over=True)
    assert np.asanyarray(once.dataobj).flags.writeable
    with pytest.raises(ValueError, match="handed over"):
        np.asanyarray(once.dataobj)


@pytest.mark.parametrize("layout", ["two members", "zero padding"])
def test_multi_member_and_padded_files_read_as_nibabel_reads_them(tmp_path, layout):
    raw = _nii_bytes(2)
    cut = 352 + 1000
    pad = bytes(512) if layout == "zero padding" else b""
    path = _write(tmp_path / "m.nii.gz", gzip.compress(raw[:cut]) + pad + gzip.compress(raw[cut:])
                  + pad)
    np.testing.assert_array_equal(check_images([path]).load(0), _nibabel_voxels(path))
    _files.verify_gzip(path)


@pytest.mark.parametrize("damage, message", [
    ("truncated", r"fails the integrity check \(EOFError"),
    ("trailing junk", r"fails the integrity check \(BadGzipFile"),
    ("flipped CRC", r"fails the integrity check \(error: .*incorrect data check"),
    ("flipped deflate byte", r"'.*bad\.nii\.gz'"),
    ("bomb", r"holds data past the end of its voxel data"),
])
def test_damaged_files_are_refused_by_name(tmp_path, damage, message):
    raw = _nii_bytes(3)
    blob = bytearray(gzip.compress(raw))
    if damage == "truncated":
        blob = blob[:len(blob) * 2 // 3]
    elif damage == "trailing junk":
        blob += b"GARBAGE!"
    elif damage == "flipped CRC":
        blob[-6] ^= 0x40
    elif damage == "flipped deflate byte":
        blob[len(blob) // 2] ^= 0x10
    elif damage == "bomb":
        blob = bytearray(gzip.compress(raw + bytes(32 << 20)))
    path = _write(tmp_path / "bad.nii.gz", bytes(blob))
    for read in (lambda: _files.load_nifti(path), lambda: _files.verify_gzip(path),
                 lambda: check_images([path], check_finite=True)):
        with pytest.raises(ValueError, match=message) as err:
            read()
        assert path in str(err.value)


# -- the threaded read-ahead -------------------------------------------------------------------
@pytest.fixture
def paths(tmp_path):
    out = []
    for i in range(6):
        data = np.random.default_rng(10 + i).random(SHAPE, dtype=np.float32)
        out.append(str(tmp_path / f"s{i}.nii{'.gz' if i % 3 else ''}"))
        nib.save(nib.Nifti1Image(data, _affine()), out[-1])
    return out


def test_threaded_read_ahead_keeps_the_same_volumes(paths):
    fresh = check_images(paths, check_finite=False).load_batch(slice(None))
    budget = 3 * int(np.prod(SHAPE)) * 4
    warm = {}
    for workers in (1, 2, 4):
        images = check_images(paths).subset([5, 0, 3, 1, 4, 2])
        images._read_ahead(budget, workers=workers)
        warm[workers] = sorted(images._warm)
        np.testing.assert_array_equal(images.load_batch(slice(None)), fresh[[5, 0, 3, 1, 4, 2]])
    assert warm[1] == warm[2] == warm[4] == [0, 3, 5]  # the first three in order, each time


@pytest.mark.parametrize("second_bad", ["truncated", "nan"])
def test_threaded_read_ahead_raises_the_lowest_failing_position(paths, second_bad):
    data = np.ones(SHAPE, np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, _affine()), paths[2])  # position 2: a NaN (.nii.gz)
    with open(paths[4], "rb") as fh:
        blob = fh.read()
    if second_bad == "truncated":
        _write_path(paths[4], blob[:len(blob) // 2])
    else:
        nib.save(nib.Nifti1Image(data, _affine()), paths[4])
    messages = []
    for workers in (1, 2, 3):
        with pytest.raises(ValueError, match=r"s2\.nii\.gz' has 1 non-finite") as err:
            check_images(paths)._read_ahead(1 << 30, workers=workers)
        messages.append(str(err.value))
        with pytest.raises(ValueError, match=r"s2\.nii\.gz' has 1 non-finite"):
            check_images(paths, check_finite=True)
    assert len(set(messages)) == 1


def _write_path(path, blob):
    with open(path, "wb") as fh:
        fh.write(blob)


def test_a_later_failure_never_wins_over_an_earlier_one(paths, monkeypatch):
    """Position 2 fails first in time, position 1 after it: position 1's error is raised."""
    later_failed = threading.Event()
    original = _reading._ItemImages._read

    def read(self, pos, conform=True, out=None):
        if pos == 2:
            later_failed.set()
            raise ValueError("position 2 is bad")
        if pos == 1:
            later_failed.wait(timeout=30)
            raise ValueError("position 1 is bad")
        return original(self, pos, conform, out)

    monkeypatch.setattr(_reading._ItemImages, "_read", read)
    with pytest.raises(ValueError, match="position 1 is bad"):
        check_images(paths, check_finite=False)._read_ahead(1 << 30, workers=2)
    assert later_failed.is_set()


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_no_more_than_workers_reads_run_ahead(workers):
    started, handed = [], []
    lock = threading.Lock()

    def read(pos):
        with lock:
            started.append(pos)
        return pos * 10

    for pos, value in read_in_order(read, range(12), workers):
        assert value == pos * 10
        handed.append(pos)
        with lock:
            assert len(started) - len(handed) <= workers
    assert handed == list(range(12))
