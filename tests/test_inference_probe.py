"""A conversion read back from the inference cache is checked on a small probe volume
(embedder/_inference.py ``Inference._probe``), and a conversion is kept only once checked.

The stand-in runtime (``ProbingBackend``) runs the forward itself and, like ONNX Runtime's and
OpenVINO's loaders, offers ``run.probe``; ``probe_scale`` makes a graph read from disk compute
something else on the probe (another entry's weights under an adjusted manifest). The real
runtimes run where they are installed.
"""

import json
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.embedder import _converted, _inference

SHAPE = (24, 48, 24)  # one side over the probe's 40 voxels: the probe is smaller than an image
PROBE = (24, 40, 24)


def _images(n=3, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


@pytest.fixture
def fitted(narrow_resnet):
    est = AnatCLEmbedder(method="simclr", max_epochs=0, batch_size=2, device="cpu", verbose=0,
                         inference="eager", random_state=0)
    return est.fit(_images(2))


class ProbingBackend:
    """convert/save/load of a stand-in runtime whose runs have a ``probe``."""

    MARKER = b"a converted graph\n"

    def __init__(self):
        self.converted = 0
        self.probed = 0
        self.scale = 1.0  # what a fresh conversion multiplies its output by
        self.disk_scale = 1.0  # what a graph read from disk multiplies its output by
        self.probe_scale = 1.0  # ... and its probe's
        self.probe_raises = False
        self.forward = None

    def convert(self, forward, x):
        self.converted += 1
        self.forward = forward
        return forward

    def save(self, model, folder):
        (folder / "model.onnx").write_bytes(self.MARKER)

    def load(self, model):
        from_disk = not isinstance(model, torch.nn.Module)
        forward = self.forward
        scale = self.disk_scale if from_disk else self.scale
        probe_scale = self.probe_scale if from_disk else self.scale

        def run(x):
            return forward(x) * scale

        def probe(x):
            self.probed += 1
            if self.probe_raises and from_disk:
                raise RuntimeError("another model's graph")
            return forward(x) * probe_scale

        run.probe = probe
        return run


@pytest.fixture
def fake(monkeypatch, fitted):
    backend = ProbingBackend()
    backend.forward = _inference.Forward(fitted.net_.module_, "encoder")
    monkeypatch.setitem(_converted.BACKENDS, "onnx", (backend.convert, backend.save, backend.load))
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    return backend


@pytest.fixture
def eager_shapes(monkeypatch):
    """The shapes the eager forward is called on, in order."""
    shapes = []
    original = _inference.Inference._eager

    def eager(self, x):
        shapes.append(tuple(x.shape))
        return original(self, x)

    monkeypatch.setattr(_inference.Inference, "_eager", eager)
    return shapes


def _embed(est, X=None, inference="onnx", strict=True):
    est.set_params(inference=inference)
    with warnings.catch_warnings():
        if strict:
            warnings.simplefilter("error", RuntimeWarning)  # no fallback, no cache warning
        return est.transform(_images() if X is None else X)


def _fresh(est):
    """Another estimator with the same weights and no built backend (the next run)."""
    return clone(est).fit(_images(2))


def _entries(cache):
    folder = cache / "onnx"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _rewrite_manifest(entry, edit):
    manifest = entry / "entry.json"
    manifest.write_text(json.dumps(edit(json.loads(manifest.read_text()))))


def test_a_conversion_read_back_on_this_cpu_is_checked_on_the_probe(fitted, fake, cache,
                                                                   eager_shapes):
    eager = _embed(fitted, inference="eager")
    eager_shapes.clear()
    first = _embed(fitted)  # converted: checked on the first image in full, then kept
    assert eager_shapes == [(1, 1, *SHAPE)] and fake.probed == 0
    (entry,) = _entries(cache)
    recorded = json.loads((entry / "entry.json").read_text())
    assert recorded["checked_on"] == _converted.cpu_fingerprint()
    eager_shapes.clear()
    again_est = _fresh(fitted)
    again = _embed(again_est)  # read back: the probe only, no full-size eager forward
    assert eager_shapes == [(1, 1, *PROBE)] and fake.probed == 1 and fake.converted == 1
    (built,) = again_est._inference_cache.values()
    assert built.name == "onnx" and built.run.cache_entry == entry
    assert built.error is not None and built.error <= _inference.RTOL
    np.testing.assert_array_equal(first, eager)
    np.testing.assert_array_equal(again, eager)


def test_an_entry_checked_on_another_cpu_is_checked_on_the_first_image(fitted, fake, cache,
                                                                      eager_shapes):
    """A cache shared with another kind of CPU: the kernels chosen here were never checked."""
    _embed(fitted)
    (entry,) = _entries(cache)
    _rewrite_manifest(entry, lambda r: {**r, "checked_on": "another-cpu"})
    eager_shapes.clear()
    _embed(_fresh(fitted))
    assert eager_shapes == [(1, 1, *SHAPE)] and fake.probed == 0 and fake.converted == 1


def test_an_entry_of_the_previous_layout_is_converted_again(fitted, fake, cache):
    """Entries written before they were checked (layout 1, no ``checked_on``) are never read:
    the key changed with the layout."""
    _embed(fitted)
    (entry,) = _entries(cache)
    fields = json.loads((entry / "entry.json").read_text())["fields"]
    assert fields["format"] == _converted.FORMAT == 2


@pytest.mark.parametrize("how", ["disagrees", "raises"])
def test_a_read_back_whose_probe_fails_is_converted_again(fitted, fake, cache, how):
    """Another entry's graph under an adjusted manifest: its probe disagrees (or fails to run);
    the entry is converted again, checked in full, and the embeddings are eager's."""
    eager = _embed(fitted, inference="eager")
    _embed(fitted)
    fake.disk_scale = fake.probe_scale = 2.0
    fake.probe_raises = how == "raises"
    again_est = _fresh(fitted)
    np.testing.assert_array_equal(_embed(again_est), eager)
    assert fake.converted == 2
    (built,) = again_est._inference_cache.values()
    assert built.name == "onnx" and built.run.cache_entry is None
    assert len(_entries(cache)) == 1  # the fresh conversion, kept once checked
    fake.disk_scale = fake.probe_scale = 1.0
    fake.probe_raises = False
    np.testing.assert_array_equal(_embed(_fresh(fitted)), eager)
    assert fake.converted == 2


def test_a_conversion_failing_its_check_is_not_kept(fitted, fake, cache):
    """A fresh conversion that disagrees with eager on the first image: eager, with a warning,
    and nothing on disk (it used to be kept, and read back by every later run)."""
    eager = _embed(fitted, inference="eager")
    fake.scale = 2.0
    with pytest.warns(RuntimeWarning, match="relative away from the eager forward"):
        z = _embed(fitted, strict=False)
    np.testing.assert_array_equal(z, eager)
    assert _entries(cache) == []
    fake.scale = 1.0  # the next run converts again, and keeps what agrees
    np.testing.assert_array_equal(_embed(_fresh(fitted)), eager)
    assert fake.converted == 2 and len(_entries(cache)) == 1


def test_a_conversion_is_kept_by_embeds_build_ahead_once_the_first_batch_agrees(fitted, fake,
                                                                                cache):
    X = _images()
    assert _inference.prebuild(fitted.set_params(inference="onnx"), lambda: X[0], SHAPE, len(X))
    assert _entries(cache) == []  # built and the reference taken; not yet checked
    _embed(fitted, X)
    assert len(_entries(cache)) == 1


def test_the_probe_draws_nothing_from_torchs_generator(fitted, fake, cache):
    _embed(fitted)
    again = _fresh(fitted)
    state = torch.get_rng_state()
    _embed(again)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_real_runtime_read_back_is_checked_on_the_probe(fitted, cache, backend, eager_shapes):
    if not _inference.backend_available(backend):
        pytest.skip(f"{backend} is not installed (optional extra)")
    eager = _embed(fitted, inference="eager")
    _embed(fitted, inference=backend)
    eager_shapes.clear()
    again_est = _fresh(fitted)
    z = _embed(again_est, inference=backend)
    assert eager_shapes == [(1, 1, *PROBE)]
    (built,) = again_est._inference_cache.values()
    assert built.name == backend and built.run.cache_entry is not None
    err = np.linalg.norm(z - eager, axis=1) / np.linalg.norm(eager, axis=1)
    assert err.max() <= _inference.RTOL
