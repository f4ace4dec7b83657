"""All-gather across ranks with gradients flowing back to every rank.

A contrastive loss under data parallelism sees the negatives of other ranks only if the
embeddings are gathered, and it trains correctly only if the gradient of every rank's loss
with respect to a gathered embedding reaches the rank that produced it. Lightly's
``GatherLayer`` once returned each rank only its *own* loss's gradient (lightly #1528), which
silently drops the cross-rank terms; here the backward pass sums the gradients of all ranks'
losses (one ``all_reduce``) before each rank keeps its slice.

We do not use ``torch.distributed.nn.functional.all_gather``: it is deprecated in recent torch
releases, its backward falls back to ``all_to_all`` on backends without ``reduce_scatter``
(gloo), and it requires equal sizes on every rank. ``all_gather`` and ``all_reduce`` exist on
every backend, so the path tested on CPU with gloo is the one that runs on GPUs with NCCL. The
gathered tensors are embeddings (a few kilobytes per step), so summing the whole gathered
gradient instead of reduce-scattering it costs nothing measurable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = ["gather_with_grad"]

# Header exchanged before a gather so that mismatched shapes or dtypes raise on every rank
# instead of hanging or returning garbage: [ndim, dtype code, shape padded with -1].
_MAX_NDIM = 6
_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16, torch.int64, torch.int32,
           torch.bool, torch.uint8)


def _world(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """Return ``(rank, world_size)`` in ``group``, or ``(0, 1)`` without a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group=group), dist.get_world_size(group=group)


def _all_gather_ints(
    values: Sequence[int], device: torch.device, group: dist.ProcessGroup | None = None
) -> list[list[int]]:
    """All-gather a short list of ints (one list per rank) as a list of lists."""
    _, world = _world(group)
    local = torch.tensor(values, dtype=torch.int64, device=device)
    out = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(out, local, group=group)
    return [[int(v) for v in t.tolist()] for t in out]


class _GatherRows(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0; backward sums the gradients over ranks.

    Ranks may hold different numbers of rows (``sizes``): tensors are zero-padded to the
    largest before the collective and the padding is dropped after it.
    """

    @staticmethod
    def forward(ctx, tensor, sizes, group):
        rank, _ = _world(group)
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        n_max = max(sizes)
        padded = tensor.contiguous()
        if tensor.shape[0] < n_max:
            pad = tensor.new_zeros((n_max - tensor.shape[0], *tensor.shape[1:]))
            padded = torch.cat([padded, pad])
        out = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(out, padded, group=group)
        return torch.cat([chunk[:size] for chunk, size in zip(out, sizes)])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        sizes, n_max = ctx.sizes, max(ctx.sizes)
        padded = grad.new_zeros((len(sizes), n_max, *grad.shape[1:]))
        for i, chunk in enumerate(grad.split(sizes)):
            padded[i, : sizes[i]] = chunk
        # Rank r's gradient with respect to the gathered tensor covers every rank's rows; the
        # sum over ranks is the gradient of the sum of all ranks' losses.
        dist.all_reduce(padded, op=dist.ReduceOp.SUM, group=ctx.group)
        return padded[ctx.rank, : sizes[ctx.rank]].clone(), None, None


def _gather_rows(
    tensor: torch.Tensor, sizes: Sequence[int], group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Gather with known per-rank row counts (no header exchange); identity on one rank."""
    if len(sizes) == 1:
        return tensor
    return _GatherRows.apply(tensor, list(sizes), group)


def _header(tensor: torch.Tensor) -> list[int]:
    code = _DTYPES.index(tensor.dtype) if tensor.dtype in _DTYPES else -1
    shape = list(tensor.shape) + [-1] * (_MAX_NDIM - tensor.ndim)
    return [tensor.ndim, code, *shape]


def _describe_header(header: Sequence[int]) -> str:
    ndim, code = header[0], header[1]
    dtype = _DTYPES[code] if code >= 0 else "another dtype"
    return f"shape {tuple(header[2 : 2 + ndim])}, {dtype}"


def gather_with_grad(
    tensor: torch.Tensor, *, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Concatenate a tensor over all ranks along dim 0, differentiably.

    Every rank receives the rows of rank 0, then rank 1, and so on. In the backward pass each
    rank receives, for its own rows, the gradient of the **sum of all ranks' losses**: call
    ``backward`` on every rank (it is a collective). Without an initialised process group, or
    with a single rank, the tensor is returned unchanged.

    Parameters
    ----------
    tensor : torch.Tensor of shape (n_local, ...)
        This rank's rows. The trailing dimensions and the dtype must be the same on every
        rank; ``n_local`` may differ between ranks. With NCCL the tensor must be on this
        rank's GPU.
    group : torch.distributed.ProcessGroup, default=None
        The process group; the default (world) group when None.

    Returns
    -------
    gathered : torch.Tensor of shape (sum of n_local over ranks, ...)
        The concatenation; differentiable with respect to ``tensor``.

    Raises
    ------
    TypeError
        If ``tensor`` is not a torch tensor.
    ValueError
        If ``tensor`` has no dimension or more than 6, or if the ranks disagree on the trailing
        shape or the dtype (raised on every rank, naming the ranks).

    Notes
    -----
    With ``L_r`` the loss of rank ``r`` and ``G`` the gathered tensor, rank ``r`` ends up with
    ``sum_s dL_s/dG[rows of r]`` plus whatever its own loss contributes through ``tensor``
    directly. :class:`~torch.nn.parallel.DistributedDataParallel` then *averages* parameter
    gradients over the ``W`` ranks, so a loss that returns each rank's share of a global mean
    (see :class:`DistributedContrastiveLoss`) trains exactly as the single-process loss on the
    global batch.

    Examples
    --------
    >>> import torch
    >>> from anatcl_sklearn.distributed import gather_with_grad
    >>> z = torch.ones(3, 2, requires_grad=True)
    >>> gather_with_grad(z) is z  # no process group: identity
    True
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor; got {type(tensor).__name__}.")
    if not 1 <= tensor.ndim <= _MAX_NDIM:
        raise ValueError(
            f"tensor must have between 1 and {_MAX_NDIM} dimensions (rows along dim 0); got "
            f"shape {tuple(tensor.shape)}."
        )
    _, world = _world(group)
    if world == 1:
        return tensor
    headers = _all_gather_ints(_header(tensor), tensor.device, group)
    reference = headers[0]
    bad = [r for r, h in enumerate(headers) if h[0] != reference[0] or h[1] != reference[1]
           or h[3:] != reference[3:]]
    if bad:
        shapes = "; ".join(f"rank {r}: {_describe_header(h)}" for r, h in enumerate(headers))
        raise ValueError(
            "gather_with_grad needs the same trailing shape and dtype on every rank (only "
            f"dim 0 may differ); got {shapes}."
        )
    return _gather_rows(tensor, [h[2] for h in headers], group)
