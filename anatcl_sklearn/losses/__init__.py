"""Contrastive losses of AnatCL and its baselines (torch in, torch out, differentiable).

Embeddings ``z`` have shape (n_samples, n_views, n_features); see :func:`anatcl_loss` and the
notes in :mod:`anatcl_sklearn.losses._contrastive` for the shared conventions.
"""

from ._contrastive import anatcl_loss, expw_loss, simclr_loss, yaware_loss
from ._kernels import (
    age_kernel,
    anatomy_kernel,
    cauchy_kernel,
    gaussian_kernel,
    global_anatomy_kernel,
    local_anatomy_kernel,
    rbf_kernel,
)
from ._modules import AnatCLLoss, ExpWLoss, SimCLRLoss, YAwareLoss
from ._regression import AgeRegressionHead, L1AgeLoss, l1_age_loss

__all__ = [
    "AgeRegressionHead",
    "AnatCLLoss",
    "ExpWLoss",
    "L1AgeLoss",
    "SimCLRLoss",
    "YAwareLoss",
    "age_kernel",
    "anatcl_loss",
    "anatomy_kernel",
    "cauchy_kernel",
    "expw_loss",
    "gaussian_kernel",
    "global_anatomy_kernel",
    "l1_age_loss",
    "local_anatomy_kernel",
    "rbf_kernel",
    "simclr_loss",
    "yaware_loss",
]
