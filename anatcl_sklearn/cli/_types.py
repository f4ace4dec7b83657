"""argparse ``type=`` functions shared by the command lines: numbers checked against their range,
so a bad value is a usage error (exit status 2, one line), never a traceback."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["choices", "number", "parameter"]


def number(
    kind: type[int] | type[float],
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
) -> Callable[[str], float]:
    """A ``type=`` for ``kind`` (int or float) values in range.

    Parameters
    ----------
    kind : type
        ``int`` or ``float``.
    low, high : number, default=None
        Bounds (``None``: unbounded). ``low`` is inclusive unless ``low_open``; ``high`` is
        inclusive.
    low_open : bool, default=False
        Whether ``low`` itself is refused.
    """
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number; got {text}")
        too_low = low is not None and (value <= low if low_open else value < low)
        if too_low or (high is not None and value > high):
            parts = []
            if low is not None:
                parts.append(f"> {low}" if low_open else f">= {low}")
            if high is not None:
                parts.append(f"<= {high}")
            raise argparse.ArgumentTypeError(f"must be {' and '.join(parts)}; got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def parameter(name: str, owner: str = "AnatCLEmbedder") -> Callable[[str], float]:
    """A ``type=`` (or ``choices``) for the estimator parameter ``name``, from its constraint.

    The range is the one row of :data:`anatcl_sklearn.embedder._params.PARAMETER_CONSTRAINTS`
    (scikit-learn's ``Interval``), so a command line refuses exactly what ``fit`` refuses, in
    the same words: ``argument --sigma: must be a float in the range (0.0, inf); got -1``.

    Parameters
    ----------
    name : str
        The :class:`~anatcl_sklearn.AnatCLEmbedder` parameter (``"sigma"``, ``"lr"``...).
    owner : str, default="AnatCLEmbedder"
        Only AnatCLEmbedder's table is known.

    Returns
    -------
    parse : callable
        ``str -> int or float``, raising :class:`argparse.ArgumentTypeError`.
    """
    from numbers import Integral

    from sklearn.utils._param_validation import Interval

    from ..embedder._params import PARAMETER_CONSTRAINTS

    if owner != "AnatCLEmbedder":
        raise ValueError(f"owner must be 'AnatCLEmbedder'; got {owner!r}.")
    interval = next(c for c in PARAMETER_CONSTRAINTS[name] if isinstance(c, Interval))
    kind = int if interval.type is Integral else float

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__}: {text!r}") from None
        if value != value or value not in interval:
            raise argparse.ArgumentTypeError(f"must be {interval}; got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def choices(name: str) -> list[str]:
    """The accepted strings of the estimator parameter ``name`` (argparse ``choices=``), in the
    order the vocabulary writes them (:mod:`anatcl_sklearn.losses._options`)."""
    from ..embedder import _params
    from ..losses import _options

    ordered = {"method": _options.METHODS, "descriptor": _options.DESCRIPTORS,
               "kernel": _options.AGE_KERNELS, "precision": _params.PRECISIONS,
               "cache": _params.CACHES, "cache_dtype": _params.CACHE_DTYPES,
               "output": _params.OUTPUTS, "inference": _params.BACKENDS}
    if name in ordered:
        return list(ordered[name])
    from sklearn.utils._param_validation import StrOptions

    options = next(c for c in _params.PARAMETER_CONSTRAINTS[name] if isinstance(c, StrOptions))
    return sorted(options.options)
