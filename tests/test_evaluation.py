"""anatcl_sklearn.evaluation: task rules, linear probes, embedding cache, results tables."""

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError

from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.evaluation import (
    PAPER_METHODS,
    PAPER_TABLES,
    PROBE_GRID,
    TASKS,
    ProbeResult,
    Task,
    embed,
    get_task,
    linear_probe,
    load_cohort,
    make_probe,
    report_paper_table,
    results_table,
    run_paper_table,
    save_results_csv,
)

from anatcl_sklearn.evaluation._gallery import load_example_data, settings_from_env  # noqa: E402

ABIDE_PHENOTYPES = "abide-freesurfer6/Phenotypic_V1_0b_preprocessed1.csv"


@pytest.fixture(scope="module")
def cohorts():
    """Metadata of every synthetic cohort (no images: fast)."""
    return {
        name: make_synthetic_brains(300, cohort=name, return_images=False, random_state=0)
        for name in ("openbhb", "adni", "oasis3", "schizconnect", "abide")
    }


def _expected(values, positive, negative):
    out = np.full(len(values), np.nan)
    out[np.isin(values, negative)] = 0.0
    out[np.isin(values, positive)] = 1.0
    return out


# ---------------------------------------------------------------- registry
def test_registry_holds_the_papers_12_tasks_and_10_phenotypes():
    diagnosis = [t for table in (2, 3, 4) for t in PAPER_TABLES[table]]
    assert len(diagnosis) == 12 and len(PAPER_TABLES[5]) == 10
    assert set(diagnosis) | set(PAPER_TABLES[5]) == set(TASKS)
    regression = {name for name, task in TASKS.items() if task.kind == "regression"}
    assert regression == {"openbhb-age", "abide-fiq", "abide-viq", "abide-piq"}
    assert {TASKS[n].metric for n in regression} == {"mae"}
    assert TASKS["adni-mci"].metric == "balanced_accuracy"
    assert [TASKS[n].dataset for n in PAPER_TABLES[3]] == ["ADNI", "ADNI", "OASIS-3"]
    with pytest.raises(TypeError):
        TASKS["new"] = TASKS["adni-ad"]


def test_paper_methods_are_embedder_parameters_in_the_papers_row_order():
    from anatcl_sklearn import AnatCLEmbedder

    assert list(PAPER_METHODS) == ["SimCLR", "L1", "y-Aware", "ExpW", "AnatCL-G3", "AnatCL-L3"]
    for params in PAPER_METHODS.values():
        assert AnatCLEmbedder(**params).get_params()["method"] == params["method"]
    assert PAPER_METHODS["AnatCL-L3"]["descriptor"] == "local"


# ---------------------------------------------------------------- label rules
@pytest.mark.parametrize(
    "name, positive, negative",
    [
        ("adni-ad", ["AD"], ["HC"]),
        ("adni-mci", ["pMCI"], ["sMCI"]),
        ("oasis3-ad", ["AD"], ["HC"]),
        ("schizconnect-scz-broad", ["SCZ-broad"], ["HC"]),
        ("schizconnect-scz-strict", ["SCZ-strict"], ["HC"]),
        ("schizconnect-schizoaffective", ["schizoaffective"], ["HC"]),
        ("schizconnect-bipolar", ["bipolar"], ["HC"]),
        ("abide-autism", ["autism"], ["HC"]),
        ("abide-asperger", ["asperger"], ["HC"]),
        ("abide-pddnos", ["pdd-nos"], ["HC"]),
    ],
)
def test_diagnosis_rules_on_synthetic_cohorts(cohorts, name, positive, negative):
    task = TASKS[name]
    participants = cohorts[task.cohort].participants
    labels = task.labels(participants).to_numpy()
    expected = _expected(participants["diagnosis"].to_numpy(), positive, negative)
    np.testing.assert_array_equal(labels, expected)
    assert np.nansum(labels == 1) >= 3 and np.nansum(labels == 0) >= 3


