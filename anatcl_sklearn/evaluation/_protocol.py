"""The paper's frozen-encoder protocol end to end: pretrain each method, embed, probe a table."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch

from .._typing import PathLike
from ._encoder_cache import embed_cached, fit_or_load
from ._methods import PAPER_METHODS
from ._probe import _check_folds, _check_task_size, embed, linear_probe
from ._results import ProbeResult
from ._tasks import PAPER_TABLES, TASKS

if TYPE_CHECKING:
    import pandas as pd
    from joblib import Memory
    from matplotlib.figure import Figure
    from sklearn.base import BaseEstimator

__all__ = ["RELEASED_METHODS", "report_paper_table", "run_paper_table"]

#: Read-only: rows of the paper's tables whose weights the authors released, as
#: ``{row name: pretrained name}`` for :class:`~anatcl_sklearn.AnatCLEmbedder`.
RELEASED_METHODS = MappingProxyType({"AnatCL-G3": "anatcl-global", "AnatCL-L3": "anatcl-local"})


def _check_methods(methods):
    if methods is None:
        return dict.fromkeys(PAPER_METHODS)
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping):
        methods = dict(methods)
    else:
        methods = dict.fromkeys(methods)
    if not methods:
        raise ValueError("methods is empty: give at least one PAPER_METHODS row.")
    for name, estimator in methods.items():
        if estimator is None and name not in PAPER_METHODS:
            raise ValueError(
                f"Unknown method {name!r}: expected one of {list(PAPER_METHODS)}, or a "
                f"{{name: estimator}} mapping for other encoders."
            )
        if estimator is not None and not (hasattr(estimator, "fit")
                                          and hasattr(estimator, "transform")):
            raise TypeError(
                f"methods[{name!r}] must be an estimator with fit and transform; got "
                f"{type(estimator).__name__}."
            )
    return methods


def _make_embedder(name, estimator, training, random_state, checkpoint_dir, official_weights,
                   fold):
    if estimator is not None:
        return clone(estimator)
    from ..embedder import AnatCLEmbedder  # torch is imported only when a method is run

    if official_weights and name in RELEASED_METHODS:
        return AnatCLEmbedder(pretrained=RELEASED_METHODS[name], fold=fold)
    return AnatCLEmbedder(**PAPER_METHODS[name], **training, random_state=random_state,
                          verbose=0, checkpoint_dir=checkpoint_dir)


def run_paper_table(
    table: int,
    *,
    pretrain: Bunch | None,
    cohorts: Mapping[str, Bunch],
    methods: Sequence[str] | Mapping[str, BaseEstimator | None] | None = None,
    training: Mapping[str, Any] | None = None,
    cv: int = 5,
    inner_cv: int | None = 5,
    random_state: int = 0,
    checkpoint_dir: PathLike | None = None,
    official_weights: bool = False,
    fold: int = 0,
    memory: PathLike | Memory | None = None,
    encoder_cache: PathLike | None = None,
    verbose: bool = False,
) -> Bunch:
    """Rerun one of the paper's Tables 2-5: pretrain each method, embed, probe every task.

    Each method is pretrained once on ``pretrain`` (or loads released weights), then frozen;
    every cohort is embedded once per method and those embeddings serve every task and
    fold of the table (:func:`linear_probe`).

    Parameters
    ----------
    table : {2, 3, 4, 5}
        The paper's table: its tasks are ``PAPER_TABLES[table]``.
    pretrain : Bunch or None
        Pretraining data with ``images``, ``age`` and ``anatomy`` (as returned by
        :func:`~anatcl_sklearn.datasets.load_openbhb` or
        :func:`~anatcl_sklearn.datasets.make_synthetic_brains`). May be None when every
        method uses released weights.
    cohorts : mapping of str to Bunch
        Downstream cohorts by name (``"openbhb"``, ``"adni"``, ``"oasis3"``,
        ``"schizconnect"``, ``"abide"``), each with ``images`` and a ``participants``
        table (see :func:`load_cohort`). Must hold the cohort of every task of the table.
    methods : list of str, mapping of str to estimator or None, default=None
        Rows to run, in order: names of :data:`PAPER_METHODS` (None: all of them), or
        ``{name: estimator}`` for other encoders (cloned, fitted as
        ``fit(images, age=..., anatomy=...)``; a None value stands for the paper's row).
    training : dict or None, default=None
        Training parameters of :class:`~anatcl_sklearn.AnatCLEmbedder` shared by every
        method, e.g. ``dict(batch_size=32, lr=1e-4, max_epochs=300)``.
    cv : int, default=5
        Outer folds of each probe.
    inner_cv : int or None, default=5
        Inner grid-search folds of each probe.
    random_state : int, default=0
        Seed of the pretraining and of the probes' folds.
    checkpoint_dir : str, os.PathLike or None, default=None
        Checkpoint folder of the pretraining runs (a rerun with the same settings reloads).
    official_weights : bool, default=False
        Use the released weights for the AnatCL rows (:data:`RELEASED_METHODS`) instead of
        pretraining them.
    fold : int, default=0
        Which released fold to load with ``official_weights``.
    memory : str, os.PathLike, joblib.Memory or None, default=None
        Cache of the embeddings (see :func:`embed`).
    encoder_cache : str, os.PathLike or None, default=None
        Folder of pretrained encoders keyed by content: a method already pretrained there
        with the same parameters on the same data is loaded instead of trained again, and
        each cohort's embeddings are kept beside it. Delete the folder to train again.
    verbose : bool, default=False
        Print a line per method once it is pretrained and has embedded the cohorts.

    Returns
    -------
    run : sklearn.utils.Bunch
        ``results``: ``{method: [ProbeResult, ...]}`` in the order of the table's tasks,
        ready for :func:`results_table`; ``embeddings``: ``{method: {cohort: ndarray}}``;
        ``histories``: ``{method: training losses per epoch}`` of the methods that were
        trained (or loaded from ``encoder_cache``); ``loaded``: the methods loaded from
        ``encoder_cache``; ``fit_times``: ``{method: seconds}`` to pretrain and embed; ``methods``
        and ``tasks``: the row and column order.

    Raises
    ------
    ValueError
        If ``table`` is not a paper table, a method is unknown, a task's cohort is missing
        from ``cohorts``, a task's labelled subjects cannot fill ``cv`` folds (a class with
        fewer than ``cv`` subjects; checked before any pretraining), or a method needs
        pretraining and ``pretrain`` is None.
    TypeError
        If ``cohorts`` is not a mapping or a custom method is not an estimator.
    """
    if table not in PAPER_TABLES:
        raise ValueError(f"table must be one of {list(PAPER_TABLES)}; got {table!r}.")
    if not isinstance(cohorts, Mapping) or not cohorts:
        raise TypeError(f"cohorts must be a non-empty mapping of name to cohort; got "
                        f"{type(cohorts).__name__}.")
    tasks = PAPER_TABLES[table]
    missing = sorted({TASKS[t].cohort for t in tasks} - set(cohorts))
    if missing:
        raise ValueError(f"Table {table} needs the cohorts {missing}; cohorts holds "
                         f"{list(cohorts)}.")
    # Every task must fill its folds: found out now, not after hours of pretraining.
    cv = _check_folds(cv, "cv")
    for t in tasks:
        _check_task_size(TASKS[t], TASKS[t].labels(cohorts[TASKS[t].cohort].participants), cv)
    chosen = _check_methods(methods)
    training = dict(training or {})
    embedders = {name: _make_embedder(name, est, training, random_state, checkpoint_dir,
                                      official_weights, fold)
                 for name, est in chosen.items()}
    trains = [n for n, e in embedders.items() if getattr(e, "pretrained", None) is None]
    if trains and pretrain is None:
        raise ValueError(f"pretrain is None but {trains} need pretraining; give pretraining "
                         f"data or official_weights=True for the released rows only.")

    embeddings, histories, fit_times, loaded = {}, {}, {}, []
    for name, embedder in list(embedders.items()):
        start = time.perf_counter()
        if name in trains:
            assert pretrain is not None  # refused above when a method needs pretraining
            fitted = fit_or_load(embedder, pretrain.images, age=pretrain.age,
                                 anatomy=pretrain.anatomy, cache=encoder_cache)
        else:  # released weights: fit only loads them
            fitted = fit_or_load(embedder, next(iter(cohorts.values())).images[:2])
        embedders[name] = embedder = fitted.embedder
        if fitted.loaded:
            loaded.append(name)
        embeddings[name] = {
            c: (embed_cached(embedder, cohort.images, folder=fitted.folder)
                if fitted.folder is not None and memory is None
                else embed(embedder, cohort.images, memory=memory))
            for c, cohort in cohorts.items()}
        fit_times[name] = time.perf_counter() - start
        if fitted.history:
            histories[name] = np.asarray(fitted.history)
        if verbose:
            how = "loaded from the encoder cache" if fitted.loaded else "pretrained"
            print(f"{name}: {how}, embedded {', '.join(cohorts)} in "
                  f"{fit_times[name]:.1f} s", flush=True)

    results = {
        name: [linear_probe(embeddings[name][TASKS[t].cohort], None,
                            cohorts[TASKS[t].cohort].participants, t, cv=cv,
                            inner_cv=inner_cv, random_state=random_state, name=name)
               for t in tasks]
        for name in embedders
    }
    return Bunch(results=results, embeddings=embeddings, histories=histories,
                 fit_times=fit_times, loaded=loaded, methods=list(embedders),
                 tasks=list(tasks))


def report_paper_table(
    results: Mapping[str, Sequence[ProbeResult]],
    table: int,
    output: PathLike,
    *,
    rows: Sequence[str] | None = None,
    header: str | None = None,
    title: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    dpi: int = 100,
) -> tuple[pd.DataFrame, Figure]:
    """Write a paper table's results as ``table<k>.csv``, ``table<k>_folds.csv`` and a figure.

    Parameters
    ----------
    results : mapping
        ``{method: [ProbeResult, ...]}``, e.g. ``run_paper_table(...).results``.
    table : {2, 3, 4, 5}
        The paper's table: its tasks, in order, are the columns.
    output : str or os.PathLike
        Existing folder for ``table<k>.csv`` (:func:`results_table`),
        ``table<k>_folds.csv`` (:func:`save_results_csv`) and ``table<k>.png``
        (:func:`plot_results`).
    rows : list of str or None, default=None
        Method order (None: the order of ``results``).
    header : str or None, default=None
        When given, printed above the table, which is printed too.
    title : str or None, default=None
        Figure title (say there whether the data are synthetic).
    metadata : dict or None, default=None
        Constant columns of the folds file, e.g. ``{"data": "synthetic"}``.
    dpi : int, default=100
        Resolution of the figure.

    Returns
    -------
    table : pandas.DataFrame
        The table as printed.
    figure : matplotlib.figure.Figure
        The bar charts.

    Raises
    ------
    ValueError
        If ``table`` is not a paper table.
    FileNotFoundError
        If ``output`` is not an existing folder.
    """
    from ._plotting import plot_results  # matplotlib only when a table is drawn
    from ._results import results_table, save_results_csv

    if table not in PAPER_TABLES:
        raise ValueError(f"table must be one of {list(PAPER_TABLES)}; got {table!r}.")
    output = Path(output)
    if not output.is_dir():
        raise FileNotFoundError(f"output folder {str(output)!r} does not exist.")
    columns = PAPER_TABLES[table]
    frame = results_table(results, rows=rows, columns=columns)
    if header is not None:
        print(header)
        print(frame.to_string())
    frame.to_csv(output / f"table{table}.csv")
    save_results_csv(results, output / f"table{table}_folds.csv", rows=rows, columns=columns,
                     metadata=metadata)
    fig = plot_results(results, rows=rows, columns=columns, title=title)
    fig.savefig(output / f"table{table}.png", dpi=dpi)
    return frame, fig
