"""Torch checkpoints to saved-model folders: ``anatcl-sklearn convert`` and the official cache.

A released AnatCL file (``torch.save`` of ``{"opts": Namespace, "model": ...}``, possibly with
``module.`` prefixes) or one of ours is read once with the safe loader
(:func:`~anatcl_sklearn.models.load_checkpoint`: weights-only, allow-listed Namespace) and
written as ``model.safetensors`` + ``config.json`` + ``README.md``; from then on it loads
without any unpickling.
"""

from __future__ import annotations

import argparse
import errno
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._typing import PathLike
from ._anatcl_model import AnatCLModel
from ._card import model_card
from ._checkpoint import load_checkpoint
from ._saved import is_model_dir, load_model_dir, save_model_dir

__all__ = ["convert_checkpoint", "official_model_dir"]


def convert_checkpoint(
    checkpoint: PathLike,
    out_dir: PathLike,
    *,
    arch: str = "resnet18",
    out_dim: int = 128,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Convert a torch checkpoint into a saved-model folder.

    Parameters
    ----------
    checkpoint : str or os.PathLike
        A checkpoint file: the released AnatCL format (``--released-checkpoint`` of
        ``python -m anatcl_sklearn.distributed`` writes it too), or a bare
        state dict (read with :func:`load_checkpoint`, which never runs pickled code).
    out_dir : str or os.PathLike
        The folder to write (created if missing).
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
        Encoder architecture of the weights.
    out_dim : int, default=128
        Output size of the projection head.
    extra : dict, default=None
        More entries for the config's ``training`` section (e.g. the official name and fold).

    Returns
    -------
    config : dict
        The config written to ``out_dir/config.json``.

    Examples
    --------
    >>> from anatcl_sklearn.models import convert_checkpoint
    >>> convert_checkpoint("weights.pth", "anatcl-global-fold0")  # doctest: +SKIP
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path; got {type(checkpoint).__name__}.")
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: '{path}'.")
    model = load_checkpoint(path, arch=arch, out_dim=out_dim)
    opts = _read_opts(path)
    training = dict(method=opts.get("method"), descriptor=opts.get("descriptor"),
                    converted_from=path.name)
    if opts:
        training["source_opts"] = opts
    training.update(extra or {})
    if not training.get("data"):
        training["data"] = opts.get("data") or "not recorded in the checkpoint"
    return save_model_dir(out_dir, model, dict(training=training), model_card)


def _read_opts(path: PathLike) -> dict[str, Any]:
    """The checkpoint's ``opts`` as a plain dict of builtins (empty when absent)."""
    from ._checkpoint import _safe_torch_load

    checkpoint = _safe_torch_load(path, "cpu")
    opts = checkpoint.get("opts") if isinstance(checkpoint, Mapping) else None
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, Mapping):
        return {}
    return {str(k): v for k, v in opts.items()
            if v is None or isinstance(v, (bool, int, float, str, list, tuple))}


def official_model_dir(
    name: str,
    fold: int,
    checkpoint_path: PathLike,
    entry: Mapping[str, Any],
    source_sha256: str | None = None,
) -> AnatCLModel:
    """The converted folder of an official checkpoint, converted on first use.

    The folder sits beside the downloaded file (``<cache>/<name>_fold<k>/``) and records, in
    its config's ``training.source_sha256``, the SHA-256 of the verified download it was
    converted from. It is used only when that digest is ``source_sha256`` (the verified
    digest of ``checkpoint_path``, hashed here when not given) and its weights match its
    config; otherwise (the download was replaced, the folder was damaged, planted or made by
    another version) it is converted again from the checked download.
    """
    from ._digest import file_sha256

    checkpoint_path = Path(checkpoint_path)
    if source_sha256 is None:
        source_sha256 = file_sha256(checkpoint_path)
    folder = checkpoint_path.with_suffix("")
    extra = dict(method="anatcl", official_name=name, fold=int(fold),
                 description=entry.get("description"),
                 data="OpenBHB (healthy subjects), CAT12 VBM maps, 121x145x121 at 1.5 mm",
                 source_url=entry["urls"][fold], source_sha256=source_sha256)
    if is_model_dir(folder):
        try:
            model, config = load_model_dir(folder)
        except ValueError:
            pass  # damaged or from another version: convert again below
        else:
            training = config.get("training")
            if isinstance(training, Mapping) and training.get("source_sha256") == source_sha256:
                return model
            # converted from another file (or not by us): convert again below
    try:
        convert_checkpoint(checkpoint_path, folder, arch=entry["arch"], out_dim=entry["out_dim"],
                           extra=extra)
    except OSError as exc:
        if not (isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EROFS)):
            raise
        from ._official import _cache_error

        # A read-only cache holding the download but not its conversion: the same advice
        # as a read-only cache anywhere else.
        raise OSError(
            f"{_cache_error(checkpoint_path.parent, exc.strerror or type(exc).__name__)} The "
            f"downloaded '{checkpoint_path.name}' is there, but its conversion '{folder}' "
            "cannot be written."
        ) from exc
    return load_model_dir(folder)[0]