@pytest.mark.parametrize(
    "name, column, threshold",
    [
        ("schizconnect-aims-overall", "aims_overall", 2),
        ("schizconnect-aims-upper", "aims_upper", 2),
        ("schizconnect-aims-lower", "aims_lower", 2),
        ("schizconnect-depression", "depression", 1),
        ("schizconnect-gait", "gait", 1),
    ],
)
def test_ordinal_phenotype_rules(cohorts, name, column, threshold):
    participants = cohorts["schizconnect"].participants
    labels = TASKS[name].labels(participants).to_numpy()
    np.testing.assert_array_equal(labels, (participants[column] >= threshold).astype(float))
    assert 0 < labels.mean() < 1


def test_handedness_iq_age_and_sex_rules_on_synthetic_cohorts(cohorts):
    for cohort in ("schizconnect", "abide"):
        participants = cohorts[cohort].participants
        labels = TASKS[f"{cohort}-handedness"].labels(participants).to_numpy()
        np.testing.assert_array_equal(labels, (participants["handedness"] != "R").astype(float))
    abide = cohorts["abide"].participants
    for iq in ("fiq", "viq", "piq"):
        np.testing.assert_array_equal(TASKS[f"abide-{iq}"].labels(abide), abide[iq])
    openbhb = cohorts["openbhb"].participants
    np.testing.assert_array_equal(TASKS["openbhb-age"].labels(openbhb), openbhb["age"])
    np.testing.assert_array_equal(TASKS["openbhb-sex"].labels(openbhb), openbhb["sex"])


def test_rules_on_raw_values_aliases_and_missing_codes():
    assert TASKS["abide-handedness"].labels(["R", "L", "Ambi", "Mixed", "L->R", "-9999", None]
                                            ).tolist()[:5] == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert TASKS["abide-handedness"].labels(["-9999", None]).isna().all()
    assert TASKS["adni-ad"].labels(["CN", "AD", "Dementia", "MCI", "healthy control"]
                                   ).tolist()[:3] == [0.0, 1.0, 1.0]
    assert TASKS["adni-ad"].labels(["MCI"]).isna().all()
    assert TASKS["schizconnect-scz-broad"].labels(["scz_broad", "SCZ strict"]).tolist()[0] == 1.0
    fiq = TASKS["abide-fiq"].labels([101, -9999, np.nan, "n/a"])
    assert fiq[0] == 101 and fiq[1:].isna().all()
    sex = TASKS["openbhb-sex"]
    assert sex.labels(["male", "F", "female", "M"]).tolist() == [1.0, 0.0, 0.0, 1.0]
    assert sex.labels(pd.DataFrame({"SEX": [1, 2, 1]})).tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="numeric codes"):
        sex.labels(pd.DataFrame({"sex": [1, 2, 3]}))
    with pytest.raises(ValueError, match="'diagnosis'.*found columns"):
        TASKS["adni-ad"].labels(pd.DataFrame({"age": [70.0]}))
    with pytest.raises(ValueError, match="1-D"):
        TASKS["adni-ad"].labels(np.zeros((3, 2)))


def test_abide_phenotypic_csv_rules(shared_data_dir):
    path = shared_data_dir / ABIDE_PHENOTYPES
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    table = pd.read_csv(path)
    dx, dsm = table["DX_GROUP"], table["DSM_IV_TR"]
    n_controls = int((dx == 2).sum())
    # DSM-IV-TR counts from the data folder's README: autism 347, Asperger's 93, PDD-NOS 36.
    for name, code, n_patients in (("abide-autism", 1, 347), ("abide-asperger", 2, 93),
                                   ("abide-pddnos", 3, 36)):
        labels = TASKS[name].labels(table)
        assert (labels == 1).sum() == n_patients and (labels == 0).sum() == n_controls
        assert labels[(dx == 1) & (dsm != code)].isna().all()  # code 4 and -9999 left out
    hand = TASKS["abide-handedness"].labels(table)
    category = table["HANDEDNESS_CATEGORY"]
    assert (hand == 0).sum() == (category == "R").sum()
    assert (hand == 1).sum() == category.isin(["L", "Ambi", "Mixed", "L->R"]).sum()
    assert hand[category.isna() | (category.astype(str) == "-9999")].isna().all()
    for iq in ("FIQ", "VIQ", "PIQ"):
        labels = TASKS[f"abide-{iq.lower()}"].labels(table)
        valid = table[iq].notna() & (table[iq] != -9999)
        assert labels.notna().sum() == valid.sum() and labels.min() > 30
    sex = TASKS["openbhb-sex"].labels(table)
    assert (sex == 1).sum() == (table["SEX"] == 1).sum()
    age = TASKS["openbhb-age"].labels(table)
    np.testing.assert_allclose(age, table["AGE_AT_SCAN"])


