"""Synthetic brains written as NIfTI files: inputs for the command line and the docs' recipes.

:func:`write_synthetic_brains` draws :func:`~anatcl_sklearn.datasets.make_synthetic_brains`
and writes one gzipped NIfTI per subject, with the grid's affine, plus a ``participants.tsv``
whose ``path`` column ``anatcl-sklearn embed`` reads as a list file.
"""

from __future__ import annotations

import gzip
import io
import numbers
import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._typing import PathLike, RandomState
from ..images._grid import OPENBHB_SHAPE

__all__ = ["write_synthetic_brains"]

#: Suffix of every image file: CAT12's modulated, warped grey matter ("mwp1").
IMAGE_SUFFIX = "_mwp1.nii.gz"
PARTICIPANTS_NAME = "participants.tsv"


def _participant_ids(n_subjects):
    """The ids ``make_synthetic_brains`` gives (``sub-0001``...), known before drawing."""
    width = max(4, len(str(n_subjects)))
    return [f"sub-{i + 1:0{width}d}" for i in range(n_subjects)]


def _nifti_bytes(volume, affine):
    """A gzipped single-file NIfTI-1 image (float32, millimetres), reproducible byte for byte."""
    import nibabel as nib

    image = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)  # scanner-anatomical: readers that prefer the qform agree
    image.set_sform(affine, code=1)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=6, mtime=0) as fh:
        fh.write(image.to_bytes())
    return buffer.getvalue()


def _check_folder(folder, names, overwrite):
    """The absolute target folder; refuse a non-folder or, unless ``overwrite``, any existing
    target file, before anything is drawn or written."""
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a path (str or os.PathLike); got {type(folder).__name__}.")
    if not isinstance(overwrite, (bool, np.bool_)):
        raise TypeError(f"overwrite must be a bool; got {overwrite!r}.")
    folder = Path(os.path.abspath(os.path.expanduser(os.fspath(folder))))
    if os.path.lexists(folder) and not folder.is_dir():  # a file, a dangling or looping link
        raise ValueError(f"folder {str(folder)!r} exists and is not a folder"
                         + (" (a symbolic link to nothing)." if folder.is_symlink() else "."))
    if not overwrite and folder.is_dir():
        existing = [n for n in names if os.path.lexists(folder / n)]
        if existing:
            what = (f"{str(folder / existing[0])!r} already exists" if len(existing) == 1 else
                    f"{str(folder / existing[0])!r} and {len(existing) - 1} more of the files "
                    "to write already exist")
            raise ValueError(f"{what}; pass overwrite=True to replace them (or choose another "
                             "folder).")
    return folder


