"""Argument checks shared by the loss functions, kernels and their module wrappers.

Every check runs before any pairwise matrix is built, so a bad call fails fast with a message
that names the argument, what was received and what was expected.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions

from .._typing import Device, TensorLike

# The vocabulary (methods, descriptors, kernels, ranges) is written once, in _options.
from ._options import (
    AGE_KERNELS,
    DESCRIPTORS,
    LOSS_CONSTRAINTS,
    NON_NEGATIVE,
    POSITIVE,
    check_param,
)

__all__ = ["AGE_KERNELS", "DESCRIPTORS", "check_option", "check_scalar"]


def _caller_name(depth: int = 2) -> str:
    """The function or class (for ``__init__``) that called the check, named in the message."""
    frame = sys._getframe(depth)
    if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:
        return type(frame.f_locals["self"]).__name__
    return frame.f_code.co_name


def check_scalar(
    value: object, name: str, *, strictly_positive: bool = True, caller: str | None = None
) -> float:
    """Return ``value`` as a float after checking that it is a finite, positive real number.

    The range is the loss vocabulary's (:data:`~._options.LOSS_CONSTRAINTS`) for a known
    ``name``, else ``(0, inf)`` or ``[0, inf)``; the message is scikit-learn's shape ("The
    'sigma' parameter of anatcl_loss must be a float in the range (0.0, inf). Got -1.0
    instead.").

    Parameters
    ----------
    value : object
        The received value.
    name : str
        The argument name used in the error message.
    strictly_positive : bool, default=True
        Require ``value > 0``; otherwise ``value >= 0`` (for names outside the vocabulary).
    caller : str, default=None
        The function or class named in the message (None: the calling function).

    Returns
    -------
    value : float
        The checked value.
    """
    constraint = LOSS_CONSTRAINTS.get(name) or (POSITIVE if strictly_positive else NON_NEGATIVE)
    return check_param(value, name, caller or _caller_name(), constraint)


def check_option(
    value: object, name: str, options: Iterable[str], caller: str | None = None
) -> str:
    """Check that ``value`` is one of ``options``.

    Parameters
    ----------
    value : object
        The received value.
    name : str
        The argument name used in the error message.
    options : tuple of str
        The accepted values.
    caller : str, default=None
        The function or class named in the message (None: the calling function).

    Returns
    -------
    value : str
        The checked value.
    """
    return check_param(value, name, caller or _caller_name(), StrOptions(set(options)))


def as_float_tensor(
    x: TensorLike, name: str, *, device: Device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Convert a tensor, array or sequence to a floating torch tensor without copying if possible.

    Integer and boolean inputs become the default float dtype, half-precision inputs become
    float32 (kernel values of ages stored in bfloat16 would be too coarse), other floating
    tensors keep their dtype unless ``dtype`` is given. The caller's data are never modified.

    Parameters
    ----------
    x : torch.Tensor, numpy.ndarray or array-like
        The values.
    name : str
        The argument name used in error messages.
    device : torch.device or str, default=None
        Move the result to this device.
    dtype : torch.dtype, default=None
        Cast the result to this floating dtype.

    Returns
    -------
    tensor : torch.Tensor
        A floating tensor.
    """
    if isinstance(x, torch.Tensor):
        tensor = x
    else:
        try:
            array = np.asarray(x)
        except Exception as exc:  # ragged lists and other oddities
            raise TypeError(f"{name} must be a tensor or numeric array-like; got {type(x).__name__}.") from exc
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers; got an array of dtype {array.dtype}.")
        # a read-only array (np.load with mmap_mode, a broadcast view) is copied: torch would
        # share it and warn that writes through the tensor are undefined
        tensor = torch.as_tensor(array if array.flags.writeable else array.copy())
    if tensor.is_complex():
        raise TypeError(f"{name} must hold real numbers; got a complex tensor ({tensor.dtype}).")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    elif tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    if device is not None or dtype is not None:
        tensor = tensor.to(device=device, dtype=dtype)
    return tensor


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """Raise ValueError if ``tensor`` holds NaN or infinite values.

    Parameters
    ----------
    tensor : torch.Tensor
        The values to check.
    name : str
        The argument name used in the error message.
    """
    bad = ~torch.isfinite(tensor)
    if bool(bad.any()):
        raise ValueError(
            f"{name} must be finite; it holds {int(bad.sum())} NaN or infinite value(s) "
            f"out of {tensor.numel()}."
        )


def check_features(z: torch.Tensor) -> torch.Tensor:
    """Check the embeddings ``z`` of shape (n_samples, n_views, n_features).

    Parameters
    ----------
    z : torch.Tensor
        Floating embeddings.

    Returns
    -------
    z : torch.Tensor
        The same tensor (not copied).
    """
    if not isinstance(z, torch.Tensor):
        raise TypeError(
            f"z must be a torch.Tensor of shape (n_samples, n_views, n_features); "
            f"got {type(z).__name__}."
        )
    if not z.is_floating_point():
        raise TypeError(f"z must be a floating tensor; got dtype {z.dtype}.")
    if z.ndim != 3:
        raise ValueError(
            f"z must have shape (n_samples, n_views, n_features) (3 dimensions); "
            f"got shape {tuple(z.shape)}. Use z.unsqueeze(1) for a single view."
        )
    n_samples, n_views, n_features = z.shape
    if n_samples < 1 or n_views < 1 or n_features < 1:
        raise ValueError(f"z must have non-empty dimensions; got shape {tuple(z.shape)}.")
    if n_samples * n_views < 2:
        raise ValueError(
            "z must hold at least 2 rows (n_samples * n_views >= 2) so that each anchor has "
            f"something to contrast with; got shape {tuple(z.shape)}."
        )
    return z


