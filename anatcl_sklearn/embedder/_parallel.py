"""Several GPUs on one machine: DataParallel that keeps the training's autocast dtype, and the
unwrapping that gives plain parameter names back for pickles and checkpoints."""

import torch


class _AutocastCall:
    """Call a replica under ``torch.autocast`` with an explicit dtype."""

    def __init__(self, module, device_type, dtype):
        self.module, self.device_type, self.dtype = module, device_type, dtype

    def __call__(self, *args, **kwargs):
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            return self.module(*args, **kwargs)


class AutocastDataParallel(torch.nn.DataParallel):
    """:class:`torch.nn.DataParallel` whose replicas run in the training's autocast dtype.

    torch's ``parallel_apply`` re-enters autocast in each replica's thread with the caller's
    *enabled* flag but not its dtype, and the dtype is per thread: under bfloat16 training the
    replicas would compute in CUDA's default float16, without a gradient scaler. Each replica is
    therefore called inside its own ``torch.autocast(dtype=autocast_dtype)``.

    BatchNorm under DataParallel normalises each GPU's share of the batch with that share's
    statistics, and keeps the running statistics of the first GPU's share (torch's behaviour).

    Parameters
    ----------
    module : torch.nn.Module
        The model, on the first of ``device_ids``.
    autocast_dtype : torch.dtype or None
        The mixed-precision dtype (``None``: full precision, plain DataParallel).
    **kwargs
        ``device_ids``, ``output_device`` and ``dim`` as :class:`torch.nn.DataParallel`.
    """

    def __init__(self, module, autocast_dtype=None, **kwargs):
        super().__init__(module, **kwargs)
        self.autocast_dtype = autocast_dtype

    def parallel_apply(self, replicas, inputs, kwargs):
        if self.autocast_dtype is not None:
            replicas = [_AutocastCall(r, self.src_device_obj.type, self.autocast_dtype)
                        for r in replicas]
        return super().parallel_apply(replicas, inputs, kwargs)


def unwrap_module(module):
    """Strip (Distributed)DataParallel and ``torch.compile`` wrappers: the plain model."""
    while True:
        if isinstance(module, (torch.nn.DataParallel,
                               torch.nn.parallel.DistributedDataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module
