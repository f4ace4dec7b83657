"""Loader for a local copy of OpenBHB: image paths, age, sex, site and Desikan anatomy.

Nothing is downloaded: OpenBHB is distributed under its own data-usage terms and must be
fetched by the user.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch

from ..anatomy._regions import ANATOMY_MEASURES, DESIKAN_REGIONS, N_MEASURES, N_REGIONS
from ..exceptions import warn

__all__ = ["load_openbhb"]

# Rows of the per-participant (7, 68) block of ``desikan_roi_features.csv``, in file order
# (OpenBHB's resource/freesurfer_channels.txt): surface area, grey-matter volume, average
# thickness, thickness std, integrated rectified mean curvature, integrated rectified
# Gaussian curvature, intrinsic curvature index.
_N_CHANNELS = 7
_DEFAULT_CHANNEL_OF = {"SA": 0, "GMV": 1, "CT": 2}
# How each measure is recognised in freesurfer_channels.txt when that file is present.
_CHANNEL_PATTERNS = {
    "SA": re.compile(r"area", re.IGNORECASE),
    "GMV": re.compile(r"volume", re.IGNORECASE),
    "CT": re.compile(r"thickness(?!.*std)", re.IGNORECASE),
}

# How the ``split`` argument maps to rows of participants.tsv and to a folder. The current
# distribution keeps the training subjects in train/ and both test sets in val/, told apart
# by the participants' ``split`` column only; this follows the OpenBHB loader of
# neurospin-deepinsight/nidl (nidl/datasets/openbhb.py, ``OpenBHB.make_dataset``, which
# selects ``split == "train"`` from train/ and "internal_test"/"external_test" from val/).
_SPLITS = {
    "train": (("train",), "train"),
    "internal_test": (("internal_test",), "val"),
    "external_test": (("external_test",), "val"),
    "val": (("internal_test", "external_test"), "val"),
}

_IMAGE_TEMPLATE = "derivatives/sub-{id}/ses-1/sub-{id}_preproc-cat12vbm_desc-gm_T1w.npy"
_FEATURES_PATH = "derivatives/freesurfer_roi/desikan_roi_features.csv"
_REQUIRED_COLUMNS = ("participant_id", "age", "sex", "site", "split")

_LICENCE_NOTE = (
    "OpenBHB is not shipped with anatcl-sklearn and is never downloaded by it: download it "
    "yourself from the OpenBHB page on IEEE DataPort or the 'benoit-dufumier/openBHB' "
    "dataset on Hugging Face, under OpenBHB's data-usage terms (and those of the cohorts "
    "it gathers), then pass the folder that holds participants.tsv as root."
)

_DESCR = """\
OpenBHB (Open Big Healthy Brains)
---------------------------------
Healthy-control T1 MRI gathered from 10 public cohorts (ABIDE I and II, CoRR, GSP, IXI,
Localizer, MPI-Leipzig, NAR, NPC, RBP) acquired in 93 centres, ages about 6 to 88;
3227 training and 757 validation images (internal test: sites seen in training; external
test: unseen sites).

Returned fields
- images: paths to the CAT12 VBM grey-matter maps (.npy, shape (1, 1, 121, 145, 121) at
  1.5 mm in the distributed data), not loaded.
- age, sex, site: from participants.tsv.
- anatomy: (n, 68, 3) FreeSurfer Desikan-Killiany measures: cortical thickness (mm),
  grey-matter volume (mm^3), surface area (mm^2), regions lh-bankssts ... rh-insula.
- participants: the participants.tsv rows, in the same order as every other field.

Reference: Dufumier B., Grigis A., Victor J., Ambroise C., Frouin V., Duchesnay E.
OpenBHB: a large-scale multi-site brain MRI data-set for age prediction and debiasing.
NeuroImage 263, 119637 (2022).

