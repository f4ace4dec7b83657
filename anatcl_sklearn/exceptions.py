"""Every exception and warning anatcl-sklearn raises, in one public module.

As :mod:`sklearn.exceptions` and :mod:`nilearn` do: catch or filter them from here. The old
import paths (``anatcl_sklearn.images.GridWarning``, ``anatcl_sklearn.embedder.NonFiniteLossError``,
``anatcl_sklearn.images._files.ImageReadError``...) stay as aliases of the same classes.

:func:`warn` issues a warning at the first frame outside this package (and outside the library
wrappers a call passes through: skorch's training loop, scikit-learn's ``set_output`` and
``_fit_context``), so the stack level is found, never counted by hand.
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType
from typing import Any

from sklearn.utils._param_validation import (
    InvalidParameterError as _SklearnInvalidParameterError,
)

__all__ = [
    "FetchFailed",
    "GridWarning",
    "ImageReadError",
    "InvalidParameterError",
    "NonFiniteLossError",
    "find_stack_level",
    "warn",
]


class InvalidParameterError(_SklearnInvalidParameterError):
    """A parameter of an anatcl-sklearn estimator or function is of a wrong type or value.

    Subclasses :class:`ValueError` and :class:`TypeError` (through scikit-learn's
    ``InvalidParameterError``), so ``except ValueError`` and ``except TypeError`` both catch it.
    The message has one shape: "The 'sigma' parameter of AnatCLEmbedder must be a float in the
    range (0.0, inf). Got -1.0 instead."
    """


class NonFiniteLossError(FloatingPointError):
    """Raised when a training loss or gradient is NaN or infinite, before the step is taken.

    The estimator that was fitting is left as it was before ``fit``; the skorch net holding
    the weights of the last good step is the exception's ``net`` attribute (None if the
    failure came before any net existed).
    """

    net: Any = None


class ImageReadError(ValueError):
    """A file that cannot be read; the message names it (a ValueError, as users catch)."""


class FetchFailed(Exception):
    """Downloading released weights failed after the last attempt.

    Parameters
    ----------
    reason : BaseException or str
        The last error.
    attempts : int
        How many attempts were made.
    """

    def __init__(self, reason: BaseException | str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class GridWarning(UserWarning):
    """Images are not on the grid the pretrained weights were trained on.

    The released AnatCL encoders saw CAT12 grey-matter maps of 121 x 145 x 121 voxels at
    1.5 mm in MNI space (OpenBHB, :data:`~anatcl_sklearn.OPENBHB_SHAPE`,
    :data:`~anatcl_sklearn.OPENBHB_AFFINE`). Other grids run through the network (it pools
    globally), but their embeddings are not what the weights learnt to produce: conform the
    images (``AnatCLEmbedder(conform=True)`` or :func:`~anatcl_sklearn.conform_image`), or
    write them on that grid (CAT12 >= 12.8: ``cat.extopts.bb = 16``). Silence it with the
    :mod:`warnings` filters when it is intended.
    """


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _library_wrapper(filename: str) -> bool:
    """Frames of libraries that call back into this package on the user's behalf."""
    path = filename.replace("\\", "/")
    return ("/skorch/" in path
            or path.endswith(("/sklearn/utils/_set_output.py", "/sklearn/base.py")))


def find_stack_level() -> int:
    """The ``stacklevel`` of the first frame outside anatcl-sklearn, for :func:`warnings.warn`.

    Counted from the caller of this function (``stacklevel=1`` is the caller's own line). Frames
    of skorch and of scikit-learn's method wrappers between the user and this package are
    skipped as well.

    Returns
    -------
    stacklevel : int
    """
    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not (filename.startswith(_PACKAGE_DIR) or _library_wrapper(filename)):
            break
        frame = frame.f_back
        level += 1
    return level


def warn(message: str | Warning, category: type[Warning] = UserWarning) -> None:
    """:func:`warnings.warn` at the user's line (the first frame outside anatcl-sklearn).

    Parameters
    ----------
    message : str or Warning
    category : Warning subclass, default=UserWarning
    """
    # find_stack_level counts from this function's frame, the one warnings.warn sees as level 1.
    warnings.warn(message, category, stacklevel=find_stack_level())
