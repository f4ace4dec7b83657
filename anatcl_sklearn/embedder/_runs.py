"""A training run's checkpoint file: its key, and its folder checked before any work.

``checkpoint_dir/anatcl-run-<key>.pt`` holds one run. The key hashes everything that decides
the weights, so two fits that would train differently never read each other's file: every
training parameter (``pretrained`` and ``finetune`` included, the weights by content or by
official name and fold), the number of processes, the target grid, and the training data, by
content for arrays (by file, offset, size and modification time for memory maps) and by
path, size and modification time for files.
"""

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

__all__ = ["check_checkpoint_dir", "run_key"]

# Parameters that do not change the weights a run produces.
_NOT_IN_KEY = ("verbose", "callbacks", "checkpoint_dir", "num_workers", "pretrained",
               "distributed")
_HASH_CHUNK = 1 << 24


def run_key(est, images, age, anatomy, world=1):
    """A 16-hex-digit key unique to this estimator's training on this data."""
    h = hashlib.sha256()
    params = {k: v for k, v in est.get_params(deep=False).items() if k not in _NOT_IN_KEY}
    h.update(repr(sorted((k, _plain(v)) for k, v in params.items())).encode())
    h.update(f"pretrained={_weights_identity(est.pretrained, est.fold)}".encode())
    h.update(f"world={world}".encode())
    h.update(repr((len(images), images.shape, images.conformed)).encode())
    if images.affine is not None:
        h.update(np.ascontiguousarray(images.affine).tobytes())
    _data_identity(images, h)
    for arr in (age, anatomy):
        h.update(b"-" if arr is None else np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _file_identity(path):
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


def _weights_identity(pretrained, fold):
    """Pretrained weights by content (files, dicts, models) or by official name and fold."""
    if pretrained is None:
        return "none"
    from ..models import OFFICIAL_WEIGHTS
    from ..models._saved import CONFIG_NAME, is_model_dir

    if isinstance(pretrained, str) and pretrained in OFFICIAL_WEIGHTS:
        return f"official:{pretrained}:fold{int(fold)}"
    if isinstance(pretrained, str) and pretrained.startswith("hf://"):
        return f"hub:{pretrained}"
    if isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained).expanduser()
        if is_model_dir(path):  # its config records the weights' SHA-256
            return "saved:" + hashlib.sha256((path / CONFIG_NAME).read_bytes()).hexdigest()
        if path.is_file():
            from ..models._digest import file_sha256

            return "file:" + file_sha256(path)
        return f"path:{os.fspath(pretrained)}"
    state = pretrained.state_dict() if isinstance(pretrained, torch.nn.Module) else pretrained
    h = hashlib.sha256()
    _hash_tree(state, h)
    return "memory:" + h.hexdigest()


def _hash_tree(obj, h):
    if isinstance(obj, Mapping):
        for k in sorted(obj, key=str):
            h.update(str(k).encode())
            _hash_tree(obj[k], h)
    elif isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"{obj.dtype}{tuple(obj.shape)}".encode())
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    else:
        h.update(repr(obj).encode())


def _data_identity(images, h):
    from ..images._conform import _VolumeProxy
    from ..images._reading import _ArrayImages

    if isinstance(images, _ArrayImages):
        array = images._array
        base = _memmap_base(array)
        if base is not None:  # a memory map: the file it maps, not gigabytes of content
            h.update(f"memmap:{_file_identity(base.filename)}|{base.offset}|"
                     f"{array.shape}|{array.dtype}|{array.strides}".encode())
            h.update(np.asarray(images._positions).tobytes())
            return
        for pos in images._positions:
            _hash_array(array[pos], h)
        return
    for pos in images._positions:
        item = images._items[pos]
        if item.kind in ("nifti", "npy"):
            h.update(_file_identity(item.obj).encode())
            continue
        dataobj = item.obj.dataobj
        if isinstance(dataobj, _VolumeProxy) and dataobj.source:
            h.update(f"{_file_identity(dataobj.source)}#{dataobj.index}".encode())
        elif item.obj.get_filename() and os.path.exists(item.obj.get_filename()):
            h.update(_file_identity(item.obj.get_filename()).encode())
        else:
            _hash_array(np.asanyarray(dataobj), h)


def _memmap_base(array):
    while array is not None:
        if isinstance(array, np.memmap) and getattr(array, "filename", None):
            return array
        array = getattr(array, "base", None)
        if not isinstance(array, np.ndarray):
            return None
    return None


def _hash_array(array, h):
    array = np.ascontiguousarray(array)
    h.update(f"{array.shape}|{array.dtype}".encode())
    flat = array.reshape(-1).view(np.uint8)
    for start in range(0, flat.size, _HASH_CHUNK):
        h.update(flat[start:start + _HASH_CHUNK])


def check_checkpoint_dir(value, need_bytes, writer=True):
    """The checkpoint folder as a Path, created if missing, checked before any training.

    Raises TypeError for a non-path, ValueError for a file where a folder is expected, and
    OSError when the folder cannot be created or written, or lacks the free space one
    checkpoint needs (``need_bytes``, written next to the previous one before the rename).
    Only the writing process (``writer``) checks writability and space.
    """
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"checkpoint_dir must be a folder path (str or os.PathLike) or None; "
                        f"got {value!r} ({type(value).__name__}).")
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"checkpoint_dir '{path}' is a file, not a folder.")
    if not writer:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".anatcl-write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(f"checkpoint_dir '{path}' cannot be created or written: "
                      f"{exc.strerror or exc}.") from exc
    free = shutil.disk_usage(path).free
    if free < need_bytes:
        raise OSError(
            f"checkpoint_dir '{path}' has {free / 2**20:.0f} MiB free, but a checkpoint of this "
            f"model needs about {need_bytes / 2**20:.0f} MiB (weights, Adam's moments and the "
            "temporary copy while it is replaced). Free some space or choose another folder.")
    return path
