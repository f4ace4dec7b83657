"""File formats: NIfTI (``.nii``, ``.nii.gz``, NIfTI-1 and -2) and ``.npy``, read checked.

Headers are parsed without reading voxels (:func:`npy_header`, :func:`nifti_header`), and a
short file is caught from its size: an uncompressed one holds fewer bytes than announced, a
``.nii.gz`` more than deflate can inflate from its size (1032:1). A header announcing more
than :data:`MAX_VOXELS` voxels per volume is refused before anything is allocated.

:func:`load_nifti` streams a ``.nii.gz`` in chunks (:class:`~._inflate.GzipStream`), keeps
the header and the voxels only (inflated into one buffer), refuses any data past the voxels
(a gzip bomb: a small image followed by gigabytes of zeros), and reads it to its end so that its gzip checksum is checked: nibabel alone stops
reading at the end of the voxel data, before the gzip trailer, so a file damaged mid-stream
would decode to garbage without an error. Memory stays within the announced (bounded) size.

:func:`check_dtype` and :func:`nonfinite_voxels` are the one dtype rule and the one
finiteness rule of every reader (:func:`check_images`, :func:`conform_image`).
"""

import gzip
import io
import math
import os
import stat
import zlib
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from ..exceptions import GridWarning, ImageReadError, warn
from ._grid import check_affine
from ._inflate import GzipStream, InflatedProxy

__all__ = ["MAX_HEADER_BYTES", "MAX_VOXELS", "ImageReadError", "check_announced", "check_dtype",
           "check_regular_file", "gz_file_of", "image_voxels", "load_nifti", "nifti_header", "nonfinite_voxels",
           "npy_header", "verify_gzip"]

#: Most voxels one 3-D volume may announce: 2**28 (a 645**3 grid, 1 GiB as float32; OpenBHB's
#: grid has 2.1 million, a 0.5 mm whole-head grid 134 million). More is a damaged header.
MAX_VOXELS = 1 << 28
#: Most bytes a NIfTI header with its extensions may take before the voxels (vox_offset).
MAX_HEADER_BYTES = 1 << 26
# deflate inflates at most 1032 bytes per compressed byte (258-byte matches in 2-bit codes)
_DEFLATE_MAX_RATIO = 1032
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


def _damaged(name, path, exc):
    return ImageReadError(
        f"{name}: '{path}' is damaged: its gzip data fails the integrity check "
        f"({type(exc).__name__}: {exc}). The file was cut short or corrupted (an interrupted "
        "copy or download?); copy or export it again."
    )


def out_of_memory(what, exc):
    """A MemoryError that names the file (numpy's and nibabel's may be empty)."""
    detail = f" ({exc})" if str(exc) else ""
    return MemoryError(f"{what}: not enough memory to read it{detail}; its header may announce "
                       "a far larger image than intended (a damaged header?), or free memory.")


