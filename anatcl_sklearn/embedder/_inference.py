"""Inference backends for ``transform``: eager PyTorch, ``torch.compile``, ONNX Runtime, OpenVINO.

``AnatCLEmbedder(inference=...)`` (``anatcl-sklearn embed --inference``) picks how the frozen
encoder runs in ``transform``. A non-eager backend is built once per fitted embedder, output,
device, volume shape and batch size (the first batch's), kept on the estimator in
``_inference_cache`` (a :class:`BackendCache`: pickled, copied and cloned empty, so it never
travels with the estimator), and checked against the eager forward on the first image of its
first batch: the relative error ``||z - e|| / ||e||`` (``z`` the backend's embedding, ``e``
eager's) must be at most :data:`RTOL`. A backend that fails to build, or exceeds the bound,
warns and falls back to eager, so ``transform`` always returns the eager model's embeddings up to
:data:`RTOL`; a backend whose package is missing raises an ImportError naming the extra before
any image is read.

``"auto"`` (the default) is eager unless the run is large enough for a build to pay for itself:
on the CPU in float32, from :data:`AUTO_MIN_IMAGES` full-size (121x145x121) images on (or as
many voxels), it takes the first available of :data:`AUTO_ORDER`. The thresholds are
``build time / (eager - backend time per image)``, measured by ``benchmarks/bench_embed.py``
on a 2-core AVX-512 Xeon, with a margin (see benchmarks/RESULTS.md). Off the CPU "auto" stays
eager: nothing was measured there.
"""

from __future__ import annotations

import functools
import math
import shutil
import time
from collections.abc import Callable
from typing import Any

import torch

from ..exceptions import warn
from ..images._grid import OPENBHB_SHAPE
from ._built import BackendCache, Built, _versions
from ._converted import build_converted

BACKENDS = ("auto", "eager", "compile", "onnx", "openvino")

#: Bound on the relative error of a backend's embeddings against the eager forward's, checked
#: on the first image it embeds: ``||z - e||_2 / ||e||_2`` (``max_i`` of it over rows where
#: several are compared, as bench_embed.py does). The backends measured agree within 1e-6
#: in float32 (benchmarks/RESULTS.md); 1e-4 leaves room for other CPUs'
#: kernels while refusing anything that changes an embedding in a way a probe could see.
RTOL = 1e-4

#: The edge of the probe volume (at most; smaller images keep their own shape) on which a
#: conversion read back from the inference cache is checked against the eager forward: the
#: same graph and weights file on ``PROBE_EDGE``^3 uniform voxels (a fixed seed) cost ~0.1 s,
#: where the eager forward of one full-size image costs ~0.8 s of CPU (``_converted.py``).
PROBE_EDGE = 40

#: "auto" tries these in order (fastest first, as measured: OpenVINO 0.39-0.57x eager's time
#: per volume, compile 0.47-0.66x, ONNX Runtime 0.67-0.98x) and takes the first installed.
AUTO_ORDER = ("openvino", "compile", "onnx")

#: From how many full-size images on (121x145x121, or as many voxels) "auto" builds each
#: backend: its build time over the time it saves per image (bench_embed.py's ``build_n``,
#: 7-25 for OpenVINO, 20-80 for compile, 7-400 for ONNX Runtime on a loaded 2-core Xeon),
#: rounded up with a margin for two threads on a quiet machine, where eager is faster and a
#: build pays back more slowly.
AUTO_MIN_IMAGES = {"openvino": 32, "compile": 128, "onnx": 128}

#: The extra that installs each optional backend.
EXTRAS = {"onnx": ("inference-onnx", "onnxruntime onnx"),
          "openvino": ("inference-openvino", "openvino")}


# ---------------------------------------------------------------- availability and choice
def _module_available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def backend_available(name: str) -> bool:
    """Whether backend ``name`` can be built here (its package; a C compiler for compile)."""
    if name == "eager":
        return True
    if name == "onnx":
        return _module_available("onnxruntime") and _module_available("onnx")
    if name == "openvino":
        return _module_available("openvino")
    if name == "compile":  # inductor's CPU code needs a C++ compiler
        return any(shutil.which(cc) is not None for cc in ("g++", "c++", "clang++"))
    return False


def require_backend(name: str) -> None:
    """Raise an ImportError with the install hint when backend ``name``'s package is missing."""
    if name in EXTRAS and not backend_available(name):
        extra, packages = EXTRAS[name]
        raise ImportError(
            f"inference={name!r} needs {packages}, which is not installed: "
            f'pip install "anatcl-sklearn[{extra}]" (or pip install {packages}); or use '
            "inference='eager'.")