def test_get_task_and_custom_tasks():
    assert get_task("adni-ad") is TASKS["adni-ad"]
    plain = get_task("regression")
    assert plain.kind == "regression" and plain.labels([1, "2", None]).tolist()[:2] == [1.0, 2.0]
    with pytest.raises(ValueError, match="Did you mean"):
        get_task("adni")
    with pytest.raises(TypeError):
        get_task(3)
    with pytest.raises(ValueError, match="kind"):
        Task("x", "clustering")
    custom = Task("old", "classification", rule=lambda frame: (frame["age"] > 60).astype(float))
    assert custom.labels(pd.DataFrame({"age": [30, 70]})).tolist() == [0.0, 1.0]
    broken = Task("bad", "classification", rule=lambda frame: [1.0])
    with pytest.raises(ValueError, match="shape"):
        broken.labels(pd.DataFrame({"age": [30, 70]}))


# ---------------------------------------------------------------- probes
def _signal(n=120, p=16, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, p))
    diagnosis = np.where(Z[:, 0] + 0.3 * rng.normal(size=n) > 0.3, "AD", "HC")
    age = 60 + 8 * Z[:, 1] + rng.normal(size=n)
    return Z, diagnosis, age, rng


def test_probe_finds_signal_and_not_in_shuffled_labels():
    Z, diagnosis, age, rng = _signal()
    real = linear_probe(Z, None, diagnosis, "adni-ad", cv=5, random_state=0)
    shuffled = linear_probe(Z, None, rng.permutation(diagnosis), "adni-ad", cv=5,
                            random_state=0)
    assert real.metric == "balanced_accuracy" and real.scores.shape == (5,)
    assert real.mean > 0.75 and shuffled.mean < 0.65
    assert real.class_counts == {0.0: int((diagnosis == "HC").sum()),
                                 1.0: int((diagnosis == "AD").sum())}
    assert all(set(p) == {"logisticregression__C"} for p in real.best_params)

    real = linear_probe(Z, None, age, "openbhb-age", cv=4, random_state=0)
    shuffled = linear_probe(Z, None, rng.permutation(age), "openbhb-age", cv=4, random_state=0)
    assert real.metric == "mae" and real.scores.shape == (4,)
    assert real.mean < 2.0 < 5.0 < shuffled.mean
    assert real.std == pytest.approx(np.std(real.scores))


def test_probe_drops_subjects_outside_the_task_and_leaves_inputs_alone():
    Z, diagnosis, _, _ = _signal()
    diagnosis = diagnosis.astype(object)
    diagnosis[:20] = "sMCI"  # in neither group of HC vs AD
    participants = pd.DataFrame({"diagnosis": diagnosis})
    Z_before, p_before = Z.copy(), participants.copy()
    result = linear_probe(Z, None, participants, "adni-ad", cv=3, random_state=0, name="x")
    assert result.n_samples == 100 and result.n_features == Z.shape[1] and result.name == "x"
    np.testing.assert_array_equal(Z, Z_before)
    pd.testing.assert_frame_equal(participants, p_before)
    again = linear_probe(Z, None, participants, "adni-ad", cv=3, random_state=0)
    np.testing.assert_array_equal(result.scores, again.scores)


def test_probe_copes_with_a_rare_class():
    Z, diagnosis, _, _ = _signal(n=80)
    diagnosis = np.full(80, "HC", dtype=object)
    diagnosis[Z[:, 0].argsort()[-3:]] = "pdd-nos"  # three patients, as PDD-NOS in small data
    result = linear_probe(Z, None, diagnosis, "abide-pddnos", cv=3, random_state=0)
    assert result.class_counts == {0.0: 77, 1.0: 3} and np.all(np.isfinite(result.scores))
    with pytest.raises(ValueError, match="smallest class has 3 subjects"):
        linear_probe(Z, None, diagnosis, "abide-pddnos", cv=5)


