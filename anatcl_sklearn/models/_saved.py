"""The saved-model folder: ``model.safetensors`` + ``config.json`` + a ``README.md`` model card.

The field's convention for sharing weights (Hugging Face, braindecode, nidl): tensors in
safetensors (no pickle: loading runs no code), everything needed to rebuild and use the model
in a JSON config, and a human-readable card. This module is the one reader
(:func:`load_model_dir`) and writer (:func:`save_model_dir`) of that folder; the estimator, the
checkpoint converter and the official weights' cache all go through it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write, atomic_write_text
from .._typing import Device, PathLike
from ._anatcl_model import AnatCLModel
from ._resnet3d import ARCHITECTURES

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "CARD_NAME", "is_model_dir", "load_model_dir",
           "save_model_dir"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
FORMAT = "anatcl-sklearn/saved-model"
FORMAT_VERSION = 1
#: Largest projection-head output a config may declare (the paper's is 128).
MAX_OUT_DIM = 1 << 16
#: Largest config.json read (the configs written here take a few KB).
MAX_CONFIG_BYTES = 16 << 20
_N_LISTED = 5


def is_model_dir(path):
    """Whether ``path`` is a folder holding a saved model (config and weights)."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()


# -- writing ----------------------------------------------------------------------------


def save_model_dir(
    directory: PathLike,
    model: AnatCLModel,
    config: Mapping[str, Any],
    card: str | Callable[[dict[str, Any]], str],
) -> dict[str, Any]:
    """Write a saved-model folder: weights, config (completed here) and model card.

    Parameters
    ----------
    directory : str or os.PathLike
        Created if missing (with its parents). Each of the three files is written to a
        temporary file in the folder and renamed into place; a symbolic link at a file's
        path is replaced, never followed. Other files in the folder are left alone.
    model : AnatCLModel
        The weights to save (encoder and head).
    config : dict
        JSON-serialisable description of how the model was made (``training``,
        ``anatomy_scaler``, ``output`` ...); ``format``, ``model``, ``input``, ``weights_sha256``
        and ``versions`` are filled in here from ``model``.
    card : str or callable
        The model card text, or a function of the completed config returning it.

    Returns
    -------
    config : dict
        The config as written.
    """
    from safetensors.torch import save_file

    directory = _prepare_dir(directory)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    _refuse_non_finite(state, "the model to save")
    from ._digest import file_sha256

    digests = []

    def write_weights(tmp):
        from safetensors import SafetensorError

        try:
            save_file(state, tmp, metadata={"format": FORMAT})
        except SafetensorError as exc:  # a full disk, a file size limit: safetensors' own type
            raise OSError(str(exc)) from exc
        digests.append(file_sha256(tmp))

    # the weights first: a config never describes weights that are not there yet
    _written(directory / WEIGHTS_NAME, lambda target: atomic_write(target, write_weights))
    digest = digests[0]
    full = dict(config)
    full.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        model=dict(arch=model.arch, out_dim=int(model.out_dim),
                   normalize=bool(model.normalize), n_features=int(model.n_features),
                   n_parameters=int(sum(v.numel() for k, v in state.items()
                                        if not k.endswith(("running_mean", "running_var",
                                                           "num_batches_tracked"))))),
        input=_input_section(getattr(model, "input_shape", None),
                             getattr(model, "input_affine", None)),
        weights_sha256=digest,
        versions=_versions(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    text = json.dumps(_jsonable(full), indent=2, sort_keys=False) + "\n"
    card_text = card(full) if callable(card) else str(card)
    _written(directory / CONFIG_NAME, lambda target: atomic_write_text(target, text))
    _written(directory / CARD_NAME, lambda target: atomic_write_text(target, card_text))
    return full


def _written(target, write):
    """``write(target)``; an OSError (a full disk, a size limit) names ``target``. Nothing is
    left behind: each file is written atomically."""
    try:
        write(target)
    except OSError as exc:
        message = (f"Could not write '{target}' ({exc.strerror or exc}); nothing was left "
                   "there: free disk space (or raise the file size limit) and save again.")
        raise (OSError(exc.errno, message) if exc.errno else OSError(message)) from exc


def existing_model_files(directory):
    """The saved-model files (weights, config, card) already at ``directory``, in that order:
    any of them, a link included, means writing there needs ``--force``."""
    return [n for n in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
            if os.path.lexists(os.path.join(os.fspath(directory), n))]


def _prepare_dir(directory: object) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path; got {type(directory).__name__}.")
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"'{directory}' exists and is not a folder; a saved model is a folder "
                         f"({WEIGHTS_NAME}, {CONFIG_NAME}, {CARD_NAME}).")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"Cannot create the folder '{directory}': {exc}") from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OSError(f"The folder '{directory}' is not writable.")
    return directory


