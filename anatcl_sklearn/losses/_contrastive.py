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

import contextlib

import torch

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
# Core, reusable with all-gathered features (distributed training)
# ---------------------------------------------------------------------------------------------


def _compute_dtype(z):
    return torch.float64 if z.dtype == torch.float64 else torch.float32


def _full_precision(z):
    """Context that turns autocast off, so that the loss is computed in float32 on any device."""
    try:
        return torch.autocast(device_type=z.device.type, enabled=False)
    except (RuntimeError, ValueError):  # a device type without autocast support
        return contextlib.nullcontext()


def _normalize_features(z):
    """L2-normalise the last axis in float32/float64, robust to huge and zero norms.

    Dividing by the (detached) largest absolute value first keeps the squared norm far from
    overflow for any finite input; normalisation is scale-invariant, so the value and the
    gradient are unchanged.
    """
    z = z.to(_compute_dtype(z))
    tiny = torch.finfo(z.dtype).tiny
    scale = z.detach().abs().amax(dim=-1, keepdim=True).clamp_min(tiny)
    z = z / scale
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(tiny)


def _self_mask(n_anchor_rows, n_contrast_rows, self_offset_rows, device):
    """Boolean (A, N) matrix, True where anchor row ``a`` meets itself among the contrast rows."""
    anchors = torch.arange(n_anchor_rows, device=device) + self_offset_rows
    contrast = torch.arange(n_contrast_rows, device=device)
    return contrast[None, :] == anchors[:, None]


def _tile_subject_weights(weights, n_views):
    """Expand subject weights (n_a, n_c) to row weights (n_a * V, n_c * V), subject-major."""
    n_a, n_c = weights.shape
    return weights[:, None, :, None].expand(n_a, n_views, n_c, n_views).reshape(n_a * n_views, n_c * n_views)


def _soft_target_infonce(sim, target, self_mask, target_mass):
    """Per-anchor cross-entropy between soft targets and the softmax over the other rows.

    ``loss[a] = sum_{i != a} target[a, i] * (logsumexp_{t != a} sim[a, t] - sim[a, i])``,
    computed as ``target_mass[a] * lse[a] - sum_i target[a, i] * sim[a, i]``.

    Parameters
    ----------
    sim : torch.Tensor of shape (n_anchors, n_contrast)
        Similarities divided by the temperature.
    target : torch.Tensor of shape (n_anchors, n_contrast)
        Non-negative targets, **zero** at ``self_mask``.
    self_mask : torch.Tensor of bool, shape (n_anchors, n_contrast)
        True where the contrast row is the anchor itself.
    target_mass : torch.Tensor of shape (n_anchors,)
        ``target.sum(1)``, passed in because the callers know it exactly.

    Returns
    -------
    loss : torch.Tensor of shape (n_anchors,)
        Per-anchor loss.
    """
    lse = torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1)
    return target_mass * lse - (target * sim).sum(dim=1)


def _row_distribution(weights, self_mask):
    """Per-anchor normalised weights with self excluded, and which anchors have any positive."""
    weights = weights.masked_fill(self_mask, 0.0)
    tiny = torch.finfo(weights.dtype).tiny
    row_sum = weights.sum(dim=1)
    has_positive = row_sum > tiny
    scale = has_positive.to(weights.dtype) / row_sum.clamp_min(tiny)
    return weights * scale[:, None], has_positive.to(weights.dtype)


def _weighted_infonce(sim, weights, self_mask, coefs=None):
    """Per-anchor y-Aware loss (Eq. 1) from row weights, for one or several weight matrices.

    For anchor a and each weight matrix ``w`` with per-row normalisation
    ``p[a, i] = w[a, i] / sum_{j != a} w[a, j]``::

        loss[a] = sum_k coef_k * sum_{i != a} p_k[a, i] * (logsumexp_{t != a} sim[a, t] - sim[a, i])

    All terms share one log-sum-exp. This is the general form, for any row layout (e.g. one
    rank's rows against all-gathered rows with arbitrary weights); :func:`_contrastive_rows`
    computes the same thing from subject weights without materialising one (A, N) matrix per term.

    Parameters
    ----------
    sim : torch.Tensor of shape (n_anchors, n_contrast)
        Similarities divided by the temperature, anchors against every contrast row.
    weights : torch.Tensor of shape (n_anchors, n_contrast) or sequence of them
        Non-negative row weights; the entries at ``self_mask`` are ignored.
    self_mask : torch.Tensor of bool, shape (n_anchors, n_contrast)
        True where the contrast row is the anchor itself (at most one per row).
    coefs : sequence of float, default=None
        One coefficient per weight matrix; all 1 when None.

    Returns
    -------
    loss : torch.Tensor of shape (n_anchors,)
        Per-anchor loss; 0 for anchors without positives in every weight matrix.
    """
    if isinstance(weights, torch.Tensor):
        weights = (weights,)
    if coefs is None:
        coefs = (1.0,) * len(weights)
    target, mass = 0.0, 0.0
    for coef, w in zip(coefs, weights):
        p, has_positive = _row_distribution(w, self_mask)
        target = target + coef * p
        mass = mass + coef * has_positive
    return _soft_target_infonce(sim, target, self_mask, mass)