def check_regular_file(path, what, expected="an image file (NIfTI or .npy) on disk"):
    """Refuse, by name and before any open, a path that is not a regular file (a FIFO, a
    socket, a device): opening or reading one would block or never end. A missing file is
    left to the caller's FileNotFoundError."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
        raise ValueError(f"{what} '{path}' is {kind}, not a regular file; expected {expected}.")


def load_nifti(path, name="X", hand_over=False):
    """A nibabel image of a NIfTI file, fully read; a ``.nii.gz`` is streamed, bounded and
    checked against its CRC (see the module docstring).

    A ``.nii.gz``'s voxels are inflated into one buffer that the image's proxy reads without
    a copy; with ``hand_over=True`` its first whole read (``np.asanyarray(img.dataobj)``)
    returns that buffer itself and the image is then spent (for callers that read once).

    Errors name the file: ValueError (:class:`ImageReadError`) for a damaged, truncated,
    oversized or unreadable file, FileNotFoundError when it is missing.
    """
    check_regular_file(path, name)
    if not path.lower().endswith(".gz"):
        try:
            img: Any = nib.load(path, mmap=False)
        except MemoryError as exc:
            raise out_of_memory(f"{name}: '{path}'", exc) from exc
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as exc:
            raise ImageReadError(f"{name}: could not read '{path}' as NIfTI: "
                                 f"{type(exc).__name__}: {exc}") from exc
        check_announced(img.shape, img.get_data_dtype(), int(img.dataobj.offset),
                        os.path.getsize(path), False, f"{name}: '{path}'", _min_offset(img))
        return img
    raw, klass, hdr = _inflate_nifti(path, name, keep=True)
    try:
        # as nibabel's from_bytes builds it (from_file_map), with the voxels read in place
        voxels = np.ndarray(hdr.get_data_shape(), hdr.get_data_dtype(), buffer=raw,
                            offset=int(hdr.get_data_offset()), order="F")
        img = klass(InflatedProxy(voxels, hdr.copy(), hand_over), None, hdr)
        img._affine = hdr.get_best_affine()
    except Exception as exc:
        raise ImageReadError(f"{name}: could not read '{path}' as NIfTI: "
                             f"{type(exc).__name__}: {exc}") from exc
    return img


def _inflate_nifti(path, name, keep):
    """(header and voxel bytes, image class, header) of a ``.nii.gz``, inflated by
    :class:`~._inflate.GzipStream`.

    The announced size is checked (:func:`check_announced`) before any voxel is read, data
    past the voxels is refused, and the stream is read to its end (every gzip member's CRC
    and length checked). With ``keep=True`` the bytes are inflated straight into one buffer
    of the announced size; with ``keep=False`` no voxel is kept (a check in constant memory).
    """
    try:
        with open(path, "rb") as fobj:
            file_size = os.fstat(fobj.fileno()).st_size
            fh = GzipStream(fobj)
            klass, hdr, prefix = _read_header(fh, path, name)
            shape, dtype = hdr.get_data_shape(), hdr.get_data_dtype()
            offset = int(hdr.get_data_offset())
            what = f"{name}: '{path}'"
            check_announced(shape, dtype, offset, file_size, True, what,
                            int(hdr.single_vox_offset))
            total = offset + math.prod(shape) * dtype.itemsize
            raw = np.empty(total if keep else 0, dtype=np.uint8)  # not zeroed: all overwritten
            if keep:  # the one copy of the voxels: inflated in place
                raw[:len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
                got = len(prefix) + fh.readinto(raw[len(prefix):].data)
            else:
                got = len(prefix) + fh.skip(total - len(prefix))
            if got < total:
                raise ImageReadError(
                    f"{what} is truncated or damaged: its header announces {_dims(shape)} "
                    f"voxels of "
                    f"{dtype} ({total} bytes with the header) but its gzip data holds "
                    f"only {got} bytes.")
            if fh.read(1):  # also reads the trailer: the CRC is checked here
                raise ImageReadError(
                    f"{what} holds data past the end of its voxel data (its header "
                    f"announces {_dims(shape)} voxels of {dtype}, {total} bytes with the "
                    "header): not a NIfTI file as written by any tool (a gzip bomb, or a "
                    "file concatenated with another?); export it again.")
    except _GZIP_ERRORS as exc:
        raise _damaged(name, path, exc) from exc
    return raw, klass, hdr


def _read_header(fh, path, name):
    """(image class, header with its extensions, every byte read: up to the voxels) of a
    NIfTI stream."""
    what = f"{name}: could not read '{path}' as NIfTI"
    block = fh.read(348)
    if len(block) < 348:
        raise ImageReadError(f"{what}: it holds {len(block)} bytes, less than a NIfTI header "
                             "(348); the file is truncated or not NIfTI.")
    sizeof_hdr = int.from_bytes(block[:4], "little")
    if sizeof_hdr not in (348, 540):
        sizeof_hdr = int.from_bytes(block[:4], "big")
    if sizeof_hdr not in (348, 540):
        raise ImageReadError(f"{what}: its first bytes are not a NIfTI-1 or NIfTI-2 header.")
    klass = nib.Nifti2Image if sizeof_hdr == 540 else nib.Nifti1Image
    try:
        if sizeof_hdr == 540:
            block += fh.read(192)
        stored = klass.header_class(block[:sizeof_hdr], check=False).get_data_offset()
        block = _read_to(fh, block, int(stored))
        hdr = klass.header_class.from_fileobj(io.BytesIO(block))
        block = _read_to(fh, block, int(hdr.get_data_offset()))  # as nibabel's checks fix it
        hdr.get_data_dtype()
    except _GZIP_ERRORS:
        raise
    except Exception as exc:
        raise ImageReadError(f"{what}: {type(exc).__name__}: {' '.join(str(exc).split())}"
                             ) from exc
    return klass, hdr, block


def _read_to(fh, block, offset):
    """``block`` extended with the bytes of ``fh`` up to ``offset`` (bounded above)."""
    if offset > MAX_HEADER_BYTES:
        raise ValueError(f"its voxel data would start at byte {offset}, past the "
                         f"{MAX_HEADER_BYTES} bytes a header with its extensions may take")
    if offset <= len(block):
        return block
    return block + fh.read(offset - len(block))


def _dims(shape):
    return "x".join(str(int(s)) for s in shape)


def check_announced(shape, dtype, offset, file_size, compressed, what, min_offset=0):
    """Refuse, before anything is allocated, a header announcing a negative size, voxels that
    start inside the header (before ``min_offset``: nibabel would read the header as voxels),
    more voxels per 3-D volume than :data:`MAX_VOXELS`, or more bytes than the file can hold
    (a truncated file): the file's size uncompressed, 1032 times it (deflate's most)
    compressed."""
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ImageReadError(f"{what} announces a negative size ({shape}): its header is "
                             "damaged.")
    if int(offset) < min_offset:
        raise ImageReadError(f"{what}: its header puts the voxel data at byte {int(offset)}, "
                             f"inside the {min_offset}-byte header itself: the header is "
                             "damaged (vox_offset).")
    per_volume = math.prod(shape[:3])
    if per_volume > MAX_VOXELS:
        raise ImageReadError(
            f"{what} announces {_dims(shape)} voxels ({per_volume} per volume), more than the "
            f"{MAX_VOXELS} (MAX_VOXELS, a 645**3 grid) one volume may have: its header is "
            "damaged, or the image is far finer than a brain map needs (resample it first).")
    expected = int(offset) + math.prod(shape) * np.dtype(dtype).itemsize
    holds = file_size * _DEFLATE_MAX_RATIO + 1024 if compressed else file_size
    if expected > holds:
        how = (f"a {file_size}-byte gzip file inflates to at most {holds} bytes" if compressed
               else f"the file has {file_size} bytes")
        raise ImageReadError(
            f"{what} is truncated: its header announces {shape} voxels of {np.dtype(dtype)} "
            f"({expected} bytes with the header) but {how}.")


def _min_offset(img):
    """Where a single-file NIfTI's voxels may start at the earliest (352 or 544), else 0."""
    if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return int(img.header.single_vox_offset)
    return 0


