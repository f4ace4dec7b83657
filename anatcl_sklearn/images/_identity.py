"""What identifies training images for a run key: content for arrays, files by path, size and
modification time, memory maps by the file they map.

:meth:`ImageCollection.update_identity` states a collection's identity through these helpers,
so run keys (``embedder/_runs.py``) never read a collection's private attributes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from .._typing import PathLike

if TYPE_CHECKING:
    import hashlib

__all__ = ["file_identity", "hash_array", "memmap_base"]

_HASH_CHUNK = 1 << 24


def file_identity(path: PathLike) -> str:
    """``"<absolute path>|<size>|<mtime_ns>"`` of a file."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def memmap_base(array: Any) -> np.memmap | None:
    """The :class:`numpy.memmap` (with a file name) an array views, or None."""
    while array is not None:
        if isinstance(array, np.memmap) and getattr(array, "filename", None):
            return array
        array = getattr(array, "base", None)
        if not isinstance(array, np.ndarray):
            return None
    return None


def hash_array(array: Any, h: hashlib._Hash) -> None:
    """Feed an array's shape, dtype and bytes (in chunks) into the hash ``h``."""
    array = np.ascontiguousarray(array)
    h.update(f"{array.shape}|{array.dtype}".encode())
    flat = array.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, _HASH_CHUNK):
        h.update(flat[start:start + _HASH_CHUNK])


def array_identity(array: np.ndarray, positions: Iterable[int], h: hashlib._Hash) -> None:
    """The identity of the volumes ``array[positions]`` (a memory map by its file)."""
    base = memmap_base(array)
    if base is not None:  # a memory map: the file it maps, not gigabytes of content
        h.update(f"memmap:{file_identity(str(base.filename))}|{base.offset}|"
                 f"{array.shape}|{array.dtype}|{array.strides}".encode())
        h.update(np.asarray(positions).tobytes())
        return
    for pos in positions:
        hash_array(array[pos], h)


def item_identity(item: Any, h: hashlib._Hash) -> None:
    """The identity of one file or nibabel image of a collection."""
    from ._conform import _VolumeProxy

    if item.kind in ("nifti", "npy"):
        h.update(file_identity(item.obj).encode())
        return
    dataobj = item.obj.dataobj
    if isinstance(dataobj, _VolumeProxy) and dataobj.source:
        h.update(f"{file_identity(dataobj.source)}#{dataobj.index}".encode())
    elif item.obj.get_filename() and os.path.exists(item.obj.get_filename()):
        h.update(file_identity(item.obj.get_filename()).encode())
    else:
        hash_array(np.asanyarray(dataobj), h)
