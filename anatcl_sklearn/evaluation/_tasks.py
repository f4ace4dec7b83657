"""The paper's downstream tasks: what each predicts, from which dataset, with which label rule.

A :class:`Task` turns a cohort's participants table into labels. Label rules read the
column names of :func:`~anatcl_sklearn.datasets.make_synthetic_brains` (``diagnosis``,
``sex``, ``age``, ``handedness``, ``aims_overall``, ``fiq``...) and, for ABIDE, those of the
ABIDE-I phenotypic file (``DX_GROUP``, ``DSM_IV_TR``, ``SEX``, ``AGE_AT_SCAN``,
``HANDEDNESS_CATEGORY``, ``FIQ``, ``VIQ``, ``PIQ``; -9999 is missing). Subjects in neither
group of a binary task, and subjects with a missing value, get NaN and are left out.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from .._typing import ArrayLike

__all__ = ["PAPER_TABLES", "TASKS", "Task", "get_task"]

KINDS = ("classification", "regression")
_METRICS = {"classification": "balanced_accuracy", "regression": "mae"}

# ABIDE-I codes its missing values with this sentinel (ABIDE_LEGEND_V1.02).
_ABIDE_MISSING = -9999


# --------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------


def _find_column(frame, names, task_name):
    """The first of ``names`` in ``frame`` (exact match first, then case-insensitive)."""
    for name in names:
        if name in frame.columns:
            return name
    lower = {str(c).lower(): c for c in frame.columns}
    for name in names:
        if name.lower() in lower:
            return lower[name.lower()]
    shown = list(frame.columns)[:12]
    more = f" ... ({len(frame.columns) - 12} more)" if len(frame.columns) > 12 else ""
    raise ValueError(
        f"Task {task_name!r} needs a column named {' or '.join(repr(n) for n in names)} in "
        f"the participants table; found columns {shown}{more}."
    )


def _numeric(series):
    """Floats, with ABIDE's -9999 (and any negative sentinel) and non-numbers as NaN."""
    values = pd.to_numeric(series, errors="coerce").astype(float)
    return values.where(values >= 0)


