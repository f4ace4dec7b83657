"""Inference backends of transform (embedder/_inference.py) and the background reader
(embedder/_prefetch.py): equality with eager, refusals, fallbacks, the cache's lifetime."""

import copy
import pickle
import threading
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.embedder import _inference
from anatcl_sklearn.exceptions import ImageReadError, InvalidParameterError
from anatcl_sklearn.embedder import _prefetch as _prefetch_module
from anatcl_sklearn.embedder._prefetch import prefetch_batches

SHAPE = (24, 28, 24)


def _images(n=5, seed=0):
    return np.random.default_rng(seed).random((n, *SHAPE), dtype=np.float32)


@pytest.fixture
def fitted(narrow_resnet):
    """A frozen (randomly initialised) encoder: fit loads nothing and trains nothing."""
    X = _images(2)
    est = AnatCLEmbedder(method="simclr", max_epochs=0, batch_size=2, device="cpu", verbose=0,
                         inference="eager", random_state=0)
    return est.fit(X)


def _available(name):
    if not _inference.backend_available(name):
        pytest.skip(f"{name} is not installed (optional extra)")


def _embed(est, X, inference):
    est.set_params(inference=inference)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback allowed here
        return est.transform(X)


# ---------------------------------------------------------------- equality with eager
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
@pytest.mark.parametrize("output", ["encoder", "projection"])
def test_backend_equals_eager(fitted, backend, output):
    _available(backend)
    X = _images(5)
    fitted.set_params(output=output, batch_size=2)  # 2 + 2 + a last batch of 1
    eager = _embed(fitted, X, "eager")
    z = _embed(fitted, X, backend)
    assert z.shape == eager.shape and z.dtype == np.float32
    err = np.linalg.norm(z - eager, axis=1) / np.linalg.norm(eager, axis=1)
    assert err.max() <= _inference.RTOL
    (built,) = fitted._inference_cache.values()
    assert built.name == backend and built.error <= _inference.RTOL


@pytest.mark.slow
def test_compile_equals_eager(fitted):
    _available("compile")
    X = _images(3)
    fitted.set_params(batch_size=2)  # the last batch (1) is padded to the compiled shape
    eager = _embed(fitted, X, "eager")
    z = _embed(fitted, X, "compile")
    err = np.linalg.norm(z - eager, axis=1) / np.linalg.norm(eager, axis=1)
    assert err.max() <= _inference.RTOL
    assert [b.name for b in fitted._inference_cache.values()] == ["compile"]


@pytest.mark.parametrize("backend", ["onnx", "compile"])
def test_built_once_per_shape_not_per_batch(fitted, monkeypatch, backend):
    calls = []

    def build(forward, x):
        calls.append(tuple(x.shape))
        return forward

    monkeypatch.setitem(_inference.BUILDERS, backend, build)
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    fitted.set_params(batch_size=2)
    eager = _embed(fitted, _images(5), "eager")
    fitted.set_params(inference=backend)
    first = fitted.transform(_images(5))
    fitted.transform(_images(4, seed=1))  # same key: reused, not rebuilt
    fitted.transform(_images(1, seed=1))  # a smaller first batch: reused too (compile pads)
    assert calls == [(2, 1, *SHAPE)]
    fitted.set_params(batch_size=3)  # a larger batch: compile builds that shape
    fitted.transform(_images(3))
    assert len(calls) == (2 if backend == "compile" else 1)
    np.testing.assert_array_equal(first, eager)
    fitted.set_params(output="projection")  # another output: another build
    fitted.transform(_images(3))
    assert len(calls) == (3 if backend == "compile" else 2)


# ---------------------------------------------------------------- refusals and fallbacks
def test_failed_build_warns_and_falls_back_to_eager(fitted, monkeypatch):
    def broken(forward, x):
        raise RuntimeError("no kernel for this CPU")

    monkeypatch.setitem(_inference.BUILDERS, "onnx", broken)
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    X = _images(3)
    eager = _embed(fitted, X, "eager")
    fitted.set_params(inference="onnx")
    with pytest.warns(RuntimeWarning, match="could not be built.*no kernel.*eager"):
        z = fitted.transform(X)
    np.testing.assert_array_equal(z, eager)
    with warnings.catch_warnings():  # the fallback is cached: no second build, no warning
        warnings.simplefilter("error")
        fitted.transform(X)


