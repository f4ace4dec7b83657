"""Data-parallel pretraining over several processes and machines (torchrun + DDP).

One process per GPU (or per CPU worker with gloo). Each rank reads its shard of every global
batch through a :class:`~torch.utils.data.distributed.DistributedSampler`, embeds it with the
:class:`~torch.nn.parallel.DistributedDataParallel`-wrapped :class:`AnatCLModel`, and
:class:`DistributedContrastiveLoss` contrasts its anchors with the all-gathered global batch.
Rank 0 writes checkpoints in the layout of the released AnatCL files.

Plain torch DDP rather than skorch: skorch's ``AccelerateMixin`` is experimental and breaks on
``clone`` (skorch #944, #947), and a contrastive loss needs the all-gather anyway.
"""

import argparse
import contextlib
import os
import time
import uuid
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from sklearn.utils import Bunch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from ..images import check_images
from .._optim import adam_kwargs
from .._version import __version__
from ..anatomy._training import SCALINGS, check_desikan_shape, resolve_scaling
from ..embedder._augment import make_views
from ..embedder._data import SubjectDataset
from ..embedder._net import NonFiniteLossError
from ..embedder._params import _check_choice, _check_number, parse_augment
from ..losses._validation import check_age, check_anatomy
from ._loss import DistributedContrastiveLoss

__all__ = ["train_distributed"]

_ARCHS = ("resnet18", "resnet34", "resnet50")
_PRECISIONS = ("fp32", "bf16")
_DEVICES = ("auto", "cpu", "cuda")
_BACKENDS = ("auto", "gloo", "nccl")
# Keys a checkpoint needs for training to resume from it (the released files lack the last).
_RESUME_KEYS = ("model", "epoch", "optimizer", "scheduler")


def _log(rank, verbose, message):
    if verbose and rank == 0:
        print(message, flush=True)


def _env_world_size():
    """World size announced by torchrun (1 when not launched by it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer.") from None


def _resolve_device(device):
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available; use device='cpu' or 'auto'.")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "launch at most one process per GPU (--nproc-per-node)."
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _init_process_group(backend, device, world):
    """Join torchrun's process group when launched by it; return whether we created it."""
    if dist.is_available() and dist.is_initialized():
        return False
    if world == 1:
        return False
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build.")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world} but {missing} are not set: launch with torchrun (see "
            "anatcl_sklearn.distributed) or initialise the process group yourself."
        )
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    options = {}
    if device.type == "cuda":  # the caller has made it the current device
        options["device_id"] = device  # binds NCCL to this rank's GPU up front
    dist.init_process_group(backend=backend, init_method="env://", **options)
    return True


def _check_length(values, name, n):
    shape = np.shape(values)
    if not shape or shape[0] != n:
        raise ValueError(
            f"{name} must have one row per image ({n}); got shape {shape}."
        )


def _check_inputs(images, age, anatomy, criterion, anatomy_scaling):
    # Training from scratch on any grid is intended: no warning about the released weights' grid.
    images = check_images(images, warn_grid=False)
    n = len(images)
    if n < 2:
        raise ValueError(f"train_distributed needs at least 2 images to contrast; got {n}.")
    method = criterion.method
    if criterion._uses_age() or (method == "anatcl" and age is not None):
        if age is None:
            raise ValueError(f"method={method!r} needs age: pass age=... of shape ({n},).")
        _check_length(age, "age", n)
        age = check_age(age, dtype=torch.float64).numpy()
    else:
        age = None
    if criterion._uses_anatomy() or (method == "anatcl" and anatomy is not None):
        if anatomy is None:
            raise ValueError(
                f"method='anatcl' with lambda_anat > 0 needs anatomy: pass anatomy=... of shape "
                f"({n}, 68, 3) (Desikan CT, GMV, SA), or lambda_anat=0."
            )
        _check_length(anatomy, "anatomy", n)
        anatomy = check_anatomy(anatomy, dtype=torch.float64).numpy()
        check_desikan_shape(anatomy, n)
        descriptor = getattr(criterion, "descriptor", None)
        if resolve_scaling(anatomy_scaling, descriptor) == "none":  # min-max makes it so
            check_anatomy(anatomy, non_negative=True)
    else:
        anatomy = None
    return images, age, anatomy


