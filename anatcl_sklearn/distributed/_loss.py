"""An alias: the distributed loss lives in :mod:`anatcl_sklearn.losses._distributed`."""

from ..losses._distributed import METHODS, DistributedContrastiveLoss

__all__ = ["METHODS", "DistributedContrastiveLoss"]
