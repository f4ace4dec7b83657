"""Cross-validated brain age: held-out predictions, uncorrected and corrected, in one call.

scikit-learn's :func:`~sklearn.model_selection.cross_val_predict` passes no metadata to
``predict`` (a TODO of its metadata routing), so it cannot give the correction each held-out
subject's age; :func:`cross_val_brain_age` does, and returns both predictions.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.model_selection import KFold, check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils import Bunch, _safe_indexing
from sklearn.utils._metadata_requests import (
    MetadataRouter,
    MethodMapping,
    process_routing,
)
from sklearn.utils.validation import _num_samples

from ._regressor import BrainAgeRegressor, check_age

__all__ = ["cross_val_brain_age", "is_brain_age_model", "predict_both", "predict_uncorrected"]


def predict_both(estimator: Any, X: Any, age: Any) -> tuple[np.ndarray, np.ndarray]:
    """Uncorrected and corrected brain age of a fitted model (regressor, pipeline, ensemble).

    Parameters
    ----------
    estimator : BrainAgeRegressor, Pipeline ending in one, or FoldEnsemble of those
        Fitted.
    X : array-like or list of images or paths
        What ``estimator.predict`` takes.
    age : array-like of shape (n_samples,)
        Chronological age.

    Returns
    -------
    predicted, corrected : ndarray of shape (n_samples,)
        The inner model's predictions and the corrected brain age.

    Raises
    ------
    TypeError
        If ``estimator`` has no :class:`BrainAgeRegressor` at its end.
    """
    from ._ensemble import FoldEnsemble

    if isinstance(estimator, BrainAgeRegressor):
        predicted = np.asarray(estimator.estimator_.predict(X), dtype=float)
        return predicted, estimator.correct(predicted, age)
    if isinstance(estimator, Pipeline):
        return predict_both(estimator[-1], estimator[:-1].transform(X), age)
    if isinstance(estimator, FoldEnsemble):
        pairs = [predict_both(member, X, age) for member in estimator.estimators_]
        return (np.mean([p for p, _ in pairs], axis=0), np.mean([c for _, c in pairs], axis=0))
    raise TypeError(f"Expected a BrainAgeRegressor, a Pipeline ending in one or a FoldEnsemble "
                    f"of those; got {type(estimator).__name__}.")


def is_brain_age_model(estimator: Any) -> bool:
    """Whether ``estimator`` (fitted or not) is a BrainAgeRegressor, a Pipeline ending in one,
    or a FoldEnsemble of those: what :func:`predict_both` takes."""
    from ._ensemble import FoldEnsemble

    if isinstance(estimator, BrainAgeRegressor):
        return True
    if isinstance(estimator, Pipeline):
        return len(estimator.steps) > 0 and is_brain_age_model(estimator.steps[-1][1])
    if isinstance(estimator, FoldEnsemble):
        return is_brain_age_model(estimator.estimator)
    return False


def predict_uncorrected(estimator: Any, X: Any) -> np.ndarray:
    """The inner models' (uncorrected) brain age of a fitted brain-age model: no age needed."""
    from ._ensemble import FoldEnsemble

    if isinstance(estimator, BrainAgeRegressor):
        return np.asarray(estimator.estimator_.predict(X), dtype=float)
    if isinstance(estimator, Pipeline):
        return predict_uncorrected(estimator[-1], estimator[:-1].transform(X))
    if isinstance(estimator, FoldEnsemble):
        return np.mean([predict_uncorrected(m, X) for m in estimator.estimators_], axis=0)
    raise TypeError(f"Expected a BrainAgeRegressor, a Pipeline ending in one or a FoldEnsemble "
                    f"of those; got {type(estimator).__name__}.")


def _slice(params: dict[str, Any], indices: np.ndarray, n_samples: int) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        try:
            per_sample = value is not None and _num_samples(value) == n_samples
        except TypeError:
            per_sample = False
        out[key] = _safe_indexing(value, indices) if per_sample else value
    return out


