"""Brain age (issue #20 item 1): the age-bias correction fitted out of fold, and its refusals."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.brainage import (
    BrainAgeRegressor,
    brain_age_gap,
    brain_age_report,
    cross_val_brain_age,
    format_report,
    predict_both,
)
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.exceptions import InvalidParameterError


def biased_data(n=1000, noise=40.0, seed=0):
    """Features = age + heavy noise: a ridge of age regresses towards the mean age."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n)
    return age[:, None] + rng.normal(0, noise, (n, 8)), age


@pytest.fixture
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


def _r(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_corrected_gap_is_uncorrelated_with_age_on_held_out_folds():
    X, age = biased_data()
    result = cross_val_brain_age(BrainAgeRegressor(random_state=0), X, age, cv=5,
                                 random_state=0)
    report = brain_age_report(age, result.predicted, result.corrected)
    # The bias is there, on held-out data, in every fold...
    assert report["uncorrected"]["r_gap_age"] < -0.3
    for k in range(5):
        test = result.fold == k
        assert _r(result.gap[test], age[test]) < -0.3
    # ...and the correction, fitted inside each training fold only, removes it.
    assert abs(report["corrected"]["r_gap_age"]) < 0.1
    assert set(np.unique(result.fold)) == set(range(5))
    np.testing.assert_allclose(result.corrected_gap, result.corrected - age)


def test_correction_is_fitted_on_out_of_fold_not_in_sample_predictions():
    """A 1-nearest-neighbour model predicts its training subjects exactly: a line fitted on
    in-sample predictions is the identity (slope 1, intercept 0) and corrects nothing. The
    fitted line is the one of the out-of-fold predictions, computed by hand."""
    X, age = biased_data(n=400)
    inner = KNeighborsRegressor(n_neighbors=1)
    model = BrainAgeRegressor(inner, cv=5, random_state=3).fit(X, age)

    in_sample = clone(inner).fit(X, age).predict(X)
    leaky_slope, leaky_intercept = np.polyfit(age, in_sample, 1)
    assert leaky_slope == pytest.approx(1.0) and leaky_intercept == pytest.approx(0.0, abs=1e-9)

    oof = cross_val_predict(clone(inner), X, age,
                            cv=KFold(5, shuffle=True, random_state=3))
    slope, intercept = np.polyfit(age, oof, 1)
    assert model.slope_ == pytest.approx(slope)
    assert model.intercept_ == pytest.approx(intercept)
    np.testing.assert_allclose(model.oof_predictions_, oof)
    assert model.slope_ < leaky_slope - 0.2


def test_beheshti_and_de_lange_formulas():
    X, age = biased_data(n=300)
    for correction in ("beheshti", "de_lange"):
        model = BrainAgeRegressor(correction=correction, random_state=0).fit(X, age)
        raw = model.estimator_.predict(X)
        a, b = model.slope_, model.intercept_
        expected = raw + age - (a * age + b) if correction == "beheshti" else (raw - b) / a
        np.testing.assert_allclose(model.predict(X, age=age), expected)
        np.testing.assert_allclose(model.brain_age_gap(X, age), expected - age)
        np.testing.assert_allclose(brain_age_gap(model, X, age), expected - age)
        predicted, corrected = predict_both(model, X, age)
        np.testing.assert_allclose(predicted, raw)
        np.testing.assert_allclose(corrected, expected)
        # On the out-of-fold predictions the line was fitted on, the gap is uncorrelated.
        assert abs(_r(model.correct(model.oof_predictions_, age) - age, age)) < 1e-8


def test_no_correction_needs_no_age():
    X, age = biased_data(n=100)
    model = BrainAgeRegressor(correction=None).fit(X, age)
    np.testing.assert_allclose(model.predict(X), Ridge().fit(X, age).predict(X))
    assert (model.slope_, model.intercept_) == (1.0, 0.0)


def test_default_inner_model_is_a_ridge_and_score_is_uncorrected_r2():
    X, age = biased_data(n=200)
    model = BrainAgeRegressor(random_state=0).fit(X, age)
    assert isinstance(model.estimator_, Ridge)
    assert model.score(X, age) == pytest.approx(Ridge().fit(X, age).score(X, age))


def test_clone_and_pickle_keep_predictions():
    X, age = biased_data(n=200)
    model = BrainAgeRegressor(make_pipeline(StandardScaler(), Ridge(alpha=3.0)), cv=4,
                              correction="de_lange", random_state=1).fit(X, age)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(X, age=age), model.predict(X, age=age))
    cloned = clone(model)
    assert cloned.get_params()["estimator__ridge__alpha"] == 3.0
    assert not hasattr(cloned, "estimator_")
    np.testing.assert_allclose(cloned.fit(X, age).predict(X, age=age), model.predict(X, age=age))


