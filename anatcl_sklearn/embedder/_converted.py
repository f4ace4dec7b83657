"""The ONNX Runtime and OpenVINO backends, and their converted models kept on disk between runs.

Converting the encoder for another runtime (tracing it, writing that runtime's graph) takes
2 s or more on two cores; loading a converted model takes about 0.05 s (benchmarks/RESULTS.md).
So each conversion is kept in a folder of the inference cache, and the next ``transform`` or
``anatcl-sklearn embed`` of the same weights loads it::

    <cache>/<backend>/<key>/    model.onnx, or model.xml and model.bin; entry.json

``<cache>`` is ``$ANATCL_SKLEARN_INFERENCE_CACHE``, else the ``inference`` folder of the
weights' cache (``$ANATCL_SKLEARN_CACHE``, else ``~/.cache/anatcl_sklearn``);
``ANATCL_SKLEARN_INFERENCE_CACHE=off`` keeps nothing. ``<key>`` is the SHA-256 of everything
the converted graph depends on (:func:`entry_key`): this layout's and this package's versions,
the backend and its package's version, torch's version, the output ("encoder" or
"projection"), the volume shape, and the weights' content (every parameter and buffer: a fine-tuned or edited model gets its
own entry). Deleting the folder is always safe.

What may be found there is not trusted:

- an entry appears whole (written in a temporary folder beside it, then renamed:
  :func:`anatcl_sklearn._atomic.atomic_folder`), so a crash or a full disk leaves no half entry;
- ``entry.json`` records the key and each file's size and SHA-256, checked before the runtime
  reads a byte; an entry that fails is removed (it is ours: a folder named by a key) and
  converted again. A symbolic link or anything but a folder in an entry's place is left alone
  and not used;
- a conversion is kept only once it passed the eager check on its first image
  (``_inference.py``), and ``entry.json`` records on which CPU (:func:`cpu_fingerprint`);
- an entry read back is checked again each time: on a CPU of that fingerprint, by the same
  runtime's graph (its weights file) against the eager forward on a small probe volume
  (``run.probe``: ~0.1 s, where a full-size eager forward costs ~0.8 s of CPU); elsewhere, on
  the first image in full. An entry that fails is removed and converted again.

A cache that cannot be written (read-only, full disk, not a folder) costs one warning per
process and folder and a conversion per run, never an error.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import threading
import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..exceptions import warn

#: The version of the entries' layout; another version's entries are never read (2: entries
#: are kept once checked, with the CPU they were checked on).
FORMAT = 2
#: ``ANATCL_SKLEARN_INFERENCE_CACHE``: the cache's folder, or one of :data:`OFF` to keep nothing.
CACHE_ENV_VAR = "ANATCL_SKLEARN_INFERENCE_CACHE"
OFF = ("off", "0", "false", "no", "none")
#: The files of each backend's entry (besides entry.json).
FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}
_MANIFEST = "entry.json"
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


# ---------------------------------------------------------------- the backends themselves
def _example(x: torch.Tensor) -> torch.Tensor:
    """A small input of ``x``'s kind to trace the graph with: tracing runs one forward, and
    the graph does not depend on the size (the real shape is set after, or left dynamic)."""
    return x.new_zeros((1, *x.shape[1:2], *(min(s, 32) for s in x.shape[2:])))


def _convert_onnx(forward: torch.nn.Module, x: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
        warnings.simplefilter("ignore")
        torch.onnx.export(forward, (_example(x),), cast(Any, buffer), dynamo=False,
                          input_names=["x"], output_names=["z"], do_constant_folding=True,
                          dynamic_axes={"x": {0: "n", 2: "d", 3: "h", 4: "w"}, "z": {0: "n"}})
    return buffer.getvalue()


def _save_onnx(model: bytes, folder: Path) -> None:
    (folder / "model.onnx").write_bytes(model)


def _load_onnx(model: bytes | Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model / "model.onnx")
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def run(x):
        (z,) = session.run(["z"], {"x": x.float().contiguous().numpy()})
        return torch.from_numpy(z)

    # the graph's spatial axes are dynamic: the same session takes a probe volume
    run.probe = run  # type: ignore[attr-defined]
    return run


def _convert_openvino(forward: torch.nn.Module, x: torch.Tensor) -> Any:
    import openvino as ov

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ov.convert_model(forward, example_input=_example(x),
                                input=[ov.PartialShape([-1, *x.shape[1:]])])


def _save_openvino(model: Any, folder: Path) -> None:
    import openvino as ov

    # float32 weights as they are: save_model would otherwise halve them to float16
    ov.save_model(model, str(folder / "model.xml"), compress_to_fp16=False)


def _load_openvino(model: Any):
    import openvino as ov

    core = ov.Core()
    # read model.bin into memory rather than mapping it: the compiled model may keep pointing
    # into the weights, and a file changed in place under a running process would change them
    core.set_property({"ENABLE_MMAP": False})
    graph = core.read_model(str(model / "model.xml")) if isinstance(model, Path) else model
    config = {
        "INFERENCE_PRECISION_HINT": "f32",  # never bf16/f16 behind the user's back
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = core.compile_model(graph, "CPU", config)

    def run(x):
        return torch.from_numpy(np.asarray(compiled(x.float().contiguous().numpy())[0]))

    def probe(x):
        """The same graph and weights, compiled for ``x``'s (small) shape: ~0.1 s."""
        small = graph.clone()
        small.reshape(ov.PartialShape(list(x.shape)))
        once = core.compile_model(small, "CPU", config)
        return torch.from_numpy(np.asarray(once(x.float().contiguous().numpy())[0]))

    run.probe = probe  # type: ignore[attr-defined]
    return run


