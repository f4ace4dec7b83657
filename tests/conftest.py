"""Shared fixtures: small synthetic brains, the shared real-data folder, quiet warnings."""

from pathlib import Path

import numpy as np
import pytest

SMALL_SHAPE = (24, 28, 24)


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


def assert_close(a, b, **kw):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), **kw)
