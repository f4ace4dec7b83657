"""Every gallery example runs top to bottom in its fast mode and writes its tables and figures.

The examples run as scripts in subprocesses (as a user runs them), two at a time with one
thread each, with ``ANATCL_EXAMPLES_FAST=1`` and their output in a temporary folder; no
example downloads anything in that mode. These tests take minutes: they are marked slow.
A second example loads the encoders a first one pretrained from the gallery's encoder
cache, and trains again once the cache is deleted.
"""

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("matplotlib", reason="the examples draw figures with matplotlib")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ABIDE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "abide-freesurfer6"
TIMEOUT_S = 400
FAST_ROWS = ["SimCLR", "y-Aware", "AnatCL-G3"]

# Files each example must write into <output>/<example>/.
OUTPUTS = {
    "plot_quickstart": [],
    "plot_pretraining_openbhb": ["table2.csv", "table2_folds.csv", "table2.png",
                                 "learning_curves.png", "embeddings_age.png"],
    "plot_alzheimer": ["table3.csv", "table3_folds.csv", "table3.png", "adni_embeddings.png"],
    "plot_psychiatry": ["table4.csv", "table4_folds.csv", "table4.png"],
    "plot_phenotypes": ["table5.csv", "table5_folds.csv", "table5.png"],
    "plot_anatomical_features": ["table6.csv", "table6.png", "abide_tasks.csv",
                                 "abide_tasks_folds.csv", "abide_tasks.png"],
    "plot_grid_search": ["grid_search.csv", "grid_search.png"],
    "plot_pretrained_weights": ["embeddings.csv", "embeddings_age.png", "age_probe.csv",
                                "anatcl-synthetic_fold0.pth"],
    "plot_brain_age": ["brain_age_gap.csv", "brain_age.png"],
    "plot_from_your_pipeline": ["conform_check.csv", "pipelines.png", "embeddings_agreement.csv",
                                "cli_embeddings.csv",
                                "random-encoder_NOT-the-released-weights.pth"],
}
JOBS = dict.fromkeys(OUTPUTS, None)
if ABIDE_DIR.is_dir():  # also run the real-data path of the anatomy study
    JOBS["plot_anatomical_features[abide]"] = ABIDE_DIR


def test_every_example_is_tested():
    assert sorted(p.stem for p in EXAMPLES.glob("plot_*.py")) == sorted(OUTPUTS)
    assert (EXAMPLES / "README.rst").is_file()


