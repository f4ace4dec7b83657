"""File formats: NIfTI (``.nii``, ``.nii.gz``, NIfTI-1 and -2) and ``.npy``, read checked.

Headers are parsed without reading voxels (:func:`npy_header`, :func:`nifti_header`), and a
short uncompressed file is caught from its size. :func:`load_nifti` reads a ``.nii.gz``
whole and checks it against its gzip checksum: nibabel alone stops reading at the end of
the voxel data, before the gzip trailer, so a file damaged mid-stream would decode to
garbage without an error.
"""

import gzip
import math
import os
import stat
import zlib

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from ..exceptions import GridWarning, ImageReadError, warn
from ._grid import check_affine

__all__ = ["ImageReadError", "check_dtype", "check_regular_file", "gz_file_of", "load_nifti", "nifti_header", "npy_header",
           "verify_gzip"]

# Chunk size of the streaming gzip check of split_4d.
_GZIP_CHUNK = 1 << 24
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


def check_regular_file(path, what):
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
        raise ValueError(f"{what} '{path}' is {kind}, not a regular file; expected an image "
                         "file (NIfTI or .npy) on disk.")


def load_nifti(path, name="X"):
    """A nibabel image of a NIfTI file, fully read; a ``.nii.gz`` is checked against its CRC.

    Errors name the file: ValueError for a damaged or unreadable file, FileNotFoundError
    when it is missing.
    """
    check_regular_file(path, name)
    if not path.lower().endswith(".gz"):
        try:
            img = nib.load(path, mmap=False)
        except MemoryError as exc:
            raise out_of_memory(f"{name}: '{path}'", exc) from exc
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as exc:
            raise ImageReadError(f"{name}: could not read '{path}' as NIfTI: "
                                 f"{type(exc).__name__}: {exc}") from exc
        return img
    with open(path, "rb") as fh:
        compressed = fh.read()
    try:
        raw = gzip.decompress(compressed)  # every member to its end: CRC and length checked
    except _GZIP_ERRORS as exc:
        raise _damaged(name, path, exc) from exc
    del compressed
    sizeof_hdr = int.from_bytes(raw[:4], "little")
    if sizeof_hdr not in (348, 540):
        sizeof_hdr = int.from_bytes(raw[:4], "big")
    klass = nib.Nifti2Image if sizeof_hdr == 540 else nib.Nifti1Image
    try:
        return klass.from_bytes(raw)
    except Exception as exc:
        raise ImageReadError(f"{name}: could not read '{path}' as NIfTI: "
                             f"{type(exc).__name__}: {exc}") from exc


def verify_gzip(path, name="X"):
    """Read a gzip file to its end in chunks (constant memory), so its CRC is checked."""
    check_regular_file(path, name)
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(_GZIP_CHUNK):
                pass
    except _GZIP_ERRORS as exc:
        raise _damaged(name, path, exc) from exc


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
        img = nib.load(path)  # parses the header; voxels stay on disk
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
    if not path.lower().endswith(".gz"):
        # Uncompressed: the size is known from the header, so truncation costs one stat.
        expected = int(img.dataobj.offset) + math.prod(shape) * dtype.itemsize
        file_size = os.path.getsize(path)
        if file_size < expected:
            raise ValueError(
                f"{name}[{i}] '{path}' is truncated: its header announces {shape} voxels of "
                f"{dtype} ({expected} bytes with the header) but the file has {file_size} bytes."
            )
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
    header = getattr(img, "header", None)
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
