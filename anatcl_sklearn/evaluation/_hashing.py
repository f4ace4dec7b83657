"""Stable cache keys for fitted estimators that hold torch objects.

``joblib.hash`` pickles its argument. A fitted skorch net pickles its torch attributes with
``torch.save``, whose bytes hold the memory addresses of freshly made tensors (the random
generators' states): two hashes of the same fitted :class:`~anatcl_sklearn.AnatCLEmbedder`
differ, and a joblib cache keyed on it never hits. Here torch objects are hashed by value:
tensors by dtype, shape and bytes, generators by state, modules and optimizers by their
state dicts, and skorch nets by their attributes rather than by their pickled form.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
from joblib.hashing import NumpyHasher

if TYPE_CHECKING:
    import torch

__all__ = ["stable_hash"]


def _tensor_bytes(tensor: torch.Tensor) -> np.ndarray:
    import torch

    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy()  # any dtype, bfloat16 included


def _by_value(obj: object) -> object:
    """A picklable stand-in for ``obj`` whose pickle depends only on its value."""
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(obj, torch.Tensor):
            return ("torch.Tensor", str(obj.dtype), tuple(obj.shape), _tensor_bytes(obj))
        if isinstance(obj, torch.Generator):
            return ("torch.Generator", str(obj.device), _tensor_bytes(obj.get_state()))
        if isinstance(obj, torch.nn.Module):
            # Weights and buffers only: train / eval mode is not part of the value.
            return ("torch.nn.Module", type(obj).__qualname__, dict(obj.state_dict()))
        if isinstance(obj, torch.optim.Optimizer):
            # Its pickled state is keyed by parameter tensors, which cannot be sorted.
            return ("torch.optim.Optimizer", type(obj).__qualname__, obj.state_dict())
    skorch = sys.modules.get("skorch")
    if skorch is not None and isinstance(obj, skorch.NeuralNet):
        return ("skorch.NeuralNet", type(obj).__qualname__, dict(vars(obj)))
    return obj


class _ValueHasher(NumpyHasher):
    def save(self, obj: object) -> None:
        NumpyHasher.save(self, _by_value(obj))


def stable_hash(obj: object) -> str:
    """Hash of ``obj`` (md5 hex digest) that is the same for equal torch states."""
    return _ValueHasher(hash_name="md5").hash(obj)