def test_mismatch_beyond_bound_falls_back_to_eager(fitted, monkeypatch):
    def perturbed(forward, x):
        return lambda x: forward(x) * (1 + 10 * _inference.RTOL)

    monkeypatch.setitem(_inference.BUILDERS, "openvino", perturbed)
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    X = _images(3)
    eager = _embed(fitted, X, "eager")
    fitted.set_params(inference="openvino")
    with pytest.warns(RuntimeWarning, match=r"0\.001 relative away.*bound 0\.0001.*eager"):
        z = fitted.transform(X)
    np.testing.assert_array_equal(z, eager)


def test_within_bound_is_kept(fitted, monkeypatch):
    def close(forward, x):
        return lambda x: forward(x) * (1 + _inference.RTOL / 10)

    monkeypatch.setitem(_inference.BUILDERS, "openvino", close)
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    X = _images(3)
    eager = _embed(fitted, X, "eager")
    z = _embed(fitted, X, "openvino")
    assert not np.array_equal(z, eager)
    np.testing.assert_allclose(z, eager, rtol=_inference.RTOL)


@pytest.mark.parametrize("backend, extra", [("onnx", "inference-onnx"),
                                            ("openvino", "inference-openvino")])
def test_missing_package_names_the_extra(fitted, monkeypatch, backend, extra):
    monkeypatch.setattr(_inference, "_module_available", lambda name: False)
    read = []
    monkeypatch.setattr(fitted, "_check_X", lambda *a, **k: read.append(1) or 1 / 0)
    fitted.set_params(inference=backend)
    with pytest.raises(ImportError, match=rf'pip install "anatcl-sklearn\[{extra}\]"'):
        _inference.require_backend(backend)
    with pytest.raises(ImportError, match="inference='eager'"):
        _inference.Inference(fitted, fitted.net_.module_, torch.device("cpu"), 3, SHAPE)


def test_missing_package_refused_before_reading(fitted, monkeypatch, tmp_path):
    monkeypatch.setattr(_inference, "_module_available", lambda name: False)
    loads = []
    monkeypatch.setattr(_prefetch_module, "batches",
                        lambda *a, **k: loads.append(1) or pytest.fail("read images"))
    fitted.set_params(inference="openvino")
    with pytest.raises(ImportError, match="openvino"):
        fitted.transform(_images(2))
    assert loads == []


def test_unknown_backend_is_a_parameter_error(fitted):
    fitted.set_params(inference="tensorrt")
    with pytest.raises(InvalidParameterError, match="'inference' parameter"):
        fitted.transform(_images(1))
    with pytest.raises(InvalidParameterError, match="'inference' parameter"):
        AnatCLEmbedder(method="simclr", inference="fast", max_epochs=0).fit(_images(2))


def test_float32_only_backends_refuse_bf16(fitted, monkeypatch):
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    fitted.set_params(inference="onnx", precision="bf16")
    with pytest.raises(ValueError, match="float32.*precision='bf16'"):
        fitted.transform(_images(1))


# ---------------------------------------------------------------- "auto"
def test_auto_is_eager_for_small_runs_and_off_the_cpu(monkeypatch):
    monkeypatch.setattr(_inference, "backend_available", lambda name: True)
    full = (121, 145, 121)
    first = _inference.AUTO_ORDER[0]
    n_min = _inference.AUTO_MIN_IMAGES[first]
    assert _inference.choose_backend("auto", n_min - 1, full) != first
    assert _inference.choose_backend("auto", n_min, full) == first
    assert _inference.choose_backend("auto", n_min, full, precision="bf16") == "eager"
    assert _inference.choose_backend("auto", 10**6, full, device="meta") == "eager"
    # small volumes count in full-size equivalents: 16 tiny images are a handful
    assert _inference.choose_backend("auto", 1000, SHAPE) == "eager"
    assert _inference.choose_backend("onnx", 1, SHAPE) == "onnx"


