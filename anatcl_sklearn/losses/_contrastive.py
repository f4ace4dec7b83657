"""Weighted InfoNCE losses: y-Aware, ExpW, SimCLR (NT-Xent) and AnatCL.

Conventions shared by every function here:

* ``z`` has shape (n, n_views, d): n subjects, each seen in ``n_views`` views (the reference
  code's layout). Rows are flattened subject-major, row ``i * n_views + v``.
* Features are L2-normalised inside the loss (so normalising beforehand changes nothing) and the
  similarity is ``s = cos / temperature``.
* Every anchor (all ``n * n_views`` rows) is contrasted with every other row, never with itself.
  Subject weights (n, n) are tiled to the rows, so the other views of the anchor's own subject
  get weight ``w[i, i]`` (1 for the RBF, Cauchy and cosine kernels) and act as positives.
* Weights are normalised per anchor (per row) over the rows it is contrasted with. An anchor
  whose weights all vanish (sum below the smallest normal float, e.g. an RBF kernel that
  underflows for a subject far from every other with a single view) has no positives: its
  contribution is defined as 0, not NaN.
* The loss is the mean over **all** anchors, those without positives included (they add 0).
  This keeps ``anatcl_loss == lambda_age * L_age + lambda_anat * L_anat`` exact when the two
  terms have different anchors without positives, and keeps the normaliser fixed at
  ``n * n_views``, which is what averaging the losses of equal-sized data-parallel ranks expects.
* The loss is computed in float32 (float64 for float64 inputs), with autocast disabled, and the
  returned scalar has that dtype; bfloat16 / float16 inputs receive gradients in their dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from ._infonce import (  # noqa: F401 - the core's names, kept importable from here
    _compute_dtype,
    _contrastive_rows,
    _full_precision,
    _normalize_features,
    _soft_target_infonce,
    _weighted_infonce,
)
from ._kernels import _age_kernel, _anatomy_kernel
from ._validation import (
    AGE_KERNELS,
    DESCRIPTORS,
    check_age,
    check_anatomy,
    check_features,
    check_option,
    check_scalar,
    check_weights,
)

# ---------------------------------------------------------------------------------------------
# Public losses
# ---------------------------------------------------------------------------------------------


def _weighted_loss(z, weights, temperature, method):
    """Validate a (z, subject weights) pair and compute the y-Aware or ExpW loss over all anchors."""
    temperature = check_scalar(temperature, "temperature")
    check_features(z)
    with _full_precision(z):
        dtype = _compute_dtype(z)
        weights = check_weights(weights, z.shape[0], device=z.device, dtype=dtype)
        return _contrastive_rows(z, z, weights, temperature, method=method)


def yaware_loss(z: torch.Tensor, weights: Any, temperature: float = 0.1) -> torch.Tensor:
    """y-Aware weighted InfoNCE (Eq. 1 of the AnatCL paper; Dufumier et al., MICCAI 2021).

    For every anchor row a (``n * n_views`` of them)::

        L_a = - sum_{i != a} (w_ai / sum_{j != a} w_aj) * log softmax_{t != a}(s_at)[i]

    with ``s = cos / temperature`` and the loss is the mean of ``L_a`` over all anchors.
    The weights are normalised per anchor (rows), as Eq. 1 writes it. Dufumier et al.'s released
    y-Aware code divides by the column sums instead; for a symmetric kernel the two differ as soon
    as rows have different sums, and we follow the paper. Anchors whose weights (self excluded)
    all underflow to 0 contribute 0 (see the module notes).

    Parameters
    ----------
    z : torch.Tensor of shape (n_samples, n_views, n_features)
        Embeddings (normalised inside); any floating dtype, computed in float32 (float64 stays
        float64).
    weights : torch.Tensor or array-like of shape (n_samples, n_samples)
        Non-negative, finite degrees of positiveness between subjects, e.g. :func:`rbf_kernel`
        of the ages; tiled to the views.
    temperature : float, default=0.1
        Softmax temperature; must be > 0.

    Returns
    -------
    loss : torch.Tensor
        Scalar, differentiable with respect to ``z``.
    """
    return _weighted_loss(z, weights, temperature, "yaware")


def expw_loss(z: torch.Tensor, weights: Any, temperature: float = 0.1) -> torch.Tensor:
    """ExpW weighted InfoNCE (Barbano et al., ISBI 2023) as the released reference code computes it.

    With ``s = cos / temperature`` and ``m = 1 / temperature`` (the largest possible similarity,
    which the reference code subtracts as the row maximum "for numerical stability"), for every
    anchor row a::

        L_a = - sum_{i != a} (w_ai / sum_{j != a} w_aj)
              * [(s_ai - m) - log sum_{k != a} exp((s_ak - m) (1 - w_ak))]

    and the loss is the mean over all anchors. Because the shift by ``m`` happens *before* the
    negatives are scaled by ``1 - w``, it does not cancel: ``exp((s - m)(1 - w)) =
    exp(s (1 - w)) * exp(-(1 - w) / temperature)``, so compared with the paper's
    ``exp(s_ak (1 - w_ak))`` every denominator term is multiplied by a factor that grows with
    ``w_ak``, which moves the denominator's mass towards pairs with high weights. It is kept for
    parity with the published numbers. The reference code also multiplies the
    loss by ``temperature / 0.07``; we do not (multiply the result if you need that scale).

    Parameters
    ----------
    z : torch.Tensor of shape (n_samples, n_views, n_features)
        Embeddings (normalised inside).
    weights : torch.Tensor or array-like of shape (n_samples, n_samples)
        Non-negative, finite degrees of positiveness, typically in [0, 1] (e.g.
        :func:`rbf_kernel`); tiled to the views.
    temperature : float, default=0.1
        Softmax temperature; must be > 0.

    Returns
    -------
    loss : torch.Tensor
        Scalar, differentiable with respect to ``z``.
    """
    return _weighted_loss(z, weights, temperature, "expw")


def simclr_loss(z: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's NT-Xent loss: the other views of the same subject are the positives.

    For anchor row a of subject i, ``L_a = - 1 / (V - 1) sum_{b in views of i, b != a}
    log softmax_{t != a}(s_at)[b]``, the mean over all anchors. This is :func:`yaware_loss` with
    identity subject weights.

    Parameters
    ----------
    z : torch.Tensor of shape (n_samples, n_views, n_features)
        Embeddings (normalised inside); ``n_views`` must be at least 2.
    temperature : float, default=0.1
        Softmax temperature; must be > 0.

    Returns
    -------
    loss : torch.Tensor
        Scalar, differentiable with respect to ``z``.
    """
    temperature = check_scalar(temperature, "temperature")
    check_features(z)
    if z.shape[1] < 2:
        raise ValueError(
            f"simclr_loss needs at least 2 views per subject (z.shape[1] >= 2) to have positives; "
            f"got z of shape {tuple(z.shape)}."
        )
    with _full_precision(z):
        eye = torch.eye(z.shape[0], device=z.device, dtype=_compute_dtype(z))
        return _contrastive_rows(z, z, eye, temperature)


