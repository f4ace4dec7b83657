"""Converted models kept on disk between runs (embedder/_converted.py), and the first batch of
a built backend run once.

Most tests swap the ONNX backend's convert/save/load for a small stand-in (a file holding a
marker; the forward itself to run), so the cache's logic is tested where onnxruntime and
OpenVINO are not installed (CI); the real backends' round trip runs where they are.
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn._atomic import TEMP_PREFIX
from anatcl_sklearn.embedder import _converted, _inference

SHAPE = (24, 28, 24)


def _images(n=3, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


@pytest.fixture
def fitted(narrow_resnet):
    est = AnatCLEmbedder(method="simclr", max_epochs=0, batch_size=2, device="cpu", verbose=0,
                         inference="eager", random_state=0)
    return est.fit(_images(2))


class FakeBackend:
    """convert/save/load of a stand-in runtime: counts conversions and loads from disk."""

    MARKER = b"a converted graph\n"

    def __init__(self, scale=1.0):
        self.converted = 0
        self.loaded_from_disk = 0
        self.runs = 0
        self.scale = scale  # what a graph read from disk multiplies its output by

    def convert(self, forward, x):
        self.converted += 1
        return forward

    def save(self, model, folder):
        (folder / "model.onnx").write_bytes(self.MARKER)

    def load(self, model):
        if isinstance(model, Path):
            assert (model / "model.onnx").read_bytes() == self.MARKER
            self.loaded_from_disk += 1
            forward, scale = self.forward, self.scale
        else:
            forward, scale = model, 1.0
        self.forward = forward

        def run(x):
            self.runs += 1
            return forward(x) * scale

        return run


@pytest.fixture
def fake(monkeypatch):
    backend = FakeBackend()
    monkeypatch.setitem(_converted.BACKENDS, "onnx", (backend.convert, backend.save, backend.load))
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    return backend


def _embed(est, X=None, inference="onnx"):
    est.set_params(inference=inference)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback, no cache warning
        return est.transform(_images() if X is None else X)


def _entries(cache, backend="onnx"):
    folder = cache / backend
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _fresh(est):
    """A copy with the same weights and no built backend (as the next run would have)."""
    return clone(est).fit(_images(2))


# ---------------------------------------------------------------- kept and reused
def test_a_conversion_is_kept_and_the_next_run_loads_it(fitted, fake, cache):
    fake.forward = _inference.Forward(fitted.net_.module_, "encoder")
    eager = _embed(fitted, inference="eager")
    first = _embed(fitted)
    assert fake.converted == 1 and len(_entries(cache)) == 1
    (entry,) = _entries(cache)
    assert sorted(os.listdir(cache / "onnx" / entry)) == ["entry.json", "model.onnx"]
    again = _embed(_fresh(fitted))  # another estimator, same weights: read, not converted
    assert fake.converted == 1 and fake.loaded_from_disk == 1
    np.testing.assert_array_equal(first, eager)
    np.testing.assert_array_equal(again, eager)


def test_the_first_batch_runs_once(fitted, fake, cache):
    fitted.set_params(batch_size=2)
    _embed(fitted, _images(5))  # batches of 2, 2, 1: three forwards, the check's included
    assert fake.runs == 3


@pytest.mark.parametrize("change", ["weights", "output", "shape"])
def test_other_weights_output_or_shape_get_their_own_entry(fitted, fake, cache, change):
    _embed(fitted)
    other = _fresh(fitted)
    X = _images()
    if change == "weights":
        with torch.no_grad():
            next(other.net_.module_.parameters()).add_(1e-3)
    elif change == "output":
        other.set_params(output="projection")
    else:
        other = AnatCLEmbedder(method="simclr", max_epochs=0, batch_size=2, device="cpu",
                               verbose=0, random_state=0).fit(_images(2)[:, :20])
        X = _images()[:, :20]
    _embed(other, X)
    assert fake.converted == 2 and len(_entries(cache)) == 2


def test_off_keeps_nothing(fitted, fake, cache, monkeypatch):
    monkeypatch.setenv(_converted.CACHE_ENV_VAR, "off")
    _embed(fitted)
    _embed(_fresh(fitted))
    assert fake.converted == 2 and not cache.exists()


def test_the_default_cache_is_inside_the_weights_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(_converted.CACHE_ENV_VAR)
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(tmp_path))
    assert _converted.cache_dir() == tmp_path / "inference"


# ---------------------------------------------------------------- what is found there
def _only_entry(cache):
    (name,) = _entries(cache)
    return cache / "onnx" / name


@pytest.mark.parametrize("damage", ["flipped", "truncated", "manifest", "missing"])
def test_a_damaged_entry_is_converted_again(fitted, fake, cache, damage):
    eager = _embed(fitted, inference="eager")
    _embed(fitted)
    entry = _only_entry(cache)
    model = entry / "model.onnx"
    if damage == "flipped":
        data = bytearray(model.read_bytes())
        data[3] ^= 0xFF
        model.write_bytes(bytes(data))
    elif damage == "truncated":
        model.write_bytes(model.read_bytes()[:5])
    elif damage == "manifest":
        (entry / "entry.json").write_text('{"fields": {"key": "another"}, "files": {}}')
    else:
        model.unlink()
    z = _embed(_fresh(fitted))
    np.testing.assert_array_equal(z, eager)
    assert fake.converted == 2 and fake.loaded_from_disk == 0
    again = _only_entry(cache)  # replaced by a sound one, read by the next run
    _embed(_fresh(fitted))
    assert again.name == entry.name and fake.loaded_from_disk == 1 and fake.converted == 2


def test_an_entry_the_eager_check_refuses_is_converted_again(fitted, fake, cache):
    """Intact files, a wrong graph (another runtime version's bug, a hand-made entry): the
    first-image check catches it, the entry is replaced, the embeddings are eager's."""
    eager = _embed(fitted, inference="eager")
    _embed(fitted)
    fake.scale = 1 + 100 * _inference.RTOL  # what is read from disk is now wrong
    z = _embed(_fresh(fitted))
    np.testing.assert_array_equal(z, eager)
    assert fake.loaded_from_disk == 1 and fake.converted == 2
    assert len(_entries(cache)) == 1


def test_a_link_in_place_of_an_entry_is_left_alone(fitted, fake, cache):
    eager = _embed(fitted, inference="eager")
    _embed(fitted)
    entry = _only_entry(cache)
    mine = cache.parent / "my-folder"
    mine.mkdir()
    (mine / "model.onnx").write_bytes(b"the user's own file")
    import shutil

    shutil.rmtree(entry)
    entry.symlink_to(mine, target_is_directory=True)
    other = _fresh(fitted).set_params(inference="onnx")
    with pytest.warns(RuntimeWarning, match="not a folder.*left alone"):
        z = other.transform(_images())
    np.testing.assert_array_equal(z, eager)
    assert entry.is_symlink() and os.listdir(mine) == ["model.onnx"]
    assert (mine / "model.onnx").read_bytes() == b"the user's own file"


def test_an_unwritable_cache_warns_once_and_still_embeds(fitted, fake, cache):
    cache.parent.mkdir(exist_ok=True)
    cache.write_text("a file where the cache should be")
    eager = _embed(fitted, inference="eager")
    fitted.set_params(inference="onnx")
    with pytest.warns(RuntimeWarning, match="could not be kept in the inference cache.*"
                                            "ANATCL_SKLEARN_INFERENCE_CACHE"):
        z = fitted.transform(_images())
    np.testing.assert_array_equal(z, eager)
    np.testing.assert_array_equal(_embed(_fresh(fitted)), eager)  # no second warning
    assert cache.read_text() == "a file where the cache should be"


def test_a_full_disk_leaves_no_temporary_folder(fitted, fake, cache, monkeypatch):
    def full(model, folder):
        (folder / "model.onnx").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setitem(_converted.BACKENDS, "onnx", (fake.convert, full, fake.load))
    eager = _embed(fitted, inference="eager")
    fitted.set_params(inference="onnx")
    with pytest.warns(RuntimeWarning, match="No space left"):
        z = fitted.transform(_images())
    np.testing.assert_array_equal(z, eager)
    assert os.listdir(cache / "onnx") == []


def test_an_entry_published_meanwhile_by_another_run_is_kept(fitted, fake, cache, monkeypatch):
    """Two runs convert at once: the second to finish finds the first's entry, and keeps it."""
    _embed(fitted)
    entry = _only_entry(cache)
    before = (entry / "entry.json").stat().st_mtime_ns
    monkeypatch.setattr(_converted, "_cached", lambda entry, fields: None)  # did not see it
    z = _embed(_fresh(fitted))
    assert fake.converted == 2 and _only_entry(cache) == entry
    assert (entry / "entry.json").stat().st_mtime_ns == before
    assert not [n for n in os.listdir(cache / "onnx") if n.startswith(TEMP_PREFIX)]
    np.testing.assert_array_equal(z, _embed(fitted, inference="eager"))


# ---------------------------------------------------------------- the real runtimes
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_real_backend_round_trip_through_the_cache(fitted, cache, backend):
    if not _inference.backend_available(backend):
        pytest.skip(f"{backend} is not installed (optional extra)")
    eager = _embed(fitted, inference="eager")
    first = _embed(fitted, inference=backend)
    other = _fresh(fitted)
    again = _embed(other, inference=backend)
    (built,) = other._inference_cache.values()
    assert built.name == backend and built.run.cache_entry is not None
    assert sorted(os.listdir(built.run.cache_entry)) == sorted(
        ("entry.json", *_converted.FILES[backend]))
    for z in (first, again):
        err = np.linalg.norm(z - eager, axis=1) / np.linalg.norm(eager, axis=1)
        assert err.max() <= _inference.RTOL


# ---------------------------------------------------------------- built ahead (embed's prebuild)
def test_built_ahead_is_checked_on_the_first_batch_with_no_extra_forward(fitted, fake, cache):
    X = _images(5)
    fitted.set_params(inference="onnx", batch_size=2)
    assert _inference.prebuild(fitted, lambda: X[0], SHAPE, len(X))
    (built,) = fitted._inference_cache.values()
    assert fake.runs == 0 and built.reference is not None and built.error is None
    z = _embed(fitted, X)
    assert fake.runs == 3  # batches of 2, 2, 1: the check reused the first batch's forward
    assert built.reference is None and built.error <= _inference.RTOL
    np.testing.assert_array_equal(z, _embed(fitted, X, "eager"))


def test_built_ahead_and_disagreeing_falls_back_on_the_first_batch(fitted, monkeypatch):
    monkeypatch.setitem(_inference.BUILDERS, "onnx",
                        lambda forward, x: lambda x: forward(x) * (1 + 10 * _inference.RTOL))
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    X = _images(3)
    eager = _embed(fitted, X, "eager")
    fitted.set_params(inference="onnx")
    assert _inference.prebuild(fitted, lambda: X[0], SHAPE, len(X))
    with pytest.warns(RuntimeWarning, match="relative away.*eager"):
        z = fitted.transform(X)
    np.testing.assert_array_equal(z, eager)
    assert [b.name for b in fitted._inference_cache.values()] == ["eager"]


@pytest.mark.parametrize("same_first_image", [True, False])
def test_the_reference_computed_ahead_is_used_for_its_own_image_only(fitted, fake, cache,
                                                                     same_first_image):
    """The first batch of another transform (another first image) is compared with eager on
    its own first image, never with the embedding computed ahead for another image."""
    X = _images(3)
    fitted.set_params(inference="onnx")
    assert _inference.prebuild(fitted, lambda: X[0], SHAPE, len(X))
    (built,) = fitted._inference_cache.values()
    image, embedding = built.reference
    built.reference = (image, embedding * 2)  # wrong: told only where its own image comes
    Y = X if same_first_image else _images(3, seed=1)
    if same_first_image:
        with pytest.warns(RuntimeWarning, match="relative away"):
            fitted.transform(Y)
    else:
        np.testing.assert_array_equal(_embed(fitted, Y), _embed(fitted, Y, "eager"))


def test_nothing_is_built_ahead_for_eager_compile_or_another_shape(fitted, fake, cache):
    read = []

    def load():
        read.append(1)
        return _images(1)[0]

    for inference in ("eager", "compile"):
        fitted.set_params(inference=inference)
        assert not _inference.prebuild(fitted, load, SHAPE, 10**4)
    fitted.set_params(inference="onnx")
    assert not _inference.prebuild(fitted, load, (20, 28, 24), 10)
    assert read == [] and "_inference_cache" not in vars(fitted)
