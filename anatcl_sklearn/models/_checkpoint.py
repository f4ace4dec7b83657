"""Safe loading of AnatCL checkpoints into :class:`AnatCLModel`."""

from __future__ import annotations

import _compat_pickle
import argparse
import contextlib
import os
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .._typing import Device, PathLike
from ..exceptions import warn
from ._anatcl_model import AnatCLModel
from ._checkpoint_head import (
    _check_looks_like_checkpoint,
    _plain_pickle_message,
    _plain_pickle_protocol,
)
from ._resnet3d import ARCHITECTURES

__all__ = ["load_checkpoint"]

# Classes the released checkpoints pickle besides tensors and plain containers:
# the training script stores its argparse options under "opts".
_ALLOWED_GLOBALS = (argparse.Namespace,)

# Prefixes added by wrappers around the model when it was saved: DataParallel /
# DistributedDataParallel ("module."), torch.compile ("_orig_mod."), the
# reference package's ``AnatCL`` module ("backbone.").
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "backbone.")

_N_LISTED = 5


def load_checkpoint(
    path_or_dict: PathLike | Mapping[str, Any],
    arch: str = "resnet18",
    map_location: Device | Callable[..., Any] | dict[str, str] = "cpu",
    strict: bool = True,
    *,
    out_dim: int = 128,
    normalize: bool = True,
) -> AnatCLModel:
    """Build an :class:`AnatCLModel` and load saved weights into it.

    Reads the released AnatCL files (``torch.save`` of a dict with keys
    ``"opts"``, ``"model"``, ``"optimizer"``, ``"epoch"``, ``"run_id"``), a
    dict holding the weights under ``"state_dict"``, a bare state dict, or
    any of them already in memory. A prefix shared by every key and added by
    a wrapper when the model was saved is removed: ``module.``
    (``DataParallel``), ``_orig_mod.`` (``torch.compile``) and ``backbone.``
    (the reference package's ``AnatCL`` module).

    Files are read with ``torch.load(weights_only=True)``: only tensors, plain
    containers and ``argparse.Namespace`` are unpickled. A file that would need
    anything else (for instance a pickle that runs code) is refused, naming
    what it asked to call; its code is never executed. A file that is not a
    torch checkpoint at all is recognised from its first bytes and said so.

    Parameters
    ----------
    path_or_dict : str, os.PathLike or Mapping
        Path of a checkpoint file, or a checkpoint / state dict in memory.
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
        Encoder architecture of the weights. Never guessed: a state dict that
        clearly belongs to another architecture raises an error naming it.
    map_location : str, torch.device, callable or dict, default="cpu"
        Passed to :func:`torch.load`. When it is a device (or a string naming
        one) the returned model is also moved there.
    strict : bool, default=True
        If True, missing or unexpected keys raise an error. If False they are
        tolerated with a warning (missing parameters keep their random
        initialisation). Shape mismatches always raise.
    out_dim : int, default=128
        Output size of the projection head stored in the weights (128 for the
        released AnatCL checkpoints).
    normalize : bool, default=True
        Whether the returned model L2-normalises its head output.

    Returns
    -------
    model : AnatCLModel
        The model with the weights loaded, in eval mode.

    Raises
    ------
    FileNotFoundError
        If ``path_or_dict`` is a path that does not exist.
    TypeError
        If ``path_or_dict`` is neither a path nor a mapping.
    ValueError
        If the file is not a torch checkpoint at all (an HTML page, a text
        file, an empty file: said from its first bytes), if it was refused for
        safety (the message names what it asked to call) or cannot be read,
        if no state dict is found in it, if it belongs to another
        architecture, if keys are missing, unexpected (with ``strict=True``)
        or of the wrong shape, or if any weight is NaN or infinite (the first
        names are listed).

    Examples
    --------
    >>> from anatcl_sklearn.models import AnatCLModel, load_checkpoint
    >>> weights = AnatCLModel().state_dict()
    >>> model = load_checkpoint({"model": weights})
    >>> model.training
    False
    """
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be a bool, got {type(strict).__name__}.")
    if not isinstance(arch, str) or arch not in ARCHITECTURES:
        raise ValueError(
            f"Unknown architecture {arch!r}; valid architectures are "
            f"{', '.join(ARCHITECTURES)}."
        )
    if not isinstance(path_or_dict, (Mapping, str, os.PathLike)):
        raise TypeError(
            "path_or_dict must be a path (str or os.PathLike) or a mapping "
            f"(checkpoint or state dict); got {type(path_or_dict).__name__}."
        )
    # Built first so that a bad out_dim fails before the file is read; on the meta device
    # (no random initialisation, ~1 s saved) when every weight will come from the file.
    with torch.device("meta") if strict else contextlib.nullcontext():
        model = AnatCLModel(arch=arch, out_dim=out_dim, normalize=normalize)
    if isinstance(path_or_dict, Mapping):
        source = "the checkpoint dict"
        checkpoint = path_or_dict
    else:
        source = f"checkpoint file '{os.fspath(path_or_dict)}'"
        checkpoint = _safe_torch_load(Path(path_or_dict), map_location)

    state_dict = _strip_wrapper_prefixes(_extract_state_dict(checkpoint, source))
    _check_compatible(model, state_dict, arch, strict, source)
    _check_finite(state_dict, source)
    if strict:  # every tensor is the file's (in float32, as the model's own would be); a
        # dict in memory is the caller's: copied, so the model never aliases it
        copy = isinstance(path_or_dict, Mapping)
        state_dict = {k: (v.to(torch.float32, copy=copy) if torch.is_floating_point(v)
                          else v.clone() if copy else v)
                      for k, v in state_dict.items()}
        model.load_state_dict(state_dict, strict=True, assign=True)
    else:
        model.load_state_dict(state_dict, strict=False)
    model.input_shape = _recorded_input_shape(checkpoint)
    model.input_affine = _recorded_input_affine(checkpoint, source) if model.input_shape else None
    if isinstance(map_location, (str, torch.device)):
        model.to(map_location)
    return model.eval()


