"""anatcl_sklearn.exceptions: one home for every exception and warning, the found stack level."""

import warnings

import pytest

import anatcl_sklearn
from anatcl_sklearn import exceptions


def test_old_import_paths_are_aliases_of_the_public_module():
    from anatcl_sklearn.embedder import NonFiniteLossError
    from anatcl_sklearn.images import GridWarning
    from anatcl_sklearn.images._files import ImageReadError
    from anatcl_sklearn.models._transfer import FetchFailed

    assert NonFiniteLossError is exceptions.NonFiniteLossError is anatcl_sklearn.NonFiniteLossError
    assert GridWarning is exceptions.GridWarning is anatcl_sklearn.GridWarning
    assert ImageReadError is exceptions.ImageReadError is anatcl_sklearn.ImageReadError
    assert FetchFailed is exceptions.FetchFailed


def test_exception_classes_keep_their_bases():
    assert issubclass(exceptions.NonFiniteLossError, FloatingPointError)
    assert issubclass(exceptions.ImageReadError, ValueError)
    assert issubclass(exceptions.GridWarning, UserWarning)
    err = exceptions.InvalidParameterError("The 'sigma' parameter ...")
    assert isinstance(err, ValueError) and isinstance(err, TypeError)
    from sklearn.utils._param_validation import InvalidParameterError

    assert isinstance(err, InvalidParameterError)


def test_warn_points_at_the_first_frame_outside_the_package():
    with pytest.warns(UserWarning, match="here") as record:
        exceptions.warn("here")  # this file is outside anatcl_sklearn: level 2 = this line
    assert record[0].filename == __file__
    assert exceptions.find_stack_level() == 1  # called from outside: the caller's own line


def test_library_warnings_point_at_the_users_line(tmp_path):
    import numpy as np

    X = np.zeros((2, 10, 12, 10), dtype=np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        anatcl_sklearn.check_images(X)  # not OpenBHB's grid: a GridWarning from images/_grid.py
    grid = [w for w in caught if issubclass(w.category, exceptions.GridWarning)]
    assert grid and {w.filename for w in grid} == {__file__}
