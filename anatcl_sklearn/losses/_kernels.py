"""Degrees of positiveness between subjects: age kernels and the AnatCL anatomy kernels.

Every kernel maps per-subject attributes to an (n, n) weight matrix ``w[i, j]``. Inputs may be
tensors or arrays; the output is a torch tensor on the input's device (CPU for arrays), float32
for half-precision inputs and float64 for NumPy float64 inputs. The kernels are differentiable
but AnatCL treats them as constants.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._typing import TensorLike

from ._validation import (
    AGE_KERNELS,
    DESCRIPTORS,
    check_age,
    check_anatomy,
    check_option,
    check_scalar,
)

# Below this norm a region or measure vector counts as zero: its unit vector is zero and its
# cosine with anything is 0 (instead of NaN).
_NORM_EPS = 1e-12


def _squared_differences(age: torch.Tensor) -> torch.Tensor:
    return (age[:, None] - age[None, :]) ** 2


def _age_kernel(age: torch.Tensor, sigma: float, kind: str) -> torch.Tensor:
    """Age kernel on an already checked 1-D tensor (no validation)."""
    sq = _squared_differences(age)
    if kind == "rbf":
        return torch.exp(-sq / (2.0 * sigma**2))
    if kind == "gaussian":
        return torch.exp(-sq / (2.0 * sigma**2)) / (math.sqrt(2.0 * math.pi) * sigma)
    # cauchy: sigma multiplies the squared difference, as in the reference code.
    return 1.0 / (1.0 + sigma * sq)


def rbf_kernel(age: TensorLike, sigma: float = 2.0) -> torch.Tensor:
    """Radial basis function kernel between ages: ``exp(-(a_i - a_j)**2 / (2 sigma**2))``.

    This is the kernel of y-Aware and of the age term of AnatCL; ``w[i, i] = 1`` and every
    weight lies in (0, 1].

    Parameters
    ----------
    age : torch.Tensor or array-like of shape (n_samples,) or (n_samples, 1)
        Ages in years (or any continuous attribute), finite.
    sigma : float, default=2.0
        Bandwidth, in the unit of ``age``; must be > 0.

    Returns
    -------
    weights : torch.Tensor of shape (n_samples, n_samples)
        The symmetric kernel matrix.

    Examples
    --------
    >>> from anatcl_sklearn.losses import rbf_kernel
    >>> rbf_kernel([20.0, 22.0], sigma=2.0)
    tensor([[1.0000, 0.6065],
            [0.6065, 1.0000]], dtype=torch.float64)
    """
    return age_kernel(age, sigma=sigma, kind="rbf")


def gaussian_kernel(age: TensorLike, sigma: float = 2.0) -> torch.Tensor:
    """Normalised Gaussian kernel between ages, as in the reference brain-age code.

    ``exp(-(a_i - a_j)**2 / (2 sigma**2)) / (sqrt(2 pi) sigma)``: the RBF kernel divided by the
    Gaussian density's normalising constant, so ``w[i, i] = 1 / (sqrt(2 pi) sigma)``, which
    exceeds 1 when ``sigma < 0.399``. For the y-Aware loss the constant cancels in the per-anchor
    normalisation; for ExpW it does not (it scales ``1 - w``).

    Parameters
    ----------
    age : torch.Tensor or array-like of shape (n_samples,) or (n_samples, 1)
        Ages in years, finite.
    sigma : float, default=2.0
        Standard deviation, in the unit of ``age``; must be > 0.

    Returns
    -------
    weights : torch.Tensor of shape (n_samples, n_samples)
        The symmetric kernel matrix.
    """
    return age_kernel(age, sigma=sigma, kind="gaussian")


def cauchy_kernel(age: TensorLike, sigma: float = 2.0) -> torch.Tensor:
    """Cauchy kernel between ages, as in the reference brain-age code: ``1 / (1 + sigma (a_i - a_j)**2)``.

    Note that here ``sigma`` (the reference code's "gamma") *multiplies* the squared difference:
    a larger ``sigma`` gives a narrower kernel, the opposite of :func:`rbf_kernel`.
    ``w[i, i] = 1`` and the tails are heavy (polynomial, not exponential), so distant ages keep
    a small positive weight.

    Parameters
    ----------
    age : torch.Tensor or array-like of shape (n_samples,) or (n_samples, 1)
        Ages in years, finite.
    sigma : float, default=2.0
        Scale multiplying the squared age difference, in units of 1 / ``age`` squared; must be > 0.

    Returns
    -------
    weights : torch.Tensor of shape (n_samples, n_samples)
        The symmetric kernel matrix.
    """
    return age_kernel(age, sigma=sigma, kind="cauchy")


def age_kernel(age: TensorLike, sigma: float = 2.0, kind: str = "rbf") -> torch.Tensor:
    """Age kernel chosen by name, for estimators that expose ``kernel=``.

    Parameters
    ----------
    age : torch.Tensor or array-like of shape (n_samples,) or (n_samples, 1)
        Ages in years, finite.
    sigma : float, default=2.0
        Kernel parameter; must be > 0. See :func:`rbf_kernel`, :func:`gaussian_kernel` and
        :func:`cauchy_kernel` for its meaning in each kernel.
    kind : {"rbf", "gaussian", "cauchy"}, default="rbf"
        Which kernel.

    Returns
    -------
    weights : torch.Tensor of shape (n_samples, n_samples)
        The symmetric kernel matrix.
    """
    check_option(kind, "kind", AGE_KERNELS)
    sigma = check_scalar(sigma, "sigma")
    age = check_age(age)
    return _age_kernel(age, sigma, kind)


def _cosine_kernel(anatomy: torch.Tensor, dim: int, n_terms: int) -> torch.Tensor:
    """Mean of cosines between matching sub-vectors, as one matrix product.

    The vectors along ``dim`` are made unit length, flattened side by side, and the Gram matrix
    of the concatenation is the sum of the ``n_terms`` cosines.
    """
    units = F.normalize(anatomy, p=2.0, dim=dim, eps=_NORM_EPS).reshape(anatomy.shape[0], -1)
    return (units @ units.T) / n_terms


def _anatomy_kernel(anatomy: torch.Tensor, descriptor: str) -> torch.Tensor:
    """Anatomy kernel on an already checked (n, R, M) tensor (no validation)."""
    _, n_regions, n_measures = anatomy.shape
    if descriptor == "local":
        return _cosine_kernel(anatomy, dim=2, n_terms=n_regions)
    return _cosine_kernel(anatomy, dim=1, n_terms=n_measures)


def local_anatomy_kernel(anatomy: TensorLike) -> torch.Tensor:
    """AnatCL local descriptor (Eq. 2): mean over regions of the cosine between region vectors.

    ``w[i, j] = (1 / R) sum_r cos(psi_i^r, psi_j^r)`` where ``psi_i^r`` is the vector of the M
    measures (CT, GMV, SA) of region r for subject i. The paper scales each measure to [0, 1]
    first (the "gamma" normalisation); do so before calling (the measures are compared within a
    region, so their units would otherwise dominate the angle). A region whose vector is zero
    contributes a cosine of 0.

    Computed as one matrix product of the concatenated per-region unit vectors divided by R.

    Parameters
    ----------
    anatomy : torch.Tensor or array-like of shape (n_samples, n_regions, n_measures)
        Anatomical measures already scaled to [0, 1], e.g. (n, 68, 3), finite.

    Returns
    -------
    weights : torch.Tensor of shape (n_samples, n_samples)
        The symmetric kernel matrix, in [0, 1] for non-negative inputs.
    """
    anatomy = check_anatomy(anatomy)
    return _anatomy_kernel(anatomy, "local")


def global_anatomy_kernel(anatomy: TensorLike) -> torch.Tensor:
    """AnatCL global descriptor (Eq. 3): mean over measures of the cosine between measure vectors.

    ``w[i, j] = (1 / M) sum_m cos(omega_i^m, omega_j^m)`` where ``omega_i^m`` is the R-vector of
    measure m (e.g. cortical thickness in all 68 regions) for subject i. Cosine is invariant to
    the scale of each measure, so scaling is optional here. A measure whose vector is zero
    contributes a cosine of 0.

    Computed as one matrix product of the concatenated per-measure unit vectors divided by M.

    Parameters
    ----------
    anatomy : torch.Tensor or array-like of shape (n_samples, n_regions, n_measures)
        Anatomical measures, e.g. (n, 68, 3), finite.

    Returns
    -------
    weights : torch.Tensor of shape (n_samples, n_samples)
        The symmetric kernel matrix, in [0, 1] for non-negative inputs.
    """
    anatomy = check_anatomy(anatomy)
    return _anatomy_kernel(anatomy, "global")


def anatomy_kernel(anatomy: TensorLike, descriptor: str = "global") -> torch.Tensor:
    """AnatCL anatomy kernel chosen by name.

    Parameters
    ----------
    anatomy : torch.Tensor or array-like of shape (n_samples, n_regions, n_measures)
        Anatomical measures (scaled to [0, 1] for the local descriptor), finite.
    descriptor : {"global", "local"}, default="global"
        :func:`global_anatomy_kernel` (Eq. 3) or :func:`local_anatomy_kernel` (Eq. 2).

    Returns
    -------
    weights : torch.Tensor of shape (n_samples, n_samples)
        The symmetric kernel matrix.
    """
    check_option(descriptor, "descriptor", DESCRIPTORS)
    anatomy = check_anatomy(anatomy)
    return _anatomy_kernel(anatomy, descriptor)
