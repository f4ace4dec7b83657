"""How a fit runs: one process, DataParallel over one machine's GPUs, or DDP under torchrun.

:func:`resolve_launch` is THE function deciding the launch kind (and the training device).
The three launchers share one small interface, so no code outside this module asks which
launch it is in: ``rank``, ``world``, ``is_writer``; ``check`` (the launch options, inside
the plan's agreement), ``agree`` / ``agree_facts`` / ``broadcast`` / ``gather`` (between the
processes; trivial in one), ``sampler`` (this process's shard of each global batch),
``loss`` (the criterion: the all-gathering one under DDP), ``wrap`` (the module around the
net's training), ``finish`` (after training: every process gets rank 0's weights) and
``unwrap`` (the plain module back, whatever happened).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..exceptions import warn
from . import _distributed
from ._distributed import DistContext, GlobalBatchSampler, resolve_distributed
from ._parallel import AutocastDataParallel, unwrap_module

__all__ = ["DataParallelLaunch", "DistributedLaunch", "OneProcess", "resolve_launch"]


def resolve_launch(est: Any, train: bool) -> OneProcess:
    """THE function deciding how ``est`` trains: the launch kind and the device.

    Under torchrun (``distributed``: an initialised group of several processes, or
    ``WORLD_SIZE`` > 1) a :class:`DistributedLaunch`; else, on CUDA with several GPUs visible
    (``data_parallel``), a :class:`DataParallelLaunch`; else :class:`OneProcess`. A frozen
    encoder (``train=False``) is one process. Nothing here refuses the estimator's
    parameters: :meth:`OneProcess.check` does, inside the fit's one agreement.
    """
    ctx = resolve_distributed(est.distributed, est.device) if train else None
    if ctx is not None:
        device = (f"cuda:{ctx.local_rank}" if ctx.backend == "nccl" else "cpu") \
            if est.device == "auto" else str(est.device)
        return DistributedLaunch(device, ctx, est.sync_batchnorm is True)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if est.device == "auto" \
        else str(est.device)
    if train and _use_data_parallel(est.data_parallel, device):
        return DataParallelLaunch(device)
    return OneProcess(device)


@dataclass(frozen=True)
class OneProcess:
    """One process on one device (the plain launch)."""

    device: str
    kind = "one process"

    @property
    def rank(self) -> int:
        return 0

    @property
    def world(self) -> int:
        return 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes checkpoints and prints (rank 0)."""
        return self.rank == 0

    # -- the launch options -------------------------------------------------------------
    def check(self, est: Any, train: bool) -> None:
        """Refuse launch options this launch cannot honour (before any work)."""
        self._check_device(est, train)
        if est.sync_batchnorm and train:
            warn("sync_batchnorm=True has no effect outside torchrun (one process sees the "
                 "whole batch already).", UserWarning)
        if est.data_parallel is True and train:
            warn(f"data_parallel=True has no effect on device {self.device!r}: DataParallel "
                 "spreads batches over CUDA GPUs only. Training runs on this device alone.",
                 UserWarning)

    def _check_device(self, est, train):
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={est.device!r} but CUDA is not available; use "
                             "device='auto' or 'cpu'.")
        if est.precision == "bf16" and train and not self.device.startswith("cuda"):
            raise ValueError(
                "precision='bf16' trains on CUDA only: on the CPU, torch's bfloat16 "
                "3D-convolution backward intermittently returns non-finite gradients "
                "(measured with torch 2.13: 15 of 43 short fits). Use precision='fp32' on "
                "the CPU.")

    def check_batch(self, batch_size: int) -> None:
        """Refuse a global batch the processes cannot share."""

    # -- between processes (trivial here) -------------------------------------------------
    def agree(self, fn: Callable[[], Any]) -> Any:
        """``fn()``; under torchrun a failure on any rank fails every rank (never a hang)."""
        return fn()

    def agree_facts(self, fn: Callable[[], tuple[Any, dict]]) -> tuple[Any, list[dict]]:
        """``fn()`` returns ``(result, facts)``: this result, and every rank's facts."""
        result, facts = fn()
        return result, [facts]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``."""
        return value

    def gather(self, value: Any) -> list:
        """Every rank's ``value``, by rank."""
        return [value]

    # -- training -----------------------------------------------------------------------
    def sampler(self, n: int, batch_size: int, seed: int) -> GlobalBatchSampler:
        """The seeded global batches, this process's shard of each."""
        return GlobalBatchSampler(n, batch_size, seed, self.rank, self.world)

    def loss(self, method: str, params: dict) -> tuple[type, dict]:
        """The criterion class and its parameters for a contrastive ``method``."""
        from .. import losses

        cls = {"anatcl": losses.AnatCLLoss, "yaware": losses.YAwareLoss,
               "expw": losses.ExpWLoss, "simclr": losses.SimCLRLoss}[method]
        return cls, params

    @property
    def loss_world(self) -> int | None:
        """The number of processes the net all-reduces its loss over (None: no all-reduce)."""
        return None

    def describe(self, est: Any) -> str | None:
        """This launch, for the line printed when training starts."""
        return None

    def wrap(self, net: Any) -> None:
        """Wrap ``net.module_`` for this launch (after ``net.initialize()``)."""

    def finish(self, net: Any) -> None:
        """After training ended well: every process holds the same weights."""

    def unwrap(self, net: Any) -> None:
        """The plain module back in ``net.module_`` (for pickles and saving), always."""
        net.module_ = unwrap_module(net.module_)


