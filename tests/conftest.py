"""Shared fixtures: small synthetic brains, the shared real-data folder, quiet warnings.

Two tiers: ``python -m pytest`` runs the fast tier (every public function and error path on
small volumes); ``python -m pytest --runslow`` adds the tests marked ``slow`` (torchrun
processes, the example gallery, the docs build, subprocess round trips, full-size volumes).
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

SMALL_SHAPE = (24, 28, 24)

# Test volumes are small (24x28x24): torch's intra-op threads buy nothing there, and on a busy
# machine they spin against each other and against the other processes. One thread keeps the
# fast tier quick and its timings steady. (Subprocesses set OMP_NUM_THREADS themselves.)
torch.set_num_threads(1)

# Converted models (ONNX Runtime, OpenVINO) go to a cache of this test session, never to the
# user's ~/.cache; subprocesses inherit it. Tests of the cache itself point it elsewhere.
_INFERENCE_CACHE = tempfile.mkdtemp(prefix="anatcl-test-inference-")
os.environ["ANATCL_SKLEARN_INFERENCE_CACHE"] = _INFERENCE_CACHE
atexit.register(shutil.rmtree, _INFERENCE_CACHE, True)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (torchrun, the gallery, the docs build, "
                          "subprocesses, full-size volumes)")


def pytest_collection_modifyitems(config, items):
    """Without --runslow, deselect the slow tier (counted as deselected in the summary)."""
    if config.getoption("--runslow"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]
        config._anatcl_slow_deselected = len(slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = getattr(config, "_anatcl_slow_deselected", 0)
    if n:
        terminalreporter.write_line(f"{n} slow tests deselected: run them with --runslow")


@pytest.fixture(scope="session")
def shared_data_dir():
    """The real FreeSurfer files beside the checkout (absent in a user's clone: skip)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real-data folder {path} is absent (it lives beside the project checkout)")
    return path


@pytest.fixture(scope="session")
def small_brains():
    """40 synthetic OpenBHB-like subjects on a small 24x28x24 grid."""
    from anatcl_sklearn.datasets import make_synthetic_brains

    return make_synthetic_brains(40, shape=SMALL_SHAPE, random_state=0)


@pytest.fixture(autouse=True)
def _quiet_grid_warning():
    """Small test grids differ from 121x145x121 on purpose; tests that check it opt in."""
    import warnings

    from anatcl_sklearn import GridWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        yield


@pytest.fixture
def narrow_resnet(request, monkeypatch):
    """The 3D ResNets with a quarter of their stage widths (16, 32, 64, 128), for the tests whose
    subject is not the network (run keys, checkpoints, plumbing around fit): the same layers,
    blocks and code paths at 1/16 of the parameters, so each fit costs a fraction of a second.
    The real widths are covered by tests/test_models.py and by every test without this fixture;
    a test of a module that uses it throughout opts out with ``@pytest.mark.full_width``.
    """
    from anatcl_sklearn.models import _resnet3d

    if request.node.get_closest_marker("full_width"):
        return
    monkeypatch.setattr(_resnet3d, "_STAGE_WIDTHS", (16, 32, 64, 128))


def assert_close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **kw)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The inference cache of one test (``$ANATCL_SKLEARN_INFERENCE_CACHE``, not created yet),
    its warn-once memory cleared: for the tests of the converted models kept on disk."""
    from anatcl_sklearn.embedder import _converted

    folder = tmp_path / "inference-cache"
    monkeypatch.setenv(_converted.CACHE_ENV_VAR, str(folder))
    monkeypatch.setattr(_converted, "_warned", set())
    return folder