# Refusals -----------------------------------------------------------------------------


def test_refuses_predict_without_age():
    X, age = biased_data(n=100)
    model = BrainAgeRegressor().fit(X, age)
    with pytest.raises(ValueError, match=r"needs each subject's chronological age.*"
                                         r"cross_val_brain_age"):
        model.predict(X)


def test_refuses_a_classifier():
    X, age = biased_data(n=100)
    with pytest.raises(TypeError, match="must be a regressor of age; got LogisticRegression"):
        BrainAgeRegressor(LogisticRegression()).fit(X, (age > 50).astype(int))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_refuses_missing_ages(bad):
    X, age = biased_data(n=100)
    age[7] = bad
    with pytest.raises(ValueError, match=r"y \(chronological age\) holds 1 missing or infinite.*"
                                         r"position 7"):
        BrainAgeRegressor().fit(X, age)
    model = BrainAgeRegressor().fit(X[:5], np.arange(5.0))
    with pytest.raises(ValueError, match="age holds 1 missing or infinite"):
        model.predict(X[:10], age=age[:10])


def test_refuses_age_of_the_wrong_length():
    X, age = biased_data(n=100)
    model = BrainAgeRegressor().fit(X, age)
    with pytest.raises(ValueError, match="age has 99 values for 100 subjects"):
        model.predict(X, age=age[:-1])


def test_refuses_too_few_subjects_for_its_cv():
    X, age = biased_data(n=4)
    with pytest.raises(ValueError, match=r"at least 5 training subjects.*cv=5.*n_samples=4"):
        BrainAgeRegressor(cv=5).fit(X, age)


def test_refuses_constant_age_and_a_flat_de_lange_slope():
    X, age = biased_data(n=50)
    with pytest.raises(ValueError, match="Every training age is 40.0"):
        BrainAgeRegressor().fit(X, np.full(50, 40.0))
    # Out of fold, a mean-age model predicts each fold the mean of the others: a slope < 0.
    with pytest.raises(ValueError, match=r"slope of the out-of-fold predictions on age, and "
                                         r"that slope is -"):
        BrainAgeRegressor(DummyRegressor(), correction="de_lange", random_state=0).fit(X, age)


def test_refuses_a_bad_parameter():
    X, age = biased_data(n=50)
    with pytest.raises(InvalidParameterError, match="'correction' parameter of "
                                                    "BrainAgeRegressor"):
        BrainAgeRegressor(correction="cole").fit(X, age)


# Inside scikit-learn's tools --------------------------------------------------------------


def test_pipeline_routes_age_to_predict(routing):
    X, age = biased_data(n=200)
    pipe = make_pipeline(StandardScaler(), BrainAgeRegressor(random_state=0)).fit(X, age)
    corrected = pipe.predict(X, age=age)
    np.testing.assert_allclose(corrected, pipe[-1].predict(pipe[0].transform(X), age=age))
    np.testing.assert_allclose(brain_age_gap(pipe, X, age), corrected - age)
    # Opting out of the request: age is refused by the router, not silently dropped.
    pipe[-1].set_predict_request(age=False)
    with pytest.raises(Exception, match="age"):
        pipe.predict(X, age=age)


def test_pipeline_without_routing_passes_age_to_the_last_step():
    X, age = biased_data(n=200)
    pipe = make_pipeline(StandardScaler(), BrainAgeRegressor(random_state=0)).fit(X, age)
    np.testing.assert_allclose(brain_age_gap(pipe, X, age),
                               pipe[-1].brain_age_gap(pipe[0].transform(X), age))


def test_cross_val_predict_without_correction_and_its_refusal_with_one():
    X, age = biased_data(n=100)
    predicted = cross_val_predict(BrainAgeRegressor(correction=None), X, age, cv=5)
    assert predicted.shape == (100,)
    # scikit-learn passes no metadata to predict there: the error names the way out.
    with pytest.raises(ValueError, match="cross_val_brain_age"):
        cross_val_predict(BrainAgeRegressor(), X, age, cv=5)