Licence: OpenBHB is distributed (IEEE DataPort, Hugging Face 'benoit-dufumier/openBHB')
under its own data-usage terms and those of its source cohorts; users download it
themselves and remain bound by those terms.
"""


def _missing(path, what):
    return FileNotFoundError(f"OpenBHB {what} not found: expected '{path}'. {_LICENCE_NOTE}")


def _normalise_ids(values):
    """Return participant ids as str: '0012' stays as is, 12.0 or 'sub-12' becomes '12'."""
    ids = []
    for value in values:
        text = str(value).strip()
        if text.startswith("sub-"):
            text = text[4:]
        if re.fullmatch(r"\d+\.0+", text):
            text = text.split(".")[0]
        ids.append(text)
    return ids


def _measure_channels(root):
    """Return the row of the (7, 68) block holding each measure, in ANATOMY_MEASURES order.

    When the distribution's ``resource/freesurfer_channels.txt`` is present it is read, so
    a reordered release is caught; otherwise the documented order is used.
    """
    channels_path = root / "resource" / "freesurfer_channels.txt"
    if not channels_path.is_file():
        return [_DEFAULT_CHANNEL_OF[m] for m in ANATOMY_MEASURES]
    names = [line.strip() for line in channels_path.read_text().splitlines() if line.strip()]
    if len(names) != _N_CHANNELS:
        raise ValueError(
            f"{channels_path}: expected {_N_CHANNELS} channel names, found {len(names)}."
        )
    rows = []
    for measure in ANATOMY_MEASURES:
        hits = [i for i, name in enumerate(names) if _CHANNEL_PATTERNS[measure].search(name)]
        if len(hits) != 1:
            raise ValueError(
                f"{channels_path}: cannot tell which channel holds {measure} among {names}."
            )
        rows.append(hits[0])
    return rows


def _read_features(path, channel_rows):
    """Return ``{participant_id: (68, 3) array}`` and the ids whose row is not finite."""
    frame = pd.read_csv(path, dtype={"participant_id": str})
    if "participant_id" not in frame.columns:
        raise ValueError(
            f"{path}: no 'participant_id' column; the first columns are "
            f"{list(frame.columns)[:5]}."
        )
    value_columns = [c for c in frame.columns if c not in ("participant_id", "session")]
    expected = _N_CHANNELS * N_REGIONS
    if len(value_columns) != expected:
        raise ValueError(
            f"{path}: {len(value_columns)} feature columns besides participant_id and "
            f"session; expected {_N_CHANNELS} x {N_REGIONS} = {expected} "
            "(7 FreeSurfer measures x 68 Desikan regions, measure-major)."
        )
    ids = _normalise_ids(frame["participant_id"])
    duplicated = sorted(pid for pid, count in Counter(ids).items() if count > 1)
    if duplicated:
        raise ValueError(
            f"{path}: participant(s) with more than one row: {duplicated[:5]}; "
            "expected one session per participant."
        )
    values = frame[value_columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    block = values.reshape(len(frame), _N_CHANNELS, N_REGIONS)[:, channel_rows, :]
    anatomy = block.transpose(0, 2, 1)  # (n, 68, 3): regions first, measures last
    finite = np.isfinite(anatomy).all(axis=(1, 2))
    table = {pid: anatomy[i] for i, pid in enumerate(ids) if finite[i]}
    not_finite = {pid for i, pid in enumerate(ids) if not finite[i]}
    return table, not_finite


def _describe(ids, limit=5):
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def load_openbhb(root: str | Path, split: str = "train", *, on_missing: str = "raise") -> Bunch:
    """Load a local copy of OpenBHB: VBM image paths, age, sex, site and anatomy.

    Nothing is downloaded and no voxel is read: ``images`` holds file paths, to be loaded
    lazily by the estimator that needs them.

    Parameters
    ----------
    root : str or pathlib.Path
        Folder of the OpenBHB distribution, holding ``participants.tsv`` and the
        ``train/`` and ``val/`` folders (layout in the Notes).
    split : {"train", "internal_test", "external_test", "val"}, default="train"
        Which participants to return. ``"internal_test"`` (sites seen in training) and
        ``"external_test"`` (unseen sites) are both stored under ``val/``; ``"val"`` is
        their union.
    on_missing : {"raise", "drop"}, default="raise"
        What to do with participants of the split that have no image file, or no
        (finite) row in the Desikan features table: raise a ``FileNotFoundError`` or
        ``ValueError`` listing the first few, or drop them with a ``UserWarning``.

    Returns
    -------
    data : sklearn.utils.Bunch
        Dictionary-like object with the fields below, all in the same subject order
        (the order of ``participants.tsv``).

        images : list of str
            Paths to the CAT12 VBM grey-matter ``.npy`` volumes.
        age : ndarray of shape (n_subjects,), dtype float64
            Age in years.
        sex : ndarray of shape (n_subjects,)
            The ``sex`` column as stored.
        site : ndarray of shape (n_subjects,)
            The ``site`` column as stored.
        anatomy : ndarray of shape (n_subjects, 68, 3), dtype float64
            Desikan measures, regions in :data:`DESIKAN_REGIONS` order, measures
            (CT, GMV, SA).
        participants : pandas.DataFrame
            The selected ``participants.tsv`` rows (index reset), ``participant_id`` as
            str.
        regions : list of str
            :data:`DESIKAN_REGIONS`.
        measures : list of str
            :data:`ANATOMY_MEASURES`.
        DESCR : str
            Description of the dataset, its reference and its licence.

    Raises
    ------
    ValueError
        If ``split`` or ``on_missing`` is not one of the allowed values, or a file does
        not have the expected columns.
    FileNotFoundError
        If ``root``, ``participants.tsv`` or the features table is missing (the message
        says where they were expected and how OpenBHB is obtained), or images are
        missing with ``on_missing="raise"``.

    Notes
    -----
    Expected layout (the current OpenBHB distribution)::

        root/participants.tsv   participant_id, age, sex, site, split, ...
        root/{train,val}/derivatives/sub-<id>/ses-1/
            sub-<id>_preproc-cat12vbm_desc-gm_T1w.npy
        root/{train,val}/derivatives/freesurfer_roi/desikan_roi_features.csv
        root/resource/freesurfer_channels.txt   (optional)

    ``desikan_roi_features.csv`` holds ``participant_id``, ``session`` and 476 values per
    participant: a (7, 68) block flattened measure-major, whose rows are surface area,
    grey-matter volume, average thickness, thickness std, mean curvature, Gaussian
    curvature and intrinsic curvature index, and whose columns follow
    :data:`DESIKAN_REGIONS`. When ``resource/freesurfer_channels.txt`` exists, the rows
    of the three measures are looked up by name in it instead.

    The split of each participant is read from the ``split`` column of
    ``participants.tsv`` (``train``, ``internal_test`` or ``external_test``), as the
    OpenBHB loader of nidl does.

    Examples
    --------
    >>> from anatcl_sklearn.datasets import load_openbhb
    >>> train = load_openbhb("~/data/openBHB", split="train")  # doctest: +SKIP
    >>> train.anatomy.shape  # doctest: +SKIP
    (3227, 68, 3)
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}.")
    if on_missing not in ("raise", "drop"):
        raise ValueError(f"on_missing must be 'raise' or 'drop', got {on_missing!r}.")
    if not isinstance(root, (str, Path)):
        raise TypeError(f"root must be a str or pathlib.Path, got {type(root).__name__}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _missing(root, "folder")
    participants_path = root / "participants.tsv"
    if not participants_path.is_file():
        raise _missing(participants_path, "participants table")
    split_values, folder = _SPLITS[split]
    features_path = root / folder / _FEATURES_PATH
    if not features_path.is_file():
        raise _missing(features_path, "Desikan features table")

    participants = pd.read_csv(participants_path, sep="\t", dtype={"participant_id": str})
    absent = [c for c in _REQUIRED_COLUMNS if c not in participants.columns]
    if absent:
        raise ValueError(
            f"{participants_path}: column(s) {absent} missing; found {list(participants.columns)}."
        )
    participants["participant_id"] = _normalise_ids(participants["participant_id"])
    selected = participants[participants["split"].isin(split_values)].reset_index(drop=True)
    if selected.empty:
        found = sorted(participants["split"].dropna().astype(str).unique())
        raise ValueError(
            f"{participants_path}: no participant has split in {list(split_values)}; "
            f"the 'split' column holds {found}."
        )

    ids = list(selected["participant_id"])
    repeated = sorted(pid for pid, count in Counter(ids).items() if count > 1)
    if repeated:
        raise ValueError(f"{participants_path}: participant(s) listed twice: {repeated[:5]}.")
    features, not_finite = _read_features(features_path, _measure_channels(root))
    images = [root / folder / _IMAGE_TEMPLATE.format(id=pid) for pid in ids]
    no_image = [pid for pid, path in zip(ids, images) if not path.is_file()]
    no_features = [pid for pid in ids if pid not in features]

    if no_image or no_features:
        problems = []
        if no_image:
            problems.append(
                f"{len(no_image)} without an image file (e.g. "
                f"'{root / folder / _IMAGE_TEMPLATE.format(id=no_image[0])}'): "
                f"{_describe(no_image)}"
            )
        if no_features:
            nan_rows = [pid for pid in no_features if pid in not_finite]
            problems.append(
                f"{len(no_features)} without a complete row in '{features_path}'"
                + (f" ({len(nan_rows)} of them with NaN values)" if nan_rows else "")
                + f": {_describe(no_features)}"
            )
        message = f"OpenBHB split {split!r}: participants " + "; ".join(problems) + "."
        if on_missing == "raise":
            if no_image:
                raise FileNotFoundError(message + " Pass on_missing='drop' to skip them.")
            raise ValueError(message + " Pass on_missing='drop' to skip them.")
        dropped = set(no_image) | set(no_features)
        warn(
            message + f" Dropped {len(dropped)} of {len(ids)} participants.",
            UserWarning,
        )
        keep = [pid not in dropped for pid in ids]
        selected = selected[keep].reset_index(drop=True)
        images = [path for path, k in zip(images, keep) if k]
        ids = [pid for pid, k in zip(ids, keep) if k]
        if not ids:
            raise ValueError(
                f"OpenBHB split {split!r}: no participant left after dropping those with "
                "missing files or features."
            )

    age = pd.to_numeric(selected["age"], errors="coerce").to_numpy(dtype=np.float64)
    bad_age = [pid for pid, a in zip(ids, age) if not np.isfinite(a)]
    if bad_age:
        raise ValueError(
            f"{participants_path}: 'age' is missing or not a number for participant(s) "
            f"{_describe(bad_age)}."
        )
    anatomy = np.stack([features[pid] for pid in ids]).reshape(len(ids), N_REGIONS, N_MEASURES)
    return Bunch(
        images=[str(path) for path in images],
        age=age,
        sex=selected["sex"].to_numpy(),
        site=selected["site"].to_numpy(),
        anatomy=anatomy,
        participants=selected,
        regions=list(DESIKAN_REGIONS),
        measures=list(ANATOMY_MEASURES),
        DESCR=_DESCR,
    )
