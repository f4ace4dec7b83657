"""The volumes a check pass read (``embed``'s read-ahead), kept for the loads that follow.

``ImageCollection._read_ahead`` reads and checks every volume before any is embedded; up to a
budget of bytes, the checked volumes are kept here so that the embedding decodes no file twice.
Each is taken by the first load of its position and then dropped (one use; never pickled).

Given the batch size the loads will use, the volumes are decoded straight into batch-shaped
blocks (C order, one row per volume), and a ``load_batch`` of exactly one block's positions
gets the block itself: no copy between the check and the forward (on two cores, copying the
first batches into fresh memory cost ~0.3 s of the forward's thread over 64 full-size volumes).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np


@contextlib.contextmanager
def no_hugepages() -> Iterator[None]:
    """New numpy arrays without ``madvise(MADV_HUGEPAGE)`` inside the block (then restored).

    numpy asks Linux for transparent huge pages on arrays of 4 MiB and more; where the kernel
    then compacts memory on the fault (``defrag=madvise``, its default), writing a few hundred
    MiB of freshly allocated volumes once stalls: 0.4 s of a 1.6-2.0 s read-ahead of 64
    full-size files, measured on two cores. The read-ahead's volumes are written once and read
    once, so huge pages buy it nothing. Performance only: where numpy has no such switch, or
    another thread allocates meanwhile, nothing changes but the time.
    """
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    switch = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if switch is None:
        yield
        return
    before = switch(False)
    try:
        yield
    finally:
        switch(before)


class WarmVolumes:
    """Checked volumes by storage position, some of them rows of batch-shaped blocks."""

    def __init__(self) -> None:
        self._volumes: dict[int, np.ndarray] = {}
        self._blocks: dict[tuple[int, ...], np.ndarray] = {}
        self._rows: dict[int, np.ndarray] = {}  # planned destinations, until finish()

    def plan(self, positions: Sequence[int], shape: tuple[int, ...], batch_size: int,
             max_bytes: int) -> int:
        """Allocate (not touch) blocks for consecutive runs of ``batch_size`` positions, as
        long as they fit in ``max_bytes``; returns the bytes planned."""
        per_volume = math.prod(shape) * 4
        planned = 0
        for start in range(0, len(positions), max(1, int(batch_size))):
            chunk = tuple(int(p) for p in positions[start:start + int(batch_size)])
            if planned + per_volume * len(chunk) > max_bytes:
                break
            block = np.empty((len(chunk), *shape), dtype=np.float32)
            self._blocks[chunk] = block
            for row, pos in enumerate(chunk):
                self._rows[pos] = block[row]
            planned += block.nbytes
        return planned

    def destination(self, pos: int) -> np.ndarray | None:
        """Where the volume at ``pos`` may be decoded (a block's row), or None."""
        return self._rows.get(int(pos))

    def is_planned(self, pos: int, volume: np.ndarray) -> bool:
        """Whether ``volume`` is ``pos``'s planned row (its bytes already counted)."""
        return self._rows.get(int(pos)) is volume

    def keep(self, pos: int, volume: np.ndarray) -> None:
        self._volumes[int(pos)] = volume

    def finish(self) -> None:
        """After the check: keep the blocks whose every row holds its checked volume."""
        for chunk in list(self._blocks):
            if not all(self._volumes.get(p) is self._rows[p] for p in chunk):
                del self._blocks[chunk]  # its kept rows stay, as views, until taken
        self._rows.clear()

    def take(self, pos: int) -> np.ndarray | None:
        """The volume at ``pos``, once; None when it is not (or no longer) kept."""
        return self._volumes.pop(int(pos), None)

    def take_block(self, positions: Sequence[int]) -> np.ndarray | None:
        """The block of exactly ``positions`` (in order) when every one is still kept, once."""
        key = tuple(int(p) for p in positions)
        block = self._blocks.pop(key, None)
        if block is None or not all(p in self._volumes for p in key):
            return None  # a row already taken (by load) was handed out: never the block
        for p in key:
            del self._volumes[p]
        return block

    def __contains__(self, pos: object) -> bool:
        return isinstance(pos, (int, np.integer)) and int(pos) in self._volumes

    def __len__(self) -> int:
        return len(self._volumes)

    def __iter__(self):
        return iter(self._volumes)
