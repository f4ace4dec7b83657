"""The core of every contrastive loss: Eq. 1 (weighted InfoNCE) on rows of embeddings.

Reusable with all-gathered features (distributed training): :func:`_contrastive_rows`
contrasts local anchors with a possibly gathered batch, and Eq. 1 itself is
:func:`_soft_target_infonce`. The public losses (``losses/_contrastive.py``) and the
distributed loss (``losses/_distributed.py``) reach it through :func:`_contrastive_rows`; the
conventions are written in ``losses/_contrastive.py``'s notes.
"""

import contextlib

import torch


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