def _key(value):
    """Lower-case letters and digits only: 'SCZ-broad', 'scz_broad', 'SCZ broad' agree."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return re.sub(r"[^a-z0-9]", "", str(value).lower())


# Diagnosis spellings seen in the cohorts' tables, by canonical group (the labels of
# make_synthetic_brains). Real tables with other spellings should be mapped to these.
_GROUP_ALIASES = {
    "HC": ("hc", "control", "controls", "cn", "nc", "healthy", "healthycontrol", "td"),
    "AD": ("ad", "alzheimer", "alzheimers", "alzheimersdisease", "dementia"),
    "sMCI": ("smci", "stablemci"),
    "pMCI": ("pmci", "progressivemci"),
    "SCZ-broad": ("sczbroad", "schizophreniabroad", "broadschizophrenia"),
    "SCZ-strict": ("sczstrict", "schizophreniastrict", "strictschizophrenia"),
    "schizoaffective": ("schizoaffective", "schizoaffectivedisorder", "sza"),
    "bipolar": ("bipolar", "bipolardisorder", "bd", "bp"),
    "autism": ("autism", "autistic", "autisticdisorder"),
    "asperger": ("asperger", "aspergers", "aspergerssyndrome", "aspergersyndrome"),
    "pdd-nos": ("pddnos",),
}
_CANONICAL_GROUP = {alias: group for group, aliases in _GROUP_ALIASES.items() for alias in aliases}


# --------------------------------------------------------------------------------------
# Label rules: participants DataFrame -> float Series (NaN = left out)
# --------------------------------------------------------------------------------------


class _Rule:
    """Base of the registry's rules: called with the task's name, for error messages."""

    def __call__(self, frame: pd.DataFrame, task_name: str) -> pd.Series:
        raise NotImplementedError


@dataclass(frozen=True)
class _GroupRule(_Rule):
    """1 for the patient group(s), 0 for the reference group(s), NaN for anyone else.

    On the ABIDE-I phenotypic table, controls are ``DX_GROUP == 2`` and a patient group is
    ``DX_GROUP == 1`` with the given ``DSM_IV_TR`` code (1 autism, 2 Asperger's, 3 PDD-NOS;
    4, "Asperger's or PDD-NOS", and -9999 belong to no group).
    """

    positive: tuple
    negative: tuple = ("HC",)
    abide_dsm: int | None = None

    def __call__(self, frame, task_name):
        labels = pd.Series(np.nan, index=frame.index)
        if self.abide_dsm is not None and {"DX_GROUP", "DSM_IV_TR"} <= set(frame.columns):
            dx = pd.to_numeric(frame["DX_GROUP"], errors="coerce")
            dsm = pd.to_numeric(frame["DSM_IV_TR"], errors="coerce")
            labels[dx == 2] = 0.0
            labels[(dx == 1) & (dsm == self.abide_dsm)] = 1.0
            return labels
        column = _find_column(frame, ("diagnosis", "dx", "group"), task_name)
        groups = frame[column].map(lambda v: _CANONICAL_GROUP.get(_key(v)))
        labels[groups.isin(self.negative)] = 0.0
        labels[groups.isin(self.positive)] = 1.0
        return labels


@dataclass(frozen=True)
class _AtLeastRule(_Rule):
    """Ordinal scores: 0 below ``threshold``, 1 at or above it, NaN when missing."""

    names: tuple
    threshold: float

    def __call__(self, frame, task_name):
        values = _numeric(frame[_find_column(frame, self.names, task_name)])
        return (values >= self.threshold).astype(float).where(values.notna())


@dataclass(frozen=True)
class _NumberRule(_Rule):
    """A continuous target (age, IQ); negative sentinels and non-numbers are missing."""

    names: tuple

    def __call__(self, frame, task_name):
        return _numeric(frame[_find_column(frame, self.names, task_name)])


_RIGHT = {"r", "right", "righthanded"}
# ABIDE's "L->R" (a left-hander who switched) counts as not right-handed, like "Mixed".
_NOT_RIGHT = {"l", "left", "lefthanded", "a", "ambi", "ambidextrous", "mixed", "m", "lr"}


@dataclass(frozen=True)
class _HandednessRule(_Rule):
    """0 right-handed, 1 other (left, ambidextrous, mixed), NaN missing or unknown."""

    names: tuple = ("handedness", "HANDEDNESS_CATEGORY")

    def __call__(self, frame, task_name):
        keys = frame[_find_column(frame, self.names, task_name)].map(_key)
        labels = pd.Series(np.nan, index=frame.index)
        labels[keys.isin(_RIGHT)] = 0.0
        labels[keys.isin(_NOT_RIGHT)] = 1.0
        return labels


_MALE = {"m", "male", "man"}
_FEMALE = {"f", "female", "woman"}


@dataclass(frozen=True)
class _SexRule(_Rule):
    """1 male, 0 female. ABIDE's ``SEX`` column codes 1 male, 2 female; a ``sex`` column
    may hold 0 / 1 (1 male, as make_synthetic_brains) or words (OpenBHB: "male", "female")."""

    def __call__(self, frame, task_name):
        column = _find_column(frame, ("sex", "SEX"), task_name)
        raw = frame[column]
        numbers_ = pd.to_numeric(raw, errors="coerce")
        labels = pd.Series(np.nan, index=frame.index)
        if numbers_.notna().any():
            codes = set(numbers_.dropna().unique()) - {_ABIDE_MISSING}
            if column == "SEX" and codes <= {1, 2}:
                labels[numbers_ == 1] = 1.0
                labels[numbers_ == 2] = 0.0
            elif codes <= {0, 1}:
                labels[numbers_ == 1] = 1.0
                labels[numbers_ == 0] = 0.0
            else:
                raise ValueError(
                    f"Task {task_name!r}: column {column!r} holds numeric codes "
                    f"{sorted(codes)}; expected 0 / 1 (1 male), ABIDE's 'SEX' 1 / 2 (1 male), "
                    "or words such as 'male' / 'female'."
                )
        keys = raw.map(_key)
        labels[keys.isin(_MALE)] = 1.0
        labels[keys.isin(_FEMALE)] = 0.0
        return labels


# --------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """A downstream task: its kind, dataset, and the rule that makes its labels.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"adni-ad"``.
    kind : {"classification", "regression"}
        Classification is scored with balanced accuracy, regression with the mean absolute
        error.
    rule : callable or None, default=None
        ``rule(participants)`` returns labels aligned with the rows of the participants
        :class:`pandas.DataFrame` (a Series or array of floats), NaN for subjects left out.
        None takes the labels as given (missing values, None or NaN, are left out).
    dataset : str, default=""
        Dataset name as printed in the paper's tables, e.g. ``"ADNI"``.
    title : str, default=""
        Column title in the paper, e.g. ``"HC vs AD"``.
    cohort : str or None, default=None
        The ``cohort`` of :func:`~anatcl_sklearn.datasets.make_synthetic_brains` that
        imitates the dataset.
    table : int or None, default=None
        The paper's table that reports the task.
    column : str or None, default=None
        Column that raw labels stand for when :meth:`labels` gets a 1-D array instead of a
        table (``"diagnosis"``, ``"handedness"``...).
    description : str, default=""
        The label rule in words.

    Attributes
    ----------
    metric : str
        ``"balanced_accuracy"`` or ``"mae"``.
    label : str
        Dataset and title, as the column headers of :func:`results_table`.

    Examples
    --------
    >>> from anatcl_sklearn.evaluation import TASKS
    >>> task = TASKS["abide-handedness"]
    >>> task.kind, task.metric
    ('classification', 'balanced_accuracy')
    >>> task.labels(["R", "L", "Ambi", "-9999"]).tolist()
    [0.0, 1.0, 1.0, nan]
    """

    name: str
    kind: str
    rule: Callable[..., ArrayLike] | None = None
    dataset: str = ""
    title: str = ""
    cohort: str | None = None
    table: int | None = None
    column: str | None = None
    description: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Task name must be a non-empty str; got {self.name!r}.")
        if self.kind not in KINDS:
            raise ValueError(f"Task kind must be one of {KINDS}; got {self.kind!r}.")
        if self.rule is not None and not callable(self.rule):
            raise TypeError(
                f"Task rule must be callable (participants) -> labels, or None; got "
                f"{type(self.rule).__name__}."
            )

    @property
    def metric(self) -> str:
        return _METRICS[self.kind]

    @property
    def label(self) -> str:
        """Dataset and title, e.g. ``"ADNI HC vs AD"`` (the name when both are empty)."""
        text = " ".join(part for part in (self.dataset, self.title) if part)
        return text or self.name

    def labels(self, participants: pd.DataFrame | ArrayLike) -> pd.Series:
        """Labels of every subject, NaN (or None) for those the task leaves out.

        Parameters
        ----------
        participants : pandas.DataFrame or array-like of shape (n_subjects,)
            The cohort's participants table, or the raw values of :attr:`column` (e.g.
            diagnosis strings, handedness codes, IQ scores).

        Returns
        -------
        labels : pandas.Series of shape (n_subjects,)
            0 / 1 floats for the registry's binary tasks, values for regression tasks, the
            given labels for a task without a rule. The index is ``range(n_subjects)``.
        """
        frame = self._as_frame(participants)
        if self.rule is None:
            values = frame.iloc[:, 0]
            if self.kind == "regression":
                values = pd.to_numeric(values, errors="coerce").astype(float)
            return values.reset_index(drop=True)
        if isinstance(self.rule, _Rule):
            labels = self.rule(frame, self.name)
        else:
            labels = self.rule(frame)
        labels = np.asarray(labels, dtype=float)
        if labels.shape != (len(frame),):
            raise ValueError(
                f"Task {self.name!r}: its rule returned labels of shape {labels.shape}; "
                f"expected ({len(frame)},), one per participant."
            )
        return pd.Series(labels)

    def _as_frame(self, participants):
        if isinstance(participants, pd.DataFrame):
            return participants
        if isinstance(participants, (str, bytes)) or not hasattr(participants, "__len__"):
            raise TypeError(
                f"Task {self.name!r}: labels need a participants DataFrame or a 1-D array of "
                f"raw values; got {type(participants).__name__}."
            )
        values = np.asarray(participants, dtype=object)
        if values.ndim != 1:
            raise ValueError(
                f"Task {self.name!r}: raw labels must be 1-D (one value per subject); got "
                f"shape {values.shape}. Pass a participants DataFrame for several columns."
            )
        return pd.DataFrame({self.column or "label": values})


def _task(name, kind, rule, dataset, title, cohort, table, column, description):
    return Task(name, kind, rule, dataset, title, cohort, table, column, description)


def _diagnosis(name, dataset, title, cohort, positive, negative=("HC",), abide_dsm=None):
    what = " / ".join(positive)
    reference = " / ".join(negative)
    return _task(
        name, "classification", _GroupRule(tuple(positive), tuple(negative), abide_dsm),
        dataset, title, cohort, 4 if cohort in ("schizconnect", "abide") else 3, "diagnosis",
        f"{what} (1) vs {reference} (0); other groups left out.",
    )


_AIMS = "AIMS none or minimal (0-1) vs mild and above (>= 2)."
_TASK_LIST = (
    # Table 2: OpenBHB
    _task("openbhb-age", "regression", _NumberRule(("age", "AGE_AT_SCAN")), "OpenBHB", "Age",
          "openbhb", 2, "age", "Age in years (healthy controls)."),
    _task("openbhb-sex", "classification", _SexRule(), "OpenBHB", "Sex", "openbhb", 2, "sex",
          "Male (1) vs female (0)."),
    # Table 3: Alzheimer's disease
    _diagnosis("adni-ad", "ADNI", "HC vs AD", "adni", ("AD",)),
    _diagnosis("adni-mci", "ADNI", "sMCI vs pMCI", "adni", ("pMCI",), ("sMCI",)),
    _diagnosis("oasis3-ad", "OASIS-3", "HC vs AD", "oasis3", ("AD",)),
    # Table 4: schizophrenia and autism
    _diagnosis("schizconnect-scz-broad", "SchizConnect", "SCZ (broad)", "schizconnect",
               ("SCZ-broad",)),
    _diagnosis("schizconnect-scz-strict", "SchizConnect", "SCZ (strict)", "schizconnect",
               ("SCZ-strict",)),
    _diagnosis("schizconnect-schizoaffective", "SchizConnect", "Schizoaffective",
               "schizconnect", ("schizoaffective",)),
    _diagnosis("schizconnect-bipolar", "SchizConnect", "Bipolar", "schizconnect",
               ("bipolar",)),
    _diagnosis("abide-autism", "ABIDE-I", "Autism", "abide", ("autism",), abide_dsm=1),
    _diagnosis("abide-asperger", "ABIDE-I", "Asperger's", "abide", ("asperger",),
               abide_dsm=2),
    _diagnosis("abide-pddnos", "ABIDE-I", "PDD-NOS", "abide", ("pdd-nos",), abide_dsm=3),
    # Table 5: phenotypes
    _task("schizconnect-aims-overall", "classification", _AtLeastRule(("aims_overall",), 2),
          "SchizConnect", "AIMS Overall", "schizconnect", 5, "aims_overall", _AIMS),
    _task("schizconnect-aims-upper", "classification", _AtLeastRule(("aims_upper",), 2),
          "SchizConnect", "AIMS Up.", "schizconnect", 5, "aims_upper", _AIMS),
    _task("schizconnect-aims-lower", "classification", _AtLeastRule(("aims_lower",), 2),
          "SchizConnect", "AIMS Low.", "schizconnect", 5, "aims_lower", _AIMS),
    _task("schizconnect-depression", "classification", _AtLeastRule(("depression",), 1),
          "SchizConnect", "Depression", "schizconnect", 5, "depression",
          "Calgary depression absent (0) vs mild and above (>= 1)."),
    _task("schizconnect-handedness", "classification", _HandednessRule(), "SchizConnect",
          "Handedness", "schizconnect", 5, "handedness",
          "Right-handed (0) vs other: left, ambidextrous or mixed (1)."),
    _task("schizconnect-gait", "classification", _AtLeastRule(("gait",), 1), "SchizConnect",
          "GAIT", "schizconnect", 5, "gait",
          "Simpson-Angus gait normal (0) vs anything else (>= 1)."),
    _task("abide-handedness", "classification", _HandednessRule(), "ABIDE-I", "Handedness",
          "abide", 5, "handedness",
          "Right-handed (0) vs other: left, ambidextrous, mixed, left-to-right (1)."),
    _task("abide-fiq", "regression", _NumberRule(("fiq", "FIQ")), "ABIDE-I", "FIQ", "abide",
          5, "fiq", "Full-scale IQ (-9999 missing)."),
    _task("abide-viq", "regression", _NumberRule(("viq", "VIQ")), "ABIDE-I", "VIQ", "abide",
          5, "viq", "Verbal IQ (-9999 missing)."),
    _task("abide-piq", "regression", _NumberRule(("piq", "PIQ")), "ABIDE-I", "PIQ", "abide",
          5, "piq", "Performance IQ (-9999 missing)."),
)

#: Read-only registry of the paper's 12 diagnosis tasks and 10 phenotypes, by name.
TASKS = MappingProxyType({task.name: task for task in _TASK_LIST})

#: The tasks of the paper's Tables 2-5, in the order of their columns.
PAPER_TABLES = MappingProxyType(
    {table: tuple(t.name for t in _TASK_LIST if t.table == table) for table in (2, 3, 4, 5)}
)


def get_task(task: str | Task) -> Task:
    """Return a :class:`Task` from a registry name, a Task, or a kind for plain labels.

    Parameters
    ----------
    task : str or Task
        A key of :data:`TASKS`, a :class:`Task`, or ``"classification"`` /
        ``"regression"`` for labels used as given.

    Returns
    -------
    task : Task

    Raises
    ------
    ValueError
        If ``task`` is an unknown name.
    TypeError
        If ``task`` is neither a str nor a Task.
    """
    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        if task in TASKS:
            return TASKS[task]
        if task in KINDS:
            return Task(task, task)
        close = [name for name in TASKS if task.lower() in name]
        hint = f" Did you mean {close[:3]}?" if close else ""
        raise ValueError(
            f"Unknown task {task!r}: expected one of {list(TASKS)}, a Task, or "
            f"'classification' / 'regression' for labels used as given.{hint}"
        )
    if task is None or isinstance(task, numbers.Number):
        raise TypeError(f"task must be a TASKS name or a Task; got {task!r}.")
    raise TypeError(f"task must be a TASKS name or a Task; got {type(task).__name__}.")
