"""The released folds together (issue #20 item 2): FoldEnsemble / make_fold_ensemble."""

import pickle
import warnings

import numpy as np
import pytest
import sklearn
from sklearn.base import clone, is_classifier, is_regressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.brainage import (
    BrainAgeRegressor,
    FoldEnsemble,
    cross_val_brain_age,
    make_fold_ensemble,
    predict_both,
)
from anatcl_sklearn.datasets import make_synthetic_brains


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n)
    return age[:, None] + rng.normal(0, 20, (n, 6)), age


def test_regressor_ensemble_averages_its_members():
    X, age = _data()
    pipe = make_pipeline(StandardScaler(), Ridge())
    ensemble = make_fold_ensemble(pipe, [0.1, 10.0, 1000.0], param="ridge__alpha").fit(X, age)
    assert is_regressor(ensemble) and len(ensemble.estimators_) == 3
    members = [clone(pipe).set_params(ridge__alpha=a).fit(X, age) for a in (0.1, 10.0, 1000.0)]
    np.testing.assert_allclose(ensemble.predict(X),
                               np.mean([m.predict(X) for m in members], axis=0))
    assert [m[-1].alpha for m in ensemble.estimators_] == [0.1, 10.0, 1000.0]
    assert ensemble.n_features_in_ == 6


def test_classifier_ensemble_is_a_soft_vote():
    X, age = _data()
    y = np.where(age > 50, "old", "young")
    clf = make_pipeline(StandardScaler(), LogisticRegression())
    ensemble = FoldEnsemble(clf, param="logisticregression__C", values=[0.001, 1.0]).fit(X, y)
    assert is_classifier(ensemble)
    members = [clone(clf).set_params(logisticregression__C=c).fit(X, y) for c in (0.001, 1.0)]
    proba = np.mean([m.predict_proba(X) for m in members], axis=0)
    np.testing.assert_allclose(ensemble.predict_proba(X), proba)
    np.testing.assert_array_equal(ensemble.predict(X), ensemble.classes_[proba.argmax(1)])
    assert ensemble.score(X, y) == pytest.approx(np.mean(ensemble.predict(X) == y))


@pytest.mark.parametrize("routing", [True, False])
def test_age_reaches_every_brain_age_member(routing):
    X, age = _data()
    pipe = make_pipeline(StandardScaler(), BrainAgeRegressor(Ridge(), cv=3, random_state=0))
    with sklearn.config_context(enable_metadata_routing=routing):
        ensemble = make_fold_ensemble(pipe, [0.1, 100.0],
                                      param="brainageregressor__estimator__alpha").fit(X, age)
        corrected = ensemble.predict(X, age=age)
        expected = np.mean([m.predict(X, age=age) for m in ensemble.estimators_], axis=0)
        np.testing.assert_allclose(corrected, expected)
        with pytest.raises(ValueError, match="needs each subject's chronological age"):
            ensemble.predict(X)
    predicted, both_corrected = predict_both(ensemble, X, age)
    np.testing.assert_allclose(both_corrected, corrected)
    np.testing.assert_allclose(predicted, np.mean(
        [m[-1].estimator_.predict(m[0].transform(X)) for m in ensemble.estimators_], axis=0))
    result = cross_val_brain_age(ensemble, X, age, cv=3, random_state=0)
    assert np.all(np.isfinite(result.corrected))


def test_clone_and_pickle():
    X, age = _data()
    ensemble = make_fold_ensemble(Ridge(), [1.0, 2.0], param="alpha").fit(X, age)
    again = pickle.loads(pickle.dumps(ensemble))
    np.testing.assert_array_equal(again.predict(X), ensemble.predict(X))
    assert clone(ensemble).get_params()["values"] == (1.0, 2.0)