def test_probe_errors_name_the_problem():
    Z, diagnosis, _, _ = _signal(n=30)
    with pytest.raises(ValueError, match="2-D"):
        linear_probe(np.zeros((30, 4, 4, 4)), None, diagnosis, "adni-ad")
    with pytest.raises(ValueError, match="X must be None"):
        linear_probe(Z, Z, diagnosis, "adni-ad")
    with pytest.raises(ValueError, match="30 subjects but y has 29"):
        linear_probe(Z, None, diagnosis[:29], "adni-ad")
    with pytest.raises(ValueError, match="cv must be an int >= 2"):
        linear_probe(Z, None, diagnosis, "adni-ad", cv=1)
    with pytest.raises(TypeError, match="task is required"):
        linear_probe(Z, None, diagnosis)
    with pytest.raises(ValueError, match="need two classes"):
        linear_probe(Z, None, np.full(30, "AD"), "adni-ad")
    with pytest.raises(ValueError, match="NaN or infinite"):
        linear_probe(np.full((30, 2), np.nan), None, diagnosis, "adni-ad")


def test_make_probe_uses_the_reference_grid():
    assert list(PROBE_GRID) == list(10.0 ** np.arange(-2, 3))
    search = make_probe("classification", inner_cv=4, random_state=0)
    assert search.param_grid == {"logisticregression__C": list(PROBE_GRID)}
    assert search.scoring == "balanced_accuracy" and search.cv.n_splits == 4
    assert make_probe("regression").scoring == "r2"
    assert not hasattr(make_probe("regression", inner_cv=None), "param_grid")
    with pytest.raises(ValueError, match="kind"):
        make_probe("ranking")


# ---------------------------------------------------------------- embeddings cache
class CountingTransformer(TransformerMixin, BaseEstimator):
    """Projects onto a fixed direction; counts transform calls in a class attribute (not
    in the instance, whose state is part of the cache key)."""

    calls = 0

    def __init__(self, scale=1.0):
        self.scale = scale

    def fit(self, X, y=None):
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X):
        type(self).calls += 1
        return np.asarray(X)[:, :4] * self.scale


def test_transformer_embeds_once_per_call_and_once_overall_with_memory(tmp_path):
    Z, diagnosis, age, _ = _signal(n=60)
    est = CountingTransformer().fit(Z)
    CountingTransformer.calls = 0
    linear_probe(est, Z, diagnosis, "adni-ad", cv=3, random_state=0)
    assert CountingTransformer.calls == 1  # once for all folds

    CountingTransformer.calls = 0
    first = linear_probe(est, Z, diagnosis, "adni-ad", cv=3, memory=tmp_path, random_state=0)
    second = linear_probe(est, Z, age, "openbhb-age", cv=3, memory=str(tmp_path),
                          random_state=0)
    assert CountingTransformer.calls == 1  # the second task reads the cache
    assert first.n_features == second.n_features == 4
    np.testing.assert_array_equal(embed(est, Z, memory=tmp_path), Z[:, :4])
    assert CountingTransformer.calls == 1
    embed(CountingTransformer(scale=2.0).fit(Z), Z, memory=tmp_path)  # another transformer
    assert CountingTransformer.calls == 2

    with pytest.raises(NotFittedError):
        embed(CountingTransformer(), Z)
    with pytest.raises(TypeError, match="transform"):
        embed(object(), Z)
    with pytest.raises(ValueError, match="X is required"):
        linear_probe(est, None, diagnosis, "adni-ad")


def test_stable_hash_of_a_fitted_embedder(small_brains):
    from anatcl_sklearn import AnatCLEmbedder
    from anatcl_sklearn.evaluation._hashing import stable_hash

    # No epoch is needed: the fitted net already holds the random generators whose pickled
    # state made joblib's hash unstable. Other seeds give other initial weights.
    X, meta = small_brains.images[:4], dict(age=small_brains.age[:4],
                                            anatomy=small_brains.anatomy[:4])
    a = AnatCLEmbedder(max_epochs=0, verbose=0, random_state=0).fit(X, **meta)
    b = AnatCLEmbedder(max_epochs=0, verbose=0, random_state=1).fit(X, **meta)
    key = stable_hash(a)
    a.transform(X[:2])  # switches the network to eval mode: not part of the value
    assert stable_hash(a) == key != stable_hash(b)


# ---------------------------------------------------------------- tables
def _result(task, scores, name):
    return ProbeResult(TASKS[task], np.asarray(scores), 100, 512, name=name)