def test_grid_search_over_the_inner_alpha(routing):
    X, age = biased_data(n=200)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("brainage", BrainAgeRegressor(Ridge(), cv=3, random_state=0))])
    grid = GridSearchCV(pipe, {"brainage__estimator__alpha": [0.01, 1e4]}, cv=3).fit(X, age)
    assert grid.best_params_ == {"brainage__estimator__alpha": 0.01}
    assert grid.best_estimator_[-1].estimator_.alpha == 0.01
    assert grid.best_estimator_.predict(X, age=age).shape == (200,)


@pytest.fixture
def brains():
    return make_synthetic_brains(30, shape=(24, 28, 24), random_state=0)


@pytest.fixture
def encoder_folder(narrow_resnet, brains, tmp_path):
    """A tiny pretrained encoder saved as a folder (fit then only loads it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GridWarning)
        embedder = AnatCLEmbedder(max_epochs=1, batch_size=8, verbose=0, random_state=0).fit(
            brains.images[:12], age=brains.age[:12], anatomy=brains.anatomy[:12])
    embedder.save_pretrained(tmp_path / "encoder")
    return tmp_path / "encoder"


@pytest.mark.filterwarnings("ignore::anatcl_sklearn.GridWarning")
def test_embedder_pipeline_in_grid_search_and_cross_val_brain_age(routing, brains,
                                                                  encoder_folder):
    pipe = make_pipeline(AnatCLEmbedder(pretrained=str(encoder_folder), verbose=0)
                         .set_fit_request(age=True),
                         BrainAgeRegressor(Ridge(), cv=3, random_state=0))
    grid = GridSearchCV(pipe, {"brainageregressor__estimator__alpha": [0.1, 10.0]}, cv=3)
    grid.fit(brains.images, brains.age, age=brains.age)
    gap = brain_age_gap(grid.best_estimator_, brains.images[:5], brains.age[:5])
    assert gap.shape == (5,) and np.all(np.isfinite(gap))

    result = cross_val_brain_age(pipe, brains.images, brains.age, cv=3,
                                 params={"age": brains.age}, random_state=0)
    assert result.corrected.shape == (30,) and np.all(np.isfinite(result.corrected))
    again = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_allclose(again.predict(brains.images[:5], age=brains.age[:5]),
                               gap + brains.age[:5], rtol=1e-5)


def test_report_figures():
    age = np.array([20.0, 40.0, 60.0, 80.0])
    predicted = np.array([35.0, 45.0, 55.0, 65.0])  # 0.5 * age + 25
    report = brain_age_report(age, predicted, age + 1.0)
    assert report["uncorrected"]["MAE"] == pytest.approx(10.0)
    assert report["uncorrected"]["mean_gap"] == pytest.approx(0.0)
    assert report["uncorrected"]["r_gap_age"] == pytest.approx(-1.0)
    assert report["corrected"]["MAE"] == pytest.approx(1.0)
    assert np.isnan(report["corrected"]["r_gap_age"])  # a constant gap has no correlation
    assert report["uncorrected"]["n"] == 4
    assert "r(gap, age)" in format_report(report)
    with pytest.raises(ValueError, match="predicted has 3 values for 4 subjects"):
        brain_age_report(age, predicted[:3])


# scikit-learn's common checks -------------------------------------------------------------

_NEEDS_AGE = ("calls predict(X) without age; with a correction on, predict refuses that by "
              "design (BrainAgeRegressor(correction=None) passes every check)")
CHECKS_THAT_CALL_PREDICT = (
    "check_estimators_dtypes", "check_dtype_object", "check_estimator_sparse_array",
    "check_estimator_sparse_matrix", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_regressors_train",
    "check_regressor_data_not_an_array", "check_supervised_y_2d", "check_regressors_int",
    "check_methods_sample_order_invariance", "check_methods_subset_invariance",
    "check_dict_unchanged", "check_fit_idempotent",
)


def _expected_failed_checks(estimator):
    if estimator.correction is None:
        return {}
    return dict.fromkeys(CHECKS_THAT_CALL_PREDICT, _NEEDS_AGE)


@parametrize_with_checks([BrainAgeRegressor(correction=None), BrainAgeRegressor()],
                         expected_failed_checks=_expected_failed_checks)
def test_sklearn_common_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", np.exceptions.ComplexWarning)
        warnings.filterwarnings("ignore", message="Can't check dok sparse matrix")
        check(estimator)
