"""``pretrained=...`` in its five forms, dispatched once: the model, its identity, its grid.

:func:`pretrained_form` is the one dispatch over the forms (an official name, a saved-model
folder, ``hf://owner/repo[@rev]``, a checkpoint path, weights in memory: a state dict or a
model). :func:`resolve_weights` loads the weights and returns them with their identity (for
run keys, :func:`~anatcl_sklearn.models._identity.identity_of`) and the grid they record;
:func:`resolve_pretrained` (public) and
:func:`~anatcl_sklearn.models._identity.weights_identity` are thin uses of the same dispatch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._anatcl_model import AnatCLModel
from ._checkpoint import load_checkpoint

__all__ = ["ResolvedWeights", "pretrained_form", "resolve_pretrained", "resolve_weights"]


def pretrained_form(pretrained: Any) -> tuple[str, Any]:
    """``(form, value)`` of ``pretrained``: the one place its forms are told apart.

    Forms: ``"model"`` (an :class:`AnatCLModel`), ``"official"`` (a name of
    :data:`~anatcl_sklearn.models.OFFICIAL_WEIGHTS`), ``"hub"`` (``hf://...``), ``"saved"`` (a
    saved-model folder, value: its Path), ``"file"`` (a checkpoint file, value: its Path),
    ``"missing"`` (a path that is neither), ``"mapping"`` (a checkpoint or state dict),
    ``"module"`` (another torch module) and ``"other"`` (anything else, None included).
    Nothing is read but the file system's metadata.
    """
    from ._hub import is_hub_spec
    from ._official import OFFICIAL_WEIGHTS
    from ._saved import is_model_dir

    if isinstance(pretrained, AnatCLModel):
        return "model", pretrained
    if isinstance(pretrained, torch.nn.Module):
        return "module", pretrained
    if isinstance(pretrained, str) and pretrained in OFFICIAL_WEIGHTS:
        return "official", pretrained
    if is_hub_spec(pretrained):
        return "hub", pretrained
    if isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained).expanduser()
        if is_model_dir(path):
            return "saved", path
        return ("file" if path.is_file() else "missing"), path
    if isinstance(pretrained, Mapping):
        return "mapping", pretrained
    return "other", pretrained


@dataclass(frozen=True)
class ResolvedWeights:
    """Pretrained weights, loaded once, with what a fit needs to know about them.

    Attributes
    ----------
    model : AnatCLModel
        The loaded model (the user's own object for ``pretrained=<AnatCLModel>``).
    identity : str or None
        What run keys hash (:func:`~anatcl_sklearn.models._identity.identity_of`); None
        when not asked for.
    shape : tuple of int or None
        The grid the weights record (``model.input_shape``), None when they record none
        (the released weights: OpenBHB's grid).
    affine : ndarray of shape (4, 4) or None
        That grid's affine, when recorded.
    """

    model: AnatCLModel
    identity: str | None
    shape: tuple[int, ...] | None
    affine: np.ndarray | None


def resolve_weights(pretrained: Any, *, fold: int = 0, arch: str = "resnet18",
                    identify: bool = True) -> ResolvedWeights:
    """Load ``pretrained`` (any of its forms) and return it with its identity and grid.

    Parameters
    ----------
    pretrained : str, os.PathLike, Mapping or AnatCLModel
        As :func:`resolve_pretrained`.
    fold : int, default=0
        Fold of the official weights.
    arch : str, default="resnet18"
        Architecture of a checkpoint path or dict.
    identify : bool, default=True
        Whether to compute the identity (a file's SHA-256, a state dict's content hash).

    Returns
    -------
    weights : ResolvedWeights
    """
    from ._identity import identity_of

    form, value = pretrained_form(pretrained)
    model = _load(form, value, pretrained, fold, arch)
    identity = identity_of(form, value, pretrained, fold) if identify else None
    shape = getattr(model, "input_shape", None)
    affine = getattr(model, "input_affine", None)
    return ResolvedWeights(model, identity, None if shape is None else tuple(shape),
                           None if affine is None else np.asarray(affine, dtype=np.float64))


def resolve_pretrained(pretrained: Any, *, fold: int = 0, arch: str = "resnet18") -> AnatCLModel:
    """Turn any accepted description of pretrained weights into a model.

    Parameters
    ----------
    pretrained : str, os.PathLike, Mapping or AnatCLModel
        One of:

        - an official name (``"anatcl-global"`` or ``"anatcl-local"``): the checkpoint of
          fold ``fold`` is fetched (once, verified) with :func:`fetch_official_weights`,
          converted once into a saved-model folder beside it, and read from safetensors;
        - a saved-model folder (``model.safetensors`` + ``config.json``, as written by
          ``AnatCLEmbedder.save_pretrained`` or ``anatcl-sklearn convert``), read with no
          unpickling;
        - ``"hf://owner/repo"`` or ``"hf://owner/repo@revision"``: such a folder on the
          Hugging Face Hub (needs the ``[hub]`` extra);
        - a path of a checkpoint file;
        - a checkpoint or state dict in memory;
        - an :class:`AnatCLModel`, returned unchanged (``fold`` and ``arch``
          are not used).
    fold : int, default=0
        Fold of the official weights, 0 to 4. Used only with an official name.
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
        Encoder architecture of a checkpoint path or dict (a saved folder records its own).
        The official weights are ResNet-18; another ``arch`` with an official name is an
        error.

    Returns
    -------
    model : AnatCLModel
        The loaded model, in eval mode (unless an AnatCLModel was given). A model read from
        a saved folder carries its config as ``model.pretrained_config``.

    Raises
    ------
    TypeError
        If ``pretrained`` is of any other type (including None and bool).
    FileNotFoundError
        If a string is neither an official name, a Hub reference nor an existing file or
        saved-model folder.
    ValueError
        If the fold or architecture is invalid, or the weights do not fit.
    ImportError
        For a Hub reference without the ``[hub]`` extra.

    Examples
    --------
    >>> from anatcl_sklearn.models import AnatCLModel, resolve_pretrained
    >>> model = resolve_pretrained(AnatCLModel().state_dict())
    >>> model.arch
    'resnet18'
    """
    return resolve_weights(pretrained, fold=fold, arch=arch, identify=False).model


def _load(form, value, pretrained, fold, arch):
    from . import _official
    from ._hub import download_from_hub
    from ._saved import load_model_dir

    if form == "model":
        return value
    if form == "official":
        from ._convert import official_model_dir

        entry = _official.OFFICIAL_WEIGHTS[value]
        if arch != entry["arch"]:
            raise ValueError(
                f"The official {value!r} weights are {entry['arch']!r}; got arch={arch!r}.")
        path = _official.fetch_official_weights(value, fold)
        # the digest the download was just verified against
        verified = _official._expected_sha256(value, fold) or _official.read_digest(path)
        return official_model_dir(value, fold, path, entry, source_sha256=verified)
    if form == "hub":
        return _from_saved(load_model_dir(download_from_hub(value)))
    if form == "saved":
        return _from_saved(load_model_dir(value))
    if form == "file":
        return load_checkpoint(value, arch=arch)
    if form == "missing":
        from ..images._files import check_regular_file

        if value.exists() and not value.is_dir():  # a FIFO, a socket, a device: never opened
            try:
                check_regular_file(os.fspath(value), "pretrained",
                                   expected="a checkpoint file (.pth/.pt) or a saved-model folder")
            except ValueError as exc:  # in the words of the parameter: pretrained='...' is ...
                raise ValueError(str(exc).replace(
                    f"pretrained '{os.fspath(value)}'", f"pretrained={os.fspath(pretrained)!r}",
                    1)) from None
        if value.is_dir():
            raise FileNotFoundError(
                f"pretrained={os.fspath(pretrained)!r} is a folder without a saved model: "
                "expected model.safetensors and config.json in it (written by "
                "AnatCLEmbedder.save_pretrained or anatcl-sklearn convert).")
        raise FileNotFoundError(
            f"pretrained={os.fspath(pretrained)!r} is neither an existing "
            "checkpoint file or saved-model folder, a Hub reference (hf://owner/repo) "
            f"nor an official weights name ({', '.join(_official.OFFICIAL_WEIGHTS)}).")
    if form == "mapping":
        return load_checkpoint(value, arch=arch)
    raise TypeError(
        "pretrained must be an official weights name "
        f"({', '.join(_official.OFFICIAL_WEIGHTS)}), a saved-model folder, a Hub reference "
        "(hf://owner/repo), a checkpoint path, a checkpoint or state dict, or an "
        f"AnatCLModel; got {type(pretrained).__name__}.")


def _from_saved(loaded):
    model, config = loaded
    model.pretrained_config = config
    return model
