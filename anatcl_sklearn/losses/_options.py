"""The vocabulary of the losses, written once: methods, descriptors, kernels and ranges.

Everything that accepts a loss hyper-parameter derives its check from here:
:class:`~anatcl_sklearn.AnatCLEmbedder`'s ``_parameter_constraints``, the loss functions and
modules (:func:`check_param`), and the command lines' argparse ``choices`` and ``type=``
(:func:`anatcl_sklearn.cli._types.in_range`). The constraints use scikit-learn's vocabulary
(:class:`~sklearn.utils._param_validation.Interval`, ``StrOptions``), and :func:`check_param`
is the one function that decides a parameter's range and words the refusal:
"The 'sigma' parameter of AnatCLEmbedder must be a float in the range (0.0, inf). Got -1.0
instead." (an :class:`~anatcl_sklearn.exceptions.InvalidParameterError`).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

from sklearn.utils._param_validation import (
    Interval,
    StrOptions,
    validate_parameter_constraints,
)
from sklearn.utils._param_validation import (
    InvalidParameterError as _SklearnInvalidParameterError,
)
from sklearn.utils._param_validation import make_constraint as _as_constraint

from ..exceptions import InvalidParameterError

__all__ = [
    "AGE_KERNELS",
    "DESCRIPTORS",
    "LOSS_CONSTRAINTS",
    "METHODS",
    "check_param",
    "validate_constraints",
]

#: The pretraining methods: AnatCL and its baselines (Table 1 of the paper).
METHODS = ("anatcl", "yaware", "expw", "simclr", "l1")

#: Accepted values of ``descriptor`` (Eq. 2 is "local", Eq. 3 is "global").
DESCRIPTORS = ("global", "local")

#: Accepted values of ``kernel`` for the age term.
AGE_KERNELS = ("rbf", "gaussian", "cauchy")

#: Positive reals (sigma, temperature, learning rate...): (0, inf).
POSITIVE = Interval(Real, 0, None, closed="neither")
#: Non-negative reals (the lambdas, weight decay): [0, inf).
NON_NEGATIVE = Interval(Real, 0, None, closed="left")

#: The loss hyper-parameters, shared by the loss functions, modules, estimator and CLIs.
LOSS_CONSTRAINTS: dict[str, list[Any]] = {
    "method": [StrOptions(set(METHODS))],
    "descriptor": [StrOptions(set(DESCRIPTORS))],
    "kernel": [StrOptions(set(AGE_KERNELS))],
    "sigma": [POSITIVE],
    "temperature": [POSITIVE],
    "lambda_age": [NON_NEGATIVE],
    "lambda_anat": [NON_NEGATIVE],
}


def validate_constraints(constraints: dict[str, list[Any]], params: dict[str, Any],
                         caller_name: str) -> None:
    """Check ``params`` against ``constraints`` (scikit-learn's vocabulary), one message shape.

    Parameters
    ----------
    constraints : dict
        ``{name: [constraint, ...]}`` as scikit-learn's ``_parameter_constraints``.
    params : dict
        ``{name: value}``; names without constraints are not checked.
    caller_name : str
        The estimator or function named in the message.

    Raises
    ------
    InvalidParameterError
        "The '<name>' parameter of <caller_name> must be <expected>. Got <value> instead."
    """
    for name, value in params.items():
        # scikit-learn counts True as a number; a flag passed as sigma is almost surely a slip.
        if isinstance(value, bool) and name in constraints and not any(
                c in ("boolean", bool) for c in constraints[name]):
            expected = " or ".join(str(_as_constraint(c)) for c in constraints[name])
            raise InvalidParameterError(
                f"The {name!r} parameter of {caller_name} must be {expected}. Got {value!r} "
                "instead.")
    try:
        validate_parameter_constraints(constraints, params, caller_name=caller_name)
    except _SklearnInvalidParameterError as exc:
        raise InvalidParameterError(str(exc)) from None


def check_param(value: Any, name: str, caller_name: str, constraint: Any = None) -> Any:
    """Check one parameter against its constraint (by default ``LOSS_CONSTRAINTS[name]``).

    Parameters
    ----------
    value : object
        The received value.
    name : str
        The parameter's name.
    caller_name : str
        The function or class named in the message.
    constraint : constraint or list of constraints, default=None
        ``None``: the loss vocabulary's constraint of ``name``.

    Returns
    -------
    value : object
        The value, a float for a real interval.
    """
    if constraint is None:
        constraints = LOSS_CONSTRAINTS[name]
    elif isinstance(constraint, list):
        constraints = constraint
    else:
        constraints = [constraint]
    validate_constraints({name: constraints}, {name: value}, caller_name)
    if any(isinstance(c, Interval) and c.type is Real for c in constraints):
        return float(value)
    return value


def integer_interval(low: int | None, high: int | None = None, closed: str = "left") -> Interval:
    """An :class:`Interval` of integers (a shorthand for the constraint tables)."""
    return Interval(Integral, low, high, closed=closed)
