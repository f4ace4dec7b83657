"""anatcl-sklearn: AnatCL anatomical foundation models for brain MRI in scikit-learn.

The public surface: :class:`AnatCLEmbedder` (pretrain and embed), :class:`AnatomyScaler`,
:func:`load_checkpoint`, :func:`check_images`, :func:`conform_image`, :func:`split_4d`, the grid
:data:`OPENBHB_SHAPE` / :data:`OPENBHB_AFFINE`, and the sub-packages :mod:`~anatcl_sklearn.images`,
:mod:`~anatcl_sklearn.models`,
:mod:`~anatcl_sklearn.losses`, :mod:`~anatcl_sklearn.anatomy`, :mod:`~anatcl_sklearn.datasets`,
:mod:`~anatcl_sklearn.evaluation` (the paper's tasks and linear probes) and
:mod:`~anatcl_sklearn.distributed` (several machines with torchrun). Every exception and warning
lives in :mod:`anatcl_sklearn.exceptions` (also importable from here).
"""

from ._version import __version__
from .anatomy import AnatomyScaler, read_aparc_stats, read_aparcstats2table
from .datasets import load_openbhb, make_synthetic_brains
from .embedder import AnatCLEmbedder
from .exceptions import (
    GridWarning,
    ImageReadError,
    InvalidParameterError,
    NonFiniteLossError,
)
from .images import (
    OPENBHB_AFFINE,
    OPENBHB_SHAPE,
    ImageCollection,
    check_images,
    conform_image,
    split_4d,
)
from .models import AnatCLModel, load_checkpoint

__all__ = [
    "AnatCLEmbedder",
    "AnatCLModel",
    "AnatomyScaler",
    "GridWarning",
    "ImageCollection",
    "ImageReadError",
    "InvalidParameterError",
    "NonFiniteLossError",
    "OPENBHB_AFFINE",
    "OPENBHB_SHAPE",
    "__version__",
    "check_images",
    "conform_image",
    "load_checkpoint",
    "load_openbhb",
    "make_synthetic_brains",
    "read_aparc_stats",
    "read_aparcstats2table",
    "split_4d",
]
