"""The collection of volumes held in one ``(n, D, H, W)`` array (or a memory-mapped ``.npy``)
that the user owns: read one volume at a time, finiteness scanned in chunks, never copied whole.
"""

from __future__ import annotations

import math

import numpy as np

from ._identity import array_identity
from ._reading import _FINITE_CHUNK_VOXELS, ImageCollection

__all__ = ["_ArrayImages"]


class _ArrayImages(ImageCollection):
    """Volumes stored in one (n, D, H, W) array that the user owns; never copied whole."""

    def __init__(self, array, *, name, check_finite, affine=None):
        super().__init__(array.shape[1:], None, np.arange(array.shape[0]),
                         name=name, check_finite=check_finite, affine=affine)
        self._array = array

    def _source_at(self, pos):
        return f"<array index {pos}>"

    def update_identity(self, h):
        array_identity(self._array, self._positions, h)

    def _in_memory_at(self, pos):
        return not isinstance(self._array, np.memmap)

    def _read(self, pos):
        with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf, caught by check
            return np.array(self._array[pos], dtype=np.float32, order="C")

    def _read_into(self, pos, out):
        with np.errstate(over="ignore"):
            np.copyto(out, self._array[pos], casting="unsafe")

    def _extra_nonfinite_hint(self):
        if self._array.dtype.kind == "f" and self._array.dtype.itemsize > 4:
            return " once read as float32 (values beyond +-3.4e38 become inf)"
        return ""

    def _scan_finite(self, eager_files):
        array = self._array
        if array.dtype.kind != "f":  # integers and booleans are always finite
            return
        voxels = max(1, math.prod(self.shape))
        step = max(1, _FINITE_CHUNK_VOXELS // voxels)
        positions = self._positions
        contiguous = len(positions) and np.array_equal(
            positions, np.arange(positions[0], positions[0] + len(positions)))
        for start in range(0, len(positions), step):
            chunk_pos = positions[start:start + step]
            block = (array[chunk_pos[0]:chunk_pos[-1] + 1] if contiguous else array[chunk_pos])
            with np.errstate(over="ignore"):
                if array.dtype.itemsize > 4:
                    block = block.astype(np.float32)
                finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
            if not finite.all():
                pos = chunk_pos[int(np.flatnonzero(~finite)[0])]
                self._check_volume_finite(self._read(pos), pos)
