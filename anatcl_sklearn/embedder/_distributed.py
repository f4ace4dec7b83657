"""The estimator under torchrun: the process group, agreement between ranks, sharded batches.

``AnatCLEmbedder(distributed="auto")`` trains with DistributedDataParallel when it runs in
an initialised process group of several processes, or when torchrun's environment says so
(``WORLD_SIZE`` > 1): the group is then initialised here (NCCL on CUDA, gloo on the CPU) and
kept for the rest of the program. ``batch_size`` stays the global batch: every rank draws
the same permutation of the subjects each epoch (seeded by the estimator's seed, broadcast
from rank 0, and the epoch), cuts it into global batches and takes its contiguous shard of
each, so a run on W processes sees exactly the global batches of a single-process run.

These are the mechanics; only the launcher (:class:`._launch.DistributedLaunch`, chosen by
:func:`._launch.resolve_launch`) uses them.
"""

import os
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from skorch.callbacks import Callback

__all__ = ["DistContext", "GlobalBatchSampler", "agree", "resolve_distributed"]


class DistContext(NamedTuple):
    """This process's place in the group."""

    rank: int
    world: int
    local_rank: int
    backend: str


def _env_world():
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def resolve_distributed(setting, device_setting):
    """The DistContext to train in, or None for a single process (torchrun's detection).

    ``setting`` is the estimator's ``distributed`` parameter ("auto", True or False); any other
    value is taken as "auto" here (the parameter check refuses it, inside the fit's agreement).
    """
    if setting is False:
        return None
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised:
        if _env_world() <= 1:
            if setting is True:
                raise ValueError(
                    "distributed=True, but this process is not part of a distributed run: "
                    "launch the script with torchrun (e.g. torchrun --nproc-per-node=2 "
                    "script.py), or initialise torch.distributed yourself, or use "
                    "distributed='auto'.")
            return None
        if not dist.is_available():
            raise ValueError("torchrun's environment is set, but this torch has no "
                             "torch.distributed support.")
        use_cuda = torch.cuda.is_available() and not str(device_setting).startswith("cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    world = dist.get_world_size()
    if world <= 1:
        return None
    return DistContext(dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0")),
                       str(dist.get_backend()))


def agree(ctx, fn, gather=False):
    """Run ``fn()`` on every rank; if it fails anywhere, fail everywhere (never hang).

    The failing rank raises its own exception; the others raise a RuntimeError that names
    the failing rank and repeats its message. With ``gather=True`` every rank's result (a
    small picklable value) is returned, by rank, from the same collective.
    """
    if ctx is None:
        result = fn()
        return [result] if gather else result
    error, result = None, None
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - re-raised below, after telling the others
        error = exc
    messages: list = [None] * ctx.world
    mine = None if error is None else f"{type(error).__name__}: {error}"
    dist.all_gather_object(messages, (mine, result if gather and error is None else None))
    if error is not None:
        raise error
    failed = [(r, m) for r, (m, _) in enumerate(messages) if m is not None]
    if failed:
        rank, message = failed[0]
        raise RuntimeError(f"rank {rank} of {ctx.world} failed ({message}); this rank stops "
                           "too rather than wait for it.")
    return [r for _, r in messages] if gather else result


def broadcast(ctx, value):
    """Rank 0's ``value`` on every rank."""
    if ctx is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_batch(ctx, batch_size):
    """Each process needs at least 2 subjects of every global batch (BatchNorm, contrast)."""
    if ctx is not None and batch_size < 2 * ctx.world:
        raise ValueError(
            f"batch_size={batch_size} is the global batch, split among {ctx.world} processes: "
            f"each needs at least 2 subjects, so batch_size must be >= {2 * ctx.world}.")


class GlobalBatchSampler:
    """Per epoch, one seeded permutation cut into global batches; yields this rank's shards.

    Parameters
    ----------
    n : int
        Number of subjects.
    batch_size : int
        Global batch size.
    seed : int
        Same on every rank.
    rank, world : int
        This rank and the number of ranks (0 and 1 for a single process).

    A last, incomplete global batch is kept when every rank gets at least two of its subjects
    (one subject cannot be contrasted, and a padded repeat would be a perfect positive);
    otherwise it is dropped, on every rank alike.
    """

    def __init__(self, n, batch_size, seed, rank=0, world=1):
        self.n, self.batch_size, self.seed = int(n), int(batch_size), int(seed)
        self.rank, self.world = int(rank), int(world)
        self.epoch = 1

    def _batches(self):
        generator = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        order = torch.randperm(self.n, generator=generator).numpy()
        for start in range(0, self.n, self.batch_size):
            batch = order[start:start + self.batch_size]
            if len(batch) < 2 * self.world:
                continue
            yield np.array_split(batch, self.world)[self.rank].tolist()

    def __iter__(self):
        return self._batches()

    def __len__(self):
        full, last = divmod(self.n, self.batch_size)
        return full + int(last >= 2 * self.world)


class SamplerEpoch(Callback):
    """Tell the batch sampler which epoch begins (its permutation depends on it)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def on_epoch_begin(self, net, **kwargs):
        self.sampler.epoch = len(net.history)  # skorch has added this epoch's row


def wrap_ddp(module, ctx, device):
    """``module`` in DistributedDataParallel (gradients averaged over ranks)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [torch.device(device).index] if str(device).startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=ids)  # buffers: rank 0's each step


def sync_state(ctx, module):
    """Copy rank 0's weights and buffers to every rank (identical fitted estimators)."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def revert_sync_batchnorm(module):
    """``module`` with every SyncBatchNorm replaced by a BatchNorm3d holding its state."""
    if isinstance(module, torch.nn.SyncBatchNorm):
        plain = torch.nn.BatchNorm3d(module.num_features, module.eps, module.momentum,
                                     module.affine, module.track_running_stats)
        plain.load_state_dict(module.state_dict())
        return plain.to(next(iter(module.state_dict().values())).device).train(module.training)
    for name, child in module.named_children():
        setattr(module, name, revert_sync_batchnorm(child))
    return module
