"""Validation of :class:`AnatCLEmbedder` hyper-parameters, in one place.

scikit-learn validates parameters in ``fit`` (``__init__`` only stores them); this module
holds the allowed values and turns a bad value into a ``ValueError``/``TypeError`` that names
the parameter, what was received and what is expected.
"""

import numbers

import numpy as np

from ..anatomy._training import SCALINGS

METHODS = ("anatcl", "yaware", "expw", "simclr", "l1")
DESCRIPTORS = ("global", "local")
KERNELS = ("rbf", "gaussian", "cauchy")
OUTPUTS = ("encoder", "projection")
PRECISIONS = ("fp32", "bf16")
AUGMENTATIONS = ("flip", "crop", "cutout", "blur", "noise")
CACHES = ("none", "memory", "device")
CACHE_DTYPES = ("float16", "uint8")

#: The methods whose loss needs age, and the ones that need anatomy (given their lambdas).
_NEEDS_AGE = {"yaware", "expw", "l1"}


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; expected one of {list(choices)}.")


def _check_number(name, value, *, low=None, low_inclusive=False, integer=False, allow_none=False):
    if value is None and allow_none:
        return
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        expected = "an integer" if integer else "a real number"
        raise TypeError(f"{name} must be {expected}; got {value!r} ({type(value).__name__}).")
    if value != value:  # NaN
        raise ValueError(f"{name} must not be NaN.")
    if low is not None:
        bad = value < low if low_inclusive else value <= low
        if bad:
            op = ">=" if low_inclusive else ">"
            raise ValueError(f"{name} must be {op} {low}; got {value!r}.")


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
    """Validate every hyper-parameter of an :class:`AnatCLEmbedder` (called by ``fit``)."""
    _check_choice("method", est.method, METHODS)
    _check_choice("descriptor", est.descriptor, DESCRIPTORS)
    _check_choice("kernel", est.kernel, KERNELS)
    _check_choice("output", est.output, OUTPUTS)
    _check_choice("precision", est.precision, PRECISIONS)
    _check_choice("anatomy_scaling", est.anatomy_scaling, SCALINGS)
    _check_choice("cache", est.cache, CACHES)
    _check_choice("cache_dtype", est.cache_dtype, CACHE_DTYPES)
    for flag in ("channels_last", "compile", "finetune", "use_y_as_age", "conform",
                 "sync_batchnorm"):
        if not isinstance(getattr(est, flag), (bool, np.bool_)):
            raise TypeError(f"{flag} must be True or False; got {getattr(est, flag)!r}.")
    from ..models import ARCHITECTURES

    _check_choice("arch", est.arch, ARCHITECTURES)
    _check_number("sigma", est.sigma, low=0)
    _check_number("temperature", est.temperature, low=0)
    _check_number("lambda_age", est.lambda_age, low=0, low_inclusive=True)
    _check_number("lambda_anat", est.lambda_anat, low=0, low_inclusive=True)
    if est.method == "anatcl" and est.lambda_age == 0 and est.lambda_anat == 0:
        raise ValueError("lambda_age and lambda_anat are both 0: the AnatCL loss would be zero.")
    _check_number("max_epochs", est.max_epochs, low=0, low_inclusive=True, integer=True)
    # a contrastive batch needs two subjects; a frozen encoder embeds one at a time if asked
    trains = est.pretrained is None or est.finetune
    _check_number("batch_size", est.batch_size, low=2 if trains else 1, low_inclusive=True,
                  integer=True)
    _check_number("lr", est.lr, low=0)
    _check_number("lr_step", est.lr_step, low=1, low_inclusive=True, integer=True)
    _check_number("lr_gamma", est.lr_gamma, low=0)
    _check_number("weight_decay", est.weight_decay, low=0, low_inclusive=True)
    _check_number("fold", est.fold, low=0, low_inclusive=True, integer=True)
    _check_number("num_workers", est.num_workers, low=0, low_inclusive=True, integer=True)
    _check_number("early_stopping", est.early_stopping, low=1, low_inclusive=True,
                  integer=True, allow_none=True)
    _check_number("verbose", est.verbose, low=0, low_inclusive=True, integer=True)
    parse_augment(est.augment)
    if not (est.device == "auto" or isinstance(est.device, str)):
        import torch

        if not isinstance(est.device, torch.device):
            raise TypeError(f"device must be 'auto', a device string or torch.device; got {est.device!r}.")
    if not (isinstance(est.distributed, (bool, np.bool_)) or est.distributed == "auto"):
        raise ValueError(f"distributed must be 'auto', True or False; got {est.distributed!r}.")
    if est.data_parallel not in ("auto", True, False):
        raise ValueError(f"data_parallel must be 'auto', True or False; got {est.data_parallel!r}.")
    if est.net_params is not None and not isinstance(est.net_params, dict):
        raise TypeError(f"net_params must be a dict of skorch parameters or None; got {type(est.net_params).__name__}.")
    if est.callbacks is not None and not isinstance(est.callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of skorch callbacks or None; got {type(est.callbacks).__name__}.")
    if est.finetune and est.pretrained is None:
        raise ValueError("finetune=True needs pretrained weights (pretrained=None).")


def needs_age(est):
    """Whether the configured loss uses age."""
    return est.method in _NEEDS_AGE or (est.method == "anatcl" and est.lambda_age > 0)


def needs_anatomy(est):
    """Whether the configured loss uses anatomy."""
    return est.method == "anatcl" and est.lambda_anat > 0
