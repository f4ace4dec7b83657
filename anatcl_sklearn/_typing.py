"""Type aliases shared by the package's annotations (#18 item 4).

Only names several modules use live here; a module's own one-off types stay in that module.
"""

from __future__ import annotations

import os
from typing import Any, TypeAlias

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "ArrayLike", "Device", "FloatArray", "Images", "NDArray", "PathLike", "RandomState",
    "TensorLike",
]

#: A file or folder path: what every function taking a path accepts.
PathLike: TypeAlias = str | os.PathLike[str]

#: Images in any form ``check_images`` accepts: paths, globs, lists of them, arrays, nibabel
#: images, an ``ImageCollection``... (checked at run time, so typed loosely).
Images: TypeAlias = Any

#: A seed as scikit-learn's ``check_random_state`` takes it.
RandomState: TypeAlias = int | np.random.RandomState | None

#: A floating-point array of any precision (float32 or float64, as the input was).
FloatArray: TypeAlias = NDArray[np.floating[Any]]

#: A torch device or its name (``"cpu"``, ``"cuda:1"``).
Device: TypeAlias = str | torch.device

#: A tensor, or anything numpy turns into an array (ages, anatomy, predictions).
TensorLike: TypeAlias = torch.Tensor | ArrayLike