#: backend: (convert(forward, x) -> model, save(model, folder), load(model or folder) -> run)
BACKENDS = {"onnx": (_convert_onnx, _save_onnx, _load_onnx),
            "openvino": (_convert_openvino, _save_openvino, _load_openvino)}


# ---------------------------------------------------------------- where and under which key
def cache_dir() -> Path | None:
    """The inference cache's folder, or None when ``ANATCL_SKLEARN_INFERENCE_CACHE=off``."""
    value = os.environ.get(CACHE_ENV_VAR, "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return Path(value).expanduser()
    from ..models._official import _resolve_cache_dir

    return _resolve_cache_dir(None) / "inference"


@functools.lru_cache(maxsize=1)
def cpu_fingerprint() -> str:
    """What tells this CPU's kind to a runtime choosing its kernels: the architecture, the model
    name and the instruction-set flags (``/proc/cpuinfo``'s first processor where it exists)."""
    parts = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break  # the first processor's block is enough
                name, _, value = line.partition(":")
                if name.strip() in ("model name", "flags", "Features", "CPU part"):
                    parts.append(f"{name.strip()}={value.strip()}")
    except OSError:
        pass
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _package_version(backend: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime" if backend == "onnx" else "openvino")
    except PackageNotFoundError:
        return "unknown"


def entry_key(backend: str, forward: torch.nn.Module, shape: tuple[int, ...]) -> dict[str, Any]:
    """What a converted graph depends on, with its SHA-256 under ``"key"``.

    Parameters
    ----------
    backend : {"onnx", "openvino"}
    forward : _inference.Forward
        The module converted: its ``output`` and its weights' content are part of the key.
    shape : tuple of int
        One input's shape without the batch, ``(1, D, H, W)``.

    Returns
    -------
    fields : dict
    """
    from .._version import __version__
    from ..models._identity import weights_identity

    fields: dict[str, Any] = {
        "format": FORMAT, "anatcl_sklearn": __version__, "backend": backend,
        "package": _package_version(backend),
        "torch": torch.__version__, "output": getattr(forward, "output", "encoder"),
        "shape": [int(s) for s in shape],
        "weights": weights_identity(getattr(forward, "module", forward), 0),
    }
    fields["key"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    return fields


# ---------------------------------------------------------------- reading an entry
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _why_unusable(entry: Path, fields: dict[str, Any]) -> str | None:
    """None when ``entry`` (a real folder) holds the files its manifest describes, intact."""
    manifest = entry / _MANIFEST
    info = os.lstat(manifest)
    if not stat.S_ISREG(info.st_mode) or info.st_size > 1 << 16:
        return f"{_MANIFEST} is not a small regular file"
    recorded = json.loads(manifest.read_text(encoding="utf-8"))
    if not isinstance(recorded, dict) or recorded.get("fields") != fields:
        return f"{_MANIFEST} records another key"
    files = recorded.get("files")
    if not isinstance(files, dict) or sorted(files) != sorted(FILES[fields["backend"]]):
        return f"{_MANIFEST} lists other files"
    for name, (size, digest) in files.items():
        info = os.lstat(entry / name)
        if not stat.S_ISREG(info.st_mode):
            return f"{name} is not a regular file"
        if info.st_size != size or _sha256(entry / name) != digest:
            return f"{name} differs from what was written (damaged or changed)"
    return None


def _remove(entry: Path) -> None:
    """Remove an entry of ours (a real folder), first renamed so no reader sees it half gone."""
    try:
        if stat.S_ISDIR(os.lstat(entry).st_mode):
            from .._atomic import TEMP_PREFIX, _host

            doomed = entry.with_name(f"{TEMP_PREFIX}{os.getpid()}.{_host()}.{entry.name}.x.tmp")
            os.rename(entry, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
    except OSError:
        pass


def _warn_once(folder: Path, what: str, message: str) -> None:
    with _warned_lock:
        if (str(folder), what) in _warned:
            return
        _warned.add((str(folder), what))
    warn(message, RuntimeWarning)


def _cached(entry: Path, fields: dict[str, Any]):
    """The loaded entry, or None (absent; unusable: removed, or left when not a folder)."""
    try:
        info = os.lstat(entry)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        _warn_once(entry, "not a folder",
                   f"the inference cache holds {entry}, which is not a folder (a symbolic "
                   "link?); it is left alone and the model is converted for this run only.")
        return None
    try:
        why = _why_unusable(entry, fields)
    except (OSError, ValueError, TypeError, RecursionError):  # nested past json's limit
        why = "unreadable"
    if why is not None:
        _remove(entry)
        return None
    try:
        run = BACKENDS[fields["backend"]][2](entry)
    except Exception:  # noqa: BLE001 - a runtime that cannot read it: convert again
        _remove(entry)
        return None
    try:
        recorded = json.loads((entry / _MANIFEST).read_text(encoding="utf-8"))
        run.checked_here = recorded.get("checked_on") == cpu_fingerprint()
    except (OSError, ValueError, AttributeError, RecursionError):
        run.checked_here = False
    return run


# ---------------------------------------------------------------- the builder _inference uses
def build_converted(backend: str, forward: torch.nn.Module, x: torch.Tensor,
                    read_cache: bool = True):
    """``run(x) -> z`` for ``backend``, from the cache when it holds a sound conversion.

    Parameters
    ----------
    backend : {"onnx", "openvino"}
    forward : _inference.Forward
    x : torch.Tensor
        The first batch (only its shape is used).
    read_cache : bool, default=True
        False converts again (the cached entry failed the eager check) and replaces the entry.

    Returns
    -------
    run : callable
        With attributes ``cache_entry``: the entry it was loaded from, or None;
        ``checked_here`` (read back): whether the entry passed its full check on a CPU of
        this kind; ``publish``: None, or (a fresh conversion) the call that keeps it in the
        cache, made by the caller once the conversion passed its check; and ``probe`` where
        the runtime can run the same graph on a small volume.
    """
    convert, save, load = BACKENDS[backend]
    fields = entry_key(backend, forward, tuple(x.shape[1:]))
    root = cache_dir()
    entry = None if root is None else root / backend / fields["key"]
    if entry is not None and read_cache:
        run = _cached(entry, fields)
        if run is not None:
            run.cache_entry = entry
            return run
    model = convert(forward, x)
    if entry is not None and not read_cache:
        _remove(entry)
    run = load(model)
    run.cache_entry = None
    # kept once checked: an entry on disk is one that agreed with the eager forward in full
    run.publish = (None if entry is None else
                   functools.partial(_publish, entry, fields, lambda folder: save(model, folder)))
    return run


def _publish(entry: Path, fields: dict[str, Any], save) -> None:
    """Write ``entry`` whole; a cache that cannot take it warns once per process."""
    from .._atomic import atomic_folder

    def write(tmp: str) -> None:
        folder = Path(tmp)
        save(folder)
        files = {name: [os.path.getsize(folder / name), _sha256(folder / name)]
                 for name in FILES[fields["backend"]]}
        (folder / _MANIFEST).write_text(json.dumps(
            {"fields": fields, "files": files, "checked_on": cpu_fingerprint()}, indent=1),
            encoding="utf-8")

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        if not entry.parent.is_dir():
            raise NotADirectoryError(f"{entry.parent} is not a folder")
        try:
            atomic_folder(entry, write)
        except FileExistsError:  # another run published it first, or a link sits there
            pass
    except Exception as exc:  # noqa: BLE001 - OSError, or the runtime's own (OpenVINO's
        # save_model on a full disk: RuntimeError); the conversion in memory still serves
        _warn_once(entry.parent.parent, "unwritable",
                   f"the converted model could not be kept in the inference cache "
                   f"{entry.parent.parent} ({type(exc).__name__}: {exc}); each run converts "
                   f"it again. Set {CACHE_ENV_VAR} to a writable folder, or to 'off'.")
