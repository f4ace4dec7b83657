"""AnatCLEmbedder: pretrain (or load) an AnatCL 3D ResNet and embed brain images.

Data flow: ``fit(X, age=, anatomy=)`` plans (``embedder/_plan.py``: every decision and
check, once) and runs the plan (``embedder/_training.py``: a skorch ``ContrastiveNet``
around an :class:`~anatcl_sklearn.models.AnatCLModel`, launched by ``embedder/_launch.py``),
which sets the fitted attributes; ``transform(X)`` streams the images through the frozen
encoder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
)
from sklearn.utils.validation import check_is_fitted

from .._typing import Device, PathLike, RandomState
from ..images._grid import (
    affine_mismatch,
    affine_or_openbhb,
    describe_affine,
    target_grid,
)
from . import _prefetch
from ._inference import Inference
from ._parallel import unwrap_module
from ._params import PARAMETER_CONSTRAINTS, validate_params
from ._plan import check_X
from ._sharing import SharingMixin
from ._training import fit_embedder


class AnatCLEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, SharingMixin,
                     BaseEstimator):
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
    distributed : {"auto", True, False}, default="auto"
        Train with :class:`~torch.nn.parallel.DistributedDataParallel` when the script runs under
        ``torchrun`` (or inside an initialised process group of several processes): with
        ``"auto"`` when such a launch is detected, ``True`` to require one. ``batch_size`` stays
        the global batch, split among the processes; embeddings, age and anatomy are
        all-gathered with gradients so every anchor is contrasted with the whole global batch
        (loss and gradients equal a single process's on the same global batches, up to
        BatchNorm, which normalises each process's shard unless ``sync_batchnorm=True``). Rank 0
        writes checkpoints; every rank ends with the same fitted estimator; bad input raises on
        every rank. The process group is initialised here if needed (NCCL on CUDA, gloo on the
        CPU) and left for the rest of the program.
    sync_batchnorm : bool, default=False
        Under ``torchrun`` on CUDA, normalise with statistics of the whole global batch
        (:class:`torch.nn.SyncBatchNorm`); the fitted model has plain BatchNorm layers again.
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
    inference : {"auto", "eager", "compile", "onnx", "openvino"}, default="auto"
        How ``transform`` runs the frozen network: eager PyTorch, ``torch.compile`` (inductor,
        weights frozen), ONNX Runtime (``[inference-onnx]`` extra) or OpenVINO
        (``[inference-openvino]`` extra; the CPU only, float32). A backend is built once
        per fitted embedder and input shape (never pickled; ONNX Runtime's and OpenVINO's
        conversions are kept on disk for the next run of the same weights, see
        ``ANATCL_SKLEARN_INFERENCE_CACHE`` in the user guide), checked against the eager
        forward on its first image (relative error at most 1e-4) and, when it fails to build
        or to agree, replaced by eager with a warning. ``"auto"`` is eager for small runs, on
        GPUs and in bf16, and the fastest installed backend where its build time pays for
        itself: OpenVINO from 32 full-size (121x145x121) images on, else compile, else ONNX
        Runtime from 128; see ``anatcl_sklearn/embedder/_inference.py``.
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

    #: What each parameter accepts (scikit-learn's vocabulary), checked once at the start of
    #: ``fit`` by :meth:`_validate_params`; see ``embedder/_params.py``.
    _parameter_constraints: dict = PARAMETER_CONSTRAINTS

    def __init__(
        self,
        method: str = "anatcl",
        descriptor: str = "global",
        sigma: float = 2.0,
        kernel: str = "rbf",
        lambda_age: float = 1.0,
        lambda_anat: float = 1.0,
        temperature: float = 0.1,
        arch: str = "resnet18",
        augment: str | Sequence[str] | None = "none",
        max_epochs: int = 300,
        batch_size: int = 32,
        lr: float = 1e-4,
        lr_step: int = 10,
        lr_gamma: float = 0.9,
        weight_decay: float = 5e-5,
        device: Device = "auto",
        distributed: bool | str = "auto",
        sync_batchnorm: bool = False,
        data_parallel: bool | str = "auto",
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        inference: str = "auto",
        cache: str = "none",
        cache_dtype: str = "float16",
        pretrained: PathLike | Mapping[str, Any] | None = None,
        fold: int = 0,
        finetune: bool = False,
        conform: bool = False,
        output: str = "encoder",
        anatomy_scaling: str = "auto",
        use_y_as_age: bool = False,
        num_workers: int = 0,
        checkpoint_dir: PathLike | None = None,
        early_stopping: int | None = None,
        callbacks: Sequence[Any] | None = None,
        net_params: dict[str, Any] | None = None,
        random_state: RandomState = None,
        verbose: int = 1,
    ) -> None:
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
        self.distributed = distributed
        self.sync_batchnorm = sync_batchnorm
        self.data_parallel = data_parallel
        self.precision = precision
        self.channels_last = channels_last
        self.compile = compile
        self.inference = inference
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
    _validate_params = validate_params  # the constraint table and the cross-parameter rules
    _check_X = check_X  # images for fit and transform: check_images, dense, named "X"

    # ------------------------------------------------------------------ fit / transform
    def fit(self, X: Any, y: Any = None, *, age: Any = None,
            anatomy: Any = None) -> AnatCLEmbedder:
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
        return fit_embedder(self, X, y, age, anatomy)  # plan, run, set the fitted attributes

    @property
    def _n_features_out(self):
        # read by ClassNamePrefixFeaturesOutMixin.get_feature_names_out
        return self.n_features_out_

    def transform(self, X: Any) -> np.ndarray:
        """Embed images with the frozen encoder.

        Parameters
        ----------
        X : array of shape (n, D, H, W) or (n, 1, D, H, W), or list of paths or images
            Images on the grid seen in ``fit``.

        Returns
        -------
        embeddings : ndarray of shape ``(n, n_features_out_)``, float32
            Encoder features (``output="encoder"``) or projections (``output="projection"``).
        """
        check_is_fitted(self, "net_")
        fitted_affine = affine_or_openbhb(self.input_shape_, getattr(self, "input_affine_", None))
        target = target_grid(self.conform, self.input_shape_,
                             getattr(self, "input_affine_", None), recorded_by="fit")
        images = self._check_X(X, target=target)
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
        infer = Inference(self, module, device, len(images), tuple(images.shape))
        autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                    if self.precision == "bf16" else contextlib.nullcontext())
        out = []
        with torch.inference_mode(), autocast, _prefetch.batches(
                images, int(self.batch_size), int(self.num_workers),
                pin_memory=device.type == "cuda") as loader:
            for x in loader:
                z = infer(x.to(device, non_blocking=True))
                out.append(z.float().cpu().numpy())
        return np.concatenate(out, axis=0)

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