def test_auto_takes_the_first_installed(monkeypatch):
    monkeypatch.setattr(_inference, "backend_available", lambda name: name == "compile")
    n = max(_inference.AUTO_MIN_IMAGES.values())
    assert _inference.choose_backend("auto", n, (121, 145, 121)) == "compile"
    monkeypatch.setattr(_inference, "backend_available", lambda name: False)
    assert _inference.choose_backend("auto", n, (121, 145, 121)) == "eager"


def test_auto_default_changes_nothing_on_small_runs(fitted):
    X = _images(3)
    eager = _embed(fitted, X, "eager")
    np.testing.assert_array_equal(_embed(fitted, X, "auto"), eager)
    assert "_inference_cache" not in vars(fitted)  # transform left __dict__ alone
    assert AnatCLEmbedder().inference == "auto"


# ---------------------------------------------------------------- the cache's lifetime
def _with_cache(fitted, monkeypatch):
    monkeypatch.setitem(_inference.BUILDERS, "onnx", lambda forward, x: forward)
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    _embed(fitted, _images(2), "onnx")
    assert len(fitted._inference_cache) == 1


def test_pickle_and_copies_drop_the_built_backend(fitted, monkeypatch):
    _with_cache(fitted, monkeypatch)
    for other in (pickle.loads(pickle.dumps(fitted)), copy.deepcopy(fitted)):
        assert len(other._inference_cache) == 0
        np.testing.assert_array_equal(other.transform(_images(2)),
                                      fitted.transform(_images(2)))
    assert "_inference_cache" not in vars(clone(fitted))
    assert len(fitted._inference_cache) == 1  # the original keeps its own


def test_changed_weights_rebuild(fitted, monkeypatch):
    _with_cache(fitted, monkeypatch)
    (before,) = fitted._inference_cache.values()
    with torch.no_grad():
        next(fitted.net_.module_.parameters()).mul_(2)
    fitted.transform(_images(2))
    (after,) = fitted._inference_cache.values()
    assert after is not before


# ---------------------------------------------------------------- the background reader
def _reader_threads():
    return [t for t in threading.enumerate() if t.name == "anatcl-reader"]


def test_prefetch_keeps_order_and_batches():
    data = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    got = list(prefetch_batches(lambda i: data[i], 7, 3))
    assert [len(b) for b in got] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate(got), data)
    assert _reader_threads() == []


def test_prefetch_error_names_the_file_and_ends_the_thread():
    def load(i):
        if i == 4:
            raise OSError("unexpected end of data")
        return np.zeros(2)

    reader = prefetch_batches(load, 6, 2, describe=lambda i: f"sub-{i}.nii.gz")
    assert len(next(reader)) == 2
    with pytest.raises(ImageReadError, match=r"cannot read sub-4\.nii\.gz: unexpected end"):
        list(reader)
    assert _reader_threads() == []


def test_prefetch_keeps_an_error_that_names_its_file():
    def load(i):
        raise ValueError("x.nii has NaN voxels")

    with pytest.raises(ValueError, match="^x.nii has NaN voxels$"):
        list(prefetch_batches(load, 1, 1, describe=lambda i: "x.nii"))


def test_prefetch_thread_ends_when_the_consumer_stops():
    started = threading.Event()

    def load(i):
        started.set()
        return np.zeros(1)

    reader = prefetch_batches(load, 1000, 1, depth=2)
    next(reader)
    started.wait(5)
    assert len(_reader_threads()) == 1
    reader.close()  # what a break, an exception or Ctrl-C in the consumer does
    assert _reader_threads() == []