def _scale_anatomy(anatomy, scaling, descriptor):
    """Min-max scale on the whole training set (identical on every rank), never per batch."""
    if anatomy is None or resolve_scaling(scaling, descriptor) == "none":
        return anatomy
    from ..anatomy import AnatomyScaler

    return AnatomyScaler().fit_transform(anatomy)


def _plain(value):
    """Builtin types only: subclasses such as ``torch.__version__`` (a ``TorchVersion``) or
    numpy scalars would make the checkpoint refuse ``torch.load(weights_only=True)``."""
    if value is None or isinstance(value, bool):
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return str(value)


def _opts(**values):
    """The ``opts`` namespace of the checkpoint, loadable with ``weights_only=True``."""
    return argparse.Namespace(**{k: _plain(v) for k, v in values.items()})


def _save_checkpoint(path, state):
    """Write atomically: a crash while saving leaves the previous checkpoint intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _read_resume(resume, device, arch, method, descriptor):
    from ..models import load_checkpoint
    from ..models._checkpoint import _safe_torch_load

    path = Path(resume).expanduser()
    checkpoint = _safe_torch_load(path, map_location=device)
    missing = [k for k in _RESUME_KEYS if k not in checkpoint]
    if missing:
        raise ValueError(
            f"Cannot resume from '{path}': it lacks {missing}, so it was not written by "
            "train_distributed (the released AnatCL files have no scheduler state)."
        )
    opts = checkpoint.get("opts")
    for name, wanted in (("arch", arch), ("method", method), ("descriptor", descriptor)):
        saved = getattr(opts, name, None)
        if saved is not None and saved != wanted:
            raise ValueError(
                f"Cannot resume from '{path}': it was trained with {name}={saved!r}, this run "
                f"asks for {name}={wanted!r}."
            )
    # load_checkpoint validates the weights against the architecture with clear messages.
    weights = load_checkpoint({"model": checkpoint["model"]}, arch=arch, map_location="cpu").state_dict()
    return checkpoint, weights


def _seed_for(seed, epoch, rank):
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def train_distributed(
    images,
    *,
    age=None,
    anatomy=None,
    method="anatcl",
    descriptor="global",
    sigma=2.0,
    kernel="rbf",
    lambda_age=1.0,
    lambda_anat=1.0,
    temperature=0.1,
    arch="resnet18",
    augment="none",
    epochs=300,
    batch_size=32,
    lr=1e-4,
    lr_step=10,
    lr_gamma=0.9,
    weight_decay=5e-5,
    anatomy_scaling="auto",
    sync_bn=False,
    precision="fp32",
    device="auto",
    backend="auto",
    num_workers=0,
    checkpoint=None,
    save_every=1,
    resume=None,
    seed=0,
    data_description=None,
    verbose=1,
):
    """Pretrain an :class:`~anatcl_sklearn.models.AnatCLModel` with DistributedDataParallel.

    Call it on every rank of a ``torchrun`` launch (``python -m anatcl_sklearn.distributed``
    does): it joins the process group from torchrun's environment variables (NCCL on GPUs,
    gloo on CPUs), trains, and leaves the group. Without torchrun (``WORLD_SIZE`` unset) it
    trains in this one process with the same code. Embeddings, age and anatomy are
    all-gathered every step, so each rank's anchors are contrasted with the whole global batch
    and the parameter gradients equal those of one process on that batch.

    Parameters
    ----------
    images : array-like, list of paths or images, or ImageCollection
        The training images, anything :func:`~anatcl_sklearn.check_images` accepts. Every rank
        must pass the same images in the same order (each reads only its shard's volumes).
    age : array-like of shape (n_images,), default=None
        Ages in years; needed by "yaware", "expw" and "anatcl" with ``lambda_age > 0``.
    anatomy : array-like of shape (n_images, n_regions, n_measures), default=None
        Desikan (CT, GMV, SA) measures, non-negative; needed by "anatcl" with
        ``lambda_anat > 0``.
    method : {"anatcl", "yaware", "expw", "simclr"}, default="anatcl"
        The objective (see :class:`DistributedContrastiveLoss`).
    descriptor : {"global", "local"}, default="global"
        AnatCL's anatomy kernel.
    sigma : float, default=2.0
        Age kernel width (years).
    kernel : {"rbf", "gaussian", "cauchy"}, default="rbf"
        Age kernel.
    lambda_age : float, default=1.0
        Weight of AnatCL's age term.
    lambda_anat : float, default=1.0
        Weight of AnatCL's anatomy term.
    temperature : float, default=0.1
        Softmax temperature.
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
        Encoder architecture.
    augment : str or list of str, default="none"
        Augmentations making the two views (as :class:`~anatcl_sklearn.AnatCLEmbedder`). With
        ``"none"`` (the paper) the views are identical: each volume is forwarded once and its
        embedding duplicated, which gives the same loss and gradients as two forwards.
    epochs : int, default=300
        Total number of epochs (including those of a resumed run).
    batch_size : int, default=32
        The **global** batch size (the paper's 32); each of the ``W`` ranks takes
        ``batch_size / W`` subjects per step, so it must be divisible by the world size.
    lr : float, default=1e-4
        Adam learning rate.
    lr_step : int, default=10
        Epochs between learning-rate decays.
    lr_gamma : float, default=0.9
        Learning-rate decay factor.
    weight_decay : float, default=5e-5
        Adam weight decay (the released AnatCL runs used 5e-5).
    anatomy_scaling : {"auto", "minmax", "none"}, default="auto"
        Min-max scaling of anatomy fitted on all ``images`` (the whole training set, on every
        rank alike); "auto" scales for the local descriptor only.
    sync_bn : bool, default=False
        Convert BatchNorm to :class:`~torch.nn.SyncBatchNorm` (CUDA only) so that batch
        statistics are those of the global batch. Without it each rank normalises with its
        shard's statistics, and DDP copies rank 0's running statistics to the others.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"`` runs the network under bfloat16 autocast (CUDA only); the loss stays float32.
    device : {"auto", "cpu", "cuda"}, default="auto"
        ``"cuda"`` uses GPU ``LOCAL_RANK``; ``"auto"`` picks CUDA when available.
    backend : {"auto", "gloo", "nccl"}, default="auto"
        Process-group backend when this function creates the group; "auto" is NCCL on CUDA
        and gloo on CPU.
    num_workers : int, default=0
        DataLoader workers per rank.
    checkpoint : str or path, default=None
        Where rank 0 writes the checkpoint (overwritten atomically every ``save_every`` epochs
        and after the last one); nothing is written when None.
    save_every : int, default=1
        Epochs between checkpoint writes.
    resume : str or path, default=None
        A checkpoint written by this function to continue from (its weights, optimizer,
        scheduler and epoch); every rank must be able to read it.
    seed : int, default=0
        Seeds weight initialisation, shuffling (with the epoch) and augmentation (with the
        epoch and rank). The caller's global RNG state is left as it was.
    data_description : str, default=None
        A description of the data, stored in the checkpoint's ``opts``.
    verbose : int, default=1
        Rank 0 prints the setup and one line per epoch when > 0.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``model`` (the trained :class:`AnatCLModel`, unwrapped, in eval mode, on the training
        device), ``history`` (one dict per epoch run: ``epoch``, ``train_loss``, ``lr``,
        ``duration``), ``epoch`` (epochs finished), ``checkpoint`` (the path or None),
        ``run_id`` and ``world_size``. The same on every rank.

    Raises
    ------
    ValueError
        If a parameter or an input is invalid (before any process-group setup or training),
        ``batch_size`` is not divisible by the world size, or ``resume`` does not match.
    NonFiniteLossError
        If the global loss becomes NaN or infinite (on every rank, before the optimizer step).

    Notes
    -----
    The checkpoint is a dict ``{"opts": argparse.Namespace, "model": state_dict, "epoch",
    "optimizer", "scheduler", "run_id", "history"}``: the released AnatCL layout plus the
    scheduler and the history. The state dict has no ``module.`` prefix, so
    :func:`~anatcl_sklearn.models.load_checkpoint` and ``AnatCLEmbedder(pretrained=path)``
    load it.

    Launch on ``N`` machines with ``G`` GPUs each::

        torchrun --nnodes=N --nproc-per-node=G --rdzv-backend=c10d \\
            --rdzv-endpoint=HOST:PORT -m anatcl_sklearn.distributed \\
            --openbhb /data/openbhb --epochs 300 --batch-size 32 --output anatcl.pt
    """
    # -- parameters: all checked before any collective, file or training work ------------------
    criterion_params = dict(temperature=temperature)
    if method in ("anatcl", "yaware", "expw"):
        criterion_params.update(sigma=sigma, kernel=kernel)
    if method == "anatcl":
        criterion_params.update(descriptor=descriptor, lambda_age=lambda_age, lambda_anat=lambda_anat)
    _check_choice("method", method, ("anatcl", "yaware", "expw", "simclr"))
    criterion = DistributedContrastiveLoss(method, **criterion_params)
    _check_choice("descriptor", descriptor, ("global", "local"))
    _check_choice("arch", arch, _ARCHS)
    _check_choice("precision", precision, _PRECISIONS)
    _check_choice("device", device, _DEVICES)
    _check_choice("backend", backend, _BACKENDS)
    _check_choice("anatomy_scaling", anatomy_scaling, SCALINGS)
    augment = parse_augment(augment)
    for name, value in (("epochs", epochs), ("num_workers", num_workers), ("seed", seed)):
        _check_number(name, value, low=0, low_inclusive=True, integer=True)
    for name, value in (("batch_size", batch_size), ("lr_step", lr_step), ("save_every", save_every)):
        _check_number(name, value, low=0, integer=True)
    _check_number("lr", lr, low=0)
    _check_number("lr_gamma", lr_gamma, low=0)
    _check_number("weight_decay", weight_decay, low=0, low_inclusive=True)
    if not isinstance(sync_bn, bool):
        raise TypeError(f"sync_bn must be a bool; got {sync_bn!r}.")
    torch_device = _resolve_device(device)
    if sync_bn and torch_device.type != "cuda":
        raise ValueError("sync_bn=True needs CUDA (SyncBatchNorm has no CPU implementation).")
    if precision == "bf16" and torch_device.type != "cuda":
        raise ValueError("precision='bf16' needs CUDA; on CPU train in fp32.")
    if backend == "nccl" and torch_device.type != "cuda":
        raise ValueError("backend='nccl' needs CUDA; use backend='gloo' on CPU.")
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else _env_world_size()
    if batch_size % world:
        raise ValueError(
            f"batch_size={batch_size} is the global batch and must be divisible by the world "
            f"size {world} (each rank takes batch_size / world_size subjects per step)."
        )
    images, age, anatomy = _check_inputs(images, age, anatomy, criterion, anatomy_scaling)
    n_subjects = len(images)
    if n_subjects < world:
        raise ValueError(f"{n_subjects} images cannot be shared among {world} ranks; give at least {world}.")
    checkpoint = None if checkpoint is None else Path(checkpoint).expanduser()
    if resume is not None and not Path(resume).expanduser().is_file():
        raise FileNotFoundError(f"Checkpoint to resume from not found: '{Path(resume).expanduser()}'.")

    cudnn_benchmark = torch.backends.cudnn.benchmark
    # this rank's GPU is the current device while training (collectives, pinned memory and
    # cuDNN handles otherwise land on GPU 0); the caller's current device comes back afterwards
    on_device = (torch.cuda.device(torch_device) if torch_device.type == "cuda"
                 else contextlib.nullcontext())
    with on_device:
        return _run_on_device(
            images, age, anatomy, criterion, backend=backend, world=world, arch=arch,
            augment=augment, epochs=epochs, batch_size=batch_size, lr=lr, lr_step=lr_step,
            lr_gamma=lr_gamma, weight_decay=weight_decay, anatomy_scaling=anatomy_scaling,
            sync_bn=sync_bn, precision=precision, device=torch_device, num_workers=num_workers,
            checkpoint=checkpoint, save_every=save_every, resume=resume, seed=seed,
            data_description=data_description, verbose=verbose, cudnn_benchmark=cudnn_benchmark,
        )


def _run_on_device(images, age, anatomy, criterion, *, backend, world, cudnn_benchmark, **kwargs):
    torch_device = kwargs["device"]
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
    created = _init_process_group(backend, torch_device, world)
    try:
        return _train(images, age, anatomy, criterion, world=world, **kwargs)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark  # _train turns it on for CUDA
        if created:
            dist.destroy_process_group()


def _train(images, age, anatomy, criterion, *, world, arch, augment, epochs, batch_size, lr,
           lr_step, lr_gamma, weight_decay, anatomy_scaling, sync_bn, precision, device,
           num_workers, checkpoint, save_every, resume, seed, data_description, verbose):
    """The training loop of :func:`train_distributed`, on validated arguments."""
    from ..models import AnatCLModel

    torch_device, n_subjects = device, len(images)
    method, descriptor = criterion.method, getattr(criterion, "descriptor", None)
    rank = dist.get_rank() if world > 1 else 0
    local_batch = batch_size // world
    if rank == 0 and checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    anatomy = _scale_anatomy(anatomy, anatomy_scaling, descriptor)

    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU's only: leave every GPU's RNG alone
        model = AnatCLModel(arch)
    start_epoch, run_id, history, saved = 0, None, [], None
    if resume is not None:
        saved, weights = _read_resume(resume, torch_device, arch, method, descriptor)
        model.load_state_dict(weights)
        start_epoch, run_id = int(saved["epoch"]), saved.get("run_id")
        history = list(saved.get("history") or [])
    if run_id is None:
        run_id = [uuid.uuid4().hex[:12]]
        if world > 1:  # one id for the run, whoever writes it
            # NCCL sends only CUDA tensors: name this rank's GPU rather than the current one
            dist.broadcast_object_list(
                run_id, src=0, device=device if dist.get_backend() == "nccl" else None)
        run_id = run_id[0]
    if sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(torch_device)
    net = model
    if world > 1:
        device_ids = [torch_device.index] if torch_device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay,
                                 **adam_kwargs(torch_device))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=lr_step, gamma=lr_gamma)
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])

    dataset = SubjectDataset(images, age, anatomy)
    # drop_last: every rank gets the same number of distinct subjects (no padded repeats,
    # which would be perfect positives); a different tail is dropped each epoch.
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    per_rank = len(sampler)
    loader = DataLoader(
        dataset, batch_size=local_batch, sampler=sampler, num_workers=num_workers,
        pin_memory=torch_device.type == "cuda",
        # a last global batch of one subject has nothing to contrast with
        drop_last=(per_rank % local_batch) * world == 1,
    )
    if len(loader) == 0:
        raise ValueError(f"{n_subjects} images give no training batch of global size {batch_size}.")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    generator = torch.Generator(device=torch_device) if augment else None
    if torch_device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed volume shape: pick the fastest kernels once

    opts = _opts(
        method=method, descriptor=descriptor, arch=arch, temperature=criterion.temperature,
        sigma=getattr(criterion, "sigma", None), kernel=getattr(criterion, "kernel", None),
        lambda_age=getattr(criterion, "lambda_age", None),
        lambda_anat=getattr(criterion, "lambda_anat", None),
        augment="+".join(augment) or "none", epochs=epochs, batch_size=batch_size,
        batch_size_per_rank=local_batch, lr=lr, lr_step=lr_step, lr_gamma=lr_gamma,
        weight_decay=weight_decay, anatomy_scaling=anatomy_scaling, sync_bn=sync_bn,
        precision=precision, world_size=world, seed=seed, n_subjects=n_subjects,
        input_shape=list(images.shape),
        input_affine=None if images.affine is None else images.affine.tolist(),
        data=data_description,
        anatcl_sklearn_version=__version__, torch_version=torch.__version__,
    )
    cudnn = torch.backends.cudnn.version() if torch_device.type == "cuda" else None
    _log(rank, verbose,
         f"anatcl_sklearn {__version__}, torch {torch.__version__}"
         + (f", cuDNN {cudnn}, {torch.cuda.get_device_name(torch_device)}" if cudnn else "")
         + f"; {world} rank(s) on {torch_device.type}"
         + (f" ({dist.get_backend()})" if world > 1 else "")
         + f"; {method} on {n_subjects} images {tuple(images.shape)}, global batch {batch_size} "
         f"({local_batch} per rank), {len(loader)} steps per epoch; run {run_id}")
    if start_epoch:
        _log(rank, verbose, f"resumed from '{resume}' after epoch {start_epoch}"
             + (f"; nothing to train up to epoch {epochs}" if start_epoch >= epochs else ""))

    def state(epoch):
        return {"opts": opts, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "epoch": epoch, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "run_id": run_id, "history": history}

    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        net.train()
        sampler.set_epoch(epoch)
        if generator is not None:
            generator.manual_seed(_seed_for(seed, epoch, rank))
        total, count = 0.0, 0
        for batch, _ in loader:
            x = batch["x"].to(torch_device, non_blocking=True)
            batch_age = batch.get("age")
            batch_anatomy = batch.get("anatomy")
            if augment:  # views drawn in float32, outside autocast
                views = make_views(x, augment, generator, n_views=2)
            with autocast:
                if augment:
                    z = net(views.flatten(0, 1)).float().view(x.shape[0], 2, -1)
                else:
                    # identical views: one forward, the embedding used twice
                    z = net(x).float().unsqueeze(1).expand(-1, 2, -1)
            loss = criterion(
                z,
                None if batch_age is None else batch_age.to(torch_device),
                None if batch_anatomy is None else batch_anatomy.to(torch_device),
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            value = loss.detach().clone()
            if world > 1:
                dist.all_reduce(value)
                value /= world
            value = float(value)
            if not np.isfinite(value):
                raise NonFiniteLossError(
                    f"Training loss became {value} at epoch {epoch + 1}; stopped before the "
                    "optimizer step. Lower lr, raise temperature, or use precision='fp32'."
                )
            optimizer.step()
            total += value * x.shape[0]
            count += x.shape[0]
        lr_now = optimizer.param_groups[0]["lr"]
        scheduler.step()
        history.append({"epoch": epoch + 1, "train_loss": total / count, "lr": lr_now,
                        "duration": time.perf_counter() - t0})
        _log(rank, verbose, f"epoch {epoch + 1:>4}/{epochs}  loss {total / count:.4f}  "
                            f"lr {lr_now:.3g}  {history[-1]['duration']:.1f} s")
        if rank == 0 and checkpoint is not None and ((epoch + 1) % save_every == 0 or epoch + 1 == epochs):
            _save_checkpoint(checkpoint, state(epoch + 1))
    if world > 1:
        dist.barrier()  # the checkpoint exists for every rank once this returns
    model.input_shape = tuple(images.shape)  # as the checkpoint's opts.input_shape
    model.input_affine = images.affine
    return Bunch(model=model.eval(), history=history, epoch=max(start_epoch, epochs),
                 checkpoint=checkpoint, run_id=run_id, world_size=world)

