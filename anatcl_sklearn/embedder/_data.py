"""The torch Dataset that carries images with their per-subject metadata.

skorch hands fit params whole to every batch (it does not slice them), so age and anatomy
travel inside X: each item is ``({"x": volume, "age": a, "anatomy": A}, 0)`` and the default
collate stacks them per batch. Volumes are read lazily from an
:class:`~anatcl_sklearn._images.ImageCollection`, one per item, as float32.
"""

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..exceptions import ImageReadError


class WorkerReadError(ImageReadError):
    """A file a DataLoader worker could not read, re-raised in the main process with the
    worker's one-line message (which names the file) instead of the worker's traceback.

    torch re-raises a worker's exception as ``type(message=...)`` when the type has a
    ``message`` attribute, passing "Caught ... Original Traceback ..."; the last line of that
    traceback is this exception's own message.
    """

    message = "a file a DataLoader worker could not read"

    def __init__(self, message):
        marker = f"{type(self).__name__}: "
        if marker in message:  # torch's wrapped traceback: keep our own last line
            message = message.rsplit(marker, 1)[1].strip()
            message = f"{message} (read in a DataLoader worker)"
        super().__init__(message)


class SubjectDataset(Dataset):
    """Images plus optional age (n,) and anatomy (n, R, M) for one training or inference run.

    Parameters
    ----------
    images : ImageCollection
        The validated images.
    age : ndarray of shape (n_subjects,) or None
    anatomy : ndarray of shape (n_subjects, n_regions, n_measures) or None
    cached : bool, default=False
        Yield the subject index instead of the volume (the net reads a
        :class:`~anatcl_sklearn.embedder._cache.VolumeCache`).
    """

    def __init__(self, images, age=None, anatomy=None, *, cached=False):
        self.images = images
        self.cached = cached
        self.age = None if age is None else torch.as_tensor(np.asarray(age, dtype=np.float32))
        self.anatomy = (None if anatomy is None
                        else torch.as_tensor(np.asarray(anatomy, dtype=np.float32)))

    def __len__(self):
        return len(self.images)

    def _load(self, i):
        if get_worker_info() is None:  # the main process: the error itself
            return self.images.load(i)
        try:
            return self.images.load(i)
        except (ValueError, OSError) as exc:  # names the file, on one line
            raise WorkerReadError(" ".join(str(exc).split())) from None

    def __getitem__(self, i):
        if self.cached:  # the volume lives in a VolumeCache; only its index travels
            item = {"idx": torch.tensor(i)}
        else:
            item = {"x": torch.from_numpy(np.ascontiguousarray(self._load(i)))[None]}
        if self.age is not None:
            item["age"] = self.age[i]
        if self.anatomy is not None:
            item["anatomy"] = self.anatomy[i]
        return item, 0