def _recorded_input_shape(checkpoint):
    """The training grid a checkpoint records in ``opts.input_shape`` (None when absent)."""
    opts = checkpoint.get("opts") if isinstance(checkpoint, Mapping) else None
    shape = opts.get("input_shape") if isinstance(opts, Mapping) else getattr(opts, "input_shape", None)
    if (isinstance(shape, (list, tuple)) and len(shape) == 3
            and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        return tuple(shape)
    return None


def _recorded_input_affine(checkpoint, source):
    """The training grid's affine a checkpoint records in ``opts.input_affine`` (or None);
    an invalid one (non-finite, singular, not 4x4) is refused by name, as loading would."""
    from ..images._grid import check_affine

    opts = checkpoint.get("opts") if isinstance(checkpoint, Mapping) else None
    affine = opts.get("input_affine") if isinstance(opts, Mapping) else getattr(opts, "input_affine", None)
    if affine is None:
        return None
    try:
        return check_affine(affine, f"the input_affine recorded in {source}")
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _safe_torch_load(path, map_location):
    if path.exists() and not path.is_file():  # a FIFO would hang the read, a device never end
        from ..images._files import check_regular_file

        check_regular_file(os.fspath(path), "Checkpoint", "a torch checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: '{path}'.")
    _check_looks_like_checkpoint(path)
    try:
        with _allow_globals(), warnings.catch_warnings():
            # a plain pickle is refused below in one message; torch's warning about its
            # protocol would come first
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if _refused_global(exc) is None and (protocol := _plain_pickle_protocol(path)):
            raise ValueError(_plain_pickle_message(path, protocol)) from exc
        raise ValueError(_refusal_message(path, exc)) from exc
    except OSError:
        raise  # e.g. permission denied: the system's message names the file
    except Exception as exc:
        if protocol := _plain_pickle_protocol(path):
            raise ValueError(_plain_pickle_message(path, protocol)) from exc
        # The weights-only unpickler reports malformed input with assorted
        # exception types (RuntimeError, EOFError, IndexError, ...).
        raise ValueError(
            f"Could not read '{path}' as a PyTorch checkpoint (is it truncated "
            f"or damaged?): {_first_line(exc).rstrip('.')}. Download or copy it again."
        ) from exc


# torch names the refused callable as "GLOBAL module.name" (torch >= 2.4);
# the REDUCE variant prints the function object itself.
_GLOBAL = re.compile(r"GLOBAL\s+([A-Za-z_][\w.]*\w)")
_REDUCE = re.compile(r"call reduce for unrecognized function\s+(.+?)(?:\s+which belongs|$)")


def _refused_global(exc):
    text = _strip_ansi(str(exc))
    match = _GLOBAL.search(text)
    if match:
        return match.group(1)
    match = _REDUCE.search(text)
    return match.group(1).strip() if match else None


def _python3_name(name):
    """The Python 3 name of a global a protocol-2 pickle spells the Python 2 way."""
    module, _, attr = name.rpartition(".")
    if (module, attr) in _compat_pickle.NAME_MAPPING:
        return ".".join(_compat_pickle.NAME_MAPPING[(module, attr)])
    if module in _compat_pickle.IMPORT_MAPPING:
        return f"{_compat_pickle.IMPORT_MAPPING[module]}.{attr}"
    return name


def _refusal_message(path, exc):
    allowed = ", ".join(f"{c.__module__}.{c.__qualname__}" for c in _ALLOWED_GLOBALS)
    name = _refused_global(exc)
    if name is not None:
        real = _python3_name(name)
        spelled = f" (spelled {name} in the file)" if real != name else ""
        why = f"it asks to call {real}{spelled}, which anatcl_sklearn never does"
    else:
        why = f"its pickle was refused ({_unpickler_reason(exc)})"
    # No "re-run with weights_only=False": for a file that calls os.system
    # that advice would run the attacker's code.
    return (
        f"Refused to load checkpoint file '{path}' for safety: {why}. An "
        "AnatCL checkpoint holds only tensors, plain Python containers and "
        f"{allowed}; nothing in this file was run (anatcl_sklearn never "
        "executes code stored in a checkpoint). If you wrote the file yourself, "
        "save only the model's weights, torch.save(model.state_dict(), path), "
        "and load those; otherwise delete it."
    )


def _allow_globals():
    safe_globals = getattr(torch.serialization, "safe_globals", None)
    if safe_globals is None:
        # torch < 2.5 has no scoped allow-list: files holding an
        # argparse.Namespace are then refused, bare state dicts still load.
        return contextlib.nullcontext()
    return safe_globals(list(_ALLOWED_GLOBALS))


def _unpickler_reason(exc):
    # torch's message is a page of advice; the reason is on one line of it.
    text = _strip_ansi(str(exc))
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    else:
        # torch >= 2.6 opens with advice to re-run with weights_only=False,
        # then gives the reason after a blank line.
        blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
        text = blocks[1] if len(blocks) > 1 else (blocks[0] if blocks else type(exc).__name__)
    for tail in ("Check the documentation", ". Please"):
        text = text.split(tail, 1)[0]
    return " ".join(text.split()).rstrip(".") or type(exc).__name__


def _strip_ansi(text):
    # torch wraps parts of its messages in ANSI bold codes; noise in a log.
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _first_line(exc):
    text = _strip_ansi(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_state_dict(obj):
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _extract_state_dict(checkpoint, source):
    if not isinstance(checkpoint, Mapping):
        raise ValueError(
            f"Expected {source} to hold a dict (a checkpoint or a state dict); "
            f"found {type(checkpoint).__name__}."
        )
    # "model" is what the AnatCL training script saves; "state_dict" is the
    # other common convention (e.g. Lightning).
    for key in ("model", "state_dict"):
        candidate = checkpoint.get(key)
        if isinstance(candidate, Mapping):
            state_dict = candidate
            break
    else:
        state_dict = checkpoint
    if not _is_state_dict(state_dict):
        keys = list(checkpoint)[:10]
        raise ValueError(
            f"No state dict found in {source}: expected a mapping of parameter "
            "names to tensors, either at the top level or under 'model' or "
            f"'state_dict'. Top-level keys: {keys}."
        )
    return state_dict


def _strip_wrapper_prefixes(state_dict):
    stripped = dict(state_dict)
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in stripped):
                stripped = {k[len(prefix) :]: v for k, v in stripped.items()}
                changed = True
    return stripped


def _infer_arch(state_dict):
    """Return the architecture a state dict clearly belongs to, or None."""
    keys = {k.removeprefix("encoder.") for k in state_dict}
    if "layer1.0.conv3.weight" in keys:
        return "resnet50"
    if "layer1.0.conv1.weight" not in keys:
        return None
    # ResNet-34 has three blocks in its first stage, ResNet-18 two.
    return "resnet34" if "layer1.2.conv1.weight" in keys else "resnet18"


def _check_finite(state_dict, source):
    """Refuse weights holding NaN or infinity: every embedding would be NaN.

    The norms of the floating tensors (one multi-tensor pass, ~15 ms for ResNet-18 where an
    element-wise test took ~100 ms) are finite exactly when their values are, unless the
    squares overflow: a tensor whose norm is not finite is tested element by element.
    """
    tensors = {k: v for k, v in state_dict.items() if v.is_floating_point() or v.is_complex()}
    suspects = list(tensors)
    floats = [k for k, v in tensors.items() if v.is_floating_point() and v.numel()]
    try:
        with torch.no_grad():
            norms = torch._foreach_norm([tensors[k].detach() for k in floats])
        finite = {k for k, n in zip(floats, norms) if bool(torch.isfinite(n))}
        suspects = [k for k in tensors if k not in finite]
    except (RuntimeError, TypeError):  # mixed devices or dtypes: every tensor, one by one
        pass
    bad = [k for k in suspects if not bool(torch.isfinite(tensors[k]).all())]
    if bad:
        raise ValueError(
            f"Cannot load {source}: {len(bad)} tensor(s) hold NaN or infinite "
            f"values, {_listing(bad)}. The weights are damaged (or come from a "
            "diverged training run); download or copy them again, or use another "
            "checkpoint."
        )


def _listing(keys):
    shown = ", ".join(repr(k) for k in keys[:_N_LISTED])
    more = f", ... ({len(keys) - _N_LISTED} more)" if len(keys) > _N_LISTED else ""
    return f"[{shown}{more}]"


def _check_compatible(model, state_dict, arch, strict, source):
    expected = model.state_dict()
    # BatchNorm fills in a missing num_batches_tracked itself (checkpoints
    # written before torch 0.4.1 lack it), so it is not worth refusing.
    missing = [
        k
        for k in expected
        if k not in state_dict and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        (k, tuple(state_dict[k].shape), tuple(expected[k].shape))
        for k in expected
        if k in state_dict and state_dict[k].shape != expected[k].shape
    ]

    problems = []
    inferred = _infer_arch(state_dict)
    if inferred is not None and inferred != arch:
        problems.append(
            f"The weights look like a {inferred!r} encoder, not {arch!r}: pass "
            f"arch={inferred!r}."
        )
    if mismatched:
        details = "; ".join(
            f"{k!r}: checkpoint {got} vs model {want}"
            for k, got, want in mismatched[:_N_LISTED]
        )
        problems.append(f"{len(mismatched)} shape mismatch(es): {details}.")
        head_key = "head.2.weight"
        if any(k == head_key for k, _, _ in mismatched) and inferred in (None, arch):
            problems.append(
                f"The projection head has out_dim={state_dict[head_key].shape[0]} "
                f"in the checkpoint: pass out_dim={state_dict[head_key].shape[0]}."
            )
    if strict and (missing or unexpected):
        problems.append(
            f"{len(missing)} missing key(s) {_listing(missing)} and "
            f"{len(unexpected)} unexpected key(s) {_listing(unexpected)}."
        )
        if unexpected and all(("encoder." + k) in expected for k in unexpected):
            problems.append(
                "The keys lack the 'encoder.' prefix: this looks like an "
                "encoder-only state dict; load it with "
                "model.encoder.load_state_dict(...) or strict=False."
            )
    if problems:
        raise ValueError(
            f"Cannot load {source} into AnatCLModel(arch={arch!r}, "
            f"out_dim={model.out_dim}). " + " ".join(problems)
        )
    if missing or unexpected:
        warn(
            f"Loading {source} with strict=False: {len(missing)} missing key(s) "
            f"{_listing(missing)} keep their initial values and "
            f"{len(unexpected)} unexpected key(s) {_listing(unexpected)} are "
            "ignored.",
            UserWarning,
        )