def cross_val_brain_age(estimator: Any, X: Any, age: Any, *, cv: Any = 5,
                        params: dict[str, Any] | None = None,
                        random_state: Any = None, groups: Any = None) -> Bunch:
    """Held-out brain age of every subject: uncorrected, corrected and their gaps.

    For each split, a clone of ``estimator`` is fitted on the training subjects
    (``fit(X_train, age_train, **params)``; its correction is fitted inside that training
    fold only) and predicts the held-out ones with their age.

    Parameters
    ----------
    estimator : BrainAgeRegressor, Pipeline ending in one, or FoldEnsemble of those
        Unfitted (cloned).
    X : array-like or list of images or paths
        Features, or images for a pipeline that starts with an embedder.
    age : array-like of shape (n_samples,)
        Chronological age: the target and the correction's covariate.
    cv : int or cross-validation splitter, default=5
        Outer folds; an int ``k`` means ``KFold(k, shuffle=True, random_state=random_state)``.
    params : dict or None, default=None
        Fit metadata (``{"age": age, "anatomy": anatomy}``), sliced per fold and routed as
        ``cross_validate`` routes them (metadata routing on: by each step's requests; off:
        passed to ``estimator.fit`` as they are, e.g. ``anatclembedder__age``).
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling of an int ``cv``.
    groups : array-like of shape (n_samples,) or None, default=None
        Group labels for a group splitter (``cv=GroupKFold(5)``, ``groups=participant_id``):
        keep the sessions of one subject in the same fold, or their held-out predictions
        are of a brain the model was trained on.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``age``, ``predicted`` (uncorrected), ``corrected``, ``gap`` (``predicted - age``),
        ``corrected_gap`` (``corrected - age``) and ``fold`` (each subject's test fold),
        arrays of shape (n_samples,).

    Raises
    ------
    ValueError
        If ``age`` is not one finite number per subject, or ``groups`` not one label each.
    TypeError
        If ``estimator`` does not end in a :class:`BrainAgeRegressor` (before any fitting).
    """
    if not is_brain_age_model(estimator):
        raise TypeError(f"cross_val_brain_age needs a BrainAgeRegressor, a Pipeline ending in "
                        f"one or a FoldEnsemble of those; got {type(estimator).__name__}. (A "
                        "search such as GridSearchCV: cross-validate its best_estimator_, or "
                        "put the search inside BrainAgeRegressor as its estimator.)")
    n_samples = _num_samples(X)
    age = check_age(age, n_samples, "age")
    if groups is not None and _num_samples(groups) != n_samples:
        raise ValueError(f"groups has {_num_samples(groups)} labels for {n_samples} subjects.")
    params = {} if params is None else dict(params)
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        splitter = KFold(int(cv), shuffle=True, random_state=random_state)
    else:
        splitter = check_cv(cv)
    if sklearn.get_config()["enable_metadata_routing"]:
        router = MetadataRouter(owner="cross_val_brain_age").add(
            estimator=estimator, method_mapping=MethodMapping().add(caller="fit", callee="fit"))
        fit_params = process_routing(router, "fit", **params).estimator.fit
    else:
        fit_params = params
    predicted = np.empty(n_samples)
    corrected = np.empty(n_samples)
    fold = np.empty(n_samples, dtype=int)
    for k, (train, test) in enumerate(splitter.split(np.zeros((n_samples, 1)), age, groups)):
        model = clone(estimator).fit(_safe_indexing(X, train), age[train],
                                     **_slice(dict(fit_params), train, n_samples))
        predicted[test], corrected[test] = predict_both(model, _safe_indexing(X, test),
                                                        age[test])
        fold[test] = k
    return Bunch(age=age, predicted=predicted, corrected=corrected, gap=predicted - age,
                 corrected_gap=corrected - age, fold=fold)
