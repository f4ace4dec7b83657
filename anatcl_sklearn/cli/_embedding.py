"""The embedding pass of ``anatcl-sklearn embed``: the files checked while the weights load.

Check first, then embed: every file is read and checked (damage, NaN, off the grid) before
any image is embedded or anything is written. That read takes a while (64 full-size
``.nii.gz``: 1-2 s on two cores), and so do loading the weights and building the inference
backend (ONNX Runtime, OpenVINO: from the disk cache, then compared with the eager forward on
the first image). So those run in a second thread during the check (:class:`Background`; the
thread reads the first image itself). A bad file is reported as soon as the check meets it,
without waiting for that thread: it is a daemon, told to stop at its next step. Then the
images are embedded in chunks, batched as one ``transform`` of them all would batch them.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np


_pending: list[threading.Thread] = []
_pending_lock = threading.Lock()


def wait_for_stopped() -> None:
    """Wait for the threads :meth:`Background.cancel` stopped (their current step ends).

    ``embed`` calls it once its error line is out, so an in-process caller (a notebook, a
    test) gets control back with no thread of the failed run still loading weights or
    drawing from torch's random generator beside its own work.
    """
    with _pending_lock:
        threads = list(_pending)
    for thread in threads:
        thread.join()
    with _pending_lock:
        for thread in threads:
            if thread in _pending:
                _pending.remove(thread)


def _join_at_exit() -> None:
    """Wait for the cancelled threads (they stop at their next step) before finalization;
    a second Ctrl-C while waiting leaves at once (status 130), finalization skipped."""
    with _pending_lock:
        threads = list(_pending)
        _pending.clear()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(130)


class Background:
    """``fn(*args, cancelled)`` in a daemon thread; :meth:`result` returns or raises its outcome.

    ``cancelled`` is a :class:`threading.Event` the function may read between its steps; a
    daemon, so a refused or interrupted command tells the user without waiting for it (and
    waits at exit only, :meth:`cancel`).
    """

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.cancelled = threading.Event()
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True,
                                        name="anatcl-embed-weights")
        self._thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self._value = fn(*args, self.cancelled)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._error = exc

    def cancel(self) -> None:
        """Ask the function to stop at its next step; do not wait for it here, but at exit.

        A daemon thread still inside torch's C++ code when the interpreter finalizes is ended
        with ``pthread_exit``, which aborts the process ("terminate called without an active
        exception", status 134 in place of the command's 2 or 130). So the process waits for
        it at exit, once the error line is out (:func:`_join_at_exit`).
        """
        self.cancelled.set()
        with _pending_lock:
            if not _pending:
                atexit.register(_join_at_exit)
            _pending.append(self._thread)

    def result(self) -> Any:
        """The function's value, once it returned; its exception, raised here."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _load_weights_and_build(est: Any, first: Any, n_images: int,
                            cancelled: threading.Event) -> None:
    """A frozen fit (the weights), then the backend built ahead on the first image."""
    from ..embedder._inference import prebuild

    est.fit(first)
    if not cancelled.is_set():  # the first file is read again only if a backend is built
        prebuild(est, lambda: first.load(0), tuple(first.shape), n_images)


def embed_checked(est: Any, images: Any, read_ahead_bytes: int, chunk: int,
                  progress: Callable[[int, int], None]) -> np.ndarray:
    """Check every image, then embed them all with ``est`` (fitted here, on the first image).

    Parameters
    ----------
    est : AnatCLEmbedder
        Not fitted: a frozen encoder (``max_epochs`` irrelevant: ``pretrained`` given).
    images : ImageCollection
        Headers checked; every volume is read and checked here before any is embedded.
    read_ahead_bytes : int
        How much of the checked volumes to keep for the embedding (each file read once).
    chunk : int
        Images per ``transform`` call (one progress update each).
    progress : callable
        ``progress(done, total)``.

    Returns
    -------
    embeddings : ndarray of shape (len(images), n_features)
    """
    n = len(images)
    ready = Background(_load_weights_and_build, est, images.subset(slice(0, 1)), n)
    progress(0, n)
    try:
        images._read_ahead(read_ahead_bytes, batch_size=int(est.batch_size))
        ready.result()  # an interrupt while waiting for it stops it too
    except BaseException:
        ready.cancel()  # the user hears of the file now, not after the weights
        raise
    parts = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        parts.append(est.transform(images.subset(slice(start, stop))))
        progress(stop, n)
    return np.concatenate(parts, axis=0)
