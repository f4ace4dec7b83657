"""The gallery's default mode (what users run: no ``ANATCL_*`` variable) fills its folds.

tests/test_examples.py runs every example in its fast mode, whose small cohorts and 3 folds
say nothing about the default mode's 5 folds: ``plot_psychiatry.py`` once crashed there after
nine minutes of pretraining, on ABIDE-I's 3 PDD-NOS subjects. Here each example runs
in-process in its default mode until it would train (pretraining, a grid search or a
cross-validation is replaced by a stop), which builds its default cohorts in seconds; then
every task it probes must have at least ``cv`` subjects in each class (regression: ``2 * cv``
labelled subjects), as :func:`~anatcl_sklearn.evaluation.linear_probe` requires.
"""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn.model_selection

import anatcl_sklearn.evaluation as evaluation
from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.evaluation import PAPER_TABLES, TASKS
from anatcl_sklearn.evaluation._gallery import synthetic_cohort_size

pytest.importorskip("matplotlib", reason="the examples draw figures with matplotlib")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Examples that probe nothing with cross-validated folds; the reason is the check.
NO_FOLDS = {
    "plot_from_your_pipeline": "conforms four full-size brains and embeds them; no probe",
}


class _Stop(Exception):
    """Raised where the example would start training."""


def _run_until_training(example, monkeypatch, tmp_path):
    """Execute an example in its default mode until it trains: (namespace, paper-table call)."""
    for key in list(os.environ):
        if key.startswith("ANATCL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ANATCL_EXAMPLES_OUTPUT", str(tmp_path))
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(tmp_path / "weights-cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    calls = {}

    def run_paper_table(table, *, cohorts, cv=5, **kwargs):
        calls.update(table=table, cohorts=cohorts, cv=cv, **kwargs)
        raise _Stop

    def stop(*args, **kwargs):
        raise _Stop

    # The examples import these names when they run, so the stops are what they get.
    monkeypatch.setattr(evaluation, "run_paper_table", run_paper_table)
    monkeypatch.setattr(AnatCLEmbedder, "fit", stop)
    monkeypatch.setattr(sklearn.model_selection, "cross_validate", stop)
    monkeypatch.setattr(sklearn.model_selection.GridSearchCV, "fit", stop)
    path = EXAMPLES / f"{example}.py"
    namespace = {"__name__": "__main__", "__file__": str(path)}
    with pytest.raises(_Stop):
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace, calls


def _shortfalls(task_names, participants_of, cv):
    """Tasks whose labelled subjects cannot fill ``cv`` folds, with their class counts."""
    short = []
    for name in task_names:
        task = TASKS[name]
        labels = task.labels(participants_of(task)).dropna()
        if task.kind == "classification":
            counts = labels.value_counts()
            if len(counts) < 2 or counts.min() < cv:
                counts = {float(label): int(n) for label, n in counts.items()}
                short.append(f"{name}: {counts} for cv={cv}")
        elif len(labels) < 2 * cv:
            short.append(f"{name}: {len(labels)} labelled subjects for cv={cv}")
    return short


def test_every_example_is_checked():
    examples = sorted(p.stem for p in EXAMPLES.glob("plot_*.py"))
    checked = [name for name, _ in TABLE_EXAMPLES] + ["plot_anatomical_features"]
    assert sorted(checked + list(OTHER_EXAMPLES) + list(NO_FOLDS)) == examples


TABLE_EXAMPLES = [("plot_pretraining_openbhb", 2), ("plot_alzheimer", 3), ("plot_psychiatry", 4),
                  ("plot_phenotypes", 5)]


@pytest.mark.parametrize("example, table", TABLE_EXAMPLES)
def test_paper_table_examples_fill_their_folds(example, table, monkeypatch, tmp_path):
    namespace, call = _run_until_training(example, monkeypatch, tmp_path)
    if table == 2:  # pretrains its encoders on the page, then probes them with linear_probe
        call = {"table": 2, "cv": namespace["CV"], "inner_cv": namespace["INNER_CV"],
                "cohorts": {"openbhb": namespace["evaluation"]},
                "encoder_cache": namespace["S"].cache}
    assert call["table"] == table and call["cv"] == 5  # the paper's folds, not the fast 3
    # the synthetic default's lighter inner search, said on the page; encoders shared
    assert call["inner_cv"] == 3 and "3 inner folds" in namespace["__doc__"]
    assert call["encoder_cache"] == tmp_path / "weights-cache" / "gallery-encoders"
    cohorts = call["cohorts"]
    short = _shortfalls(PAPER_TABLES[table],
                        lambda task: cohorts[task.cohort].participants, call["cv"])
    assert not short, f"{example} (default mode): {short}"


@pytest.mark.parametrize("example", ["plot_alzheimer", "plot_psychiatry", "plot_phenotypes"])
def test_synthetic_cohorts_are_the_smallest_that_fill_the_folds(example, monkeypatch, tmp_path):
    _, call = _run_until_training(example, monkeypatch, tmp_path)
    for seed, (name, cohort) in enumerate(call["cohorts"].items(), start=2):
        n = len(cohort.images)
        assert n == synthetic_cohort_size(name, 60, cv=5, random_state=seed)
        assert n < 700  # ABIDE-I's PDD-NOS needs about 630; the rest far fewer


def test_anatomical_features_example_fills_its_folds(monkeypatch, tmp_path):
    namespace, _ = _run_until_training("plot_anatomical_features", monkeypatch, tmp_path)
    assert namespace["CV"] == 5
    participants = namespace["participants"]
    short = _shortfalls(namespace["ABIDE_TASKS"], lambda task: participants, namespace["CV"])
    assert not short, f"plot_anatomical_features (default mode): {short}"
    assert namespace["controls"].sum() >= 2 * namespace["CV"]  # Table 6: age of controls


def _grid_search(namespace):
    assert len(namespace["age"]) >= 2 * namespace["CV"]


def _pretrained_weights(namespace):
    # Its age probe runs 3-fold when at least 10 subjects have an age.
    age = pd.to_numeric(namespace["participants"]["age"], errors="coerce")
    assert np.isfinite(age).sum() >= max(10, 2 * 3)


def _quickstart(namespace):
    # Its probe of age is cross-validated with cv=5 on the held-out subjects.
    assert len(namespace["test"].age) >= 2 * 5


def _brain_age(namespace):
    # Its controls are cross-validated with S.cv outer folds, each training fold then split
    # into the regressor's 5 inner folds.
    controls = int(namespace["scans"]["diagnosis"].eq("HC").sum())
    assert namespace["S"].cv == 5 and controls * 4 // 5 >= 2 * 5


OTHER_EXAMPLES = {"plot_brain_age": _brain_age, "plot_grid_search": _grid_search,
                  "plot_pretrained_weights": _pretrained_weights, "plot_quickstart": _quickstart}


@pytest.mark.parametrize("example", sorted(OTHER_EXAMPLES))
def test_other_examples_fill_their_folds(example, monkeypatch, tmp_path):
    namespace, _ = _run_until_training(example, monkeypatch, tmp_path)
    OTHER_EXAMPLES[example](namespace)


# --------------------------------------------------------------------------------------
# The mechanism: synthetic cohorts grow until every class fills the folds, and a paper
# table refuses a task that cannot fill them before pretraining anything.
# --------------------------------------------------------------------------------------


def test_synthetic_cohort_size_grows_a_rare_group_to_the_folds():
    n = synthetic_cohort_size("abide", 300, cv=5, random_state=3)
    assert n > 300
    participants = make_synthetic_brains(n, cohort="abide", random_state=3,
                                         return_images=False).participants
    counts = TASKS["abide-pddnos"].labels(participants).value_counts()
    assert counts.min() >= 5
    # Enough already: the size asked for.
    assert synthetic_cohort_size("adni", 300, cv=5, random_state=2) == 300


def test_run_paper_table_checks_class_sizes_before_pretraining():
    brains = make_synthetic_brains(300, cohort="abide", random_state=3, return_images=False)
    fitted = []

    class Recorder(AnatCLEmbedder):
        def fit(self, *args, **kwargs):
            fitted.append(True)
            raise AssertionError("no pretraining should start")

    cohorts = {"schizconnect": make_synthetic_brains(300, cohort="schizconnect", random_state=2,
                                                     return_images=False),
               "abide": brains}
    with pytest.raises(ValueError, match="abide-pddnos.*fewer than cv=5"):
        evaluation.run_paper_table(4, pretrain=brains, cohorts=cohorts,
                                   methods={"m": Recorder()}, cv=5)
    assert not fitted