def write_synthetic_brains(
    folder: PathLike,
    n_subjects: int = 8,
    *,
    shape: tuple[int, int, int] = OPENBHB_SHAPE,
    cohort: str = "openbhb",
    random_state: RandomState = None,
    overwrite: bool = False,
) -> Bunch:
    """Write synthetic brains as NIfTI files with their affine, plus a participants table.

    Draws :func:`~anatcl_sklearn.datasets.make_synthetic_brains` and writes, in ``folder``
    (created if missing):

    - ``sub-0001_mwp1.nii.gz``, ... : one gzipped NIfTI-1 volume per subject (float32), whose
      affine is the synthetic grid's (``data.affine``: OpenBHB's 1.5 mm MNI grid on the
      default shape, the same field of view with resized voxels on another shape);
    - ``participants.tsv``: ``participant_id``, ``age``, ``sex`` (0 female, 1 male),
      ``site``, ``diagnosis``, the cohort's phenotypes and ``path``, the image's file name
      (relative to ``folder``), so the table itself is a list file for
      ``anatcl-sklearn embed``.

    Every file is written atomically (a temporary file renamed into place; a symbolic link at
    a target is replaced, never written through). If writing fails part way, the files this
    call created are removed again.

    Parameters
    ----------
    folder : str or os.PathLike
        Where to write. Created (with its parents) if missing.
    n_subjects : int, default=8
        Number of subjects (and image files).
    shape : tuple of 3 int, default=(121, 145, 121)
        Image grid; every dimension at least 16. The default is the grid of the released
        AnatCL weights, so the files embed without ``--conform``; a small grid such as
        ``(24, 28, 24)`` writes in a blink for tests.
    cohort : str, default="openbhb"
        Population to imitate, as in :func:`~anatcl_sklearn.datasets.make_synthetic_brains`.
    random_state : int, RandomState instance or None, default=None
        Seed, for reproducible files.
    overwrite : bool, default=False
        Replace existing files of the same names. Without it, any existing target file
        (image or ``participants.tsv``) is refused before anything is drawn or written.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        What :func:`~anatcl_sklearn.datasets.make_synthetic_brains` returns, with
        ``participants`` holding the ``path`` column, plus

        paths : list of str
            Absolute path of each subject's image, in ``participants`` order.
        participants_path : str
            Absolute path of ``participants.tsv``.

    Raises
    ------
    ValueError
        If ``folder`` exists and is not a folder, a target file exists and ``overwrite`` is
        False, or an argument of
        :func:`~anatcl_sklearn.datasets.make_synthetic_brains` is out of range.
    TypeError
        If an argument has the wrong type.
    OSError
        If the folder cannot be created or written.

    Examples
    --------
    >>> import os, tempfile
    >>> import nibabel as nib
    >>> from anatcl_sklearn.datasets import write_synthetic_brains
    >>> folder = tempfile.mkdtemp()
    >>> data = write_synthetic_brains(folder, 4, shape=(24, 28, 24), random_state=0)
    >>> sorted(os.path.basename(p) for p in data.paths)[:2]
    ['sub-0001_mwp1.nii.gz', 'sub-0002_mwp1.nii.gz']
    >>> nib.load(data.paths[0]).shape
    (24, 28, 24)
    >>> list(data.participants.columns[[0, 1, 2, -1]])
    ['participant_id', 'age', 'sex', 'path']
    >>> import shutil; shutil.rmtree(folder)
    """
    from .._atomic import atomic_write_bytes, atomic_write_text
    from ._synthetic import make_synthetic_brains

    if isinstance(n_subjects, bool) or not isinstance(n_subjects, numbers.Integral):
        raise TypeError(f"n_subjects must be an int >= 1; got {n_subjects!r}.")
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be an int >= 1; got {n_subjects}.")
    ids = _participant_ids(n_subjects)
    names = [f"{pid}{IMAGE_SUFFIX}" for pid in ids]
    folder = _check_folder(folder, [*names, PARTICIPANTS_NAME], overwrite)
    data = make_synthetic_brains(n_subjects, shape=shape, cohort=cohort,
                                 random_state=random_state)
    if list(data.participants["participant_id"]) != ids:  # pragma: no cover - a coding error
        raise RuntimeError("make_synthetic_brains changed its participant ids.")

    folder.mkdir(parents=True, exist_ok=True)
    participants = data.participants.assign(path=names)
    created = []
    try:
        for name, volume in zip(names, data.images):
            target = folder / name
            new = not os.path.lexists(target)
            atomic_write_bytes(target, _nifti_bytes(volume, data.affine))
            if new:
                created.append(target)
        target = folder / PARTICIPANTS_NAME
        new = not os.path.lexists(target)
        atomic_write_text(target, participants.to_csv(sep="\t", index=False,
                                                      float_format="%.6g"))
        if new:
            created.append(target)
    except BaseException:
        for path in created:  # all or nothing for the files this call brought into being
            path.unlink(missing_ok=True)
        raise
    data.participants = participants
    data.paths = [str(folder / name) for name in names]
    data.participants_path = str(folder / PARTICIPANTS_NAME)
    return data