@dataclass(frozen=True)
class DataParallelLaunch(OneProcess):
    """One process, the module replicated over every visible GPU (the training device first)."""

    kind = "DataParallel"

    def check(self, est: Any, train: bool) -> None:
        self._check_device(est, train)
        if est.sync_batchnorm and train:
            warn("sync_batchnorm=True has no effect outside torchrun (one process sees the "
                 "whole batch already).", UserWarning)
        if est.compile and train:
            raise ValueError(
                f"compile=True cannot train under DataParallel (data_parallel="
                f"{est.data_parallel!r} with {torch.cuda.device_count()} GPUs visible): "
                "DataParallel's replication rewrites a torch.compile wrapper's model. Set "
                "data_parallel=False to compile on one GPU, or compile=False to use every GPU.")

    def wrap(self, net: Any) -> None:
        # the module, not the net (skorch #602): the loss sees the whole batch
        first = _cuda_index(self.device)
        ids = [first] + [i for i in range(torch.cuda.device_count()) if i != first]
        net.module_ = AutocastDataParallel(net.module_, net.autocast_dtype, device_ids=ids,
                                           output_device=first)
        net.initialize_optimizer()


@dataclass(frozen=True)
class DistributedLaunch(OneProcess):
    """One process of a torchrun group: DistributedDataParallel, the loss all-gathered."""

    ctx: DistContext = field(default=None)  # type: ignore[assignment]
    sync_batchnorm: bool = False
    kind = "DistributedDataParallel"

    @property
    def rank(self) -> int:
        return self.ctx.rank

    @property
    def world(self) -> int:
        return self.ctx.world

    def check(self, est: Any, train: bool) -> None:
        self._check_device(est, train)
        if est.compile and train:
            raise ValueError("compile=True is not supported under torchrun (distributed "
                             "training) yet; set compile=False.")
        if est.sync_batchnorm and not self.device.startswith("cuda"):
            raise ValueError("sync_batchnorm=True needs CUDA: torch's SyncBatchNorm runs on "
                             f"GPUs only (this process trains on {self.device!r}).")

    def check_batch(self, batch_size: int) -> None:
        _distributed.check_batch(self.ctx, batch_size)

    def agree(self, fn: Callable[[], Any]) -> Any:
        return _distributed.agree(self.ctx, fn)

    def agree_facts(self, fn: Callable[[], tuple[Any, dict]]) -> tuple[Any, list[dict]]:
        box: list = []

        def run():
            result, facts = fn()
            box.append(result)
            return facts

        facts = _distributed.agree(self.ctx, run, gather=True)
        return box[0], facts

    def broadcast(self, value: Any) -> Any:
        return _distributed.broadcast(self.ctx, value)

    def gather(self, value: Any) -> list:
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, value)
        return out

    def loss(self, method: str, params: dict) -> tuple[type, dict]:
        # anchors of this rank against the all-gathered global batch
        from ..losses._distributed import DistributedContrastiveLoss

        return DistributedContrastiveLoss, dict(method=method, **params)

    @property
    def loss_world(self) -> int | None:
        return self.world

    def describe(self, est: Any) -> str | None:
        return (f"DistributedDataParallel over {self.world} processes ({self.ctx.backend}), "
                f"global batch {est.batch_size}")

    def wrap(self, net: Any) -> None:
        if self.sync_batchnorm:
            net.module_ = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net.module_)
        net.module_ = _distributed.wrap_ddp(net.module_, self.ctx, self.device)
        net.initialize_optimizer()

    def finish(self, net: Any) -> None:
        _distributed.sync_state(self.ctx, unwrap_module(net.module_))

    def unwrap(self, net: Any) -> None:
        net.module_ = unwrap_module(net.module_)
        if self.sync_batchnorm:
            net.module_ = _distributed.revert_sync_batchnorm(net.module_)


def _use_data_parallel(setting, device):
    """Whether to wrap the module in DataParallel: CUDA only, and with "auto" only when several
    GPUs are visible."""
    return device.startswith("cuda") and (
        setting is True or (setting == "auto" and torch.cuda.device_count() > 1))


def _cuda_index(device):
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index
