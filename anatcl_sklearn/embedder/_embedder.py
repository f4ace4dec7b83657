"""AnatCLEmbedder: pretrain (or load) an AnatCL 3D ResNet and embed brain images.

Data flow: ``fit(X, age=, anatomy=)`` validates the parameters and inputs
(:func:`~anatcl_sklearn._images.check_images`), scales anatomy, builds a
:class:`~anatcl_sklearn.embedder._net.ContrastiveNet` (skorch) around an
:class:`~anatcl_sklearn.models.AnatCLModel` and trains it on batches of
:class:`~anatcl_sklearn.embedder._data.SubjectDataset`; ``transform(X)`` streams the images
through the frozen encoder.
"""

import contextlib
import copy
import hashlib
import os
import warnings

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import EarlyStopping, ProgressBar

from .._optim import adam_kwargs
from ..anatomy._training import check_desikan_shape, resolve_scaling
from ..images._checking import _check_images, resolve_target
from ..images._grid import (
    OPENBHB_AFFINE,
    OPENBHB_SHAPE,
    affine_mismatch,
    describe_affine,
    warn_pretrained_grid,
)
from ..losses._validation import check_anatomy
from ._cache import VolumeCache
from ._callbacks import KeepLastEpoch, ResumableCheckpoint, StepLR
from ._data import SubjectDataset
from ._net import ContrastiveNet
from ._parallel import AutocastDataParallel, unwrap_module
from ._params import needs_age, needs_anatomy, parse_augment, validate_params
from ._sharing import push_to_hub, save_pretrained, scaler_from_config


class AnatCLEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Pretrain a 3D ResNet with AnatCL (or a baseline) and embed brain MRIs.

    A scikit-learn transformer: ``fit`` pretrains the encoder with a weakly-supervised
    contrastive loss guided by age and anatomy (or loads released weights), ``transform``
    returns the frozen encoder's features, the input of the paper's linear probes. It works in
    :class:`~sklearn.pipeline.Pipeline`, :func:`~sklearn.model_selection.cross_val_score` and
    :class:`~sklearn.model_selection.GridSearchCV`, with age and anatomy routed per fold as
    metadata.

    Parameters
    ----------
    method : {"anatcl", "yaware", "expw", "simclr", "l1"}, default="anatcl"
        The pretraining objective: AnatCL (Eq. 4 of the paper), the y-Aware and ExpW age
        baselines, self-supervised SimCLR, or L1 age regression.
    descriptor : {"global", "local"}, default="global"
        AnatCL's anatomical similarity: per measure over regions (Eq. 3, AnatCL-G) or per
        region over measures (Eq. 2, AnatCL-L).
    sigma : float, default=2.0
        Width (years) of the age kernel.
    kernel : {"rbf", "gaussian", "cauchy"}, default="rbf"
        Age kernel of the age term (AnatCL, y-Aware, ExpW); the paper uses the RBF kernel.
    lambda_age : float, default=1.0
        Weight of the age term of AnatCL (λ1 in Eq. 4).
    lambda_anat : float, default=1.0
        Weight of the anatomy term of AnatCL (λ2 in Eq. 4).
    temperature : float, default=0.1
        Softmax temperature τ of the contrastive losses.
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
        Encoder architecture (resnet18/34 give 512 features, resnet50 2048).
    augment : str or list of str, default="none"
        Augmentations making the two views: ``"none"`` (the paper: identical views, each volume
        forwarded once), ``"all"``, or names among ``flip``, ``crop``, ``cutout``, ``blur``,
        ``noise`` (a list or a ``"+"``-joined string).
    max_epochs : int, default=300
        Training epochs.
    batch_size : int, default=32
        Subjects per training batch (also the inference batch size).
    lr : float, default=1e-4
        Adam learning rate.
    lr_step : int, default=10
        Epochs between learning-rate decays.
    lr_gamma : float, default=0.9
        Learning-rate decay factor.
    weight_decay : float, default=5e-5
        Adam weight decay (coupled L2, as ``torch.optim.Adam``). The released AnatCL runs used
        5e-5 (their run names read ``wd5e-05``).
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    data_parallel : {"auto", True, False}, default="auto"
        Wrap the module in :class:`torch.nn.DataParallel` when several GPUs are visible, so the
        contrastive loss sees the whole batch. The training device comes first (it holds the
        parameters); BatchNorm normalises each GPU's share of the batch with that share's
        statistics. Cannot be combined with ``compile=True``.
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"`` runs the network under bfloat16 autocast (losses stay in float32). Training
        in bf16 needs CUDA; ``transform`` may use it on the CPU too.
    channels_last : bool, default=False
        Use the ``channels_last_3d`` memory format (can speed up cuDNN on recent GPUs).
    compile : bool, default=False
        Compile the module with ``torch.compile`` (skorch's ``compile``) for training.
    cache : {"none", "memory", "device"}, default="none"
        Keep a compact copy of the training volumes in memory or on the training device (GPU),
        read once before the first epoch, so later epochs do no file I/O (OpenBHB: 15.8 GiB
        in float16). With ``"none"`` volumes are read from X every epoch. When training on
        the CPU, ``"device"`` is the same as ``"memory"``.
    cache_dtype : {"float16", "uint8"}, default="float16"
        Storage of the cache (uint8 keeps a per-image offset and scale).
    pretrained : str, path, dict or None, default=None
        Pretrained weights: an official name (``"anatcl-global"``, ``"anatcl-local"``), a
        saved-model folder (:meth:`save_pretrained`), a Hugging Face Hub reference
        ``"hf://owner/repo"`` or ``"hf://owner/repo@revision"`` (``[hub]`` extra), a checkpoint
        path or a state dict. ``fit`` then loads them and trains nothing (the paper's frozen
        encoder) unless ``finetune=True``.
    fold : int, default=0
        Which of the five official folds to load when ``pretrained`` is an official name.
    finetune : bool, default=False
        With ``pretrained``, continue training from the loaded weights.
    conform : bool, default=False
        Resample each image, as it is read (batch by batch, so memory stays flat), to the grid
        of the pretrained weights (OpenBHB's 121 x 145 x 121 at 1.5 mm for the released ones
        and when training from scratch), through its affine: exactly (zero padding, cropping,
        axis flips) when the voxel centres line up, as for CAT12 >= 12.8's 113 x 137 x 113
        maps, by trilinear interpolation otherwise. Images may then differ in shape,
        orientation and voxel size; each needs an affine (NIfTI files, nibabel images), and
        arrays or ``.npy`` files are accepted only on the target's shape. See
        :func:`~anatcl_sklearn.conform_image`. With ``False``, all images must already share
        one grid, and mixed orientations are refused.
    output : {"encoder", "projection"}, default="encoder"
        ``transform`` returns the encoder features (512-d for ResNet-18, the paper's probe
        input) or the L2-normalised projection head output (128-d).
    anatomy_scaling : {"auto", "minmax", "none"}, default="auto"
        Min-max scaling (γ in Eq. 2) of anatomy, fitted on the training data. ``"auto"`` scales
        for the local descriptor and not for the global one, as the paper writes; the released
        runs' names read ``normTrue`` for both descriptors, so use ``"minmax"`` to match the
        released global weights.
    use_y_as_age : bool, default=False
        Take ``y`` as age when ``age`` is not given (for grids that probe age). By default ``y``
        is ignored, as in any unsupervised transformer: in a pipeline it is the downstream
        label, not age.
    num_workers : int, default=0
        DataLoader workers reading images.
    checkpoint_dir : str or None, default=None
        Directory for resumable checkpoints. Each run writes its own file, keyed by the
        parameters and the training data, so parallel grid searches never collide; a fit
        whose file exists resumes from its last finished epoch.
    early_stopping : int or None, default=None
        Stop when the training loss has not improved for this many epochs.
    callbacks : list of skorch callbacks or None, default=None
        Extra callbacks for the skorch net.
    net_params : dict or None, default=None
        Extra prefix-routed skorch parameters, e.g. ``{"optimizer__betas": (0.9, 0.99)}``.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and augmentation (CPU runs are reproducible).
        The global torch RNG is left as it was.
    verbose : int, default=1
        0 silent, 1 a log line per epoch (and a progress bar on a terminal), 2 always a
        progress bar.

    Attributes
    ----------
    net_ : ContrastiveNet
        The fitted skorch net; ``net_.module_`` is the :class:`AnatCLModel`. It keeps no
        training data, generators or Adam moments, so a pickled embedder is about the size of
        its weights (128 MiB for ResNet-18); a new ``fit`` trains afresh.
    history_ : skorch.history.History
        Per-epoch training log (loss, learning rate, duration).
    input_shape_ : tuple of int
        The (D, H, W) grid seen in ``fit`` (the target grid with ``conform=True``);
        ``transform`` requires the same.
    input_affine_ : ndarray of shape (4, 4) or None
        The voxel-to-world affine of that grid, when the images carried one; ``transform``
        refuses images of another orientation, voxel size or origin (unless ``conform=True``).
    anatomy_scaler_ : AnatomyScaler or None
        The fitted min-max scaler of anatomy, when scaling is used.
    device_ : str
        The device used.
    n_features_out_ : int
        Number of output features.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.linear_model import LogisticRegression
    >>> from anatcl_sklearn import AnatCLEmbedder
    >>> pipe = make_pipeline(AnatCLEmbedder(max_epochs=2), LogisticRegression())  # doctest: +SKIP
    """

    def __init__(
        self,
        method="anatcl",
        descriptor="global",
        sigma=2.0,
        kernel="rbf",
        lambda_age=1.0,
        lambda_anat=1.0,
        temperature=0.1,
        arch="resnet18",
        augment="none",
        max_epochs=300,
        batch_size=32,
        lr=1e-4,
        lr_step=10,
        lr_gamma=0.9,
        weight_decay=5e-5,
        device="auto",
        data_parallel="auto",
        precision="fp32",
        channels_last=False,
        compile=False,
        cache="none",
        cache_dtype="float16",
        pretrained=None,
        fold=0,
        finetune=False,
        conform=False,
        output="encoder",
        anatomy_scaling="auto",
        use_y_as_age=False,
        num_workers=0,
        checkpoint_dir=None,
        early_stopping=None,
        callbacks=None,
        net_params=None,
        random_state=None,
        verbose=1,
    ):
        self.method = method
        self.descriptor = descriptor
        self.sigma = sigma
        self.kernel = kernel
        self.lambda_age = lambda_age
        self.lambda_anat = lambda_anat
        self.temperature = temperature
        self.arch = arch
        self.augment = augment
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_step = lr_step
        self.lr_gamma = lr_gamma
        self.weight_decay = weight_decay
        self.device = device
        self.data_parallel = data_parallel
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.cache = cache
        self.cache_dtype = cache_dtype
        self.pretrained = pretrained
        self.fold = fold
        self.finetune = finetune
        self.conform = conform
        self.output = output
        self.anatomy_scaling = anatomy_scaling
        self.use_y_as_age = use_y_as_age
        self.num_workers = num_workers
        self.checkpoint_dir = checkpoint_dir
        self.early_stopping = early_stopping
        self.callbacks = callbacks
        self.net_params = net_params
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _check_X(self, X, check_finite="auto", stacklevel=3, target=None):
        import scipy.sparse

        if scipy.sparse.issparse(X):
            raise TypeError(
                "Sparse input is not supported: AnatCLEmbedder needs dense images, an array "
                "(n_images, D, H, W) or a list of image paths or nibabel images."
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # The grid matters for pretrained weights only; fit compares it with theirs.
            images = _check_images(X, "X", check_finite, warn_grid=False, nonfinite_advice="",
                                   target=target)
        for w in caught:  # re-issue at the user's line (fit, or transform behind set_output)
            warnings.warn(w.message, w.category, stacklevel=stacklevel)
        return images

    def _resolve_age(self, y, age, n):
        if age is None and self.use_y_as_age and y is not None:
            age = y
        elif age is not None and self.use_y_as_age and y is not None:
            a = np.asarray(age, dtype=float)
            yy = np.asarray(y)
            if yy.shape != a.shape or not np.allclose(yy.astype(float), a):
                raise ValueError(
                    "use_y_as_age=True but both y and age were given and they differ; pass only "
                    "one of them so it is clear which is age."
                )
        if age is None:
            if needs_age(self):
                hint = " (y was given but is not used as age unless use_y_as_age=True)" \
                    if y is not None else ""
                raise ValueError(
                    f"method={self.method!r} needs age: pass fit(X, age=...) (routed with "
                    f"set_fit_request(age=True) in a pipeline){hint}."
                )
            return None
        try:
            age = np.asarray(age, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"age must be numeric (years); got values like {np.asarray(age).ravel()[:3]}.") from exc
        if age.ndim == 2 and age.shape[1] == 1:
            age = age[:, 0]
        if age.ndim != 1 or age.shape[0] != n:
            raise ValueError(f"age must have shape ({n},), one value per image; got shape {age.shape}.")
        if not np.all(np.isfinite(age)):
            bad = np.flatnonzero(~np.isfinite(age))[:5].tolist()
            raise ValueError(f"age has non-finite values (NaN or inf) at indices {bad}.")
        return age

    def _resolve_anatomy(self, anatomy, n):
        if anatomy is None:
            if needs_anatomy(self):
                raise ValueError(
                    f"method='anatcl' with lambda_anat={self.lambda_anat} needs anatomy: pass "
                    "fit(X, anatomy=...) with an array (n_subjects, 68, 3) of Desikan (CT, GMV, "
                    "SA) measures (see anatcl_sklearn.anatomy), or set lambda_anat=0."
                )
            return None
        anatomy = np.asarray(anatomy)
        if not np.issubdtype(anatomy.dtype, np.number) or np.iscomplexobj(anatomy):
            raise TypeError(f"anatomy must be a real numeric array; got dtype {anatomy.dtype}.")
        anatomy = anatomy.astype(np.float64)
        check_desikan_shape(anatomy, n)
        if not np.all(np.isfinite(anatomy)):
            subj = np.flatnonzero(~np.isfinite(anatomy).all(axis=(1, 2)))[:5].tolist()
            raise ValueError(f"anatomy has non-finite values (NaN or inf) for subjects {subj}.")
        return anatomy

    def _resolve_device(self):
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        device = str(self.device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available; use device='auto' or 'cpu'.")
        return device

    # ------------------------------------------------------------------ building
    def _build_module(self, seed):
        from ..models import AnatCLModel, resolve_pretrained

        if self.pretrained is not None:
            model = resolve_pretrained(self.pretrained, fold=int(self.fold), arch=self.arch)
            # a model object passed by the user is theirs: never train or move it in place
            return copy.deepcopy(model) if model is self.pretrained else model
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # the CPU's only: GPUs' RNGs stay the user's
            if self.method == "l1":
                return AnatCLModel(self.arch, out_dim=1, normalize=False)
            return AnatCLModel(self.arch)

    def _criterion(self):
        from .. import losses

        if self.method == "anatcl":
            return losses.AnatCLLoss, dict(
                descriptor=self.descriptor, sigma=float(self.sigma),
                lambda_age=float(self.lambda_age), lambda_anat=float(self.lambda_anat),
                temperature=float(self.temperature), kernel=self.kernel,
            ), ("age", "anatomy")  # either may be absent (None) when its lambda is 0
        if self.method == "yaware":
            return losses.YAwareLoss, dict(sigma=float(self.sigma), temperature=float(self.temperature),
                                           kernel=self.kernel), ("age",)
        if self.method == "expw":
            return losses.ExpWLoss, dict(sigma=float(self.sigma), temperature=float(self.temperature),
                                         kernel=self.kernel), ("age",)
        if self.method == "simclr":
            return losses.SimCLRLoss, dict(temperature=float(self.temperature)), ()
        return losses.L1AgeLoss, {}, ("age",)

    def _run_key(self, images, age, anatomy):
        """A key unique to these parameters and this training data, for checkpoint files."""
        h = hashlib.sha256()
        params = {k: v for k, v in self.get_params(deep=False).items()
                  if k not in ("verbose", "callbacks", "checkpoint_dir", "num_workers", "pretrained")}
        h.update(repr(sorted(params.items())).encode())
        h.update(repr((len(images), images.shape)).encode())
        if images.sources is not None and not images.in_memory:
            h.update("\0".join(images.sources).encode())
        else:
            for i in sorted({0, len(images) // 2, len(images) - 1}):
                h.update(images.load(i).tobytes())
        for arr in (age, anatomy):
            if arr is not None:
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def _build_net(self, module, n_train, device, seed, run_key):
        criterion, criterion_params, loss_inputs = self._criterion()
        augment = parse_augment(self.augment)
        shuffle_gen = torch.Generator().manual_seed(seed + 1)
        aug_device = device if device.startswith("cuda") else "cpu"
        aug_gen = torch.Generator(device=aug_device).manual_seed(seed + 2)

        callbacks = [("keep_last_epoch", KeepLastEpoch()),
                     ("step_lr", StepLR(float(self.lr), int(self.lr_step), float(self.lr_gamma)))]
        checkpoint = None
        if self.checkpoint_dir is not None:
            path = os.path.join(os.fspath(self.checkpoint_dir), f"anatcl-run-{run_key}.pt")
            checkpoint = ResumableCheckpoint(path, {"shuffle": shuffle_gen, "augment": aug_gen})
            callbacks.append(("checkpoint", checkpoint))
        if self.early_stopping is not None:
            callbacks.append(("early_stopping", EarlyStopping(
                monitor="train_loss", patience=int(self.early_stopping), lower_is_better=True)))
        if self.verbose >= 2 or (self.verbose >= 1 and _stderr_is_tty()):
            callbacks.append(("progress_bar", ProgressBar()))
        for i, cb in enumerate(self.callbacks or []):
            callbacks.append(cb if isinstance(cb, tuple) else (f"user_{i}", cb))

        params = dict(
            module=module,
            criterion=criterion,
            optimizer=torch.optim.Adam,
            lr=float(self.lr),
            optimizer__weight_decay=float(self.weight_decay),
            **{f"optimizer__{k}": v for k, v in adam_kwargs(device).items()},
            max_epochs=int(self.max_epochs),
            batch_size=int(self.batch_size),
            train_split=None,
            iterator_train__shuffle=True,
            iterator_train__generator=shuffle_gen,
            # A last batch of one subject gives a degenerate contrastive batch: drop it.
            iterator_train__drop_last=bool(n_train % int(self.batch_size) == 1),
            iterator_train__num_workers=int(self.num_workers),
            iterator_valid__num_workers=int(self.num_workers),
            device=device,
            callbacks=callbacks,
            verbose=int(self.verbose),
            loss_inputs=loss_inputs,
            n_views=None if self.method == "l1" else 2,
            augment=augment,
            augment_generator=aug_gen,
            autocast_dtype=torch.bfloat16 if self.precision == "bf16" else None,
            channels_last=bool(self.channels_last),
            compile=bool(self.compile),
        )
        if device.startswith("cuda"):
            params["iterator_train__pin_memory"] = True
        if self.verbose == 0:
            params["callbacks__print_log"] = None
        for key, value in criterion_params.items():
            params[f"criterion__{key}"] = value
        params.update(self.net_params or {})
        return ContrastiveNet(**params), checkpoint

    # ------------------------------------------------------------------ fit / transform
    def fit(self, X, y=None, *, age=None, anatomy=None):
        """Pretrain the encoder on images X guided by age and anatomy (or load weights).

        Parameters
        ----------
        X : array of shape (n, D, H, W) or (n, 1, D, H, W), or list of paths or images
            Grey-matter maps: arrays, ``.nii``/``.nii.gz``/``.npy`` paths or nibabel images.
        y : array-like of shape (n,), default=None
            Ignored unless ``use_y_as_age=True`` (then taken as age when ``age`` is None).
        age : array-like of shape (n,), default=None
            Age in years; needed by ``anatcl`` (when ``lambda_age > 0``), ``yaware``, ``expw``
            and ``l1``.
        anatomy : array-like of shape (n, 68, 3), default=None
            Desikan (CT, GMV, SA) measures; needed by ``anatcl`` when ``lambda_anat > 0``.

        Returns
        -------
        self : AnatCLEmbedder
        """
        validate_params(self)
        train = self.pretrained is None or self.finetune
        device = self._resolve_device()
        if self.precision == "bf16" and train and not device.startswith("cuda"):
            raise ValueError(
                "precision='bf16' trains on CUDA only: on the CPU, torch's bfloat16 3D-convolution "
                "backward intermittently returns non-finite gradients (measured with torch 2.13: "
                "15 of 43 short fits). Use precision='fp32' on the CPU."
            )
        use_dp = _use_data_parallel(self.data_parallel, device)
        if self.data_parallel is True and not use_dp and train:
            warnings.warn(
                f"data_parallel=True has no effect on device {device!r}: DataParallel spreads "
                "batches over CUDA GPUs only. Training runs on this device alone.",
                UserWarning, stacklevel=2)
        if use_dp and self.compile and train:
            raise ValueError(
                f"compile=True cannot train under DataParallel (data_parallel={self.data_parallel!r}"
                f" with {torch.cuda.device_count()} GPUs visible): DataParallel's replication "
                "rewrites a torch.compile wrapper's model. Set data_parallel=False to compile on "
                "one GPU, or compile=False to use every GPU."
            )
        # Training reads every volume many times, so one up-front pass that finds NaN/inf voxels
        # and damaged files (and names them) before any training costs little; inference
        # checks lazily. With conform=True the target is OpenBHB's grid unless the weights
        # record another one (checked again below, once they are loaded).
        check_finite = True if train else "auto"
        target = resolve_target(self.conform)
        images = self._check_X(X, check_finite=check_finite, target=target)
        n = len(images)
        if n < 2 and train:
            raise ValueError(
                f"fit needs at least 2 images to contrast when it trains; got {n}. (A frozen "
                "pretrained encoder, pretrained=... with finetune=False, embeds any number.)")
        if train:
            age = self._resolve_age(y, age, n)
            anatomy = self._resolve_anatomy(anatomy, n)
        else:  # a frozen pretrained encoder: fit only loads weights, metadata is not used
            age = anatomy = None
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))

        scaling = resolve_scaling(self.anatomy_scaling, self.descriptor)
        self.anatomy_scaler_ = None
        if anatomy is not None and scaling == "minmax":
            from ..anatomy import AnatomyScaler

            self.anatomy_scaler_ = AnatomyScaler().fit(anatomy)
            anatomy = self.anatomy_scaler_.transform(anatomy)
        if anatomy is not None and needs_anatomy(self):  # now, not at the first batch
            check_anatomy(anatomy, non_negative=True)

        module = self._build_module(seed)
        self._n_train_images = n if train else None
        saved = getattr(module, "pretrained_config", None)
        if not train and saved:  # the scaler the frozen weights were trained with
            self.anatomy_scaler_ = scaler_from_config(saved.get("anatomy_scaler"))
        trained_grid = _recorded_grid(module) if self.pretrained is not None else None
        if target is not None and trained_grid is not None and (
                trained_grid[0] != tuple(target[0])
                or affine_mismatch(trained_grid[1], target[1]) is not None):
            if trained_grid[1] is None:
                raise ValueError(
                    f"conform=True, but these pretrained weights record a training grid of "
                    f"{'x'.join(map(str, trained_grid[0]))} voxels without its affine, so "
                    "there is no grid to conform to; conform the images yourself "
                    "(anatcl_sklearn.conform_image with that grid's affine) and pass "
                    "conform=False.")
            target = trained_grid
            images = self._check_X(X, check_finite=check_finite, target=target)
        if self.pretrained is not None:
            warn_pretrained_grid(images, *(trained_grid or (None, None)), stacklevel=3)
        if train:  # the grid these weights are trained on, for whoever reuses them
            module.input_shape = tuple(images.shape)
            module.input_affine = None if images.affine is None else images.affine.copy()
        run_key = self._run_key(images, age, anatomy) if self.checkpoint_dir else None
        net, checkpoint = self._build_net(module, n, device, seed, run_key)
        self.device_ = device
        self.input_shape_ = tuple(images.shape)
        self.input_affine_ = None if images.affine is None else images.affine.copy()
        self.n_features_out_ = self._n_out(module)

        if self.channels_last:
            module = module.to(memory_format=torch.channels_last_3d)
        if train and self.verbose:
            print(_runtime_summary(device, self), flush=True)

        cuda_devices = [_cuda_index(device)] if device.startswith("cuda") else []
        cudnn_benchmark = torch.backends.cudnn.benchmark
        with torch.random.fork_rng(devices=cuda_devices):
            torch.default_generator.manual_seed(seed)  # torch.manual_seed would reseed every GPU
            net.initialize()
            if use_dp:  # wrap the module, not the net (skorch #602): the loss sees the whole batch
                net.module_ = _data_parallel(net.module_, device, net.autocast_dtype)
                net.initialize_optimizer()
            self.net_ = net
            done = checkpoint.restore(net) if checkpoint is not None and os.path.exists(checkpoint.path) else 0
            remaining = int(self.max_epochs) - done if train else 0
            try:
                if remaining > 0:
                    cached = self.cache != "none"
                    if cached:
                        net.volume_cache = VolumeCache(
                            images, self.cache_dtype, device if self.cache == "device" else "cpu")
                    # fixed input shapes: let cuDNN pick the fastest 3D convolution algorithms
                    torch.backends.cudnn.benchmark = cudnn_benchmark or device.startswith("cuda")
                    net.partial_fit(SubjectDataset(images, age, anatomy, cached=cached),
                                    epochs=remaining)
            finally:
                torch.backends.cudnn.benchmark = cudnn_benchmark
                net.volume_cache = None  # never keep (or pickle) a copy of the training data
                # nor training-only generators: a CUDA generator cannot be unpickled without CUDA
                net.augment_generator = None
                if checkpoint is not None:
                    checkpoint.generators = {}
                # nor Adam's moments: twice the weights (256 MiB for ResNet-18) in every pickle
                # and joblib copy, for a fitted embedder that only transforms (each fit starts
                # afresh; resuming reads checkpoint_dir's files, which keep them)
                net.optimizer_.state.clear()
                net.module_ = unwrap_module(net.module_)  # plain keys for pickling and saving
        self.history_ = net.history
        keeper = dict(net.callbacks_)["keep_last_epoch"]
        interrupted = getattr(keeper, "interrupted_epoch_", None) if remaining > 0 else None
        if interrupted is not None:
            warnings.warn(
                f"Training was interrupted during epoch {interrupted}; the weights of the last "
                f"finished epoch ({interrupted - 1}) were kept and the embedder is usable.",
                RuntimeWarning,
            )
        return self

    @property
    def _n_features_out(self):
        # read by ClassNamePrefixFeaturesOutMixin.get_feature_names_out
        return self.n_features_out_

    def _n_out(self, module):
        if self.output == "projection":
            return module.head[-1].out_features
        return module.encoder.n_features

    def transform(self, X):
        """Embed images with the frozen encoder.

        Parameters
        ----------
        X : array of shape (n, D, H, W) or (n, 1, D, H, W), or list of paths or images
            Images on the grid seen in ``fit``.

        Returns
        -------
        embeddings : ndarray of shape (n, n_features_out_), float32
            Encoder features (``output="encoder"``) or projections (``output="projection"``).
        """
        check_is_fitted(self, "net_")
        fitted_affine = _affine_or_openbhb(self.input_shape_, getattr(self, "input_affine_", None))
        target = None
        if self.conform:
            if fitted_affine is None:
                raise ValueError(
                    "conform=True, but this embedder was fitted on images without an affine "
                    f"(arrays or .npy files on a {'x'.join(map(str, self.input_shape_))} grid), "
                    "so there is no grid to conform to; set conform=False and pass images on "
                    "that grid.")
            target = (self.input_shape_, fitted_affine)
        images = self._check_X(X, stacklevel=4, target=target)
        if tuple(images.shape) != self.input_shape_:
            raise ValueError(
                f"X has images of shape {tuple(images.shape)}, but this embedder was fitted on "
                f"{self.input_shape_}; resample the images to the fitted grid (conform=True "
                "does it for images with an affine)."
            )
        if fitted_affine is not None and images.affine is not None:
            why = affine_mismatch(fitted_affine, images.affine)
            if why is not None:
                raise ValueError(
                    f"X's images differ in {why} from those this embedder was fitted on: "
                    f"{images.sources[0]} is on ({describe_affine(images.affine)}), the fitted "
                    f"grid is ({describe_affine(fitted_affine)}). The same voxel would be "
                    "different anatomy; pass conform=True to resample the images to the "
                    "fitted grid.")
        module = unwrap_module(self.net_.module_)
        device = next(module.parameters()).device
        module.eval()
        loader = torch.utils.data.DataLoader(
            SubjectDataset(images), batch_size=int(self.batch_size), shuffle=False,
            num_workers=int(self.num_workers), pin_memory=device.type == "cuda",
        )
        autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                    if self.precision == "bf16" else contextlib.nullcontext())
        out = []
        with torch.inference_mode(), autocast:
            for batch, _ in loader:
                x = batch["x"].to(device, non_blocking=True)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                z = module.encode(x) if self.output == "encoder" else module(x)
                out.append(z.float().cpu().numpy())
        return np.concatenate(out, axis=0)

    def save_pretrained(self, directory, *, push_to_hub=None, private=None, token=None):
        """Save the fitted model as a folder others can load, and optionally share it.

        Writes ``model.safetensors`` (the encoder ``encoder.*`` and head ``head.0``,
        ``head.2``), ``config.json`` (architecture, output, the input grid with its affine,
        the training method and hyper-parameters, epochs run, the fitted anatomy scaler,
        library and torch versions, the weights' SHA-256) and a ``README.md`` model card.
        ``AnatCLEmbedder(pretrained=directory)`` loads it back without unpickling anything,
        and embeds bit for bit as this embedder does.

        Parameters
        ----------
        directory : str or os.PathLike
            The folder (created if missing; the three files in it are replaced
            atomically).
        push_to_hub : str, default=None
            A Hugging Face Hub repository (``"owner/repo"``, created if missing) to upload
            the folder to. Needs the ``[hub]`` extra.
        private : bool, default=None
            Visibility of a repository created by ``push_to_hub``.
        token : str, default=None
            Hub token (default: the one ``huggingface-cli login`` stored).

        Returns
        -------
        directory : pathlib.Path
        """
        return save_pretrained(self, directory, push_to_hub=push_to_hub, private=private,
                               token=token)

    def push_to_hub(self, repo_id, *, private=None, token=None, commit_message=None):
        """Upload the fitted model to the Hugging Face Hub as a saved-model folder.

        Needs the ``[hub]`` extra (``pip install "anatcl-sklearn[hub]"``). Others load it
        with ``AnatCLEmbedder(pretrained="hf://owner/repo")``.

        Parameters
        ----------
        repo_id : str
            ``"owner/repo"``, created if missing.
        private : bool, default=None
            Visibility of a created repository.
        token : str, default=None
            Hub token.
        commit_message : str, default=None

        Returns
        -------
        url : str
            The commit's URL.
        """
        return push_to_hub(self, repo_id, private=private, token=token,
                           commit_message=commit_message)

    def __setstate__(self, state):
        # skorch maps a GPU-fitted net to the CPU when CUDA is missing; follow it
        super().__setstate__(state)
        if str(getattr(self, "device_", "cpu")).startswith("cuda") and not torch.cuda.is_available():
            self.device_ = "cpu"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        tags.requires_fit = True
        return tags


def _recorded_grid(module):
    """(shape, affine or None) of the grid pretrained weights record, or None when they
    record none (the released weights: OpenBHB's grid)."""
    shape = getattr(module, "input_shape", None)
    if shape is None:
        return None
    return tuple(shape), _affine_or_openbhb(shape, getattr(module, "input_affine", None))


def _affine_or_openbhb(shape, affine):
    """The affine of a grid: the one recorded, else OpenBHB's for OpenBHB's shape (arrays and
    .npy files of that shape, OpenBHB's own format, are taken to be on its grid), else None."""
    if affine is not None:
        return np.asarray(affine, dtype=np.float64)
    return np.array(OPENBHB_AFFINE) if tuple(shape) == OPENBHB_SHAPE else None


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


def _runtime_summary(device, est):
    """One line with the versions that decide speed (some torch releases disable cuDNN for bf16
    3D convolutions, which is about 4x slower), logged at the start of training."""
    parts = [f"anatcl-sklearn: torch {torch.__version__}"]
    if device.startswith("cuda"):
        idx = _cuda_index(device)
        parts.append(f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
        parts.append(f"{torch.cuda.device_count()} GPU(s), {torch.cuda.get_device_name(idx)}")
    else:
        parts.append(f"CPU, {torch.get_num_threads()} threads")
    parts.append(f"precision {est.precision}, augment {est.augment!r}, cache {est.cache!r}")
    return "; ".join(parts)


def _stderr_is_tty():
    import sys

    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
