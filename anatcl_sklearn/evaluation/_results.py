"""Probe results and the paper-style tables built from them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from .._typing import PathLike
from ._tasks import Task

__all__ = ["ProbeResult", "results_table", "save_results_csv"]

_METRIC_SHORT = {"balanced_accuracy": "BA", "mae": "MAE"}


# eq=False: numpy scores do not compare to a single bool.
@dataclass(frozen=True, eq=False)
class ProbeResult:
    """Cross-validated scores of one linear probe on one task.

    Parameters
    ----------
    task : Task
        The task probed.
    scores : ndarray of shape (n_folds,)
        Test score of each outer fold: balanced accuracy in [0, 1] for classification, mean
        absolute error (in the target's unit) for regression.
    n_samples : int
        Subjects with a label (those the task leaves out are not counted).
    n_features : int
        Embedding dimension.
    name : str or None, default=None
        Row label, e.g. the pretraining method (``"AnatCL-G3"``).
    best_params : tuple of dict, default=()
        Hyper-parameters chosen by the inner grid search in each outer fold.
    class_counts : dict or None, default=None
        Subjects per label, for classification.

    Attributes
    ----------
    metric : str
        ``"balanced_accuracy"`` or ``"mae"``.
    mean : float
        Mean of ``scores``.
    std : float
        Standard deviation of ``scores`` (``ddof=0``).
    """

    task: Task
    scores: np.ndarray
    n_samples: int
    n_features: int
    name: str | None = None
    best_params: tuple = ()
    class_counts: dict | None = field(default=None)

    @property
    def metric(self) -> str:
        return self.task.metric

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))

    def format(self, *, percent: bool = True, decimals: int = 2) -> str:
        """``"mean ± std"``, balanced accuracy in percent when ``percent`` (as the paper).

        Parameters
        ----------
        percent : bool, default=True
            Print balanced accuracy as a percentage.
        decimals : int, default=2
            Digits after the decimal point.

        Returns
        -------
        cell : str
        """
        scale = _scale(self.task, percent)
        return f"{self.mean * scale:.{decimals}f} ± {self.std * scale:.{decimals}f}"

    def __str__(self) -> str:
        who = f"{self.name}: " if self.name else ""
        unit = "%" if self.task.kind == "classification" else ""
        return (
            f"{who}{self.task.label} {_METRIC_SHORT[self.metric]} {self.format()}{unit} "
            f"({len(self.scores)} folds, {self.n_samples} subjects)"
        )


#: The layouts of probe results that the tables and the plots accept: one result,
#: ``{row: {task: ProbeResult}}``, ``{row: [ProbeResult, ...]}`` or ``[ProbeResult, ...]``.
Results: TypeAlias = (
    ProbeResult | Mapping[str, Mapping[str, ProbeResult] | Iterable[ProbeResult]]
    | Iterable[ProbeResult]
)


def _scale(task, percent):
    return 100.0 if percent and task.kind == "classification" else 1.0


def _header(task, percent):
    unit = " %" if percent and task.kind == "classification" else ""
    return f"{task.label} ({_METRIC_SHORT[task.metric]}{unit})"


def _collect(results: Results) -> dict[str, dict[str, ProbeResult]]:
    """{row: {task name: ProbeResult}} from the accepted layouts, in first-seen order."""
    table: dict[str, dict[str, ProbeResult]] = {}
    if isinstance(results, ProbeResult):
        results = [results]
    if isinstance(results, Mapping):
        for row, cells in results.items():
            if isinstance(cells, ProbeResult):
                cells = [cells]
            if isinstance(cells, Mapping):
                cells = list(cells.values())
            if not isinstance(cells, Iterable):
                raise TypeError(
                    f"results[{row!r}] must be a ProbeResult, a mapping of them or a list of "
                    f"them; got {type(cells).__name__}."
                )
            for cell in cells:
                _add(table, str(row), cell)
    elif isinstance(results, Iterable) and not isinstance(results, (str, bytes)):
        for cell in results:
            row = getattr(cell, "name", None)
            _add(table, "" if row is None else row, cell)
    else:
        raise TypeError(
            "results must be a mapping {row: {task: ProbeResult}}, {row: [ProbeResult, ...]} "
            f"or a list of ProbeResult; got {type(results).__name__}."
        )
    return table


def _add(table: dict[str, dict[str, ProbeResult]], row: str, cell: object) -> None:
    if not isinstance(cell, ProbeResult):
        raise TypeError(f"Expected ProbeResult objects; got {type(cell).__name__}.")
    cells = table.setdefault(row, {})
    if cell.task.name in cells:
        raise ValueError(f"Two results for row {row!r} and task {cell.task.name!r}.")
    cells[cell.task.name] = cell


def _order(table, rows, columns):
    seen_rows = list(table)
    seen_cols = []
    tasks = {}
    for cells in table.values():
        for name, cell in cells.items():
            if name not in tasks:
                seen_cols.append(name)
                tasks[name] = cell.task
    rows = seen_rows if rows is None else [str(r) for r in rows]
    if columns is None:
        columns = seen_cols
    else:
        columns = [c.name if isinstance(c, Task) else str(c) for c in columns]
    unknown_rows = [r for r in rows if r not in table]
    unknown_cols = [c for c in columns if c not in tasks]
    if unknown_rows or unknown_cols:
        raise ValueError(
            f"results_table: no result for rows {unknown_rows} / columns {unknown_cols}; "
            f"the results have rows {seen_rows} and tasks {seen_cols}."
        )
    return rows, columns, tasks


def results_table(
    results: Results,
    rows: Sequence[str] | None = None,
    columns: Sequence[str | Task] | None = None,
    *,
    percent: bool = True,
    decimals: int = 2,
    numeric: bool = False,
) -> pd.DataFrame:
    """Lay probe results out as the paper's tables: one row per method, one column per task.

    Parameters
    ----------
    results : mapping or list
        ``{row: {task_name: ProbeResult}}``, ``{row: [ProbeResult, ...]}``, or a list of
        :class:`ProbeResult` whose ``name`` is the row.
    rows : list of str, default=None
        Row order (e.g. ``list(PAPER_METHODS)``); by default the order first seen. Rows not
        listed are dropped.
    columns : list of str or Task, default=None
        Task order (e.g. ``PAPER_TABLES[3]``); by default the order first seen.
    percent : bool, default=True
        Balanced accuracy in percent, as the paper prints it.
    decimals : int, default=2
        Digits after the decimal point in the cells.
    numeric : bool, default=False
        Return the numbers instead: columns ``(task header, "mean" | "std")``.

    Returns
    -------
    table : pandas.DataFrame
        Cells ``"mean ± std"`` (empty where a method has no result for a task), indexed by
        method, columns headed ``"<dataset> <title> (<metric>)"``; floats when ``numeric``.

    Raises
    ------
    ValueError
        If ``rows`` or ``columns`` names something the results do not hold, or two results
        share a row and a task.

    Examples
    --------
    >>> import numpy as np
    >>> from anatcl_sklearn.evaluation import TASKS, ProbeResult, results_table
    >>> r = ProbeResult(TASKS["adni-ad"], np.array([0.8, 0.9]), 100, 512, name="AnatCL-G3")
    >>> table = results_table([r])
    >>> list(table.columns), table.loc["AnatCL-G3"].iloc[0]
    (['ADNI HC vs AD (BA %)'], '85.00 ± 5.00')
    """
    table = _collect(results)
    rows, columns, tasks = _order(table, rows, columns)
    headers = [_header(tasks[c], percent) for c in columns]
    if numeric:
        data = {}
        for col, header in zip(columns, headers):
            scale = _scale(tasks[col], percent)
            for stat in ("mean", "std"):
                data[(header, stat)] = [
                    getattr(table[r][col], stat) * scale if col in table[r] else np.nan
                    for r in rows
                ]
        frame = pd.DataFrame(data, index=pd.Index(rows, name="Method"))
        frame.columns = pd.MultiIndex.from_tuples(frame.columns)
        return frame
    data = {
        header: [
            table[r][col].format(percent=percent, decimals=decimals) if col in table[r] else ""
            for r in rows
        ]
        for col, header in zip(columns, headers)
    }
    return pd.DataFrame(data, index=pd.Index(rows, name="Method"))


def save_results_csv(
    results: Results,
    path: PathLike,
    rows: Sequence[str] | None = None,
    columns: Sequence[str | Task] | None = None,
    *,
    percent: bool = True,
    decimals: int = 2,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write probe results as a tidy CSV: one line per (method, task), numbers and cell.

    Parameters
    ----------
    results : mapping or list
        As for :func:`results_table`.
    path : str or os.PathLike
        CSV file to write; missing parent folders are created.
    rows, columns : list, default=None
        Row and task order, as for :func:`results_table`.
    percent : bool, default=True
        Balanced accuracy in percent in ``mean``, ``std``, the fold scores and ``cell``.
    decimals : int, default=2
        Digits of the ``cell`` column.
    metadata : dict or None, default=None
        Constant columns added to every line, e.g. ``{"data": "synthetic"}``.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Notes
    -----
    Columns: ``method``, ``task``, ``dataset``, ``title``, ``metric``, ``mean``, ``std``,
    ``cell``, ``n_folds``, ``n_samples``, ``n_features``, ``fold_1`` ... ``fold_k``, then the
    ``metadata`` columns.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}.")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict or None; got {type(metadata).__name__}.")
    table = _collect(results)
    rows, columns, _ = _order(table, rows, columns)
    lines = []
    for row in rows:
        for col in columns:
            if col not in table[row]:
                continue
            cell = table[row][col]
            scale = _scale(cell.task, percent)
            line = {
                "method": row,
                "task": cell.task.name,
                "dataset": cell.task.dataset,
                "title": cell.task.title,
                "metric": cell.metric + (" (%)" if scale == 100.0 else ""),
                "mean": cell.mean * scale,
                "std": cell.std * scale,
                "cell": cell.format(percent=percent, decimals=decimals),
                "n_folds": len(cell.scores),
                "n_samples": cell.n_samples,
                "n_features": cell.n_features,
            }
            line.update({f"fold_{i + 1}": s * scale for i, s in enumerate(cell.scores)})
            line.update(metadata or {})
            lines.append(line)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(lines).to_csv(path, index=False)
    return path
