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
from pathlib import Path

import numpy as np

from ..models._identity import weights_identity

__all__ = ["check_checkpoint_dir", "run_key"]

# Parameters that do not change the weights a run produces.
_NOT_IN_KEY = ("verbose", "callbacks", "checkpoint_dir", "num_workers", "pretrained",
               "distributed", "inference")


def run_key(est, images, age, anatomy, world=1, weights=None, parts=None):
    """A 16-hex-digit key unique to this estimator's training on this data.

    THE function deciding the run key. ``weights`` is the pretrained weights' identity (by
    default :func:`~anatcl_sklearn.models._identity.weights_identity` of ``est.pretrained``;
    the fit's plan passes the one its resolver returned). When ``parts`` is a dict it receives,
    computed in the same pass, the digests the processes of a torchrun agree on (``data``,
    ``age``, ``anatomy``, ``weights``) and the ``key``.
    """
    h = hashlib.sha256()
    params = {k: v for k, v in est.get_params(deep=False).items() if k not in _NOT_IN_KEY}
    h.update(repr(sorted((k, _plain(v)) for k, v in params.items())).encode())
    if weights is None:
        weights = weights_identity(est.pretrained, est.fold)
    h.update(f"pretrained={weights}".encode())
    h.update(f"world={world}".encode())
    data = _Tee(h)
    data.update(repr((len(images), images.shape, images.conformed)).encode())
    if images.affine is not None:
        data.update(np.ascontiguousarray(images.affine).tobytes())
    images.update_identity(data)  # the collection states its own identity
    digests = {"data": data.digest(), "weights": weights}
    for name, arr in (("age", age), ("anatomy", anatomy)):
        tee = _Tee(h)
        tee.update(b"-" if arr is None else np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        digests[name] = tee.digest()
    key = h.hexdigest()[:16]
    if parts is not None:
        parts.update(digests, key=key)
    return key


class _Tee:
    """Feeds the run key's hash and a digest of one of its parts at once (one read)."""

    def __init__(self, key_hash):
        self.key_hash, self.part = key_hash, hashlib.sha256()

    def update(self, data):
        self.key_hash.update(data)
        self.part.update(data)

    def digest(self):
        return self.part.hexdigest()


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


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
