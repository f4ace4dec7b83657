"""The second stage of ``fit``: run a :class:`~._plan.FitPlan` to fitted attributes.

:func:`fit_embedder` plans (:func:`._plan.plan_fit`: every decision and check, once, before
any work, agreed by every process) and runs the plan: the module, the skorch
:class:`~._net.ContrastiveNet` and its callbacks (schedule, Ctrl-C, checkpoints), wrapped and
unwrapped by the plan's launcher (one process, DataParallel or DDP: :mod:`._launch`, which
alone knows which). A frozen pretrained encoder gets a net with no optimizer and no loss. The
fitted attributes are set only when training ended well, so a failed fit leaves the estimator
as it was.
"""

import copy
import os

import torch
from skorch.callbacks import EarlyStopping, ProgressBar

from .._optim import adam_kwargs
from ..exceptions import NonFiniteLossError, warn
from ..images._grid import affine_or_openbhb
from ._cache import VolumeCache
from ._callbacks import KeepLastEpoch, ResumableCheckpoint, StepLR
from ._data import SubjectDataset
from ._distributed import SamplerEpoch
from ._launch import _cuda_index
from ._net import ContrastiveNet
from ._params import parse_augment
from ._plan import plan_fit

__all__ = ["fit_embedder", "affine_or_openbhb", "run_plan"]


def fit_embedder(est, X, y, age, anatomy):
    """Plan, run, and set ``est``'s fitted attributes (only when it ended well)."""
    fitted, interrupted = run_plan(est, plan_fit(est, X, y, age, anatomy))
    # Only now, after training ended well: a fit that raised leaves the estimator as it was
    # (its previous fitted state, or unfitted), never new weights with an old history.
    est.__dict__.update(fitted)
    if interrupted is not None:
        warn(
            f"Training was interrupted during epoch {interrupted}; the weights of the last "
            f"finished epoch ({interrupted - 1}) were kept and the embedder is usable.",
            RuntimeWarning,
        )
    return est


def run_plan(est, plan):
    """Build and train as ``plan`` says; return ``(fitted attributes, interrupted epoch)``."""
    launcher, images, device, seed = plan.launcher, plan.images, plan.launcher.device, plan.seed
    module = _build_module(est, plan)
    if plan.train:  # the grid these weights are trained on, for whoever reuses them
        module.input_shape = tuple(images.shape)
        module.input_affine = None if images.affine is None else images.affine.copy()
    n = len(images)
    sampler = launcher.sampler(n, int(est.batch_size), seed)
    net, checkpoint = _build_net(est, module, plan, sampler)
    fitted = dict(anatomy_scaler_=plan.anatomy_scaler, device_=device,
                  input_shape_=tuple(images.shape),
                  input_affine_=None if images.affine is None else images.affine.copy(),
                  n_features_out_=_n_out(est, module), _n_train_images=n if plan.train else None)
    if est.channels_last:
        module.to(memory_format=torch.channels_last_3d)
    if plan.train and est.verbose and launcher.is_writer:
        print(_runtime_summary(device, est, launcher), flush=True)

    cuda_devices = [_cuda_index(device)] if device.startswith("cuda") else []
    cudnn_benchmark = torch.backends.cudnn.benchmark
    remaining = 0
    with torch.random.fork_rng(devices=cuda_devices):
        torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed every GPU
        if not plan.train:  # a frozen encoder: no optimizer, no loss
            net.initialize_frozen()
            _drop_training_state(net, checkpoint)
            return dict(fitted, net_=net, history_=net.history), None
        net.initialize()
        launcher.wrap(net)
        done = 0
        if checkpoint is not None:
            exists = launcher.broadcast(os.path.exists(checkpoint.path))
            done = launcher.agree(lambda: checkpoint.restore(net) if exists else 0)
            if len(set(launcher.gather(done))) > 1:
                raise RuntimeError(f"Checkpoint '{checkpoint.path}' reads differently on the "
                                   "ranks (is checkpoint_dir on a file system they all share?).")
        remaining = int(est.max_epochs) - done
        try:
            if remaining > 0:
                cached = est.cache != "none"
                if cached:
                    net.volume_cache = VolumeCache(
                        images, est.cache_dtype, device if est.cache == "device" else "cpu")
                # fixed input shapes: let cuDNN pick the fastest 3D convolution algorithms
                torch.backends.cudnn.benchmark = cudnn_benchmark or device.startswith("cuda")
                try:
                    net.partial_fit(SubjectDataset(images, plan.age, plan.anatomy, cached=cached),
                                    epochs=remaining)
                except NonFiniteLossError as exc:
                    exc.net = net  # the last good step's weights, for whoever wants them
                    raise
            launcher.finish(net)
        finally:
            torch.backends.cudnn.benchmark = cudnn_benchmark
            # nor Adam's moments: twice the weights (256 MiB for ResNet-18) in every pickle and
            # joblib copy, for a fitted embedder that only transforms (each fit starts afresh;
            # resuming reads checkpoint_dir's files, which keep them)
            net.optimizer_.state.clear()
            launcher.unwrap(net)  # plain keys for pickling and saving
            _drop_training_state(net, checkpoint)
    keeper = dict(net.callbacks_)["keep_last_epoch"]
    interrupted = getattr(keeper, "interrupted_epoch_", None) if remaining > 0 else None
    return dict(fitted, net_=net, history_=net.history), interrupted


