"""Bar charts of probe results with error bars (matplotlib, imported only when used)."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ._results import _METRIC_SHORT, Results, _collect, _order, _scale
from ._tasks import Task

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_results"]


def _pyplot() -> ModuleType:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # matplotlib is an optional dependency
        raise ImportError(
            "plot_results needs matplotlib: pip install 'anatcl-sklearn[examples]' (or "
            "pip install matplotlib)."
        ) from exc
    return plt


def plot_results(
    results: Results,
    rows: Sequence[str] | None = None,
    columns: Sequence[str | Task] | None = None,
    *,
    percent: bool = True,
    title: str | None = None,
    ncols: int | None = None,
) -> Figure:
    """One bar chart per task: a bar per method, mean ± std over folds as error bars.

    Parameters
    ----------
    results : mapping or list
        As for :func:`results_table`.
    rows, columns : list, default=None
        Method and task order, as for :func:`results_table`.
    percent : bool, default=True
        Balanced accuracy in percent.
    title : str or None, default=None
        Figure title (say there whether the data are synthetic).
    ncols : int or None, default=None
        Panels per row; by default up to 4.

    Returns
    -------
    figure : matplotlib.figure.Figure
        Chance level (50 % balanced accuracy for two classes) is drawn as a dashed line.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    plt = _pyplot()
    table = _collect(results)
    rows, columns, tasks = _order(table, rows, columns)
    n = len(columns)
    ncols = min(n, 4) if ncols is None else max(1, int(ncols))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 0.6, 3.0 * nrows + 0.6),
                             squeeze=False)
    colors = plt.get_cmap("tab10")(np.arange(len(rows)) % 10)
    for ax, col in zip(axes.flat, columns):
        task = tasks[col]
        scale = _scale(task, percent)
        means = [table[r][col].mean * scale if col in table[r] else np.nan for r in rows]
        stds = [table[r][col].std * scale if col in table[r] else 0.0 for r in rows]
        x = np.arange(len(rows))
        ax.bar(x, means, yerr=stds, capsize=3, color=colors, edgecolor="black", linewidth=0.5)
        ax.set_xticks(x, rows, rotation=45, ha="right", fontsize=8)
        unit = " (%)" if scale == 100.0 else ""
        better = "higher is better" if task.kind == "classification" else "lower is better"
        ax.set_ylabel(f"{_METRIC_SHORT[task.metric]}{unit}, {better}", fontsize=8)
        ax.set_title(task.label, fontsize=9)
        if task.kind == "classification":
            ax.axhline(50.0 if scale == 100.0 else 0.5, color="grey", linestyle="--",
                       linewidth=0.8)
            # scale is the full range of balanced accuracy: 100 (%) or 1
            top = np.nanmax(np.asarray(means) + np.asarray(stds))
            ax.set_ylim(0, max(scale, top * 1.05) if np.isfinite(top) else scale)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
