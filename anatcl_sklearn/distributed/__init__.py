"""Multi-process and multi-machine pretraining: torchrun, DistributedDataParallel, all-gather.

- :func:`gather_with_grad`: concatenate a tensor over ranks, gradients flowing back to every
  rank (identity without a process group);
- :class:`DistributedContrastiveLoss`: the AnatCL, y-Aware, ExpW and SimCLR losses of this
  rank's anchors against the all-gathered global batch, scaled so that DDP's gradient
  averaging gives exactly the single-process gradient;
- ``python -m anatcl_sklearn.distributed``: a command line over the one training engine,
  :meth:`AnatCLEmbedder.fit <anatcl_sklearn.AnatCLEmbedder.fit>`, which detects torchrun and
  trains with DistributedDataParallel (``distributed="auto"``); rank 0 writes a saved-model
  folder (and, on request, the released ``.pth`` layout).

The loss and the gather live in :mod:`anatcl_sklearn.losses` (``losses/_distributed.py``,
``losses/_gather.py``) and the command is ``anatcl-sklearn train`` (``cli/_train.py``); the
names here are aliases kept for old imports and for ``torchrun -m anatcl_sklearn.distributed``.

Launch on N machines with G GPUs each (the same command on every machine)::

    torchrun --nnodes=N --nproc-per-node=G --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT \\
        -m anatcl_sklearn.distributed --openbhb /data/openbhb --epochs 300 --output anatcl-run
"""

from ..losses._distributed import METHODS, DistributedContrastiveLoss
from ..losses._gather import gather_with_grad

__all__ = ["METHODS", "DistributedContrastiveLoss", "gather_with_grad"]
