"""A downstream cohort on disk: a participants table beside its grey-matter maps."""

import os
import string
import warnings
from pathlib import Path

import pandas as pd
from sklearn.utils import Bunch

__all__ = ["load_cohort"]

_TABLES = ("participants.tsv", "participants.csv")
_IMAGE_COLUMNS = ("image", "path", "filename", "file")


def _read_table(root, table):
    if table is not None:
        path = root / table
        if not path.is_file():
            raise FileNotFoundError(f"Participants table not found: '{path}'.")
    else:
        found = [root / name for name in _TABLES if (root / name).is_file()]
        if not found:
            raise FileNotFoundError(
                f"No participants table in '{root}': expected one of {list(_TABLES)} (one row "
                "per subject, with the labels the tasks read and the image of each subject)."
            )
        path = found[0]
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    return pd.read_csv(path, sep=sep, dtype={"participant_id": str}), path


def _image_paths(frame, root, table_path, image_column, pattern):
    if pattern is not None:
        fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f}
        absent = sorted(fields - set(frame.columns))
        if absent:
            raise ValueError(
                f"pattern {pattern!r} names column(s) {absent} that {table_path} lacks; its "
                f"columns are {list(frame.columns)[:12]}."
            )
        return [root / pattern.format(**row) for row in frame.to_dict("records")]
    if image_column is None:
        image_column = next((c for c in _IMAGE_COLUMNS if c in frame.columns), None)
        if image_column is None:
            raise ValueError(
                f"{table_path} has no image column (one of {list(_IMAGE_COLUMNS)}) and no "
                "pattern was given, e.g. pattern='{participant_id}.nii.gz'."
            )
    elif image_column not in frame.columns:
        raise ValueError(
            f"image_column {image_column!r} is not a column of {table_path}; its columns are "
            f"{list(frame.columns)[:12]}."
        )
    paths = []
    for value in frame[image_column]:
        path = Path(str(value)).expanduser() if pd.notna(value) else None
        paths.append(None if path is None else path if path.is_absolute() else root / path)
    return paths


def load_cohort(root, *, table=None, image_column=None, pattern=None, on_missing="raise"):
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
        default the first of ``image``, ``path``, ``filename``, ``file``.
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
        If no image column or pattern can be used.

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
    frame, table_path = _read_table(root, table)
    paths = _image_paths(frame, root, table_path, image_column, pattern)
    present = [p is not None and p.is_file() for p in paths]
    if not all(present):
        missing = [str(p) for p, ok in zip(paths, present) if not ok]
        message = f"{len(missing)} of {len(paths)} images listed in {table_path} are missing: " \
                  f"{missing[:5]}{' ...' if len(missing) > 5 else ''}"
        if on_missing == "raise":
            raise FileNotFoundError(message + ".")
        warnings.warn(message + "; those subjects are dropped.", UserWarning, stacklevel=2)
    if not any(present):
        raise FileNotFoundError(f"No image of {table_path} exists.")
    kept = frame[present].reset_index(drop=True)
    images = [str(p) for p, ok in zip(paths, present) if ok]
    return Bunch(images=images, participants=kept, root=str(root))
