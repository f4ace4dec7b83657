"""The one training engine: ``AnatCLEmbedder.fit`` from inputs to fitted attributes.

Single process, ``DataParallel`` over the GPUs of one machine, or ``DistributedDataParallel``
under torchrun: the same skorch loop (:class:`~._net.ContrastiveNet`), the same callbacks
(schedule, Ctrl-C, checkpoints), the same validation. Everything that can fail on the user's
input runs first, on every rank (:func:`._distributed.agree`), before any weight is built;
the estimator's fitted attributes are returned as a dict and set only when training ended
well, so a failed fit leaves the estimator as it was.
"""

import copy
import os

import numpy as np
import torch
from sklearn.utils import check_random_state
from skorch.callbacks import EarlyStopping, ProgressBar

from .._optim import adam_kwargs
from ..anatomy._training import check_desikan_shape, resolve_scaling
from ..exceptions import NonFiniteLossError, warn
from ..images._grid import (
    affine_mismatch,
    affine_or_openbhb,
    target_grid,
    warn_pretrained_grid,
)
from ..losses._validation import check_anatomy
from ._cache import VolumeCache
from ._callbacks import KeepLastEpoch, ResumableCheckpoint, StepLR
from ._data import SubjectDataset
from ._distributed import (
    GlobalBatchSampler,
    SamplerEpoch,
    agree,
    broadcast,
    check_batch,
    resolve_distributed,
    revert_sync_batchnorm,
    sync_state,
    wrap_ddp,
)
from ._net import ContrastiveNet
from ._parallel import AutocastDataParallel, unwrap_module
from ._params import needs_age, needs_anatomy, parse_augment
from ._runs import check_checkpoint_dir, run_key
from ._sharing import scaler_from_config

__all__ = ["fit_embedder", "affine_or_openbhb"]


