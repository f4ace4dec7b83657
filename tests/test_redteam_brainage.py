"""Red-team pass over anatcl_sklearn.brainage: scores that use the true age, group splitters,
and a wrong estimator found only after every fold was fitted."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from anatcl_sklearn.brainage import (
    BrainAgeRegressor,
    cross_val_brain_age,
    make_fold_ensemble,
)


@pytest.fixture
def cohort():
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 80, 60)
    X = age[:, None] + rng.normal(0, 15, (60, 4))
    return X, age


def test_fold_ensemble_score_is_the_uncorrected_r2_as_the_regressor_scores(cohort):
    """With age=age the ensemble scored the corrected predictions: an inflated R²."""
    X, age = cohort
    ensemble = make_fold_ensemble(
        make_pipeline(StandardScaler(), BrainAgeRegressor(random_state=0)), folds=[3, 4],
        param="brainageregressor__cv").fit(X, age)
    uncorrected = np.mean([m.score(X, age) for m in ensemble.estimators_])
    members = [m[-1].estimator_.predict(m[:-1].transform(X)) for m in ensemble.estimators_]
    from sklearn.metrics import r2_score

    expected = r2_score(age, np.mean(members, axis=0))
    assert ensemble.score(X, age, age=age) == pytest.approx(expected)
    assert ensemble.score(X, age) == pytest.approx(expected)  # no age needed
    assert abs(expected - uncorrected) < 0.05


def test_cross_val_brain_age_takes_groups(cohort):
    X, age = cohort
    groups = np.repeat(np.arange(30), 2)  # two sessions per subject
    result = cross_val_brain_age(BrainAgeRegressor(random_state=0), X, age,
                                 cv=GroupKFold(3), groups=groups)
    for g in range(30):
        assert len(set(result.fold[groups == g])) == 1


def test_cross_val_brain_age_refuses_a_wrong_estimator_before_fitting(cohort, monkeypatch):
    X, age = cohort
    fitted = []
    monkeypatch.setattr(BrainAgeRegressor, "fit",
                        lambda self, *a, **k: fitted.append(1) or self)
    search = GridSearchCV(BrainAgeRegressor(), {"correction": ["beheshti"]})
    with pytest.raises(TypeError, match="GridSearchCV"):
        cross_val_brain_age(search, X, age)
    assert not fitted


def test_boolean_ages_are_refused(cohort):
    """A mask passed where the age goes (age > 50) trained a model of 0s and 1s silently."""
    X, age = cohort
    with pytest.raises(ValueError, match="booleans"):
        BrainAgeRegressor().fit(X, age > 50)
    model = BrainAgeRegressor(random_state=0).fit(X, age)
    with pytest.raises(ValueError, match="booleans"):
        model.predict(X, age=age > 50)