def _drop_training_state(net, checkpoint):
    """Never keep (or pickle) training-only state in the fitted net: a copy of the training
    data, generators (a CUDA generator cannot be unpickled without CUDA), the batch sampler."""
    net.volume_cache = None
    net.augment_generator = None
    if checkpoint is not None:
        checkpoint.generators = {}
    net.dist_world = None
    net.iterator_train__batch_sampler = None
    cbs = dict(getattr(net, "callbacks_", []))
    if "sampler_epoch" in cbs:
        cbs["sampler_epoch"].sampler = None


# -- building -----------------------------------------------------------------------------


def _build_module(est, plan):
    from ..models import AnatCLModel

    if plan.weights is not None:
        model = plan.weights.model
        # a model object passed by the user is theirs: never train or move it in place
        return copy.deepcopy(model) if model is est.pretrained else model
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(plan.seed)  # the CPU's only: GPUs' stay the user's
        if est.method == "l1":
            return AnatCLModel(est.arch, out_dim=1, normalize=False)
        return AnatCLModel(est.arch)


def _criterion(est, launcher):
    from .. import losses

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
    return (*launcher.loss(est.method, params), inputs)


def _build_net(est, module, plan, sampler):
    launcher, device, seed = plan.launcher, plan.launcher.device, plan.seed
    criterion, criterion_params, loss_inputs = _criterion(est, launcher)
    augment = parse_augment(est.augment)
    aug_device = device if device.startswith("cuda") else "cpu"
    aug_gen = torch.Generator(device=aug_device).manual_seed(seed + 2 + 7919 * launcher.rank)
    writer = launcher.is_writer

    callbacks = [("keep_last_epoch", KeepLastEpoch()),
                 ("step_lr", StepLR(float(est.lr), int(est.lr_step), float(est.lr_gamma))),
                 ("sampler_epoch", SamplerEpoch(sampler))]
    checkpoint = None
    if plan.checkpoint_path is not None:
        checkpoint = ResumableCheckpoint(plan.checkpoint_path, {"augment": aug_gen},
                                         input_shape=tuple(plan.images.shape), writer=writer,
                                         run_key=plan.run_key)
        callbacks.append(("checkpoint", checkpoint))
    if est.early_stopping is not None:
        callbacks.append(("early_stopping", EarlyStopping(
            monitor="train_loss", patience=int(est.early_stopping), lower_is_better=True)))
    if writer and (est.verbose >= 2 or (est.verbose >= 1 and _stderr_is_tty())):
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
        verbose=int(est.verbose) if writer else 0,
        loss_inputs=loss_inputs,
        n_views=None if est.method == "l1" else 2,
        augment=augment,
        augment_generator=aug_gen,
        autocast_dtype=torch.bfloat16 if est.precision == "bf16" else None,
        channels_last=bool(est.channels_last),
        compile=bool(est.compile),
        dist_world=launcher.loss_world,
    )
    if device.startswith("cuda"):
        params["iterator_train__pin_memory"] = True
    if est.verbose == 0 or not writer:
        params["callbacks__print_log"] = None
    for key, value in criterion_params.items():
        params[f"criterion__{key}"] = value
    params.update(est.net_params or {})
    return ContrastiveNet(**params), checkpoint


def _n_out(est, module):
    if est.output == "projection":
        return module.head[-1].out_features
    return module.encoder.n_features


def _runtime_summary(device, est, launcher):
    """One line with the versions that decide speed (some torch releases disable cuDNN for bf16
    3D convolutions, which is about 4x slower), logged at the start of training."""
    parts = [f"anatcl-sklearn: torch {torch.__version__}"]
    if device.startswith("cuda"):
        idx = _cuda_index(device)
        parts.append(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
        parts.append(f"{torch.cuda.device_count()} GPU(s), {torch.cuda.get_device_name(idx)}")
    else:
        parts.append(f"CPU, {torch.get_num_threads()} threads")
    if launcher.describe(est):
        parts.append(launcher.describe(est))
    parts.append(f"precision {est.precision}, augment {est.augment!r}, cache {est.cache!r}")
    return "; ".join(parts)


def _stderr_is_tty():
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