def fit_embedder(est, X, y, age, anatomy):
    """Validate, build, train; return ``(fitted attributes, interrupted epoch or None)``."""
    est._validate_params()
    train = est.pretrained is None or est.finetune
    ctx = resolve_distributed(est.distributed, est.device) if train else None
    device = _resolve_device(est, ctx)
    use_dp = _check_device_options(est, device, train, ctx)
    check_finite = True if train else "auto"
    target = target_grid(est.conform)  # the weights' grid, if they record one, comes later

    def prepare():
        # Training reads every volume many times, so one up-front pass that finds NaN/inf
        # voxels and damaged files (and names them) before any training costs little;
        # inference checks lazily.
        images = est._check_X(X, check_finite=check_finite, target=target)
        n = len(images)
        if n < 2 and train:
            raise ValueError(
                f"fit needs at least 2 images to contrast when it trains; got {n}. (A frozen "
                "pretrained encoder, pretrained=... with finetune=False, embeds any number.)")
        if train:
            check_batch(ctx, int(est.batch_size))
            return images, _resolve_age(est, y, age, n), _resolve_anatomy(est, anatomy, n)
        return images, None, None  # a frozen encoder: fit only loads weights

    images, age, anatomy = agree(ctx, prepare)
    seed = broadcast(ctx, int(check_random_state(est.random_state).randint(0, 2**31 - 1)))
    fitted = {}
    scaling = resolve_scaling(est.anatomy_scaling, est.descriptor)
    fitted["anatomy_scaler_"] = None
    if anatomy is not None and scaling == "minmax":
        from ..anatomy import AnatomyScaler

        fitted["anatomy_scaler_"] = AnatomyScaler().fit(anatomy)
        anatomy = fitted["anatomy_scaler_"].transform(anatomy)
    if anatomy is not None and needs_anatomy(est):  # now, not at the first batch
        check_anatomy(anatomy, non_negative=True)

    module = _build_module(est, seed)
    saved = getattr(module, "pretrained_config", None)
    if not train and saved:  # the scaler the frozen weights were trained with
        fitted["anatomy_scaler_"] = scaler_from_config(saved.get("anatomy_scaler"))
    images = _conform_to_weights(est, X, module, images, target, check_finite)
    if train:  # the grid these weights are trained on, for whoever reuses them
        module.input_shape = tuple(images.shape)
        module.input_affine = None if images.affine is None else images.affine.copy()
    checkpoint_path = None
    if est.checkpoint_dir is not None and train:
        need = 3 * sum(p.numel() * p.element_size() for p in module.parameters()) + (8 << 20)
        folder = agree(ctx, lambda: check_checkpoint_dir(
            est.checkpoint_dir, 2 * need, writer=ctx is None or ctx.rank == 0))
        key = run_key(est, images, age, anatomy, world=1 if ctx is None else ctx.world)
        checkpoint_path = os.fspath(folder / f"anatcl-run-{key}.pt")
    n = len(images)
    sampler = GlobalBatchSampler(n, int(est.batch_size), seed,
                                 *((ctx.rank, ctx.world) if ctx else (0, 1)))
    net, checkpoint = _build_net(est, module, device, seed, checkpoint_path, sampler, ctx,
                                 tuple(images.shape))
    fitted.update(device_=device, input_shape_=tuple(images.shape),
                  input_affine_=None if images.affine is None else images.affine.copy(),
                  n_features_out_=_n_out(est, module), _n_train_images=n if train else None)
    if est.channels_last:
        module.to(memory_format=torch.channels_last_3d)
    if train and est.verbose and (ctx is None or ctx.rank == 0):
        print(_runtime_summary(device, est, ctx), flush=True)

    cuda_devices = [_cuda_index(device)] if device.startswith("cuda") else []
    cudnn_benchmark = torch.backends.cudnn.benchmark
    remaining = 0
    with torch.random.fork_rng(devices=cuda_devices):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed every GPU
        net.initialize()
        if ctx is not None:
            if est.sync_batchnorm:
                net.module_ = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net.module_)
            net.module_ = wrap_ddp(net.module_, ctx, device)
            net.initialize_optimizer()
        elif use_dp:  # wrap the module, not the net (skorch #602): the loss sees the whole batch
            net.module_ = _data_parallel(net.module_, device, net.autocast_dtype)
            net.initialize_optimizer()
        done = 0
        if checkpoint is not None:
            exists = broadcast(ctx, os.path.exists(checkpoint.path))
            done = agree(ctx, lambda: checkpoint.restore(net) if exists else 0)
            if ctx is not None and len(set(_gather(ctx, done))) > 1:
                raise RuntimeError(f"Checkpoint '{checkpoint.path}' reads differently on the "
                                   "ranks (is checkpoint_dir on a file system they all share?).")
        remaining = int(est.max_epochs) - done if train else 0
        try:
            if remaining > 0:
                cached = est.cache != "none"
                if cached:
                    net.volume_cache = VolumeCache(
                        images, est.cache_dtype, device if est.cache == "device" else "cpu")
                # fixed input shapes: let cuDNN pick the fastest 3D convolution algorithms
                torch.backends.cudnn.benchmark = cudnn_benchmark or device.startswith("cuda")
                try:
                    net.partial_fit(SubjectDataset(images, age, anatomy, cached=cached),
                                    epochs=remaining)
                except NonFiniteLossError as exc:
                    exc.net = net  # the last good step's weights, for whoever wants them
                    raise
            if ctx is not None:
                sync_state(ctx, unwrap_module(net.module_))
        finally:
            torch.backends.cudnn.benchmark = cudnn_benchmark
            net.volume_cache = None  # never keep (or pickle) a copy of the training data
            # nor training-only generators: a CUDA generator cannot be unpickled without CUDA
            net.augment_generator = None
            if checkpoint is not None:
                checkpoint.generators = {}
            # nor Adam's moments: twice the weights (256 MiB for ResNet-18) in every pickle and
            # joblib copy, for a fitted embedder that only transforms (each fit starts afresh;
            # resuming reads checkpoint_dir's files, which keep them)
            net.optimizer_.state.clear()
            net.module_ = unwrap_module(net.module_)  # plain keys for pickling and saving
            if est.sync_batchnorm and ctx is not None:
                net.module_ = revert_sync_batchnorm(net.module_)
            net.dist_world = None
            _drop_sampler(net)
    fitted["net_"] = net
    fitted["history_"] = net.history
    keeper = dict(net.callbacks_)["keep_last_epoch"]
    interrupted = getattr(keeper, "interrupted_epoch_", None) if remaining > 0 else None
    return fitted, interrupted


