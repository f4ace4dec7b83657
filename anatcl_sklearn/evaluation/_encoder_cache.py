"""An on-disk cache of pretrained encoders, keyed by content, shared by the gallery's examples.

Tables 2-5 of the paper pretrain the same methods on the same data. :func:`fit_or_load`
trains an :class:`~anatcl_sklearn.AnatCLEmbedder` once and saves it
(:meth:`~anatcl_sklearn.AnatCLEmbedder.save_pretrained`) in a folder named by a hash of
its parameters and of the training data; a later fit with the same parameters on the same
data loads that folder (``AnatCLEmbedder(pretrained=folder)``) instead of training again.
Delete the folder and it trains again. The embeddings of a cohort are cached beside the
encoder, keyed by the cohort's content (:func:`embed_cached`).

Every entry is written in a temporary folder inside the cache, then renamed into place
with :func:`os.replace`: a reader never sees half an entry, and a failed write leaves
nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
from sklearn.utils import Bunch

from .._atomic import atomic_write, atomic_write_text
from .._typing import ArrayLike, Images, PathLike

if TYPE_CHECKING:
    from ..embedder import AnatCLEmbedder

__all__ = ["data_key", "embed_cached", "encoder_key", "fit_or_load"]

# Parameters that do not change the weights a fit produces.
_NOT_IN_KEY = ("verbose", "callbacks", "checkpoint_dir", "num_workers")
_HISTORY = "history.json"
# Parameters a loaded encoder keeps from the one that was trained.
_INFERENCE = ("output", "batch_size", "device", "num_workers", "conform", "precision",
              "channels_last")


def _data_identity(X: Any) -> Any:
    """X by content: arrays as they are, file paths by path, size and modification time."""
    if isinstance(X, (str, os.PathLike)):
        st = os.stat(X)
        return ("file", os.path.abspath(X), st.st_size, st.st_mtime_ns)
    if isinstance(X, (list, tuple)):
        return [_data_identity(x) for x in X]
    return X


def data_key(*arrays: Any) -> str:
    """A 16-hex-digit hash of arrays (or lists of images or paths) by content."""
    return joblib.hash([_data_identity(a) for a in arrays], hash_name="sha1")[:16]


def encoder_key(
    embedder: AnatCLEmbedder,
    X: Images,
    age: ArrayLike | None = None,
    anatomy: ArrayLike | None = None,
) -> str:
    """The cache key of fitting ``embedder`` on ``X``: its class, parameters and data.

    Parameters
    ----------
    embedder : AnatCLEmbedder
        An unfitted embedder; ``verbose``, ``callbacks``, ``checkpoint_dir`` and
        ``num_workers`` do not change its weights and are left out of the key.
    X, age, anatomy
        The training data, as given to ``fit``.

    Returns
    -------
    key : str
        ``"<method>-<16 hex digits>"``.
    """
    params = {k: v for k, v in embedder.get_params(deep=False).items() if k not in _NOT_IN_KEY}
    digest = joblib.hash([type(embedder).__qualname__, sorted(params.items()),
                          data_key(X, age, anatomy)], hash_name="sha1")[:16]
    method = str(params.get("method", type(embedder).__name__.lower()))
    return f"{method}-{digest}"


def _check_cache(cache: object) -> Path:
    if not isinstance(cache, (str, os.PathLike)):
        raise TypeError(f"cache must be a folder path (str or os.PathLike); got "
                        f"{type(cache).__name__}.")
    cache = Path(cache)
    if cache.exists() and not cache.is_dir():
        raise ValueError(f"cache {str(cache)!r} is a file, not a folder.")
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def _history(embedder: AnatCLEmbedder) -> list[float]:
    history = getattr(embedder, "history_", None)
    if history is None or not len(history):
        return []
    return [float(v) for v in history[:, "train_loss"]]


def fit_or_load(
    embedder: AnatCLEmbedder,
    X: Images,
    *,
    age: ArrayLike | None = None,
    anatomy: ArrayLike | None = None,
    cache: PathLike | None = None,
) -> Bunch:
    """Fit ``embedder`` on ``X``, or load what the same fit on the same data saved in ``cache``.

    Parameters
    ----------
    embedder : AnatCLEmbedder
        The encoder to pretrain (unfitted). An embedder with ``pretrained`` weights and
        no fine-tuning is only fitted (it loads them) and never cached.
    X : array-like or list of images or paths
        Training images.
    age, anatomy : array-like or None, default=None
        Fit metadata, as for :meth:`~anatcl_sklearn.AnatCLEmbedder.fit`.
    cache : str, os.PathLike or None, default=None
        Cache folder (created if missing). None fits without caching.

    Returns
    -------
    fitted : sklearn.utils.Bunch
        ``embedder`` (fitted: ``embedder`` itself when trained, a new
        ``AnatCLEmbedder(pretrained=folder)`` when loaded), ``history`` (training loss per
        epoch, also when loaded), ``loaded`` (bool) and ``folder`` (the cache entry, or
        None without a cache).

    Raises
    ------
    TypeError
        If ``cache`` is not a path.
    ValueError
        If ``cache`` is a file.
    """
    frozen = (getattr(embedder, "pretrained", None) is not None
              and not getattr(embedder, "finetune", False))
    if cache is None or frozen:
        embedder.fit(X, age=age, anatomy=anatomy)
        return Bunch(embedder=embedder, history=_history(embedder), loaded=False, folder=None)
    cache = _check_cache(cache)
    folder = cache / encoder_key(embedder, X, age, anatomy)
    if (folder / "config.json").is_file() and (folder / _HISTORY).is_file():
        from ..embedder import AnatCLEmbedder

        # how the trained embedder embeds (its output, batch size, device...), not how it trained
        params = embedder.get_params(deep=False)
        loaded = AnatCLEmbedder(pretrained=os.fspath(folder), verbose=0,
                                **{k: params[k] for k in _INFERENCE if k in params})
        loaded.fit(X[:1])  # a frozen encoder: fit only loads the weights
        history = json.loads((folder / _HISTORY).read_text(encoding="utf-8"))["train_loss"]
        return Bunch(embedder=loaded, history=history, loaded=True, folder=folder)
    embedder.fit(X, age=age, anatomy=anatomy)
    history = _history(embedder)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        embedder.save_pretrained(tmp)
        atomic_write_text(tmp / _HISTORY, json.dumps({"train_loss": history}))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process saved the same entry first: keep theirs
            if not (folder / "config.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Bunch(embedder=embedder, history=history, loaded=False, folder=folder)


def embed_cached(
    embedder: AnatCLEmbedder, X: Images, *, folder: PathLike | None = None
) -> np.ndarray:
    """``embedder.transform(X)``, saved in (and read back from) a cache entry's ``folder``.

    Parameters
    ----------
    embedder : fitted transformer
        The encoder of the cache entry ``folder`` (see :func:`fit_or_load`).
    X : array-like or list of images or paths
        Images to embed; the file name is a hash of their content.
    folder : str, os.PathLike or None, default=None
        The encoder's cache entry; None embeds without caching.

    Returns
    -------
    embeddings : ndarray of shape (n_subjects, n_features)
    """
    if folder is None:
        return embedder.transform(X)
    path = Path(folder) / f"embeddings-{data_key(X)}.npy"
    if path.is_file():
        return np.load(path)
    Z = embedder.transform(X)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a handle: np.save would add ".npy" to a path
            np.save(fh, Z)

    atomic_write(path, write)
    return Z