def nonfinite_voxels(data):
    """How many voxels of ``data`` are NaN or inf once read as float32 (as every reader hands
    volumes on: float64 values beyond +-3.4e38 count); 0 when all are finite."""
    data = np.asarray(data)
    if data.dtype.kind in "biu":  # at most 1.8e19: always finite in float32
        return 0
    if data.dtype.kind == "f" and data.dtype.itemsize > 4:
        with np.errstate(invalid="ignore"):
            finite = np.abs(data) <= np.finfo(np.float32).max
    else:
        finite = np.isfinite(data)
    return int(data.size - np.count_nonzero(finite))


def verify_gzip(path, name="X"):
    """Read a ``.nii.gz`` to its end in chunks (constant memory), so its CRC is checked; its
    announced size is bounded and data past its voxels refused, as :func:`load_nifti` does."""
    check_regular_file(path, name)
    _inflate_nifti(path, name, keep=False)


def image_voxels(img, what, name="X"):
    """The stored (scaled) voxels of a nibabel image. A file behind it is read as a path is:
    a ``.nii.gz`` through :func:`load_nifti` (streamed, bounded, CRC-checked), a ``.nii``
    after its announced size is checked against the file's."""
    dataobj = img.dataobj
    path = gz_file_of(dataobj)
    if path is not None:
        return np.asanyarray(load_nifti(path, name, hand_over=True).dataobj)
    if isinstance(dataobj, ArrayProxy) and isinstance(dataobj.file_like, str):
        check_announced(dataobj.shape, dataobj.dtype, int(dataobj.offset),
                        os.path.getsize(dataobj.file_like), False, what, _min_offset(img))
    return np.asanyarray(dataobj)


