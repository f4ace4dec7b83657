"""The skorch net that trains the AnatCL model: two views in, the contrastive loss out.

The estimator builds this net in ``fit`` and keeps it as ``net_`` (subclassing skorch's
``NeuralNet`` for the estimator itself would break scikit-learn's own checks). Batches are
dicts ``{"x", "age", "anatomy"}``; only the volume reaches the module, age and anatomy reach
the loss in :meth:`ContrastiveNet.get_loss`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from skorch import NeuralNet
from skorch.utils import to_tensor

from ..exceptions import NonFiniteLossError
from ._augment import make_views
from ._callbacks import TerminalPrintLog

# Stands for "the same object as module_" in a pickled net (see ContrastiveNet.__getstate__).
_MODULE_IS_MODULE_ = "<anatcl_sklearn: same as module_>"


class ContrastiveNet(NeuralNet):
    """A :class:`skorch.NeuralNet` for weakly-supervised contrastive pretraining of 3D volumes.

    Parameters
    ----------
    *args, **kwargs
        As :class:`skorch.NeuralNet`.
    loss_inputs : tuple of str, default=()
        Keys of the batch dict passed to the criterion after the embeddings (e.g.
        ``("age", "anatomy")``).
    n_views : int or None, default=2
        Views per subject for contrastive losses; ``None`` for the L1 regression baseline.
    augment : tuple of str, default=()
        Augmentations drawn per view. With none, the views are identical, so each volume is
        forwarded once and its embedding duplicated: the same loss and gradients at half the
        cost of forwarding both copies (BatchNorm statistics of a duplicated batch are those
        of the batch).
    augment_generator : torch.Generator or None
        Source of augmentation randomness.
    autocast_dtype : torch.dtype or None, default=None
        Mixed-precision dtype for the forward pass (e.g. ``torch.bfloat16``); losses compute
        in float32.
    channels_last : bool, default=False
        Feed volumes in ``torch.channels_last_3d`` memory format (faster cuDNN kernels on
        recent GPUs; the module is converted by the estimator).
    volume_cache : VolumeCache or None, default=None
        When set, batches carry subject indices and volumes are decoded from this cache.
    dist_world : int or None, default=None
        Number of processes under DistributedDataParallel. The criterion then returns this
        rank's share of the global loss; the global mean is all-reduced (one scalar per step)
        for the history and for the finiteness check, so every rank stops together.
    """

    def __init__(self, *args: Any, loss_inputs: tuple = (), n_views: int | None = 2,
                 augment: tuple = (), augment_generator: torch.Generator | None = None,
                 autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
                 volume_cache: Any = None, dist_world: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channels_last = channels_last
        self.volume_cache = volume_cache
        self.loss_inputs = loss_inputs
        self.n_views = n_views
        self.augment = augment
        self.augment_generator = augment_generator
        self.autocast_dtype = autocast_dtype
        self.dist_world = dist_world
        self._global_loss = None

    def get_default_callbacks(self) -> list:
        """skorch's defaults, with a per-epoch table coloured only on a terminal."""
        return [(name, TerminalPrintLog() if name == "print_log" else cb)
                for name, cb in super().get_default_callbacks()]

    def initialize_frozen(self) -> ContrastiveNet:
        """Initialize for a frozen encoder: callbacks, module and history only.

        skorch's :meth:`initialize` would also build the criterion and the optimizer; a frozen
        pretrained ``fit`` trains nothing, so it has neither (``criterion_`` and
        ``optimizer_`` are absent). ``transform``, pickling and saving need only the module.
        """
        self._initialize_virtual_params()
        self._initialize_callbacks()
        self._initialize_module()
        self._initialize_history()
        # a typo in net_params is refused here too, as in training; the loss's and the
        # optimizer's own settings have nothing to bind to in a frozen net
        checked: set[str] = self._params_to_validate  # type: ignore[has-type]
        self._params_to_validate = {k for k in checked
                                    if not k.startswith(("criterion__", "optimizer__"))}
        try:
            self._validate_params()
        finally:
            self._params_to_validate = checked
        self.initialized_ = True
        return self

    def __getstate__(self):
        state = super().__getstate__()
        # The estimator passes the model as an instance, so ``module`` is the very object skorch
        # trains as ``module_``. skorch sends ``module_`` through its device-mapping path; pickled
        # plainly as well, ``module`` would double the file and, after GPU training, fail to load
        # on a machine without CUDA. Keep one copy.
        if state.get("module") is self.__dict__.get("module_"):
            state["module"] = _MODULE_IS_MODULE_
        return state

    def __setstate__(self, state):
        same = isinstance(state.get("module"), str) and state["module"] == _MODULE_IS_MODULE_
        super().__setstate__(state)
        if same:
            self.module = self.module_

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        device_type = torch.device(self.device).type
        return torch.autocast(device_type=device_type, dtype=self.autocast_dtype)

    def infer(self, x: Any, **fit_params: Any) -> torch.Tensor:
        x = to_tensor(x, device=self.device)
        if isinstance(x, dict):
            volume = self.volume_cache.batch(x["idx"], self.device) if "idx" in x else x["x"]
        else:
            volume = x
        if self.channels_last:
            volume = volume.contiguous(memory_format=torch.channels_last_3d)
        training = self.module_.training
        if training and self.augment:
            # views are drawn in float32, outside autocast (which would blur in low precision)
            views = make_views(volume, self.augment, self.augment_generator,
                               n_views=self.n_views or 2)
            flat = views.flatten(0, 1)
            if self.channels_last:
                flat = flat.contiguous(memory_format=torch.channels_last_3d)
            with self._autocast():
                out = self.module_(flat)
            return out.view(volume.shape[0], views.shape[1], -1).float()
        with self._autocast():
            out = self.module_(volume).float()
        if training and self.n_views:
            # Identical views: forward once, duplicate (autograd sums both paths' gradients).
            return out.unsqueeze(1).expand(-1, self.n_views, -1)
        return out

    def train_step(self, batch: Any, **fit_params: Any) -> dict:
        # The forward pass updates BatchNorm running statistics before the loss is known; if the
        # loss is not finite, put them back so the model is exactly that of the last good step.
        buffers = [b.detach().clone() for b in self.module_.buffers()]
        try:
            return super().train_step(batch, **fit_params)
        except NonFiniteLossError:
            with torch.no_grad():
                for b, saved in zip(self.module_.buffers(), buffers):
                    b.copy_(saved)
            raise

    def train_step_single(self, batch: Any, **fit_params: Any) -> dict:
        step = super().train_step_single(batch, **fit_params)
        if self._global_loss is not None:  # the history records the global batch's loss
            step["loss"], self._global_loss = self._global_loss, None
        # Called inside optimizer.step's closure: raising here skips the parameter update, so a
        # finite loss with non-finite gradients (possible in low precision) cannot corrupt weights.
        grads = [p.grad for p in self.module_.parameters() if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.detach().abs().amax() for g in grads])).all():
            epoch = len(self.history)
            batch_idx = len(self.history[-1]["batches"]) if epoch else 0
            raise NonFiniteLossError(
                f"Gradients became non-finite at epoch {epoch}, batch {batch_idx} (the loss was "
                f"{step['loss'].item():.4g}); training stopped before this step (the net of the last "
                "good step is this error's .net; the estimator is left as it was). Lower lr or "
                "use precision='fp32'."
            )
        return step

    def get_loss(self, y_pred: torch.Tensor, y_true: Any, X: Any = None,
                 training: bool = False) -> torch.Tensor:
        # only the loss inputs go to the device (skorch passes the batch as the loader gave it)
        inputs: list[Any] = [None if X.get(key) is None else to_tensor(X[key], device=self.device)
                             for key in self.loss_inputs]
        if self.n_views is None:  # L1 regression: predictions (B, 1) or (B, V, 1) with views
            age = inputs[0]
            if y_pred.dim() == 3:
                age = age.unsqueeze(1).expand(-1, y_pred.shape[1])
            loss = self.criterion_(y_pred.reshape(-1), age.reshape(-1))
        else:
            loss = self.criterion_(y_pred, *inputs)
        checked = loss.detach()
        if training and self.dist_world:
            # one scalar all-reduce: the global mean loss, the same on every rank, so a
            # non-finite loss stops every rank before backward (none waits in DDP's all-reduce)
            checked = checked.clone()
            torch.distributed.all_reduce(checked)
            checked = checked / self.dist_world
            self._global_loss = checked
        if training and not torch.isfinite(checked).item():
            epoch = len(self.history)
            batch = len(self.history[-1]["batches"]) if epoch else 0
            raise NonFiniteLossError(
                f"Training loss became {checked.item()} at epoch {epoch}, batch {batch}; training "
                "stopped before this step (the net of the last good step is this error's .net; "
                "the estimator is left as it was). "
                "Lower lr, raise temperature, or use precision='fp32'."
            )
        return loss