def check_age(
    age: TensorLike | None,
    n_samples: int | None = None,
    *,
    device: Device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Check and convert ages of shape (n_samples,) or (n_samples, 1) to a 1-D tensor.

    Parameters
    ----------
    age : torch.Tensor or array-like
        Ages (or any continuous attribute).
    n_samples : int, default=None
        The expected number of subjects (``z.shape[0]``); not checked when None.
    device : torch.device or str, default=None
        Move the result to this device.
    dtype : torch.dtype, default=None
        Cast the result to this dtype.

    Returns
    -------
    age : torch.Tensor of shape (n_samples,)
        The checked ages.
    """
    if age is None:
        raise ValueError("age is required here; got None.")
    age = as_float_tensor(age, "age", device=device, dtype=dtype)
    if age.ndim == 2 and age.shape[1] == 1:
        age = age[:, 0]
    if age.ndim != 1 or age.shape[0] < 1:
        raise ValueError(f"age must have shape (n_samples,) or (n_samples, 1); got shape {tuple(age.shape)}.")
    if n_samples is not None and age.shape[0] != n_samples:
        raise ValueError(
            f"age has {age.shape[0]} values but z has {n_samples} subjects (z.shape[0]); "
            "they must match."
        )
    check_finite(age, "age")
    return age


def check_anatomy(
    anatomy: TensorLike | None,
    n_samples: int | None = None,
    *,
    device: Device | None = None,
    dtype: torch.dtype | None = None,
    non_negative: bool = False,
) -> torch.Tensor:
    """Check and convert anatomical measures of shape (n_samples, n_regions, n_measures).

    Parameters
    ----------
    anatomy : torch.Tensor or array-like
        Anatomical measures, e.g. (n, 68, 3) Desikan CT/GMV/SA.
    n_samples : int, default=None
        The expected number of subjects (``z.shape[0]``); not checked when None.
    device : torch.device or str, default=None
        Move the result to this device.
    dtype : torch.dtype, default=None
        Cast the result to this dtype.
    non_negative : bool, default=False
        Also require every value to be >= 0 (cosine weights must not be negative).

    Returns
    -------
    anatomy : torch.Tensor of shape (n_samples, n_regions, n_measures)
        The checked measures.
    """
    if anatomy is None:
        raise ValueError("anatomy is required here; got None.")
    anatomy = as_float_tensor(anatomy, "anatomy", device=device, dtype=dtype)
    if anatomy.ndim != 3 or min(anatomy.shape) < 1:
        raise ValueError(
            "anatomy must have shape (n_samples, n_regions, n_measures), e.g. (n, 68, 3); "
            f"got shape {tuple(anatomy.shape)}."
        )
    if n_samples is not None and anatomy.shape[0] != n_samples:
        raise ValueError(
            f"anatomy has {anatomy.shape[0]} subjects but z has {n_samples} (z.shape[0]); "
            "they must match."
        )
    check_finite(anatomy, "anatomy")
    if non_negative:
        minimum = float(anatomy.min())
        if minimum < 0:
            raise ValueError(
                f"anatomy must be non-negative; got a minimum of {minimum:.4g}. The AnatCL weights "
                "are cosine similarities of anatomy vectors and must stay in [0, 1]: pass the "
                "measures as FreeSurfer gives them (thickness, volume and area are positive), or "
                "min-max scale them (AnatomyScaler, or anatomy_scaling='minmax' in "
                "AnatCLEmbedder, with or without torchrun), not z-scores."
            )
    return anatomy


def check_weights(
    weights: TensorLike,
    n_samples: int,
    *,
    device: Device | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Check a subject weight matrix of shape (n_samples, n_samples).

    Parameters
    ----------
    weights : torch.Tensor or array-like
        Non-negative, finite degrees of positiveness between subjects.
    n_samples : int
        The expected number of subjects (``z.shape[0]``).
    device : torch.device or str, default=None
        Move the result to this device.
    dtype : torch.dtype, default=None
        Cast the result to this dtype.

    Returns
    -------
    weights : torch.Tensor of shape (n_samples, n_samples)
        The checked weights.
    """
    weights = as_float_tensor(weights, "weights", device=device, dtype=dtype)
    if weights.shape != (n_samples, n_samples):
        raise ValueError(
            f"weights must have shape (n_samples, n_samples) = ({n_samples}, {n_samples}) to match "
            f"z.shape[0]; got shape {tuple(weights.shape)}."
        )
    check_finite(weights, "weights")
    minimum = float(weights.min())
    if minimum < 0:
        raise ValueError(f"weights must be non-negative; got a minimum of {minimum:.4g}.")
    return weights
