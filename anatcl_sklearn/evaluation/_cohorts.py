"""A downstream cohort on disk: a participants table beside its grey-matter maps."""

from __future__ import annotations

import os
from pathlib import Path

from sklearn.utils import Bunch

from .._typing import PathLike
from ..exceptions import warn
from ..images._tables import read_image_table

__all__ = ["load_cohort"]

_TABLES = ("participants.tsv", "participants.csv")


def _table_path(root, table):
    """The participants table: ``root / table``, or the first of :data:`_TABLES` in ``root``."""
    if table is not None:
        path = root / table
        if not path.is_file():
            raise FileNotFoundError(f"Participants table not found: '{path}'.")
        return path
    found = [root / name for name in _TABLES if (root / name).is_file()]
    if not found:
        raise FileNotFoundError(
            f"No participants table in '{root}': expected one of {list(_TABLES)} (one row "
            "per subject, with the labels the tasks read and the image of each subject)."
        )
    return found[0]


def load_cohort(
    root: PathLike,
    *,
    table: str | None = None,
    image_column: str | None = None,
    pattern: str | None = None,
    on_missing: str = "raise",
) -> Bunch:
    """Read a downstream cohort: its participants table and the paths of its images.

    The gallery's real-data mode reads ADNI, OASIS-3, SchizConnect or ABIDE images this
    way. Labels come from the table's columns through the :data:`TASKS` rules: a
    ``diagnosis`` column with the groups' names (``HC``, ``AD``, ``sMCI``, ``pMCI``,
    ``SCZ-broad``...) and phenotype columns named as in
    :func:`~anatcl_sklearn.datasets.make_synthetic_brains`, or the ABIDE-I phenotypic
    columns as distributed.

    Parameters
    ----------
    root : str or os.PathLike
        The cohort's folder.
    table : str or None, default=None
        Participants table inside ``root``; by default ``participants.tsv`` (tab
        separated) or ``participants.csv``.
    image_column : str or None, default=None
        Column holding each subject's image path (relative to ``root`` or absolute); by
        default the first of ``path``, ``image``, ``filename`` (the columns every table of
        image paths may use, as ``anatcl-sklearn embed`` and ``train`` read them).
    pattern : str or None, default=None
        Instead of an image column, a path template filled from each row, e.g.
        ``"sub-{participant_id}/gm.nii.gz"``.
    on_missing : {"raise", "drop"}, default="raise"
        Subjects whose image is missing: raise a ``FileNotFoundError`` naming the first
        ones, or drop them with a warning.

    Returns
    -------
    cohort : sklearn.utils.Bunch
        ``images`` (list of str, for :class:`~anatcl_sklearn.AnatCLEmbedder`),
        ``participants`` (the table's rows with an image, index reset) and ``root``.

    Raises
    ------
    FileNotFoundError
        If the folder, the table or (with ``on_missing="raise"``) an image is missing.
    ValueError
        If no image column or pattern can be used, or the table cannot be read.

    Examples
    --------
    >>> from anatcl_sklearn.evaluation import load_cohort
    >>> adni = load_cohort("~/data/adni_cat12")  # doctest: +SKIP
    >>> len(adni.images) == len(adni.participants)  # doctest: +SKIP
    True
    """
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a path; got {type(root).__name__}.")
    if on_missing not in ("raise", "drop"):
        raise ValueError(f"on_missing must be 'raise' or 'drop'; got {on_missing!r}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"Cohort folder not found: '{root}'.")
    table_path = _table_path(root, table)
    read = read_image_table(table_path, what="participants table", base=root,
                            path_column=image_column, pattern=pattern, empty="keep",
                            hint=" Or name the image column (image_column=) or give a "
                                 "pattern, e.g. pattern='{participant_id}.nii.gz'.")
    frame, paths = read.frame, read.paths
    present = [p is not None and os.path.isfile(p) for p in paths]
    if not all(present):
        missing = [str(p) for p, ok in zip(paths, present) if not ok]
        message = f"{len(missing)} of {len(paths)} images listed in {table_path} are missing: " \
                  f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
        if on_missing == "raise":
            raise FileNotFoundError(message + ".")
        warn(message + "; those subjects are dropped.")
    if not any(present):
        raise FileNotFoundError(f"No image of {table_path} exists.")
    kept = frame[present].reset_index(drop=True)
    images = [str(p) for p, ok in zip(paths, present) if ok]
    _warn_repeats(kept, images, table_path)
    return Bunch(images=images, participants=kept, root=str(root))


def _warn_repeats(participants, images, table_path):
    """Warn when a subject or an image has several rows: the probes' cross-validation splits
    rows, so one brain would be in the training and the test folds (an inflated score)."""
    ids = read_id = None
    for name in ("participant_id", "subject", "subject_id", "SUB_ID"):
        if name in participants:
            ids, read_id = participants[name], name
            break
    repeated = ([] if ids is None else
                sorted({str(v) for v in ids[ids.duplicated(keep=False) & ids.notna()]}))
    what = f"{read_id} {repeated[0]!r}" if repeated else ""
    if not repeated:
        seen: set[str] = set()
        repeated = [p for p in images if p in seen or seen.add(p)]  # type: ignore[func-returns-value]
        what = f"image {repeated[0]!r}" if repeated else ""
    if repeated:
        warn(f"{table_path}: {len(repeated)} subject(s) or image(s) have several rows (e.g. "
             f"{what}); the probes' cross-validation splits rows, so one brain would be in "
             "both the training and the test folds. Keep one scan per subject.")