def _run(job, abide_dir, output, cache=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANATCL_")}
    env.update(
        ANATCL_EXAMPLES_FAST="1",
        ANATCL_EXAMPLES_OUTPUT=str(output),
        ANATCL_SKLEARN_CACHE=str(cache or output / "weights-cache"),
        MPLBACKEND="Agg",
        # Two examples run at once; one thread each avoids threads spinning against
        # each other (or against anything else on a small CI machine).
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
    )
    if abide_dir is not None:
        env["ANATCL_ABIDE_DIR"] = str(abide_dir)
    script = EXAMPLES / f"{job.split('[')[0]}.py"
    output.mkdir(parents=True, exist_ok=True)
    try:
        return subprocess.run([sys.executable, str(script)], env=env, cwd=output,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, -1, exc.stdout or "",
                                           f"timed out after {TIMEOUT_S} s")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run every example once; {job: (completed process, output folder of the example)}."""
    outputs = {job: tmp_path_factory.mktemp(job.replace("[", "-").strip("]")) for job in JOBS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {job: pool.submit(_run, job, abide, outputs[job])
                   for job, abide in JOBS.items()}
        return {job: (f.result(), outputs[job] / job.split("[")[0]) for job, f in futures.items()}


def _check_run(runs, job):
    proc, folder = runs[job]
    assert proc.returncode == 0, f"{job} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    for name in OUTPUTS[job.split("[")[0]]:
        path = folder / name
        assert path.is_file() and path.stat().st_size > 0, f"{job} did not write {name}"
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return proc.stdout, folder


@pytest.mark.slow
@pytest.mark.parametrize("table, example", [(2, "plot_pretraining_openbhb"),
                                            (3, "plot_alzheimer"),
                                            (4, "plot_psychiatry"),
                                            (5, "plot_phenotypes")])
def test_table_examples(runs, table, example):
    from anatcl_sklearn.evaluation import PAPER_TABLES, TASKS

    stdout, folder = _check_run(runs, example)
    assert "SYNTHETIC" in stdout
    wide = pd.read_csv(folder / f"table{table}.csv", index_col=0)
    assert list(wide.index) == FAST_ROWS  # the paper's row order
    titles = [TASKS[name].label for name in PAPER_TABLES[table]]
    assert [c.rsplit(" (", 1)[0] for c in wide.columns] == titles
    assert wide.map(lambda cell: " ± " in cell).all().all()
    tidy = pd.read_csv(folder / f"table{table}_folds.csv")
    assert len(tidy) == len(FAST_ROWS) * len(titles)
    assert tidy["data"].str.contains("synthetic").all()
    balanced = tidy["metric"].str.startswith("balanced_accuracy")
    assert tidy.loc[balanced, "mean"].between(0, 100).all()
    assert (tidy.loc[~balanced, "mean"] > 0).all() and np.isfinite(tidy["std"]).all()


@pytest.mark.slow
def test_anatomical_features_example(runs):
    stdout, folder = _check_run(runs, "plot_anatomical_features")
    table6 = pd.read_csv(folder / "table6.csv", index_col=0)
    assert list(table6.index) == ["CT", "GMV", "SA", "CT+GMV+SA", "mean age (no anatomy)"]
    assert table6["data"].str.contains("SYNTHETIC").all()
    # The synthetic anatomy thins with age: all three measures beat predicting the mean.
    assert table6.loc["CT+GMV+SA", "MAE mean"] < table6.loc["mean age (no anatomy)", "MAE mean"]
    tasks = pd.read_csv(folder / "abide_tasks_folds.csv")
    assert set(tasks["task"]) == {"abide-autism", "abide-asperger", "abide-pddnos",
                                  "abide-handedness", "abide-fiq", "abide-viq", "abide-piq"}


@pytest.mark.slow
@pytest.mark.skipif(not ABIDE_DIR.is_dir(), reason=f"real ABIDE-I tables absent ({ABIDE_DIR})")
def test_anatomical_features_example_on_real_abide(runs):
    stdout, folder = _check_run(runs, "plot_anatomical_features[abide]")
    assert "530 controls" in stdout  # the count the data folder's README reports
    table6 = pd.read_csv(folder / "table6.csv", index_col=0)
    assert (table6["data"] == "ABIDE-I, FreeSurfer 6").all()
    # Anchors measured independently on these files (shared/data/README.md, 5-fold ridge):
    # 3.45 y from thickness, 5.03 from area, 3.21 from all three, 5.64 predicting the mean.
    mae = table6["MAE mean"]
    assert abs(mae["CT"] - 3.45) < 0.4 and abs(mae["SA"] - 5.03) < 0.5
    assert abs(mae["CT+GMV+SA"] - 3.21) < 0.4 and abs(mae["mean age (no anatomy)"] - 5.64) < 0.4
    tasks = pd.read_csv(folder / "abide_tasks_folds.csv").set_index("task")
    assert (tasks["data"] == "ABIDE-I, FreeSurfer 6").all() and len(tasks) == 7


@pytest.mark.slow
def test_grid_search_example(runs):
    stdout, folder = _check_run(runs, "plot_grid_search")
    grid = pd.read_csv(folder / "grid_search.csv")
    assert len(grid) == 4 and set(grid["lambda_anat"]) == {0.0, 1.0}
    assert set(grid["sigma"]) == {1.0, 4.0} and np.isfinite(grid["MAE mean"]).all()
    assert sorted(grid["rank"]) == [1, 2, 3, 4]
    assert "Best: sigma=" in stdout


@pytest.mark.slow
def test_pretrained_weights_example(runs):
    stdout, folder = _check_run(runs, "plot_pretrained_weights")
    assert len(list((folder / "nifti").glob("*.nii.gz"))) == 30
    embeddings = pd.read_csv(folder / "embeddings.csv")
    assert len(embeddings) == 30 and embeddings["age"].notna().all()
    assert np.isfinite(embeddings[["pc1", "pc2"]].to_numpy()).all()
    assert "from the cache" in stdout
    assert not (folder.parent / "weights-cache").exists()  # nothing was downloaded


@pytest.mark.slow
def test_from_your_pipeline_example(runs):
    stdout, folder = _check_run(runs, "plot_from_your_pipeline")
    assert "not the released weights" in stdout
    check = pd.read_csv(folder / "conform_check.csv").set_index("pipeline")
    assert list(check.index) == ["CAT12 < 12.8", "CAT12 >= 12.8", "FSL-VBM", "fMRIPrep"]
    assert list(check["shape_in"]) == ["121x145x121", "113x137x113", "91x109x91x2",
                                       "193x229x193"]
    assert list(check["orientation"]) == ["LAS", "LAS", "LAS", "RAS"]
    # CAT12 >= 12.8's crop is padded back bit for bit; the 2 mm and 1 mm round trips are close.
    assert list(check["exact"]) == [True, True, False, False]
    assert (check["correlation"] > 0.95).all()
    agreement = pd.read_csv(folder / "embeddings_agreement.csv")
    assert len(agreement) == 2 * 3 and (agreement["cosine"] > 0.99).all()
    bb12 = agreement[agreement["pipeline"] == "CAT12 >= 12.8"]
    assert (bb12["distance_ratio"] == 0).all() and bb12["identified"].all()
    cli = pd.read_csv(folder / "cli_embeddings.csv")
    assert len(cli) == 4 and cli["image"].str.endswith(("#0", "#1")).sum() == 2
    assert "CLI against the embedder above" in stdout


@pytest.mark.slow
def test_quickstart_example(runs):
    stdout, _ = _check_run(runs, "plot_quickstart")
    mae = dict(line.split(": age MAE ") for line in stdout.splitlines() if "age MAE" in line)
    assert set(mae) == {"linear probe", "mean age (chance)"}
    # the synthetic brains age with their anatomy: the probe beats predicting the mean
    assert float(mae["linear probe"].split()[0]) < float(mae["mean age (chance)"].split()[0])


@pytest.mark.slow
@pytest.mark.parametrize("job", sorted(OUTPUTS))
def test_printed_output_holds_no_build_paths(runs, job):
    proc, folder = runs[job]
    assert str(folder.parent) not in proc.stdout
    assert "np.float64(" not in proc.stdout and "PosixPath(" not in proc.stdout


@pytest.mark.slow
def test_a_second_example_loads_the_encoders_a_first_pretrained(tmp_path):
    cache = tmp_path / "cache"
    rows = FAST_ROWS
    first = _run("plot_pretraining_openbhb", None, tmp_path / "a", cache)
    assert first.returncode == 0, first.stderr[-3000:]
    assert all(f"{row}: pretrained" in first.stdout for row in rows)
    encoders = sorted(p.name for p in (cache / "gallery-encoders").iterdir())
    assert len(encoders) == len(rows)
    second = _run("plot_alzheimer", None, tmp_path / "b", cache)
    assert second.returncode == 0, second.stderr[-3000:]
    assert all(f"{row}: loaded from the encoder cache" in second.stdout for row in rows)
    shutil.rmtree(cache)  # deleted: the next run trains again
    third = _run("plot_alzheimer", None, tmp_path / "c", cache)
    assert third.returncode == 0, third.stderr[-3000:]
    assert all(f"{row}: pretrained" in third.stdout for row in rows)
    assert sorted(p.name for p in (cache / "gallery-encoders").iterdir()) == encoders


@pytest.mark.slow
def test_brain_age_example(runs):
    stdout, folder = _check_run(runs, "plot_brain_age")
    assert "Running in the fast mode" in stdout
    assert "r(gap, age)" in stdout and "Corrected brain-age gap by group" in stdout
    rows = (folder / "brain_age_gap.csv").read_text().splitlines()
    assert rows[0].startswith("diagnosis") and [r.split(",")[0] for r in rows[1:]] == [
        "HC", "sMCI", "pMCI", "AD"]


def test_every_test_that_runs_the_examples_is_slow():
    """The `runs` fixture runs the whole gallery (minutes): a test that asks for it without the
    slow marker pulls all of it into the fast tier (the brain-age test did: +92 s)."""
    import inspect

    unmarked = [name for name, f in globals().items()
                if name.startswith("test_") and callable(f)
                and "runs" in inspect.signature(f).parameters
                and not any(m.name == "slow" for m in getattr(f, "pytestmark", []))]
    assert not unmarked, f"ask for `runs` without @pytest.mark.slow: {unmarked}"