def test_refusals_name_the_parameter():
    X, age = _data()
    with pytest.raises(ValueError, match=r"'anatclembedder__fold' is not a parameter of "
                                         r"Pipeline.*'ridge', 'standardscaler'"):
        make_fold_ensemble(make_pipeline(StandardScaler(), Ridge()),
                           param="anatclembedder__fold").fit(X, age)
    with pytest.raises(ValueError, match="values is empty"):
        FoldEnsemble(Ridge(), param="alpha", values=[]).fit(X, age)
    with pytest.raises(TypeError, match="values must be an iterable"):
        FoldEnsemble(Ridge(), param="alpha", values=3).fit(X, age)
    assert not hasattr(make_fold_ensemble(Ridge(), param="alpha"), "predict_proba")


def test_the_one_line_for_the_released_folds():
    """The documented line builds one member per released fold (nothing is downloaded here)."""
    pipe = make_pipeline(AnatCLEmbedder(pretrained="anatcl-global", conform=True),
                         BrainAgeRegressor())
    ensemble = make_fold_ensemble(pipe)
    assert ensemble.param == "anatclembedder__fold" and ensemble.values == (0, 1, 2, 3, 4)
    members = [clone(pipe).set_params(**{ensemble.param: v}) for v in ensemble.values]
    assert [m[0].fold for m in members] == [0, 1, 2, 3, 4]


@pytest.mark.filterwarnings("ignore::anatcl_sklearn.GridWarning")
def test_encoder_folders_as_folds(narrow_resnet, tmp_path):
    """At tiny scale: two encoders saved as folders, one pipeline per folder, averaged."""
    brains = make_synthetic_brains(24, shape=(24, 28, 24), random_state=0)
    folders = []
    for k in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GridWarning)
            encoder = AnatCLEmbedder(max_epochs=1, batch_size=8, verbose=0, random_state=k)
            encoder.fit(brains.images[:12], age=brains.age[:12], anatomy=brains.anatomy[:12])
        encoder.save_pretrained(tmp_path / f"fold{k}")
        folders.append(str(tmp_path / f"fold{k}"))
    pipe = make_pipeline(AnatCLEmbedder(verbose=0), BrainAgeRegressor(cv=3, random_state=0))
    ensemble = make_fold_ensemble(pipe, folders, param="anatclembedder__pretrained")
    test = slice(12, None)
    ensemble.fit(brains.images[:12], brains.age[:12])
    members = [clone(pipe).set_params(anatclembedder__pretrained=f)
               .fit(brains.images[:12], brains.age[:12]) for f in folders]
    single = [m.predict(brains.images[test], age=brains.age[test]) for m in members]
    assert not np.allclose(single[0], single[1])  # two encoders, two answers
    np.testing.assert_allclose(ensemble.predict(brains.images[test], age=brains.age[test]),
                               np.mean(single, axis=0), rtol=1e-5)


@parametrize_with_checks([FoldEnsemble(Ridge(), param="alpha", values=(0.1, 1.0)),
                          FoldEnsemble(LogisticRegression(), param="C", values=(0.1, 1.0))])
def test_sklearn_common_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Can't check dok sparse matrix")
        check(estimator)


def test_averaging_corrected_members_equals_correcting_the_average():
    """The docs' claim: with correction="beheshti" the mean of the members' corrected brain
    ages is the averaged prediction corrected by the line of the averaged out-of-fold ones."""
    X, age = _data()
    pipe = make_pipeline(StandardScaler(), BrainAgeRegressor(Ridge(), random_state=0))
    ensemble = make_fold_ensemble(pipe, [0.1, 30.0, 3000.0],
                                  param="brainageregressor__estimator__alpha").fit(X, age)
    oof = np.mean([m[-1].oof_predictions_ for m in ensemble.estimators_], axis=0)
    slope, intercept = np.polyfit(age, oof, 1)
    raw, corrected = predict_both(ensemble, X, age)
    np.testing.assert_allclose(corrected, raw + age - (slope * age + intercept))
    np.testing.assert_allclose(ensemble.predict(X, age=age), corrected)
