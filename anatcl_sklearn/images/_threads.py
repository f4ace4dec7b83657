"""Decoding files in threads, handed on in order: :func:`read_in_order`.

Inflating a ``.nii.gz`` (zlib) and numpy's copies release the GIL, so two threads decode two
files at once. The results come back in the order of the positions asked, whatever order the
threads finish in, and an error surfaces when its position is reached: the caller meets the
error of the lowest position that fails, as a plain loop would, and no later position's
result is handed on first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

__all__ = ["read_in_order"]

T = TypeVar("T")


def read_in_order(read: Callable[[int], T], positions: Iterable[int],
                  workers: int = 2) -> Generator[tuple[int, T], None, None]:
    """``(position, read(position))`` for each position, in order, read in ``workers`` threads.

    At most ``workers`` reads run or wait ahead of the one handed on, so about ``workers + 1``
    results exist at once beside what the caller keeps. ``workers <= 1`` reads in the calling
    thread, one position at a time. ``read`` must share no mutable state between calls.

    Parameters
    ----------
    read : callable
        Reads one position; its exception is raised when that position's turn comes.
    positions : iterable of int
        The positions, in the order the results are wanted.
    workers : int, default=2
        Threads reading at once.

    Yields
    ------
    position, result : int, object

    Notes
    -----
    Close the generator (``contextlib.closing``) when stopping early: the reads still ahead
    are then cancelled, or waited for when already running.
    """
    if workers <= 1:
        for pos in positions:
            yield pos, read(pos)
        return
    todo = iter(positions)
    pending: deque[tuple[int, Future[T]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="anatcl-read") as pool:
        try:
            for pos in todo:
                pending.append((pos, pool.submit(read, pos)))
                if len(pending) >= workers:
                    break
            while pending:
                pos, future = pending.popleft()
                result = future.result()  # this position's error, raised in order
                for nxt in todo:  # one more read ahead
                    pending.append((nxt, pool.submit(read, nxt)))
                    break
                yield pos, result
                del result
        finally:
            for _, future in pending:
                future.cancel()