def _input_section(shape, affine):
    if shape is None:
        from ..images import OPENBHB_AFFINE, OPENBHB_SHAPE

        shape, affine = OPENBHB_SHAPE, OPENBHB_AFFINE  # the released weights' grid
    section: dict[str, Any] = dict(shape=[int(s) for s in shape], affine=None, voxel_size=None,
                                   orientation=None)
    if affine is not None:
        from ..images._grid import axcodes, check_affine, zooms_of_affine

        affine = check_affine(affine, "the model's input_affine")  # never written invalid
        section.update(affine=affine.tolist(), voxel_size=list(zooms_of_affine(affine)),
                       orientation=axcodes(affine))
    return section


def _versions():
    from .._version import __version__

    return dict(anatcl_sklearn=__version__, torch=torch.__version__,
                python=platform.python_version())


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# -- reading ----------------------------------------------------------------------------


def load_model_dir(
    directory: PathLike, map_location: Device = "cpu",
) -> tuple[AnatCLModel, dict[str, Any]]:
    """Load a saved-model folder, with no unpickling at all.

    ``config.json`` is parsed as JSON and validated (format, architecture, output size,
    input grid); ``model.safetensors`` is read with safetensors and checked against the
    config's digest, the architecture's parameter names and shapes, and for NaN or inf.

    Parameters
    ----------
    directory : str or os.PathLike
        The folder :func:`save_model_dir` (or ``AnatCLEmbedder.save_pretrained``) wrote.
    map_location : str or torch.device, default="cpu"
        Device of the returned model.

    Returns
    -------
    model : AnatCLModel
        In eval mode, with ``input_shape`` and ``input_affine`` from the config.
    config : dict
        The parsed config.

    Raises
    ------
    FileNotFoundError
        If the folder or one of its two files is missing.
    ValueError
        If the config is not valid JSON or holds values that do not describe an AnatCL model,
        or the weights do not match it (digest, names, shapes, non-finite values); the
        message names the file and the value.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory).expanduser()
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if path.exists() and not path.is_file():  # a FIFO would hang, a device never end
            raise ValueError(f"'{path}' is not a regular file (a folder, FIFO or device); a "
                             f"saved model folder holds the files {WEIGHTS_NAME} and "
                             f"{CONFIG_NAME}.")
        if not path.is_file():
            raise FileNotFoundError(f"'{path}' not found: a saved model folder holds "
                                    f"{WEIGHTS_NAME} and {CONFIG_NAME}.")
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"'{config_path}' has {config_path.stat().st_size} bytes, more than the "
                         f"{MAX_CONFIG_BYTES} a saved model's config may have (ours take a few "
                         "KB): not a config of this toolkit.")
    config = _read_config(config_path)
    arch, out_dim, normalize, shape, affine = _validate_config(config, config_path)
    expected = config.get("weights_sha256")
    if expected is None:
        from ..exceptions import warn

        warn(f"'{config_path}' records no weights_sha256, so '{weights_path}' is loaded but not "
             "verified: a change or damage since it was saved would go unnoticed. Save the "
             "model again (save_pretrained) to record its digest.")
    else:
        from ._digest import file_sha256

        actual = file_sha256(weights_path)
        if actual != expected:
            raise ValueError(
                f"'{weights_path}' does not match its config: SHA-256 {actual}, but "
                f"{CONFIG_NAME} records {expected}. The file was changed or damaged after it "
                "was saved; save or download the model again.")
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"Could not read '{weights_path}' as safetensors: {exc}") from exc
    with torch.device("meta"):  # every tensor comes from the file: no random initialisation
        model = AnatCLModel(arch, out_dim=out_dim, normalize=normalize)
    _check_state(model, state, weights_path)
    state = {k: v.float() if torch.is_floating_point(v) else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.input_shape = shape
    model.input_affine = affine
    return model.to(map_location).eval(), config


def _read_config(path):
    try:
        with open(path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"'{path}' is not valid JSON: {exc}") from exc
    except RecursionError:  # '[' * 100_000: no config of ours nests more than 4 levels
        raise ValueError(f"'{path}' is nested too deeply to be a saved model's config.") from None
    if not isinstance(config, dict):
        raise ValueError(f"'{path}' must hold a JSON object; got {type(config).__name__}.")
    return config


def _validate_config(config, path):
    def bad(what, value, expected):
        return ValueError(f"'{path}': {what} is {value!r}; expected {expected}.")

    if config.get("format") != FORMAT:
        raise bad("format", config.get("format"), repr(FORMAT))
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise bad("format_version", version,
                  f"an integer <= {FORMAT_VERSION} (a newer anatcl-sklearn wrote this folder?"
                  " upgrade anatcl-sklearn)")
    model = config.get("model")
    if not isinstance(model, dict):
        raise bad("model", model, "an object with arch, out_dim and normalize")
    arch = model.get("arch")
    if arch not in ARCHITECTURES:
        raise bad("model.arch", arch, f"one of {list(ARCHITECTURES)}")
    out_dim = model.get("out_dim")
    if not isinstance(out_dim, int) or isinstance(out_dim, bool) or not 1 <= out_dim <= MAX_OUT_DIM:
        raise bad("model.out_dim", out_dim, f"a positive integer <= {MAX_OUT_DIM}")
    normalize = model.get("normalize", True)
    if not isinstance(normalize, bool):
        raise bad("model.normalize", normalize, "true or false")
    section = config.get("input") or {}
    if not isinstance(section, dict):
        raise bad("input", section, "an object with shape and affine")
    shape = section.get("shape")
    if shape is not None:
        if (not isinstance(shape, list) or len(shape) != 3
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
            raise bad("input.shape", shape, "3 positive integers")
        shape = tuple(shape)
    affine = section.get("affine")
    if affine is not None:
        from ..images._grid import check_affine

        try:
            affine = check_affine(affine, "input.affine")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"'{path}': {exc}") from None
        if shape is None:
            raise bad("input.shape", None, "3 positive integers when input.affine is given")
    for key in ("weights_sha256",):
        value = config.get(key)
        if value is not None and (not isinstance(value, str) or len(value) != 64
                                  or any(c not in "0123456789abcdef" for c in value)):
            raise bad(key, value, "a SHA-256 hex digest")
    _validate_scaler(config.get("anatomy_scaler"), path)
    return arch, out_dim, normalize, shape, affine


def _validate_scaler(section, path):
    """The ``anatomy_scaler`` section, as :func:`~..embedder._sharing.scaler_from_config`
    reads it: finite (n_regions, n_measures) ``data_min`` <= ``data_max``."""
    def bad(what, value, expected):
        return ValueError(f"'{path}': {what} is {value!r}; expected {expected}.")

    if section is None:
        return
    if not isinstance(section, dict):
        raise bad("anatomy_scaler", section, "an object (data_min, data_max, feature_range, "
                                             "clip, n_samples_seen) or null")
    arrays = {}
    for key in ("data_min", "data_max"):
        value = section.get(key)
        try:
            array = np.array(value, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
        if array is None or array.ndim != 2 or array.size == 0 or not np.isfinite(array).all():
            raise bad(f"anatomy_scaler.{key}", value,
                      "a non-empty (n_regions, n_measures) table of finite numbers")
        arrays[key] = array
    lo, hi = arrays["data_min"], arrays["data_max"]
    if hi.shape != lo.shape:
        raise ValueError(f"'{path}': anatomy_scaler.data_max has shape {hi.shape}; expected "
                         f"{lo.shape}, the shape of data_min.")
    if (hi < lo).any():
        raise ValueError(f"'{path}': anatomy_scaler.data_max is below data_min at "
                         f"{int((hi < lo).sum())} place(s); expected data_max >= data_min.")
    feature_range = section.get("feature_range", [0, 1])
    if (not isinstance(feature_range, list) or len(feature_range) != 2
            or not all(_is_number(v) for v in feature_range)
            or not feature_range[0] < feature_range[1]):
        raise bad("anatomy_scaler.feature_range", feature_range, "two finite numbers, low < high")
    clip = section.get("clip", False)
    if not isinstance(clip, bool):
        raise bad("anatomy_scaler.clip", clip, "true or false")
    seen = section.get("n_samples_seen", 2)
    if not isinstance(seen, int) or isinstance(seen, bool) or seen < 1:
        raise bad("anatomy_scaler.n_samples_seen", seen, "a positive integer")


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and bool(np.isfinite(value)))


def _check_state(model, state, path):
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} in the file vs {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {missing[:_N_LISTED]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:_N_LISTED]}")
        if mismatched:
            parts.append("shapes differ: " + ", ".join(mismatched[:_N_LISTED]))
        raise ValueError(f"'{path}' does not hold the weights its config describes "
                         f"(AnatCLModel({model.arch!r}, out_dim={model.out_dim})): "
                         + "; ".join(parts) + ".")
    wrong = [f"{k} ({str(state[k].dtype).removeprefix('torch.')})" for k in expected
             if _kind(state[k]) != _kind(expected[k])]
    if wrong:
        raise ValueError(f"'{path}' holds tensors of the wrong type: {', '.join(wrong[:_N_LISTED])}"
                         f"{' ...' if len(wrong) > _N_LISTED else ''}; weights, biases and "
                         "BatchNorm statistics are floating point, step counters integers.")
    _refuse_non_finite(state, f"'{path}'")
    negative = [k for k, v in state.items() if k.endswith("running_var") and (v < 0).any()]
    if negative:
        raise ValueError(f"'{path}' holds negative values in {len(negative)} BatchNorm running "
                         f"variance(s): {negative[:_N_LISTED]}. A variance is never negative; "
                         "these weights would embed every image to NaN.")


def _kind(tensor):
    if tensor.dtype == torch.bool:
        return "bool"
    return "float" if torch.is_floating_point(tensor) else "complex" if tensor.is_complex() \
        else "int"


def _refuse_non_finite(state, source):
    bad = [k for k, v in state.items()
           if torch.is_floating_point(v) and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{source} holds NaN or inf values in {len(bad)} tensor(s): "
                         f"{bad[:_N_LISTED]}. These weights would embed every image to NaN.")