def _expw_infonce(sim, weights, self_mask, shift):
    """Per-anchor ExpW loss as the released reference code computes it.

    ``loss[a] = sum_{i != a} p[a, i] * (log sum_{k != a} exp((sim[a, k] - m) (1 - w[a, k]))
    - (sim[a, i] - m))`` with ``m = shift`` and ``p`` the per-row normalised weights; 0 for
    anchors without positives.

    Parameters
    ----------
    sim : torch.Tensor of shape (n_anchors, n_contrast)
        Similarities divided by the temperature.
    weights : torch.Tensor of shape (n_anchors, n_contrast)
        Non-negative row weights; the entries at ``self_mask`` are ignored.
    self_mask : torch.Tensor of bool, shape (n_anchors, n_contrast)
        True where the contrast row is the anchor itself.
    shift : float
        The constant ``m`` subtracted from the similarities (``1 / temperature``).

    Returns
    -------
    loss : torch.Tensor of shape (n_anchors,)
        Per-anchor loss.
    """
    shifted = sim - shift
    scaled = (shifted * (1.0 - weights)).masked_fill(self_mask, float("-inf"))
    lse = torch.logsumexp(scaled, dim=1)
    p, has_positive = _row_distribution(weights, self_mask)
    return has_positive * lse - (p * shifted.masked_fill(self_mask, 0.0)).sum(dim=1)


def _subject_target(subject_weights, coefs, n_views, self_offset):
    """Combined per-anchor normalised target at the subject level, and its mass per anchor subject.

    All views of a subject share their normalisation: anchor (i, v) is contrasted with the
    ``n_views`` rows of every other subject and the ``n_views - 1`` other views of subject i, so
    its row sum is ``n_views * sum_{c != i} w[i, c] + (n_views - 1) * w[i, i]``. Summing the
    non-negative parts separately (rather than subtracting ``w[i, i]`` from a full sum) keeps
    tiny off-diagonal weights exact next to ``w[i, i] = 1``.
    """
    n_anchor = subject_weights[0].shape[0]
    rows = torch.arange(n_anchor, device=subject_weights[0].device)
    own_column = rows + self_offset
    target, mass = 0.0, 0.0
    for coef, w in zip(coefs, subject_weights):
        own = w[rows, own_column]
        others = w.index_put((rows, own_column), torch.zeros_like(own)).sum(dim=1)
        row_sum = n_views * others + (n_views - 1) * own
        tiny = torch.finfo(w.dtype).tiny
        has_positive = (row_sum > tiny).to(w.dtype)
        scale = coef * has_positive / row_sum.clamp_min(tiny)
        target = target + w * scale[:, None]
        mass = mass + coef * has_positive
    return target, mass


def _contrastive_rows(
    z_anchor, z_contrast, subject_weights, temperature, *, self_offset=0, coefs=None, method="yaware"
):
    """Mean weighted InfoNCE of anchor subjects against contrast subjects.

    This is the layout-aware core of every public loss. In one process ``z_anchor`` and
    ``z_contrast`` are the same tensor and ``self_offset = 0``. With data parallelism,
    ``z_anchor`` is this rank's embeddings, ``z_contrast`` the all-gathered ones (gathered with
    gradients, e.g. ``torch.distributed.nn.functional.all_gather``), ``subject_weights`` the
    kernel of this rank's subjects against all of them, and ``self_offset`` the index of this
    rank's first subject among the gathered ones.

    Memory: the similarity matrix, its masked copy, the tiled target and their gradients, all
    (A, N) with ``A = n_anchor * n_views`` and ``N = n_contrast * n_views``; nothing larger.

    Parameters
    ----------
    z_anchor : torch.Tensor of shape (n_anchor, n_views, d)
        Embeddings of the anchor subjects (normalised here).
    z_contrast : torch.Tensor of shape (n_contrast, n_views, d)
        Embeddings of all subjects to contrast with; includes the anchor subjects.
    subject_weights : torch.Tensor of shape (n_anchor, n_contrast) or sequence of them
        Non-negative degrees of positiveness between subjects.
    temperature : float
        Softmax temperature.
    self_offset : int, default=0
        Index in ``z_contrast`` of the subject ``z_anchor[0]``.
    coefs : sequence of float, default=None
        One coefficient per weight matrix (y-Aware only); all 1 when None.
    method : {"yaware", "expw"}, default="yaware"
        Which weighted InfoNCE.

    Returns
    -------
    loss : torch.Tensor
        Scalar mean over the ``n_anchor * n_views`` anchors.
    """
    n_anchor, n_views, n_features = z_anchor.shape
    anchors = _normalize_features(z_anchor).reshape(n_anchor * n_views, n_features)
    contrast = anchors if z_contrast is z_anchor else _normalize_features(z_contrast).reshape(-1, n_features)
    sim = (anchors / temperature) @ contrast.T
    self_mask = _self_mask(sim.shape[0], sim.shape[1], self_offset * n_views, sim.device)
    if isinstance(subject_weights, torch.Tensor):
        subject_weights = (subject_weights,)
    subject_weights = [w.to(sim.dtype) for w in subject_weights]
    if method == "expw":
        row_weights = _tile_subject_weights(subject_weights[0], n_views)
        per_anchor = _expw_infonce(sim, row_weights, self_mask, shift=1.0 / temperature)
    else:
        if coefs is None:
            coefs = (1.0,) * len(subject_weights)
        target, mass = _subject_target(subject_weights, coefs, n_views, self_offset)
        n_contrast = target.shape[1]
        # One pass tiles the target to the rows and zeroes the anchor itself.
        target = torch.where(
            self_mask.view(n_anchor, n_views, n_contrast, n_views),
            torch.zeros((), dtype=sim.dtype, device=sim.device),
            target[:, None, :, None],
        ).reshape(sim.shape)
        per_anchor = _soft_target_infonce(sim, target, self_mask, mass.repeat_interleave(n_views))
    return per_anchor.mean()


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


def yaware_loss(z, weights, temperature=0.1):
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


def expw_loss(z, weights, temperature=0.1):
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


def simclr_loss(z, temperature=0.1):
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
    z,
    age,
    anatomy,
    *,
    descriptor="global",
    sigma=2.0,
    lambda_age=1.0,
    lambda_anat=1.0,
    temperature=0.1,
    kernel="rbf",
):
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