def check_inference(value: Any) -> str:
    """``value`` if it names a backend, else the estimator's InvalidParameterError."""
    from ..losses._options import validate_constraints
    from ._params import PARAMETER_CONSTRAINTS

    validate_constraints({"inference": list(PARAMETER_CONSTRAINTS["inference"])},
                         {"inference": value}, "AnatCLEmbedder")
    return str(value)


def choose_backend(requested: str, n_images: int, image_shape: tuple[int, ...],
                   device: torch.device | str = "cpu", precision: str = "fp32") -> str:
    """The backend ``inference=requested`` runs for ``n_images`` images of ``image_shape``.

    Parameters
    ----------
    requested : {"auto", "eager", "compile", "onnx", "openvino"}
    n_images : int
        How many images the run embeds.
    image_shape : tuple of int
        One volume's shape (D, H, W).
    device : torch.device or str, default="cpu"
    precision : {"fp32", "bf16"}, default="fp32"

    Returns
    -------
    backend : str
        ``requested`` itself unless it is ``"auto"``; then ``"eager"`` off the CPU, in
        bfloat16 and for small runs, else the first installed of :data:`AUTO_ORDER` whose
        :data:`AUTO_MIN_IMAGES` the run reaches (in full-size-image equivalents).
    """
    requested = check_inference(requested)
    if requested != "auto":
        return requested
    if torch.device(device).type != "cpu" or precision != "fp32":
        return "eager"
    full_size = n_images * math.prod(image_shape) / math.prod(OPENBHB_SHAPE)
    for name in AUTO_ORDER:
        if full_size >= AUTO_MIN_IMAGES[name] and backend_available(name):
            return name
    return "eager"


# ---------------------------------------------------------------- the forward and its errors
class Forward(torch.nn.Module):
    """The embedding a ``transform`` returns: ``module.encode(x)`` or the projection."""

    def __init__(self, module: torch.nn.Module, output: str) -> None:
        super().__init__()
        self.module = module
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        module: Any = self.module
        return module.encode(x) if self.output == "encoder" else module(x)


