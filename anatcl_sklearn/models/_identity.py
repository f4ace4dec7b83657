"""The identity of pretrained weights, for the run keys of checkpoints."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["identity_of", "weights_identity"]


def weights_identity(pretrained: Any, fold: int) -> str:
    """The identity of pretrained weights, by content or by name, without loading them.

    Official names by name and fold, ``hf://`` specs by spec, a saved-model folder by its
    config (which records the weights' SHA-256), a file by its SHA-256, state dicts and modules
    by content. Run keys (``embedder/_runs.py``) hash it. A thin use of the one dispatch over
    ``pretrained``'s forms (:func:`~anatcl_sklearn.models._pretrained.pretrained_form`);
    :func:`~anatcl_sklearn.models._pretrained.resolve_weights` returns the same identity with
    the loaded weights.

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
    from ._pretrained import pretrained_form

    return identity_of(*pretrained_form(pretrained), pretrained, fold)


def identity_of(form: str, value: Any, pretrained: Any, fold: int) -> str:
    """THE function deciding the weights' identity, given their form (``pretrained_form``)."""
    if form == "official":
        return f"official:{value}:fold{int(fold)}"
    if form == "hub":
        return f"hub:{value}"
    if form == "saved":  # its config records the weights' SHA-256
        from ._saved import CONFIG_NAME

        return "saved:" + hashlib.sha256((value / CONFIG_NAME).read_bytes()).hexdigest()
    if form == "file":
        from ._digest import file_sha256

        return "file:" + file_sha256(value)
    if form == "missing":
        return f"path:{os.fspath(pretrained)}"
    state = value.state_dict() if isinstance(value, torch.nn.Module) else value
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
        h.update(flat.view(torch.uint8).numpy() if flat.numel() else b"")  # no copy
    else:
        h.update(repr(obj).encode())
