"""Validation of :class:`AnatCLEmbedder` hyper-parameters, in one place.

scikit-learn validates parameters in ``fit`` (``__init__`` only stores them). Each parameter's
range is one row of :data:`PARAMETER_CONSTRAINTS` (scikit-learn's vocabulary: ``Interval``,
``StrOptions``, types), which :class:`AnatCLEmbedder` exposes as ``_parameter_constraints``
and :func:`validate_params` checks through :func:`~anatcl_sklearn.losses._options.
validate_constraints` (one message shape, one exception type); the rules that tie several
parameters together follow in :func:`check_cross_parameters`. The loss vocabulary (methods,
descriptors, kernels, their ranges) comes from :mod:`anatcl_sklearn.losses._options`.
"""

from numbers import Integral

from sklearn.utils._param_validation import Interval, StrOptions

from ..anatomy._training import SCALINGS
from ..exceptions import InvalidParameterError
from ._inference import BACKENDS
from ..losses._options import (
    AGE_KERNELS,
    LOSS_CONSTRAINTS,
    NON_NEGATIVE,
    POSITIVE,
    validate_constraints,
)

KERNELS = AGE_KERNELS  # an alias: the age kernels are written once, in losses/_options.py
OUTPUTS = ("encoder", "projection")
PRECISIONS = ("fp32", "bf16")
AUGMENTATIONS = ("flip", "crop", "cutout", "blur", "noise")
CACHES = ("none", "memory", "device")
CACHE_DTYPES = ("float16", "uint8")

#: The methods whose loss needs age, and the ones that need anatomy (given their lambdas).
_NEEDS_AGE = {"yaware", "expw", "l1"}


def _architectures():
    from ..models import ARCHITECTURES

    return set(ARCHITECTURES)


def _device_types():
    import torch

    return [str, torch.device]


def _non_negative_int():
    return Interval(Integral, 0, None, closed="left")


#: Every parameter of AnatCLEmbedder and what it accepts (scikit-learn's vocabulary). The loss
#: rows are the loss vocabulary's own; batch_size >= 2 when training is a cross-parameter rule.
PARAMETER_CONSTRAINTS = {
    **{name: list(c) for name, c in LOSS_CONSTRAINTS.items()},
    "arch": [StrOptions(_architectures())],
    "augment": [str, list, tuple, None],
    "max_epochs": [_non_negative_int()],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "lr": [POSITIVE],
    "lr_step": [Interval(Integral, 1, None, closed="left")],
    "lr_gamma": [POSITIVE],
    "weight_decay": [NON_NEGATIVE],
    "device": [*_device_types()],
    "distributed": ["boolean", StrOptions({"auto"})],
    "sync_batchnorm": ["boolean"],
    "data_parallel": ["boolean", StrOptions({"auto"})],
    "precision": [StrOptions(set(PRECISIONS))],
    "channels_last": ["boolean"],
    "compile": ["boolean"],
    "inference": [StrOptions(set(BACKENDS))],
    "cache": [StrOptions(set(CACHES))],
    "cache_dtype": [StrOptions(set(CACHE_DTYPES))],
    "pretrained": "no_validation",  # five forms (name, folder, hf://, path, weights): models/
    "fold": [_non_negative_int()],
    "finetune": ["boolean"],
    "conform": ["boolean"],
    "output": [StrOptions(set(OUTPUTS))],
    "anatomy_scaling": [StrOptions(set(SCALINGS))],
    "use_y_as_age": ["boolean"],
    "num_workers": [_non_negative_int()],
    "checkpoint_dir": "no_validation",  # type, folder, writable, free space: embedder/_runs.py
    "early_stopping": [Interval(Integral, 1, None, closed="left"), None],
    "callbacks": [list, tuple, None],
    "net_params": [dict, None],
    "random_state": ["random_state"],
    "verbose": [_non_negative_int()],
}


def parse_augment(augment):
    """Return the tuple of augmentation names requested by ``augment``.

    ``"none"`` (or ``None``) gives ``()``; ``"all"`` every augmentation; a ``"+"``-joined string
    (``"crop+cutout"``) or a list/tuple of names gives those, in canonical order.
    """
    if augment is None or augment == "none":
        return ()
    if augment == "all":
        return AUGMENTATIONS
    if isinstance(augment, str):
        names = [a.strip() for a in augment.split("+")]
    elif isinstance(augment, (list, tuple)):
        names = list(augment)
    else:
        raise TypeError(
            f"augment must be 'none', 'all', a '+'-joined string or a list of names; "
            f"got {augment!r} ({type(augment).__name__})."
        )
    unknown = [a for a in names if a not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"augment={augment!r} names unknown augmentation(s) {unknown}; expected 'none', "
            f"'all' or names from {list(AUGMENTATIONS)}."
        )
    return tuple(a for a in AUGMENTATIONS if a in names)


def validate_params(est):
    """Validate every hyper-parameter of an :class:`AnatCLEmbedder` (called by ``fit``).

    Each value against its row of ``est._parameter_constraints``, then the rules that tie
    parameters together (:func:`check_cross_parameters`). Raises
    :class:`~anatcl_sklearn.exceptions.InvalidParameterError` (a ValueError and a TypeError).
    """
    validate_constraints(type(est)._parameter_constraints, est.get_params(deep=False),
                         type(est).__name__)
    check_cross_parameters(est)


def check_cross_parameters(est):
    """The rules that tie several parameters of an :class:`AnatCLEmbedder` together."""
    parse_augment(est.augment)
    if est.method == "anatcl" and est.lambda_age == 0 and est.lambda_anat == 0:
        raise InvalidParameterError(
            "lambda_age and lambda_anat are both 0: the AnatCL loss would be zero.")
    # a contrastive batch needs two subjects; a frozen encoder embeds one at a time if asked
    if (est.pretrained is None or est.finetune) and est.batch_size < 2:
        raise InvalidParameterError(
            "The 'batch_size' parameter of AnatCLEmbedder must be an int in the range [2, inf) "
            f"when it trains (a contrastive batch needs two subjects). Got {est.batch_size!r} "
            "instead.")
    if est.finetune and est.pretrained is None:
        raise InvalidParameterError("finetune=True needs pretrained weights (pretrained=None).")


def needs_age(est):
    """Whether the configured loss uses age."""
    return est.method in _NEEDS_AGE or (est.method == "anatcl" and est.lambda_age > 0)


def needs_anatomy(est):
    """Whether the configured loss uses anatomy."""
    return est.method == "anatcl" and est.lambda_anat > 0
