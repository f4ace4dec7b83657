"""The contrastive losses of :mod:`anatcl_sklearn.losses`, each rank against the global batch.

Each rank passes its local embeddings ``z`` (n_local, n_views, d) and its local age and
anatomy. The module all-gathers ``z`` with gradients and the metadata without, computes the
kernels on the global batch (so every weight is exactly the single-process one) and evaluates
the anchors of this rank against every row of the global batch with the losses' shared core
:func:`~anatcl_sklearn.losses._contrastive._contrastive_rows`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .._typing import TensorLike

from ._contrastive import _compute_dtype, _contrastive_rows, _full_precision
from ._gather import _all_gather_ints, _gather_rows, _world
from ._kernels import _age_kernel, _anatomy_kernel
from ._validation import (
    AGE_KERNELS,
    DESCRIPTORS,
    check_age,
    check_anatomy,
    check_option,
    check_scalar,
)

__all__ = ["DistributedContrastiveLoss", "METHODS"]

#: The objectives :class:`DistributedContrastiveLoss` computes, and the parameters of each.
METHODS = {
    "anatcl": ("descriptor", "sigma", "lambda_age", "lambda_anat", "temperature", "kernel"),
    "yaware": ("sigma", "temperature", "kernel"),
    "expw": ("sigma", "temperature", "kernel"),
    "simclr": ("temperature",),
}

_DEFAULTS = {"descriptor": "global", "sigma": 2.0, "lambda_age": 1.0, "lambda_anat": 1.0,
             "temperature": 0.1, "kernel": "rbf"}


def _collective_device(z, group):
    """Where the small header tensors live: with z, or on this rank's GPU for NCCL."""
    if isinstance(z, torch.Tensor):
        return z.device
    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _check_local_z(z):
    """Like the losses' ``check_features`` but without the 2-row minimum, which is global here."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(
            "z must be a torch.Tensor of shape (n_local, n_views, n_features); "
            f"got {type(z).__name__}."
        )
    if not z.is_floating_point():
        raise TypeError(f"z must be a floating tensor; got dtype {z.dtype}.")
    if z.ndim != 3 or min(z.shape) < 1:
        raise ValueError(
            "z must have shape (n_local, n_views, n_features) with no empty dimension; got "
            f"shape {tuple(z.shape)}. Use z.unsqueeze(1) for a single view."
        )


class DistributedContrastiveLoss(nn.Module):
    """AnatCL, y-Aware, ExpW or SimCLR loss of this rank's anchors against the global batch.

    Under :class:`~torch.nn.parallel.DistributedDataParallel` each rank computes its embeddings
    on its shard of the batch. This module all-gathers them **with gradients**
    (:func:`gather_with_grad`) together with age and anatomy, so that every anchor is
    contrasted with every subject of the global batch, as in a single-process run, and returns
    this rank's share of the global mean loss.

    Parameters
    ----------
    method : {"anatcl", "yaware", "expw", "simclr"}, default="anatcl"
        The objective, as :func:`~anatcl_sklearn.losses.anatcl_loss`,
        :func:`~anatcl_sklearn.losses.yaware_loss` (with :func:`~anatcl_sklearn.losses.age_kernel`
        weights), :func:`~anatcl_sklearn.losses.expw_loss` or
        :func:`~anatcl_sklearn.losses.simclr_loss`.
    group : torch.distributed.ProcessGroup, default=None
        The process group; the default (world) group when None.
    **loss_params
        The parameters of the method, checked here: ``descriptor`` ("global"), ``sigma``
        (2.0), ``lambda_age`` (1.0), ``lambda_anat`` (1.0), ``temperature`` (0.1) and
        ``kernel`` ("rbf") for "anatcl"; ``sigma``, ``temperature`` and ``kernel`` for
        "yaware" and "expw"; ``temperature`` for "simclr". See :data:`METHODS`.

    Notes
    -----
    **Scaling.** With ``W`` ranks holding ``n_r`` subjects each (``N`` in all), rank ``r``
    returns ``L_r * n_r * W / N`` where ``L_r`` is the mean loss of its anchors; with equal
    shards (what :class:`~torch.utils.data.distributed.DistributedSampler` gives) that is
    ``L_r`` itself. The mean of the returned values over ranks is then exactly the
    single-process loss on the global batch. In backward, the gradient reaching rank ``r``'s
    ``z`` is ``W`` times the slice of the single-process gradient (it sums all ranks' losses);
    DDP's averaging of parameter gradients over the ``W`` ranks removes that factor, so the
    parameters get exactly the single-process gradient. Every rank must call ``backward``.

    **Anatomy scaling.** For the local descriptor, anatomy must already be min-max scaled with
    an :class:`~anatcl_sklearn.anatomy.AnatomyScaler` fitted on the whole training set (as
    ``AnatCLEmbedder.fit`` does on every rank), never on one rank's batch.

    **Inputs checked on every rank.** If one rank receives bad inputs it raises its error and
    the other ranks raise a ``RuntimeError`` naming it, instead of waiting in a collective.

    Examples
    --------
    >>> import torch
    >>> from anatcl_sklearn.distributed import DistributedContrastiveLoss
    >>> loss = DistributedContrastiveLoss("yaware", sigma=2.0)
    >>> z = torch.randn(4, 2, 8, requires_grad=True)
    >>> value = loss(z, age=torch.tensor([20.0, 30.0, 40.0, 50.0]))  # one process: yaware_loss
    >>> value.ndim
    0
    """

    def __init__(
        self, method: str = "anatcl", *, group: dist.ProcessGroup | None = None, **loss_params: Any
    ) -> None:
        super().__init__()
        self.method = check_option(method, "method", tuple(METHODS))
        allowed = METHODS[method]
        unknown = sorted(set(loss_params) - set(allowed))
        if unknown:
            raise TypeError(
                f"DistributedContrastiveLoss(method={method!r}) got unexpected parameter(s) "
                f"{unknown}; it accepts {list(allowed)}."
            )
        params = {key: loss_params.get(key, _DEFAULTS[key]) for key in allowed}
        self.temperature = check_scalar(params["temperature"], "temperature")
        if "sigma" in params:
            self.sigma = check_scalar(params["sigma"], "sigma")
            self.kernel = check_option(params["kernel"], "kernel", AGE_KERNELS)
        if method == "anatcl":
            self.descriptor = check_option(params["descriptor"], "descriptor", DESCRIPTORS)
            self.lambda_age = check_scalar(params["lambda_age"], "lambda_age", strictly_positive=False)
            self.lambda_anat = check_scalar(params["lambda_anat"], "lambda_anat", strictly_positive=False)
            if self.lambda_age == 0 and self.lambda_anat == 0:
                raise ValueError("lambda_age and lambda_anat are both 0; at least one must be > 0.")
        self.group = group
        self._params = {key: getattr(self, key) for key in allowed}

    # -- what the method needs ----------------------------------------------------------------
    def _uses_age(self):
        return self.method in ("yaware", "expw") or (self.method == "anatcl" and self.lambda_age > 0)

    def _uses_anatomy(self):
        return self.method == "anatcl" and self.lambda_anat > 0

    def _check_local(self, z, age, anatomy):
        _check_local_z(z)
        n, n_views, _ = z.shape
        if self.method == "simclr" and n_views < 2:
            raise ValueError(
                "method='simclr' needs at least 2 views per subject (z.shape[1] >= 2) to have "
                f"positives; got z of shape {tuple(z.shape)}."
            )
        dtype = _compute_dtype(z)
        if self._uses_age() or (self.method == "anatcl" and age is not None):
            age = check_age(age, n, device=z.device, dtype=dtype)
        else:
            age = None
        if self._uses_anatomy() or (self.method == "anatcl" and anatomy is not None):
            anatomy = check_anatomy(anatomy, n, device=z.device, dtype=dtype, non_negative=True)
        else:
            anatomy = None
        return age, anatomy

    def _exchange_headers(self, z, age, anatomy, error, world):
        """Share (failed, n, views, features, has age, regions, measures) between ranks."""
        if error is None:
            n, n_views, n_features = z.shape
            regions, measures = (0, 0) if anatomy is None else anatomy.shape[1:]
            local = [0, n, n_views, n_features, int(age is not None), regions, measures]
        else:
            local = [1, 0, 0, 0, 0, 0, 0]
        if world == 1:
            headers = [local]
        else:
            headers = _all_gather_ints(local, _collective_device(z, self.group), self.group)
        if error is not None:
            raise error
        failed = [r for r, h in enumerate(headers) if h[0]]
        if failed:
            raise RuntimeError(
                f"DistributedContrastiveLoss: rank(s) {failed} received invalid inputs (their "
                "own error says why); this rank stops too rather than wait in a collective."
            )
        layouts = {tuple(h[2:]) for h in headers}
        if len(layouts) > 1:
            described = "; ".join(
                f"rank {r}: n_views={h[2]}, n_features={h[3]}, age {'given' if h[4] else 'None'}, "
                f"anatomy regions x measures {h[5]}x{h[6]}" for r, h in enumerate(headers))
            raise ValueError(
                "DistributedContrastiveLoss needs the same n_views, n_features and the same "
                f"metadata layout on every rank (only n_local may differ); got {described}."
            )
        return [h[1] for h in headers]

    # -- forward ------------------------------------------------------------------------------
    def forward(
        self, z: torch.Tensor, age: TensorLike | None = None, anatomy: TensorLike | None = None
    ) -> torch.Tensor:
        """Compute this rank's share of the loss on the global batch.

        Parameters
        ----------
        z : torch.Tensor of shape (n_local, n_views, n_features)
            This rank's embeddings (normalised inside); any floating dtype, computed in
            float32 (float64 stays float64).
        age : torch.Tensor or array-like of shape (n_local,), default=None
            This rank's ages; required by "yaware", "expw" and "anatcl" with
            ``lambda_age > 0``.
        anatomy : torch.Tensor or array-like of shape (n_local, n_regions, n_measures), default=None
            This rank's anatomical measures (already scaled for the local descriptor);
            required by "anatcl" with ``lambda_anat > 0``.

        Returns
        -------
        loss : torch.Tensor
            Scalar; its mean over ranks is the single-process loss on the global batch (see
            the Notes of the class).
        """
        rank, world = _world(self.group)
        error = None
        try:
            age, anatomy = self._check_local(z, age, anatomy)
        except (TypeError, ValueError) as exc:
            error = exc
        sizes = self._exchange_headers(z, age, anatomy, error, world)
        n_total, n_views = sum(sizes), z.shape[1]
        if n_total * n_views < 2:
            raise ValueError(
                "The global batch must hold at least 2 rows (subjects x views) so that each "
                f"anchor has something to contrast with; got {n_total} subject(s) with "
                f"{n_views} view(s) over {world} rank(s)."
            )
        offset = sum(sizes[:rank])
        rows = slice(offset, offset + sizes[rank])
        with _full_precision(z):
            z_all = _gather_rows(z, sizes, self.group)
            age_all, anatomy_all = self._gather_metadata(age, anatomy, sizes)
            weights, coefs = self._subject_weights(age_all, anatomy_all, n_total, z)
            weights = [w[rows] for w in weights]
            loss = _contrastive_rows(
                z, z_all, weights, self.temperature, self_offset=offset, coefs=coefs,
                method="expw" if self.method == "expw" else "yaware",
            )
        if len(set(sizes)) > 1:  # unequal shards: this rank's share of the global mean
            loss = loss * (sizes[rank] * world / n_total)
        return loss

    def _gather_metadata(self, age, anatomy, sizes):
        """All-gather age and anatomy (no gradient) in one collective."""
        parts = [t.reshape(t.shape[0], -1) for t in (age, anatomy) if t is not None]
        if not parts or len(sizes) == 1:
            return age, anatomy
        gathered = _gather_rows(torch.cat(parts, dim=1).detach(), sizes, self.group)
        age_all = anatomy_all = None
        start = 0
        if age is not None:
            age_all, start = gathered[:, 0], 1
        if anatomy is not None:
            anatomy_all = gathered[:, start:].reshape(-1, *anatomy.shape[1:])
        return age_all, anatomy_all

    def _subject_weights(self, age_all, anatomy_all, n_total, z):
        """Global (N, N) kernels and their coefficients, exactly as the single-process losses."""
        if self.method == "simclr":
            return [torch.eye(n_total, device=z.device, dtype=_compute_dtype(z))], None
        if self.method in ("yaware", "expw"):
            return [_age_kernel(age_all, self.sigma, self.kernel)], None
        weights, coefs = [], []
        if self.lambda_age > 0:
            weights.append(_age_kernel(age_all, self.sigma, self.kernel))
            coefs.append(self.lambda_age)
        if self.lambda_anat > 0:
            weights.append(_anatomy_kernel(anatomy_all, self.descriptor))
            coefs.append(self.lambda_anat)
        return weights, coefs

    def extra_repr(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self._params.items())
        return f"method={self.method!r}, {params}"
