"""The identity of pretrained weights, for the run keys of checkpoints."""

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch

__all__ = ["weights_identity"]


def weights_identity(pretrained, fold):
    """The identity of pretrained weights, in one function: by content or by name.

    Official names by name and fold, ``hf://`` specs by spec, a saved-model folder by its
    config (which records the weights' SHA-256), a file by its SHA-256, state dicts and modules
    by content. Run keys (``embedder/_runs.py``) hash it.

    Parameters
    ----------
    pretrained : None, str, path-like, mapping or torch.nn.Module
        Any form :func:`~anatcl_sklearn.models.resolve_pretrained` accepts.
    fold : int
        The official weights' fold.

    Returns
    -------
    identity : str
    """
    if pretrained is None:
        return "none"
    from ._official import OFFICIAL_WEIGHTS
    from ._saved import CONFIG_NAME, is_model_dir

    if isinstance(pretrained, str) and pretrained in OFFICIAL_WEIGHTS:
        return f"official:{pretrained}:fold{int(fold)}"
    if isinstance(pretrained, str) and pretrained.startswith("hf://"):
        return f"hub:{pretrained}"
    if isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained).expanduser()
        if is_model_dir(path):  # its config records the weights' SHA-256
            return "saved:" + hashlib.sha256((path / CONFIG_NAME).read_bytes()).hexdigest()
        if path.is_file():
            from ._digest import file_sha256

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
