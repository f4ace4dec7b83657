"""Downstream evaluation: the paper's tasks, linear probes and results tables.

- :data:`TASKS`, :class:`Task`, :func:`get_task`, :data:`PAPER_TABLES`: the 12 diagnosis
  tasks and 10 phenotypes of the paper, with their label rules;
- :data:`PAPER_METHODS`: the rows of the tables as :class:`~anatcl_sklearn.AnatCLEmbedder`
  parameters;
- :func:`linear_probe`, :func:`make_probe`, :func:`embed`, :data:`PROBE_GRID`: the probe
  protocol on frozen embeddings (computed once, optionally cached on disk);
- :class:`ProbeResult`, :func:`results_table`, :func:`save_results_csv`,
  :func:`plot_results`: tables printed as the paper's, CSV files and bar charts;
- :func:`load_cohort`: a downstream cohort on disk (participants table and images);
- :func:`run_paper_table`, :func:`report_paper_table`, :data:`RELEASED_METHODS`: one of
  Tables 2-5 end to end (pretrain each method, embed every cohort once, probe every task,
  write the table, its folds and its figure), pretrained encoders shared through an
  on-disk cache keyed by content (``encoder_cache=``).

The gallery's ``ANATCL_*`` settings and data helpers live in the private module
``anatcl_sklearn.evaluation._gallery``. Their old public names here still import, with a
:class:`FutureWarning`, and will be removed.
"""

from __future__ import annotations

import warnings
from typing import Any

from ._cohorts import load_cohort
from ._methods import PAPER_METHODS
from ._plotting import plot_results
from ._probe import PROBE_GRID, embed, linear_probe, make_probe
from ._protocol import RELEASED_METHODS, report_paper_table, run_paper_table
from ._results import ProbeResult, results_table, save_results_csv
from ._tasks import PAPER_TABLES, TASKS, Task, get_task

__all__ = [
    "PAPER_METHODS",
    "PAPER_TABLES",
    "PROBE_GRID",
    "RELEASED_METHODS",
    "TASKS",
    "ProbeResult",
    "Task",
    "embed",
    "get_task",
    "linear_probe",
    "load_cohort",
    "make_probe",
    "plot_results",
    "report_paper_table",
    "results_table",
    "run_paper_table",
    "save_results_csv",
]

_MOVED = ("FAST_METHODS", "load_example_data", "settings_from_env", "synthetic_cohort_size")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"anatcl_sklearn.evaluation.{name} is the gallery's plumbing, not public API: it "
            f"moved to anatcl_sklearn.evaluation._gallery and will be removed from here.",
            FutureWarning, stacklevel=2)
        from . import _gallery

        return getattr(_gallery, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
