"""The gallery's encoder cache: a second fit loads what the first saved; deleting it retrains."""

import shutil
import warnings

import numpy as np
import pytest

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.evaluation import run_paper_table
from anatcl_sklearn.evaluation._encoder_cache import (
    embed_cached,
    encoder_key,
    fit_or_load,
)

SHAPE = (24, 28, 24)


@pytest.fixture(scope="module")
def brains():
    return make_synthetic_brains(8, shape=SHAPE, random_state=0)


def _embedder(**params):
    params = {"method": "simclr", "batch_size": 4, "max_epochs": 1, "random_state": 0,
              "verbose": 0, **params}
    return AnatCLEmbedder(**params)


@pytest.fixture(autouse=True)
def _small_grid():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        yield


def test_key_follows_parameters_and_data(brains):
    key = encoder_key(_embedder(), brains.images, brains.age, brains.anatomy)
    assert key.startswith("simclr-")
    assert key == encoder_key(_embedder(verbose=1), brains.images, brains.age, brains.anatomy)
    assert key != encoder_key(_embedder(max_epochs=2), brains.images, brains.age, brains.anatomy)
    assert key != encoder_key(_embedder(), brains.images, brains.age + 1, brains.anatomy)
    other = brains.images.copy()
    other[0, 0, 0, 0] += 1
    assert key != encoder_key(_embedder(), other, brains.age, brains.anatomy)


def test_second_fit_loads_and_deleting_retrains(brains, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = fit_or_load(_embedder(), brains.images, age=brains.age, anatomy=brains.anatomy,
                        cache=cache)
    assert not first.loaded and len(first.history) == 1
    assert (first.folder / "config.json").is_file()
    assert [p.name for p in cache.iterdir()] == [first.folder.name]  # no temporary left

    fits = []
    monkeypatch.setattr(AnatCLEmbedder, "fit", _counting(AnatCLEmbedder.fit, fits))
    second = fit_or_load(_embedder(), brains.images, age=brains.age, anatomy=brains.anatomy,
                         cache=cache)
    assert second.loaded and second.folder == first.folder
    assert second.history == first.history
    assert fits == [None]  # only the frozen load, which trains nothing
    np.testing.assert_allclose(second.embedder.transform(brains.images[:3]),
                               first.embedder.transform(brains.images[:3]), rtol=1e-5, atol=1e-6)

    shutil.rmtree(cache)
    third = fit_or_load(_embedder(), brains.images, age=brains.age, anatomy=brains.anatomy,
                        cache=cache)
    assert not third.loaded and fits[-1] is not None and (third.folder / "config.json").is_file()


def _counting(fit, calls):
    def counting_fit(self, X, y=None, **kwargs):
        calls.append(kwargs.get("age"))
        return fit(self, X, y, **kwargs)
    return counting_fit


def test_failed_save_leaves_no_entry(brains, tmp_path, monkeypatch):
    def broken(self, directory, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(AnatCLEmbedder, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        fit_or_load(_embedder(), brains.images, age=brains.age, anatomy=brains.anatomy,
                    cache=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_bad_cache(brains, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        fit_or_load(_embedder(), brains.images, cache=tmp_path / "file")
    with pytest.raises(TypeError, match="cache must be a folder path"):
        fit_or_load(_embedder(), brains.images, cache=3)


def test_embeddings_are_kept_beside_the_encoder(brains, tmp_path):
    class Counting:
        calls = 0

        def transform(self, X):
            Counting.calls += 1
            return np.asarray(X).reshape(len(X), -1)[:, :4].astype(np.float32)

    first = embed_cached(Counting(), brains.images, folder=tmp_path)
    second = embed_cached(Counting(), brains.images, folder=tmp_path)
    assert Counting.calls == 1 and np.array_equal(first, second)
    assert [p.suffix for p in tmp_path.iterdir()] == [".npy"]


def test_run_paper_table_reuses_the_cache(tmp_path):
    pretrain = make_synthetic_brains(8, shape=SHAPE, random_state=0)
    cohort = make_synthetic_brains(30, shape=SHAPE, random_state=1)
    encoders = {"SimCLR": _embedder()}
    kwargs = {"pretrain": pretrain, "cohorts": {"openbhb": cohort}, "methods": encoders,
              "cv": 3, "inner_cv": None, "encoder_cache": tmp_path}
    first = run_paper_table(2, **kwargs)
    second = run_paper_table(2, **kwargs)
    assert first.loaded == [] and second.loaded == ["SimCLR"]
    np.testing.assert_allclose(first.embeddings["SimCLR"]["openbhb"],
                               second.embeddings["SimCLR"]["openbhb"])
    assert list(second.histories["SimCLR"]) == list(first.histories["SimCLR"])