def gz_file_of(dataobj):
    """The .nii.gz path behind a nibabel proxy that reads a whole file, else None."""
    if isinstance(dataobj, ArrayProxy) and isinstance(dataobj.file_like, str) \
            and dataobj.file_like.lower().endswith(".gz"):
        return dataobj.file_like
    return None


def npy_header(path, i, name):
    check_regular_file(path, f"{name}[{i}]")
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            else:  # numpy writes 3.0 only for non-latin-1 field names: never an image
                raise ValueError(f"unsupported .npy format version {version}")
            data_offset = fh.tell()
            file_size = os.fstat(fh.fileno()).st_size
    except OSError:  # permissions, I/O: already name the file and are not a format problem
        raise
    except Exception as exc:
        raise ValueError(
            f"{name}[{i}] could not read '{path}' as a .npy file: {type(exc).__name__}: {exc}"
        ) from exc
    check_dtype(dtype, f"{name}[{i}] '{path}'")
    if len(shape) >= 3 and math.prod(shape[-3:]) > MAX_VOXELS:  # a sparse file holds any size
        check_announced(shape[-3:], dtype, 0, 0, False, f"{name}[{i}] '{path}'")
    expected = data_offset + math.prod(shape) * dtype.itemsize
    if file_size < expected:
        raise ValueError(
            f"{name}[{i}] '{path}' is truncated: its header announces an array of shape {shape} "
            f"({expected} bytes with the header) but the file has {file_size} bytes."
        )
    return tuple(shape)


def nifti_header(path, i, name):
    check_regular_file(path, f"{name}[{i}]")
    try:
        img: Any = nib.load(path)  # parses the header; voxels stay on disk
    except MemoryError as exc:
        raise out_of_memory(f"{name}[{i}] '{path}'", exc) from exc
    except (FileNotFoundError, PermissionError):
        raise
    except Exception as exc:
        raise ValueError(
            f"{name}[{i}] could not read '{path}' as NIfTI: {type(exc).__name__}: {exc}"
        ) from exc
    dtype = np.dtype(img.get_data_dtype())
    check_dtype(dtype, f"{name}[{i}] '{path}'")
    shape = tuple(int(s) for s in img.shape)
    # bounded, and truncation caught from the file's size: one stat
    check_announced(shape, dtype, int(img.dataobj.offset), os.path.getsize(path),
                    path.lower().endswith(".gz"), f"{name}[{i}] '{path}'", _min_offset(img))
    return shape, zooms_of(img), affine_of(img, f"{name}[{i}] '{path}'")


def affine_of(img, what="the image"):
    """The image's affine, checked (:func:`~._grid.check_affine`: a non-finite, singular or
    malformed affine is a ValueError naming ``what``), or None when it has none. A NIfTI
    header with neither a qform nor an sform code places the voxels on nibabel's made-up
    affine: a GridWarning says so."""
    affine = getattr(img, "affine", None)
    if affine is None:
        return None
    try:
        affine = check_affine(affine, f"the affine of {what}")
    except TypeError as exc:
        raise ValueError(str(exc)) from None
    header: Any = getattr(img, "header", None)
    try:
        uncoded = int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0
    except (TypeError, KeyError, ValueError, IndexError):
        uncoded = False  # not a NIfTI header: no codes to read
    if uncoded:
        warn(f"{what} has no orientation codes (qform_code = sform_code = 0): its voxels are "
             "placed on nibabel's default affine, which says nothing about orientation or "
             "origin. Set its qform/sform (e.g. fslorient or nibabel) if this is not intended.",
             GridWarning)
    return affine


def zooms_of(img):
    try:
        zooms = img.header.get_zooms()
    except Exception:  # headers without voxel sizes (rare nibabel formats)
        return None
    if len(zooms) < 3:
        return None
    return tuple(float(z) for z in zooms[:3])


def check_dtype(dtype, what):
    if dtype.kind == "c":
        raise TypeError(f"{what} holds complex values (dtype {dtype}); images must be real-valued.")
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{what} has non-numeric dtype {dtype}; images must be numeric (float, int or bool)."
        )