def test_results_table_cells_order_and_numbers():
    results = {
        "SimCLR": {"adni-ad": _result("adni-ad", [0.8, 0.9], "SimCLR")},
        "AnatCL-G3": [_result("adni-ad", [0.7, 0.7], "AnatCL-G3"),
                      _result("openbhb-age", [3.0, 4.0], "AnatCL-G3")],
    }
    table = results_table(results, rows=["AnatCL-G3", "SimCLR"],
                          columns=["openbhb-age", "adni-ad"])
    assert list(table.index) == ["AnatCL-G3", "SimCLR"]
    assert list(table.columns) == ["OpenBHB Age (MAE)", "ADNI HC vs AD (BA %)"]
    assert table.loc["SimCLR", "ADNI HC vs AD (BA %)"] == "85.00 ± 5.00"
    assert table.loc["AnatCL-G3", "OpenBHB Age (MAE)"] == "3.50 ± 0.50"
    assert table.loc["SimCLR", "OpenBHB Age (MAE)"] == ""
    assert results_table(results, percent=False, decimals=3).loc[
        "SimCLR", "ADNI HC vs AD (BA)"] == "0.850 ± 0.050"
    numbers = results_table(results, numeric=True)
    assert numbers.loc["SimCLR", ("ADNI HC vs AD (BA %)", "mean")] == pytest.approx(85.0)
    assert np.isnan(numbers.loc["SimCLR", ("OpenBHB Age (MAE)", "std")])
    flat = [r for cells in (results["SimCLR"].values(), results["AnatCL-G3"]) for r in cells]
    pd.testing.assert_frame_equal(results_table(flat), results_table(results))
    with pytest.raises(ValueError, match="no result for rows \\['L1'\\]"):
        results_table(results, rows=["L1"])
    with pytest.raises(ValueError, match="Two results"):
        results_table([flat[0], flat[0]])
    with pytest.raises(TypeError):
        results_table({"SimCLR": 3})


def test_save_results_csv(tmp_path):
    results = [_result("adni-ad", [0.8, 0.9], "SimCLR"),
               _result("abide-fiq", [10.0, 12.0, 14.0], "SimCLR")]
    path = save_results_csv(results, tmp_path / "sub" / "table.csv",
                            metadata={"data": "synthetic"})
    frame = pd.read_csv(path)
    assert list(frame["task"]) == ["adni-ad", "abide-fiq"]
    assert frame["mean"].tolist() == pytest.approx([85.0, 12.0])
    assert frame.loc[1, ["fold_1", "fold_2", "fold_3"]].tolist() == [10.0, 12.0, 14.0]
    assert np.isnan(frame.loc[0, "fold_3"])
    assert (frame["data"] == "synthetic").all() and frame.loc[0, "cell"] == "85.00 ± 5.00"
    assert str(_result("adni-ad", [0.8, 0.9], "SimCLR")).startswith("SimCLR: ADNI HC vs AD BA")


def test_plot_results_draws_one_panel_per_task():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from anatcl_sklearn.evaluation import plot_results

    results = [_result("adni-ad", [0.8, 0.9], "SimCLR"),
               _result("adni-ad", [0.6, 0.7], "L1"),
               _result("abide-fiq", [10.0, 12.0], "L1")]
    fig = plot_results(results, title="synthetic")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["ADNI HC vs AD", "ABIDE-I FIQ"]
    heights = [patch.get_height() for patch in visible[0].patches]
    assert heights == pytest.approx([85.0, 65.0])
    matplotlib.pyplot.close(fig)


# ---------------------------------------------------------------- cohorts on disk
def test_load_cohort(tmp_path):
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", np.zeros((4, 4, 4), np.float32))
    pd.DataFrame({"participant_id": ["s0", "s1", "s2", "s3"], "diagnosis": ["HC", "AD", "HC", "AD"],
                  "image": ["s0.npy", "s1.npy", "s2.npy", "s3.npy"]}).to_csv(
        tmp_path / "participants.tsv", sep="\t", index=False)
    with pytest.raises(FileNotFoundError, match="1 of 4 images"):
        load_cohort(tmp_path)
    with pytest.warns(UserWarning, match="dropped"):
        cohort = load_cohort(tmp_path, on_missing="drop")
    assert cohort.images == [str(tmp_path / f"s{i}.npy") for i in range(3)]
    assert cohort.participants["participant_id"].tolist() == ["s0", "s1", "s2"]
    assert TASKS["adni-ad"].labels(cohort.participants).tolist() == [0.0, 1.0, 0.0]
    with pytest.warns(UserWarning):
        by_pattern = load_cohort(tmp_path, pattern="{participant_id}.npy", on_missing="drop")
    assert by_pattern.images == cohort.images
    with pytest.raises(ValueError, match="names column"):
        load_cohort(tmp_path, pattern="{subject}.npy")
    with pytest.raises(FileNotFoundError, match="Cohort folder"):
        load_cohort(tmp_path / "absent")


