"""An alias: the autograd all-gather lives in :mod:`anatcl_sklearn.losses._gather`."""

from ..losses._gather import _all_gather_ints, _gather_rows, _world, gather_with_grad

__all__ = ["_all_gather_ints", "_gather_rows", "_world", "gather_with_grad"]