def anatcl_loss(
    z: torch.Tensor,
    age: Any,
    anatomy: Any,
    *,
    descriptor: str = "global",
    sigma: float = 2.0,
    lambda_age: float = 1.0,
    lambda_anat: float = 1.0,
    temperature: float = 0.1,
    kernel: str = "rbf",
) -> torch.Tensor:
    """AnatCL loss (Eq. 4): ``lambda_age * L_age + lambda_anat * L_AnatCL``.

    Both terms are y-Aware losses (:func:`yaware_loss`, Eq. 1) on the same embeddings:
    ``L_age`` weighs pairs with an age kernel, ``L_AnatCL`` with the anatomy kernel of
    ``descriptor`` (:func:`global_anatomy_kernel`, Eq. 3, or :func:`local_anatomy_kernel`,
    Eq. 2). They share one similarity matrix and one log-sum-exp. ``lambda_anat=0`` is y-Aware
    (``anatomy`` may then be None), ``lambda_age=0`` the anatomy term alone (``age`` may then
    be None). The paper uses ``lambda_age = lambda_anat = 1``.

    Parameters
    ----------
    z : torch.Tensor of shape (n_samples, n_views, n_features)
        Embeddings (normalised inside); any floating dtype, computed in float32.
    age : torch.Tensor or array-like of shape (n_samples,) or (n_samples, 1), or None
        Ages, finite. Ignored (and may be None) when ``lambda_age == 0``.
    anatomy : torch.Tensor or array-like of shape (n_samples, n_regions, n_measures), or None
        Anatomical measures, finite and non-negative; for the local descriptor scaled to
        [0, 1] per measure. Ignored (and may be None) when ``lambda_anat == 0``.
    descriptor : {"global", "local"}, default="global"
        Which anatomy kernel.
    sigma : float, default=2.0
        Age kernel parameter (years for "rbf" and "gaussian"); must be > 0.
    lambda_age : float, default=1.0
        Weight of the age term; must be >= 0.
    lambda_anat : float, default=1.0
        Weight of the anatomy term; must be >= 0.
    temperature : float, default=0.1
        Softmax temperature; must be > 0.
    kernel : {"rbf", "gaussian", "cauchy"}, default="rbf"
        Age kernel (see :func:`age_kernel`); the paper uses "rbf".

    Returns
    -------
    loss : torch.Tensor
        Scalar, differentiable with respect to ``z``.
    """
    check_option(descriptor, "descriptor", DESCRIPTORS)
    check_option(kernel, "kernel", AGE_KERNELS)
    sigma = check_scalar(sigma, "sigma")
    temperature = check_scalar(temperature, "temperature")
    lambda_age = check_scalar(lambda_age, "lambda_age", strictly_positive=False)
    lambda_anat = check_scalar(lambda_anat, "lambda_anat", strictly_positive=False)
    if lambda_age == 0 and lambda_anat == 0:
        raise ValueError("lambda_age and lambda_anat are both 0; at least one must be > 0.")
    check_features(z)
    n_samples = z.shape[0]
    dtype = _compute_dtype(z)
    # Check everything given, even a term switched off, so that mismatched inputs never pass.
    if age is not None or lambda_age > 0:
        age = check_age(age, n_samples, device=z.device, dtype=dtype)
    if anatomy is not None or lambda_anat > 0:
        anatomy = check_anatomy(anatomy, n_samples, device=z.device, dtype=dtype, non_negative=True)

    with _full_precision(z):
        weights, coefs = [], []
        if lambda_age > 0:
            weights.append(_age_kernel(age, sigma, kernel))
            coefs.append(lambda_age)
        if lambda_anat > 0:
            weights.append(_anatomy_kernel(anatomy, descriptor))
            coefs.append(lambda_anat)
        return _contrastive_rows(z, z, weights, temperature, coefs=coefs)