def relative_error(z: torch.Tensor, reference: torch.Tensor) -> float:
    """``max_i ||z_i - r_i||_2 / ||r_i||_2`` over the rows (a zero row compares absolutely)."""
    z = z.detach().float().reshape(len(z), -1)
    reference = reference.detach().float().reshape(len(reference), -1)
    if z.shape != reference.shape:
        return math.inf
    diff = torch.linalg.vector_norm(z - reference, dim=1)
    scale = torch.linalg.vector_norm(reference, dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    err = (diff / scale).max().item() if len(z) else 0.0
    return math.inf if not math.isfinite(err) else float(err)


# ---------------------------------------------------------------- the builders
def _build_compile(forward: Forward, x: torch.Tensor):
    from torch._inductor import config as inductor_config

    compiled = torch.compile(forward, dynamic=False, fullgraph=True)
    batch = len(x)

    def run(x):
        n = len(x)
        if n < batch:  # one compiled shape: pad the last, smaller batch (eval BatchNorm)
            pad = x.new_zeros((batch - n, *x.shape[1:]))
            x = torch.cat([x, pad])
        with inductor_config.patch(freezing=True):  # weights folded as constants
            return compiled(x)[:n]

    run(x)  # compiles now: a failure is a build failure
    return run


#: backend: build(forward, first batch) -> run(x). ONNX Runtime's and OpenVINO's convert the
#: model once and keep the conversion on disk (embedder/_converted.py).
BUILDERS: dict[str, Callable[..., Any]] = {
    "compile": _build_compile,
    "onnx": functools.partial(build_converted, "onnx"),
    "openvino": functools.partial(build_converted, "openvino")}


# ---------------------------------------------------------------- the runner transform uses
class Inference:
    """Embed batches with the backend ``est.inference`` asks for, building it on first use.

    Created by ``transform`` before any image is read (unknown value: the estimator's
    InvalidParameterError; missing package: ImportError with the install hint), then called
    on each batch inside ``torch.inference_mode()``.

    Parameters
    ----------
    est : AnatCLEmbedder
        The fitted estimator (its cache, output, precision, channels_last).
    module : torch.nn.Module
        The fitted AnatCLModel, in eval mode.
    device : torch.device
    n_images : int
        How many images this ``transform`` embeds (for ``"auto"``).
    image_shape : tuple of int
    """

    def __init__(self, est: Any, module: torch.nn.Module, device: torch.device,
                 n_images: int, image_shape: tuple[int, ...]) -> None:
        requested = check_inference(getattr(est, "inference", "auto"))
        self.est = est
        self.module = module
        self.device = device
        self.shape = tuple(image_shape)
        self.forward = Forward(module, est.output).eval()  # exporters restore this mode
        self.channels_last = bool(est.channels_last)
        self.backend = choose_backend(requested, n_images, self.shape, device, est.precision)
        if self.backend in ("onnx", "openvino"):
            require_backend(self.backend)
            if device.type != "cpu":
                raise ValueError(f"inference={self.backend!r} runs on the CPU; the embedder is "
                                 f"on {device}. Use inference='eager' or 'compile' there.")
        if self.backend != "eager" and est.precision != "fp32" and self.backend != "compile":
            raise ValueError(f"inference={self.backend!r} runs in float32; precision="
                             f"{est.precision!r} needs inference='eager' or 'compile'.")
        self.built: Built | None = None

    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.forward(x)

    def _key(self, batch: int) -> tuple:
        # ONNX Runtime and OpenVINO take any batch size; compile one (smaller ones padded)
        return (self.backend, self.est.output, self.est.precision, str(self.device),
                self.shape, batch if self.backend == "compile" else None)

    def _cached(self, batch: int) -> Built | None:
        """A built backend for this key that takes a batch of ``batch`` (the smallest)."""
        cache = self.est.__dict__.get("_inference_cache")
        if not cache:
            return None
        key = self._key(batch)
        versions = _versions(self.module)
        fits = [(k[-1] or 0, built) for k, built in cache.items()
                if k[:-1] == key[:-1] and (k[-1] is None or k[-1] >= batch)
                and built.module is self.module and built.versions == versions]
        return min(fits, key=lambda item: item[0])[1] if fits else None

    def _store(self, built: Built) -> Built:
        cache = self.est.__dict__.get("_inference_cache")
        if cache is None:
            cache = self.est.__dict__.setdefault("_inference_cache", BackendCache())
        cache[built.key] = built
        return built

    def _fallback(self, built: Built, why: str, error: float | None = None) -> Built:
        """Eager in ``built``'s place, with a warning saying why."""
        warn(f"inference={self.backend!r} {why}; embedding with the eager forward instead.",
             RuntimeWarning)
        return self._store(Built("eager", self._eager, self.module, built.versions,
                                 built.build_s, built.key, error))

    def _build(self, x: torch.Tensor, ahead: bool = False) -> tuple[Built, torch.Tensor | None]:
        """Build for batch ``x``'s key, cache it, and check it on ``x`` (:meth:`_check`).

        Returns the built backend and its embeddings of ``x`` (None after a fallback), so the
        first batch is not run twice. ``ahead`` (:func:`prebuild`): only the eager embedding
        of ``x``'s first image is computed; the check waits for the first batch.
        """
        versions = _versions(self.module)
        t0 = time.perf_counter()
        built = Built(self.backend, None, self.module, versions, 0.0, self._key(len(x)))
        try:
            built.run = BUILDERS[self.backend](self.forward, x)
            if getattr(built.run, "checked_here", False) and hasattr(built.run, "probe"):
                # read back, and checked in full on a CPU of this kind when it was kept
                error = self._probe(built.run, x)
                if error <= RTOL:
                    built.error = error
                    built.build_s = time.perf_counter() - t0
                    return self._store(built), None
                built.run = build_converted(self.backend, self.forward, x, read_cache=False)
        except Exception as exc:  # noqa: BLE001 - any build failure: eager, with the reason
            return self._fallback(built, f"could not be built ({type(exc).__name__}: "
                                         f"{' '.join(str(exc).split())[:300]})"), None
        built.build_s = time.perf_counter() - t0
        self._store(built)
        if ahead:
            built.reference = (x[:1], self._eager(x[:1]))
            return built, None
        return self._check(built, x)

    def _check(self, built: Built, x: torch.Tensor) -> tuple[Built, torch.Tensor | None]:
        """Run ``built`` on batch ``x`` and compare its first image's embedding with eager's.

        Within :data:`RTOL`: (built, its embeddings of ``x``). A conversion read back from the
        disk cache that disagrees or fails to run is converted afresh and checked again;
        otherwise eager takes its place, with a warning: (eager, None).
        """
        reference, built.reference = built.reference, None
        expected = (reference[1] if reference is not None and torch.equal(x[:1], reference[0])
                    else None)
        try:
            z, error = self._agreement(built.run, x, expected)
            if error > RTOL and getattr(built.run, "cache_entry", None) is not None:
                built.run = build_converted(self.backend, self.forward, x, read_cache=False)
                z, error = self._agreement(built.run, x, expected)
        except Exception as exc:  # noqa: BLE001 - a backend that fails on the batch: eager
            return self._fallback(built, f"could not be built ({type(exc).__name__}: "
                                         f"{' '.join(str(exc).split())[:300]})"), None
        built.error = error
        if error <= RTOL:
            publish = getattr(built.run, "publish", None)
            if publish is not None:  # a fresh conversion, kept now that it is checked
                built.run.publish = None
                publish()
            return built, z
        return self._fallback(built, f"gave embeddings {error:.3g} relative away from the "
                                     f"eager forward's on the first image (bound {RTOL:g})",
                              error), None

    def _agreement(self, run, x: torch.Tensor, expected: torch.Tensor | None):
        """(``run(x)``, the relative error of its first row against ``expected`` or eager's).

        A conversion read back from the disk cache that fails to run (another model's graph
        under an adjusted manifest) gives (None, inf): :meth:`_check` converts afresh.
        """
        try:
            z = run(x)
        except Exception:  # noqa: BLE001
            if getattr(run, "cache_entry", None) is None:
                raise
            return None, math.inf
        # the first image is enough to catch a wrong conversion, and costs 1/len(x) of
        # an eager batch (the whole batch was 40% of the command's overhead over 64 files)
        if expected is None:
            expected = self._eager(x[:1])
        return z, relative_error(z[:1], expected)

    def _probe(self, run, x: torch.Tensor) -> float:
        """The relative error of ``run.probe`` against the eager forward on a probe volume of
        ``x``'s kind (at most :data:`PROBE_EDGE` voxels a side, uniform in [0, 1), a fixed
        seed: torch's own generator is not drawn from); inf when the probe fails to run."""
        shape = tuple(min(int(s), PROBE_EDGE) for s in x.shape[2:])
        generator = torch.Generator().manual_seed(0)
        probe = torch.rand((1, *x.shape[1:2], *shape), generator=generator,
                           dtype=torch.float32).to(x.device)
        try:
            z = run.probe(probe)
        except Exception:  # noqa: BLE001 - another model's graph, a damaged file: convert again
            return math.inf
        return relative_error(z, self._eager(probe))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The embeddings of batch ``x`` (already on the device)."""
        if self.backend == "eager":
            return self._eager(x)
        if self.built is None:
            z = None
            self.built = self._cached(len(x))
            if self.built is None:
                self.built, z = self._build(x)
            elif self.built.reference is not None:  # built ahead: checked on this batch
                self.built, z = self._check(self.built, x)
            if z is not None:  # the check's forward was this batch's
                return z
        return self.built.run(x)


def prebuild(est: Any, load_image: Callable[[], Any], shape: tuple[int, ...],
             n_images: int) -> bool:
    """Build ``est``'s backend before its ``transform`` of ``n_images`` images of ``shape``
    (``anatcl-sklearn embed`` calls it while it checks the files), keeping it in the
    estimator's cache where the transform finds it. A conversion read back from the disk
    cache is checked here on the probe (:meth:`Inference._probe`); a fresh one keeps the eager
    embedding of ``load_image()``, against which the transform's first batch is checked
    without a second forward. Only ONNX Runtime and OpenVINO (any batch size) are built
    ahead: for other backends, or a shape other than the fitted one, no image is read.

    Parameters
    ----------
    est : AnatCLEmbedder
        Fitted.
    load_image : callable
        Returns one of the images to embed (an array of shape ``shape``).
    shape : tuple of int
        (D, H, W) of the images.
    n_images : int
        How many images the transform will embed (for ``inference="auto"``).

    Returns
    -------
    built : bool
        Whether a backend was built (or found built).
    """
    from ._parallel import unwrap_module

    module = unwrap_module(est.net_.module_)
    device = next(module.parameters()).device
    if tuple(shape) != tuple(est.input_shape_):
        return False
    module.eval()
    infer = Inference(est, module, device, n_images, tuple(shape))
    if infer.backend not in ("onnx", "openvino"):
        return False
    if infer._cached(1) is None:
        x = torch.as_tensor(load_image(), dtype=torch.float32)[None, None].to(device)
        with torch.inference_mode():
            infer._build(x, ahead=True)
    return True
