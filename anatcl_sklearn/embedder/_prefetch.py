"""Read the next images while the current ones are embedded: a background reader thread.

:func:`prefetch_batches` yields batches of volumes in order, read by one background thread that
stays at most ``depth`` batches ahead (a bounded queue), so reading, decompressing and
conforming the next files overlaps the forward pass of the current batch (zlib, file reads,
numpy and scipy release the GIL; so does torch's forward). An error raised by the reader comes
back in the consumer's thread, naming the file. The thread always ends: when the batches are
exhausted, when the reader fails, and when the consumer stops early (an exception of its own,
``KeyboardInterrupt``, ``break``), because the generator's ``finally`` tells the reader to stop,
empties the queue and joins it.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ..exceptions import ImageReadError

__all__ = ["prefetch_batches"]

_POLL_S = 0.1  # how often a blocked reader looks whether the consumer has gone


class _Failure:
    """What the reader puts on the queue when reading ``index`` raised ``error``."""

    def __init__(self, index: int, error: BaseException) -> None:
        self.index = index
        self.error = error


_DONE = object()


def _named(error: BaseException, source: str) -> BaseException:
    """``error`` when its message names ``source``, else an ImageReadError that does."""
    if not source or source in str(error) or not isinstance(error, (ValueError, OSError)):
        return error
    named = ImageReadError(f"cannot read {source}: {' '.join(str(error).split())}")
    named.__cause__ = error
    return named


def prefetch_batches(
    load: Callable[[int], np.ndarray],
    n: int,
    batch_size: int,
    *,
    describe: Callable[[int], str] | None = None,
    depth: int = 2,
    name: str = "anatcl-reader",
) -> Iterator[np.ndarray]:
    """Yield ``load(0..n-1)`` stacked in batches of ``batch_size``, read ahead in a thread.

    Parameters
    ----------
    load : callable
        ``load(i)`` returns volume ``i`` (an array; all of one shape).
    n : int
        How many volumes.
    batch_size : int
        Volumes per batch (the last batch may be smaller).
    describe : callable, default=None
        ``describe(i)``: the file behind volume ``i``, named in an error whose message does
        not name it already.
    depth : int, default=2
        How many batches the reader may be ahead of the consumer (memory: ``depth + 1``
        batches at most besides the one being embedded).
    name : str, default="anatcl-reader"
        The thread's name.

    Yields
    ------
    batch : ndarray of shape (b, *volume_shape)
        In order; ``b = batch_size`` except maybe for the last.

    Raises
    ------
    Exception
        Whatever ``load`` raised, in the consumer's thread (an ImageReadError naming the file
        when the original message did not).
    """
    if batch_size < 1 or depth < 1:
        raise ValueError(f"batch_size and depth must be >= 1; got {batch_size} and {depth}.")
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        for start in range(0, n, batch_size):
            volumes = []
            for i in range(start, min(start + batch_size, n)):
                if stop.is_set():
                    return
                try:
                    volumes.append(load(i))
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                    put(_Failure(i, exc))
                    return
            try:
                batch = np.stack(volumes)
            except BaseException as exc:  # noqa: BLE001 - e.g. volumes of different shapes
                put(_Failure(start, exc))
                return
            if not put(batch):
                return
        put(_DONE)

    thread = threading.Thread(target=read, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                source = describe(item.index) if describe is not None else ""
                error = _named(item.error, source)
                if error is item.error:
                    raise error
                raise error from item.error
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue, then wait for it
            try:
                slots.get_nowait()
            except queue.Empty:
                pass
            thread.join(_POLL_S)


@contextlib.contextmanager
def batches(images: Any, batch_size: int, num_workers: int, pin_memory: bool):
    """The batches (tensors of shape (b, 1, D, H, W)) of ``transform``, as a context manager.

    With ``num_workers=0`` a background thread reads ahead (embedder/_prefetch.py) and ends
    when the block ends, however it ends, unless every volume is a copy from memory (read
    ahead by ``embed``'s check, or arrays): then the batches are made in this thread, since
    the reader's copies would only interrupt the forward's threads (0.6 s more over 64
    full-size volumes on two cores). Otherwise a DataLoader with that many worker processes.
    """
    from ._data import SubjectDataset

    if num_workers > 0:
        loader = torch.utils.data.DataLoader(
            SubjectDataset(images), batch_size=batch_size, shuffle=False,
            num_workers=num_workers, pin_memory=pin_memory)
        yield (batch["x"] for batch, _ in loader)
        return
    if images._loads_are_copies():
        def copies():
            for start in range(0, len(images), batch_size):
                x = torch.from_numpy(images.load_batch(slice(start, start + batch_size)))
                yield x[:, None].pin_memory() if pin_memory else x[:, None]

        yield copies()
        return
    sources = images.sources

    def describe(i):
        return str(sources[i]) if i < len(sources) else ""

    reader: Any = prefetch_batches(images.load, len(images), batch_size, describe=describe)
    def tensors():
        for b in reader:
            x = torch.from_numpy(b)[:, None]
            yield x.pin_memory() if pin_memory else x

    try:
        yield tensors()
    finally:
        reader.close()