# ---------------------------------------------------------------- a paper table end to end
class CountingEmbedder(TransformerMixin, BaseEstimator):
    """A stand-in encoder: fit sees the pretraining data, transform counts its calls per
    cohort size in a class attribute (clones do not share instance state)."""

    fits: ClassVar[list] = []
    transforms: ClassVar[list] = []

    def __init__(self, n_out=4):
        self.n_out = n_out

    def fit(self, X, y=None, *, age=None, anatomy=None):
        type(self).fits.append((len(X), age is not None, anatomy is not None))
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X):
        type(self).transforms.append(len(X))
        return np.asarray(X, dtype=float)[:, : self.n_out]


def _cohort(name, n, seed):
    meta = make_synthetic_brains(n, cohort=name, return_images=False, random_state=seed)
    images = np.random.default_rng(seed).normal(size=(n, 8))
    return meta, images


def _run_table3():
    from sklearn.utils import Bunch

    cohorts = {}
    for seed, (name, n) in enumerate((("adni", 90), ("oasis3", 70))):
        meta, images = _cohort(name, n, seed)
        cohorts[name] = Bunch(images=images, participants=meta.participants)
    pretrain = Bunch(images=np.zeros((20, 8)), age=np.arange(20.0), anatomy=None)
    CountingEmbedder.fits, CountingEmbedder.transforms = [], []
    methods = {"small": CountingEmbedder(n_out=3), "large": CountingEmbedder(n_out=6)}
    run = run_paper_table(3, pretrain=pretrain, cohorts=cohorts, methods=methods, cv=3,
                          inner_cv=2, random_state=0)
    assert run.methods == ["small", "large"] and run.tasks == list(PAPER_TABLES[3])
    assert CountingEmbedder.fits == [(20, True, False)] * 2
    # one transform per cohort per method, whatever the number of tasks and folds
    assert sorted(CountingEmbedder.transforms) == [70, 70, 90, 90]
    assert methods["small"].__dict__ == {"n_out": 3}  # the given estimators stay unfitted
    for name, n_out in (("small", 3), ("large", 6)):
        assert set(run.embeddings[name]) == {"adni", "oasis3"}
        assert run.embeddings[name]["adni"].shape == (90, n_out)
        results = run.results[name]
        assert [r.task.name for r in results] == list(PAPER_TABLES[3])
        assert all(isinstance(r, ProbeResult) and r.name == name for r in results)
        assert all(r.n_features == n_out and len(r.scores) == 3 for r in results)
    table = results_table(run.results, rows=run.methods, columns=run.tasks)
    assert list(table.index) == ["small", "large"] and table.shape[1] == 3
    assert run.histories == {} and set(run.fit_times) == {"small", "large"}
    return run


def test_run_paper_table_embeds_each_cohort_once_per_method():
    run = _run_table3()
    assert set(run.results) == {"small", "large"}