def test_transform_reader_ends_on_interrupt(fitted, monkeypatch):
    fitted.set_params(batch_size=1)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(_inference.Inference, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fitted.transform(_images(6))
    assert _reader_threads() == []


def test_transform_names_the_file_the_reader_failed_on(fitted, tmp_path):
    paths = []
    for i, volume in enumerate(_images(3)):
        paths.append(tmp_path / f"sub-{i}.npy")
        np.save(paths[-1], volume)
    fitted.set_params(batch_size=1)
    expected = fitted.transform([str(p) for p in paths])
    np.testing.assert_array_equal(expected, fitted.transform(_images(3)))
    images = fitted._check_X([str(p) for p in paths])
    np.save(paths[2], np.full(SHAPE, np.nan, dtype=np.float32))  # damaged after the check
    with pytest.raises(ValueError, match="sub-2.npy"):
        fitted.transform(images)
    assert _reader_threads() == []


# ---------------------------------------------------------------- anatcl-sklearn embed --inference
@pytest.fixture
def cli_files(tmp_path, narrow_resnet):
    import nibabel as nib

    from anatcl_sklearn.models import AnatCLModel

    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (90.0, -126.0, -72.0)
    paths = []
    for i, volume in enumerate(_images(3)):
        paths.append(str(tmp_path / f"s{i}.nii.gz"))
        nib.save(nib.Nifti1Image(volume, affine), paths[-1])
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save({"opts": {"input_shape": list(SHAPE)},
                "model": AnatCLModel("resnet18").state_dict()}, weights)
    return str(weights), paths


def _cli(*argv):
    from anatcl_sklearn.__main__ import main

    try:
        return main(["embed", *map(str, argv)])
    except SystemExit as exc:
        return exc.code


def test_cli_inference_flag_passes_the_backend(cli_files, tmp_path, monkeypatch):
    weights, paths = cli_files
    seen = []
    original = _inference.Inference.__init__

    def spy(self, est, *args):
        seen.append(est.inference)
        original(self, est, *args)

    monkeypatch.setattr(_inference.Inference, "__init__", spy)
    monkeypatch.setitem(_inference.BUILDERS, "onnx", lambda forward, x: forward)
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    for flag in ("eager", "onnx"):
        out = tmp_path / f"{flag}.csv"
        seen.clear()  # the backend built ahead (while the files are checked), then transform
        assert _cli(*paths, "--weights", weights, "--inference", flag, "-o", out, "-q") == 0
        assert set(seen) == {flag}
    import pandas as pd

    a, b = (pd.read_csv(tmp_path / f"{f}.csv") for f in ("eager", "onnx"))
    np.testing.assert_array_equal(a.iloc[:, 1:].to_numpy(), b.iloc[:, 1:].to_numpy())
    assert _cli(*paths, "--weights", weights, "-o", tmp_path / "a.csv", "-q") == 0
    assert seen[-1] == "eager"  # auto: three small images are a handful


def test_cli_missing_backend_is_one_line_with_the_hint(cli_files, tmp_path, monkeypatch, capsys):
    weights, paths = cli_files
    monkeypatch.setattr(_inference, "_module_available", lambda name: False)
    status = _cli(*paths, "--weights", weights, "--inference", "openvino", "-o",
                  tmp_path / "o.csv")
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert 'pip install "anatcl-sklearn[inference-openvino]"' in err[0]
    assert "--inference openvino needs" in err[0] and "use --inference eager" in err[0]
    assert not (tmp_path / "o.csv").exists()
    assert _cli(*paths, "--inference", "tensorrt", "-o", tmp_path / "o.csv") == 2


def test_volumes_in_memory_are_batched_without_the_reader_thread(fitted, monkeypatch, tmp_path):
    """Arrays and volumes read ahead are copies from memory: the background reader would only
    interrupt the forward's threads. Files not read ahead still go through it."""
    import nibabel as nib

    from anatcl_sklearn import check_images
    from anatcl_sklearn.embedder import _prefetch
    from anatcl_sklearn.images import OPENBHB_AFFINE

    used = []
    original = _prefetch.prefetch_batches
    monkeypatch.setattr(_prefetch, "prefetch_batches",
                        lambda *a, **k: used.append(1) or original(*a, **k))
    X = _images(3)
    eager = _embed(fitted, X, "eager")
    assert used == []
    paths = []
    for i, volume in enumerate(X):
        paths.append(str(tmp_path / f"s{i}.nii.gz"))
        nib.save(nib.Nifti1Image(volume, OPENBHB_AFFINE), paths[-1])
    np.testing.assert_array_equal(fitted.transform(paths), eager)
    assert used == [1]
    images = check_images(paths, check_finite="auto")
    images._read_ahead(1 << 30)
    np.testing.assert_array_equal(fitted.transform(images), eager)
    assert used == [1] and len(images._warm) == 0  # each volume read ahead used once