# -- validation -------------------------------------------------------------------------------


def _resolve_device(est, ctx):
    if ctx is not None and est.device == "auto":
        return f"cuda:{ctx.local_rank}" if ctx.backend == "nccl" else "cpu"
    if est.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(est.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={est.device!r} but CUDA is not available; use device='auto' or 'cpu'.")
    return device


def _check_device_options(est, device, train, ctx):
    if est.precision == "bf16" and train and not device.startswith("cuda"):
        raise ValueError(
            "precision='bf16' trains on CUDA only: on the CPU, torch's bfloat16 3D-convolution "
            "backward intermittently returns non-finite gradients (measured with torch 2.13: "
            "15 of 43 short fits). Use precision='fp32' on the CPU."
        )
    if ctx is not None:
        if est.compile and train:
            raise ValueError("compile=True is not supported under torchrun (distributed "
                             "training) yet; set compile=False.")
        if est.sync_batchnorm and not device.startswith("cuda"):
            raise ValueError("sync_batchnorm=True needs CUDA: torch's SyncBatchNorm runs on GPUs "
                             f"only (this process trains on {device!r}).")
        return False
    if est.sync_batchnorm and train:
        warn("sync_batchnorm=True has no effect outside torchrun (one process sees the "
                      "whole batch already).", UserWarning)
    use_dp = _use_data_parallel(est.data_parallel, device)
    if est.data_parallel is True and not use_dp and train:
        warn(
            f"data_parallel=True has no effect on device {device!r}: DataParallel spreads "
            "batches over CUDA GPUs only. Training runs on this device alone.",
            UserWarning)
    if use_dp and est.compile and train:
        raise ValueError(
            f"compile=True cannot train under DataParallel (data_parallel={est.data_parallel!r}"
            f" with {torch.cuda.device_count()} GPUs visible): DataParallel's replication "
            "rewrites a torch.compile wrapper's model. Set data_parallel=False to compile on "
            "one GPU, or compile=False to use every GPU."
        )
    return use_dp


def _resolve_age(est, y, age, n):
    if age is None and est.use_y_as_age and y is not None:
        age = y
    elif age is not None and est.use_y_as_age and y is not None:
        a = np.asarray(age, dtype=float)
        yy = np.asarray(y)
        if yy.shape != a.shape or not np.allclose(yy.astype(float), a):
            raise ValueError(
                "use_y_as_age=True but both y and age were given and they differ; pass only "
                "one of them so it is clear which is age."
            )
    if age is None:
        if needs_age(est):
            hint = " (y was given but is not used as age unless use_y_as_age=True)" \
                if y is not None else ""
            raise ValueError(
                f"method={est.method!r} needs age: pass fit(X, age=...) (routed with "
                f"set_fit_request(age=True) in a pipeline){hint}."
            )
        return None
    try:
        age = np.asarray(age, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"age must be numeric (years); got values like "
                        f"{np.asarray(age).ravel()[:3]}.") from exc
    if age.ndim == 2 and age.shape[1] == 1:
        age = age[:, 0]
    if age.ndim != 1 or age.shape[0] != n:
        raise ValueError(f"age must have shape ({n},), one value per image; got shape {age.shape}.")
    # checked in the dtype training uses: 1e300 is finite in float64, inf in float32
    with np.errstate(over="ignore"):
        finite = np.isfinite(age.astype(np.float32))
    if not finite.all():
        bad = np.flatnonzero(~finite)[:5].tolist()
        raise ValueError(f"age has values that are not finite in float32 (NaN, inf, or beyond "
                         f"+-3.4e38) at indices {bad}: {age[bad].tolist()}.")
    return age


def _resolve_anatomy(est, anatomy, n):
    if anatomy is None:
        if needs_anatomy(est):
            raise ValueError(
                f"method='anatcl' with lambda_anat={est.lambda_anat} needs anatomy: pass "
                "fit(X, anatomy=...) with an array (n_subjects, 68, 3) of Desikan (CT, GMV, "
                "SA) measures (see anatcl_sklearn.anatomy), or set lambda_anat=0."
            )
        return None
    anatomy = np.asarray(anatomy)
    if not np.issubdtype(anatomy.dtype, np.number) or np.iscomplexobj(anatomy):
        raise TypeError(f"anatomy must be a real numeric array; got dtype {anatomy.dtype}.")
    anatomy = anatomy.astype(np.float64)
    check_desikan_shape(anatomy, n)
    with np.errstate(over="ignore"):
        finite = np.isfinite(anatomy.astype(np.float32))
    if not finite.all():
        subj = np.flatnonzero(~finite.all(axis=(1, 2)))[:5].tolist()
        raise ValueError(f"anatomy has values that are not finite in float32 (NaN, inf, or "
                         f"beyond +-3.4e38) for subjects {subj}.")
    return anatomy


# -- building -----------------------------------------------------------------------------


def _build_module(est, seed):
    from ..models import AnatCLModel, resolve_pretrained

    if est.pretrained is not None:
        model = resolve_pretrained(est.pretrained, fold=int(est.fold), arch=est.arch)
        # a model object passed by the user is theirs: never train or move it in place
        return copy.deepcopy(model) if model is est.pretrained else model
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU's only: GPUs' RNGs stay the user's
        if est.method == "l1":
            return AnatCLModel(est.arch, out_dim=1, normalize=False)
        return AnatCLModel(est.arch)


def _conform_to_weights(est, X, module, images, target, check_finite):
    """Conform to the grid pretrained weights record (else OpenBHB's); warn on a mismatch."""
    if est.pretrained is None:
        return images
    shape = getattr(module, "input_shape", None)
    trained_grid = None if shape is None else (
        tuple(shape), affine_or_openbhb(shape, getattr(module, "input_affine", None)))
    if target is not None and trained_grid is not None and (
            trained_grid[0] != tuple(target[0])
            or affine_mismatch(trained_grid[1], target[1]) is not None):
        target = target_grid(est.conform, shape, getattr(module, "input_affine", None),
                             recorded_by="weights")
        images = est._check_X(X, check_finite=check_finite, target=target)
    warn_pretrained_grid(images, *(trained_grid or (None, None)))
    return images


def _criterion(est, ctx):
    from .. import losses
    from ..losses._distributed import DistributedContrastiveLoss

    if est.method == "l1":
        return losses.L1AgeLoss, {}, ("age",)
    params = dict(temperature=float(est.temperature))
    if est.method != "simclr":
        params.update(sigma=float(est.sigma), kernel=est.kernel)
    if est.method == "anatcl":
        params.update(descriptor=est.descriptor, lambda_age=float(est.lambda_age),
                      lambda_anat=float(est.lambda_anat))
    inputs = {"anatcl": ("age", "anatomy"), "yaware": ("age",), "expw": ("age",),
              "simclr": ()}[est.method]  # either may be absent (None) when its lambda is 0
    if ctx is not None:  # anchors of this rank against the all-gathered global batch
        return DistributedContrastiveLoss, dict(method=est.method, **params), inputs
    cls = {"anatcl": losses.AnatCLLoss, "yaware": losses.YAwareLoss, "expw": losses.ExpWLoss,
           "simclr": losses.SimCLRLoss}[est.method]
    return cls, params, inputs


def _build_net(est, module, device, seed, checkpoint_path, sampler, ctx, input_shape):
    criterion, criterion_params, loss_inputs = _criterion(est, ctx)
    augment = parse_augment(est.augment)
    aug_device = device if device.startswith("cuda") else "cpu"
    rank = 0 if ctx is None else ctx.rank
    aug_gen = torch.Generator(device=aug_device).manual_seed(seed + 2 + 7919 * rank)

    callbacks = [("keep_last_epoch", KeepLastEpoch()),
                 ("step_lr", StepLR(float(est.lr), int(est.lr_step), float(est.lr_gamma))),
                 ("sampler_epoch", SamplerEpoch(sampler))]
    checkpoint = None
    if checkpoint_path is not None:
        checkpoint = ResumableCheckpoint(
            checkpoint_path, {"augment": aug_gen}, input_shape=input_shape, writer=rank == 0,
            run_key=os.path.basename(checkpoint_path).removeprefix("anatcl-run-").removesuffix(".pt"))
        callbacks.append(("checkpoint", checkpoint))
    if est.early_stopping is not None:
        callbacks.append(("early_stopping", EarlyStopping(
            monitor="train_loss", patience=int(est.early_stopping), lower_is_better=True)))
    if rank == 0 and (est.verbose >= 2 or (est.verbose >= 1 and _stderr_is_tty())):
        callbacks.append(("progress_bar", ProgressBar()))
    for i, cb in enumerate(est.callbacks or []):
        callbacks.append(cb if isinstance(cb, tuple) else (f"user_{i}", cb))

    params = dict(
        module=module,
        criterion=criterion,
        optimizer=torch.optim.Adam,
        lr=float(est.lr),
        optimizer__weight_decay=float(est.weight_decay),
        **{f"optimizer__{k}": v for k, v in adam_kwargs(device).items()},
        max_epochs=int(est.max_epochs),
        batch_size=int(est.batch_size),
        train_split=None,
        # one seeded permutation per epoch, cut into global batches (this rank's shard of each)
        iterator_train__batch_sampler=sampler,
        iterator_train__batch_size=1,
        iterator_train__num_workers=int(est.num_workers),
        iterator_valid__num_workers=int(est.num_workers),
        device=device,
        callbacks=callbacks,
        verbose=int(est.verbose) if rank == 0 else 0,
        loss_inputs=loss_inputs,
        n_views=None if est.method == "l1" else 2,
        augment=augment,
        augment_generator=aug_gen,
        autocast_dtype=torch.bfloat16 if est.precision == "bf16" else None,
        channels_last=bool(est.channels_last),
        compile=bool(est.compile),
        dist_world=None if ctx is None else ctx.world,
    )
    if device.startswith("cuda"):
        params["iterator_train__pin_memory"] = True
    if est.verbose == 0 or rank != 0:
        params["callbacks__print_log"] = None
    for key, value in criterion_params.items():
        params[f"criterion__{key}"] = value
    params.update(est.net_params or {})
    return ContrastiveNet(**params), checkpoint


def _drop_sampler(net):
    """The batch sampler and its callback are training-only: not kept in the fitted net."""
    net.iterator_train__batch_sampler = None
    cbs = dict(getattr(net, "callbacks_", []))
    if "sampler_epoch" in cbs:
        cbs["sampler_epoch"].sampler = None


def _n_out(est, module):
    if est.output == "projection":
        return module.head[-1].out_features
    return module.encoder.n_features


def _gather(ctx, value):
    import torch.distributed as dist

    out = [None] * ctx.world
    dist.all_gather_object(out, value)
    return out


def _use_data_parallel(setting, device):
    """Whether to wrap the module in DataParallel: CUDA only, and with "auto" only when several
    GPUs are visible."""
    return device.startswith("cuda") and (
        setting is True or (setting == "auto" and torch.cuda.device_count() > 1))


def _cuda_index(device):
    index = torch.device(device).index
    return torch.cuda.current_device() if index is None else index


def _data_parallel(module, device, autocast_dtype):
    """Wrap ``module`` for every visible GPU, the training device first (DataParallel keeps the
    parameters and gathers the outputs on its first device)."""
    first = _cuda_index(device)
    ids = [first] + [i for i in range(torch.cuda.device_count()) if i != first]
    return AutocastDataParallel(module, autocast_dtype, device_ids=ids, output_device=first)


def _runtime_summary(device, est, ctx=None):
    """One line with the versions that decide speed (some torch releases disable cuDNN for bf16
    3D convolutions, which is about 4x slower), logged at the start of training."""
    parts = [f"anatcl-sklearn: torch {torch.__version__}"]
    if device.startswith("cuda"):
        idx = _cuda_index(device)
        parts.append(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
        parts.append(f"{torch.cuda.device_count()} GPU(s), {torch.cuda.get_device_name(idx)}")
    else:
        parts.append(f"CPU, {torch.get_num_threads()} threads")
    if ctx is not None:
        parts.append(f"DistributedDataParallel over {ctx.world} processes ({ctx.backend}), "
                     f"global batch {est.batch_size}")
    parts.append(f"precision {est.precision}, augment {est.augment!r}, cache {est.cache!r}")
    return "; ".join(parts)


def _stderr_is_tty():
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