def test_report_paper_table_writes_the_table_its_folds_and_figure(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    run = _run_table3()
    frame, fig = report_paper_table(run.results, 3, tmp_path, rows=["large", "small"],
                                    header="Table 3 here", title="t", metadata={"data": "x"})
    plt.close(fig)
    printed = capsys.readouterr().out
    assert printed.startswith("Table 3 here\n") and frame.to_string() in printed
    assert list(pd.read_csv(tmp_path / "table3.csv", index_col=0).index) == ["large", "small"]
    folds = pd.read_csv(tmp_path / "table3_folds.csv")
    assert len(folds) == 2 * 3 and (folds["data"] == "x").all()
    assert (tmp_path / "table3.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="missing"):
        report_paper_table(run.results, 3, tmp_path / "missing")
    with pytest.raises(ValueError, match="table must be one of"):
        report_paper_table(run.results, 1, tmp_path)


def test_run_paper_table_errors_before_any_work():
    from sklearn.utils import Bunch

    meta, images = _cohort("adni", 30, 0)
    adni = Bunch(images=images, participants=meta.participants)
    CountingEmbedder.fits = []
    with pytest.raises(ValueError, match="oasis3"):
        run_paper_table(3, pretrain=None, cohorts={"adni": adni},
                        methods={"m": CountingEmbedder()})
    with pytest.raises(ValueError, match="table must be one of"):
        run_paper_table(6, pretrain=None, cohorts={"adni": adni})
    with pytest.raises(ValueError, match="Unknown method 'BYOL'"):
        run_paper_table(2, pretrain=None, cohorts={"openbhb": adni}, methods=["BYOL"])
    with pytest.raises(TypeError, match="fit and transform"):
        run_paper_table(2, pretrain=None, cohorts={"openbhb": adni}, methods={"m": object()})
    with pytest.raises(TypeError, match="cohorts"):
        run_paper_table(2, pretrain=None, cohorts=[adni])
    with pytest.raises(ValueError, match="pretrain is None"):
        run_paper_table(2, pretrain=None, cohorts={"openbhb": adni}, methods=["SimCLR"])
    assert CountingEmbedder.fits == []


def test_settings_from_env(tmp_path):
    fast = settings_from_env("ex", default_output=tmp_path / "default",
                             environ={"ANATCL_EXAMPLES_FAST": "1"})
    assert fast.fast and fast.output == tmp_path / "default" / "ex" and fast.output.is_dir()
    assert fast.methods == ["SimCLR", "y-Aware", "AnatCL-G3"]
    assert (fast.cv, fast.inner_cv) == (3, 3)
    assert fast.training["max_epochs"] == 2 and fast.openbhb_dir is None and not fast.official
    full = settings_from_env("ex", default_output=tmp_path, environ={
        "ANATCL_EXAMPLES_FAST": "0", "ANATCL_OPENBHB_DIR": "/data/openbhb",
        "ANATCL_EXAMPLES_OUTPUT": str(tmp_path / "out"), "ANATCL_FOLD": "3",
        "ANATCL_CHECKPOINT_DIR": "/ckpt"})
    assert not full.fast and full.methods == list(PAPER_METHODS) and full.cv == 5
    assert full.training == {"batch_size": 32, "lr": 1e-4, "weight_decay": 5e-5,
                             "max_epochs": 300}
    assert full.output == tmp_path / "out" / "ex" and full.fold == 3
    assert full.checkpoint_dir == "/ckpt" and full.openbhb_dir == "/data/openbhb"
    official = settings_from_env("ex", default_output=tmp_path, environ={
        "ANATCL_WEIGHTS": "Official", "ANATCL_EPOCHS": "5"})
    assert official.official and official.methods == ["AnatCL-G3", "AnatCL-L3"]
    assert official.training["max_epochs"] == 5
    with pytest.raises(ValueError, match="ANATCL_EPOCHS"):
        settings_from_env("ex", default_output=tmp_path, environ={"ANATCL_EPOCHS": "many"})
    # a weights name meant for plot_pretrained_weights.py must not silently pretrain instead
    with pytest.raises(ValueError, match="ANATCL_WEIGHTS='anatcl-global' is not understood"):
        settings_from_env("ex", default_output=tmp_path, environ={"ANATCL_WEIGHTS": "anatcl-global"})


def test_load_example_data_synthetic_and_real_checks(tmp_path, capsys):
    settings = settings_from_env("ex", default_output=tmp_path,
                                 environ={"ANATCL_EXAMPLES_FAST": "1"})
    data = load_example_data(settings, {"adni": None}, n_subjects=12, shape=(16, 16, 16))
    assert data.kinds == {"adni": "synthetic"} and not data.real
    assert "SYNTHETIC" in data.label and len(data.cohorts["adni"].images) == 12
    assert len(data.pretrain.images) == settings.n_pretrain == 32
    assert "adni (synthetic): 12 subjects" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match="ANATCL_OPENBHB_DIR"):
        load_example_data(settings, {"adni": str(tmp_path / "nowhere")}, n_subjects=12)
