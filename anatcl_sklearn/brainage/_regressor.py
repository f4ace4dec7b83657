"""BrainAgeRegressor: a regressor of age whose bias towards the mean age is corrected.

The correction's line is fitted on out-of-fold predictions of the training data
(:func:`sklearn.model_selection.cross_val_predict` inside ``fit``), never on the inner
model's predictions of the subjects it was trained on, and never on test subjects.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import numpy as np
from sklearn.base import (
    BaseEstimator,
    MetaEstimatorMixin,
    RegressorMixin,
    clone,
    is_classifier,
)
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold, check_cv, cross_val_predict
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from ..losses._options import validate_constraints

__all__ = ["CORRECTIONS", "BrainAgeRegressor", "brain_age_gap"]

#: The corrections ``BrainAgeRegressor(correction=...)`` knows (None: no correction).
CORRECTIONS = ("beheshti", "de_lange")


def _check_finite_age(age: Any, what: str) -> None:
    if np.asarray(age).dtype == bool:  # True/False would be taken as ages 1 and 0
        raise ValueError(f"{what} must be numbers (chronological age in years); got booleans.")
    try:
        values = np.asarray(age, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers (chronological age in years); got "
                         f"{type(age).__name__}.") from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{what} holds {bad.size} missing or infinite value(s) (first at "
                         f"position {bad[0]}: {float(values[bad[0]])!r}); drop those subjects or "
                         "give their age.")


def check_age(age: Any, n_samples: int, what: str) -> np.ndarray:
    """``age`` as a finite float array of ``n_samples`` values, or a ValueError naming ``what``."""
    if np.asarray(age).dtype == bool:
        raise ValueError(f"{what} must be numbers (chronological age in years); got booleans.")
    try:
        values = np.asarray(age, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers (chronological age in years); got "
                         f"{type(age).__name__}.") from None
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"{what} must be one age per subject, shape ({n_samples},); got shape "
                         f"{values.shape}.")
    if len(values) != n_samples:
        raise ValueError(f"{what} has {len(values)} values for {n_samples} subjects.")
    _check_finite_age(values, what)
    return values


class BrainAgeRegressor(MetaEstimatorMixin, RegressorMixin, BaseEstimator):
    """Brain-age regressor with the linear age-bias correction fitted out of fold.

    A regressor of age shrinks its predictions towards the training mean: the young look
    older and the old younger, so the brain-age gap (predicted minus chronological age)
    correlates negatively with age, a regression-to-the-mean artefact rather than a
    property of the brains. The standard remedy (Beheshti et al. 2019; de Lange & Cole
    2020) fits a line of the predictions on chronological age, ``predicted ≈ slope * age +
    intercept``, and removes it:

    - ``correction="beheshti"`` (default): ``corrected = predicted + age - (slope * age +
      intercept)``; the corrected gap is the residual ``predicted - (slope * age +
      intercept)``, uncorrelated with age on the data the line was fitted on;
    - ``correction="de_lange"``: ``corrected = (predicted - intercept) / slope``
      (Cole et al. 2018's form, as de Lange & Cole 2020 write it); the corrected gap is the
      same residual divided by ``slope``;
    - ``correction=None``: ``predict`` returns the inner model's predictions.

    ``fit(X, y)`` (``y``: chronological age) fits the inner ``estimator`` on all of the
    training data, and fits the line on **out-of-fold** predictions of the same data
    (:func:`~sklearn.model_selection.cross_val_predict` with ``cv``): predictions of
    subjects the inner model did not see, as test subjects will be. A line fitted on the
    inner model's in-sample predictions would measure its fit to the training set (nearly
    no shrinkage for a flexible model) and under-correct; a line fitted on test subjects
    would leak their age into the model. Inside an outer cross-validation only the outer
    training fold is seen.

    The correction needs each subject's chronological age at prediction time:
    ``predict(X, age=age)``. With scikit-learn's metadata routing
    (``sklearn.set_config(enable_metadata_routing=True)``) the regressor requests ``age`` in
    ``predict`` by default, so ``Pipeline.predict(X, age=age)`` routes it here;
    ``set_predict_request(age=False)`` turns that off. Because the corrected prediction
    uses the true age, its accuracy is inflated (a model that always predicts the mean is
    "corrected" to the exact age); :meth:`score` therefore scores the **uncorrected**
    predictions (R²), so that ``GridSearchCV`` selects the inner model on what it learnt.

    Parameters
    ----------
    estimator : regressor or None, default=None
        The inner regressor of age (cloned). None: ``Ridge(alpha=1.0)``. A classifier is
        refused.
    cv : int or cross-validation splitter, default=5
        Folds of the out-of-fold predictions the correction is fitted on. An int ``k``
        means ``KFold(k, shuffle=True, random_state=random_state)`` (shuffled: training
        sets are often sorted by age, and unshuffled folds would extrapolate).
    correction : {"beheshti", "de_lange"} or None, default="beheshti"
        The correction's form (above).
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling of ``cv`` when it is an int.

    Attributes
    ----------
    estimator_ : regressor
        The inner regressor, fitted on all of the training data.
    slope_, intercept_ : float
        The line ``predicted ≈ slope_ * age + intercept_`` fitted on the out-of-fold
        predictions (``slope_ = 1``, ``intercept_ = 0`` when ``correction`` is None).
    oof_predictions_ : ndarray of shape (n_samples,)
        The out-of-fold predictions of the training data the line was fitted on.
    n_features_in_ : int
        Number of features seen in ``fit``.

    References
    ----------
    Beheshti, I., Nugent, S., Potvin, O., Duchesne, S. (2019). Bias-adjustment in
    neuroimaging-based brain age frameworks: a robust scheme. NeuroImage: Clinical 24.
    de Lange, A.-M. G., Cole, J. H. (2020). Commentary: Correction procedures in brain-age
    prediction. NeuroImage: Clinical 26.

    Examples
    --------
    >>> import numpy as np
    >>> from anatcl_sklearn.brainage import BrainAgeRegressor
    >>> rng = np.random.default_rng(0)
    >>> age = rng.uniform(20, 80, 200)
    >>> X = age[:, None] + rng.normal(0, 15, (200, 5))
    >>> model = BrainAgeRegressor(random_state=0).fit(X, age)
    >>> gap = model.brain_age_gap(X, age)   # corrected brain age minus age
    >>> round(float(np.corrcoef(gap, age)[0, 1]), 1)
    0.0
    """

    __metadata_request__predict: ClassVar[dict[str, bool]] = {"age": True}

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "estimator": [HasMethods(["fit", "predict"]), None],
        "cv": ["cv_object"],
        "correction": [StrOptions(set(CORRECTIONS)), None],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator: Any = None, *, cv: Any = 5,
                 correction: str | None = "beheshti", random_state: Any = None) -> None:
        self.estimator = estimator
        self.cv = cv
        self.correction = correction
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = Ridge() if self.estimator is None else self.estimator
        try:
            inner_tags = inner.__sklearn_tags__()
        except AttributeError:
            return tags
        tags.input_tags.sparse = inner_tags.input_tags.sparse
        tags.input_tags.allow_nan = inner_tags.input_tags.allow_nan
        return tags

    def _splitter(self) -> Any:
        if isinstance(self.cv, numbers.Integral) and not isinstance(self.cv, bool):
            return KFold(int(self.cv), shuffle=True, random_state=self.random_state)
        return check_cv(self.cv)

    def fit(self, X: Any, y: Any) -> BrainAgeRegressor:
        """Fit the inner regressor on all of ``X`` and the correction on out-of-fold predictions.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features (embeddings, for instance).
        y : array-like of shape (n_samples,)
            Chronological age (finite numbers).

        Returns
        -------
        self : BrainAgeRegressor
            Fitted.

        Raises
        ------
        TypeError
            If ``estimator`` is a classifier.
        ValueError
            If an age is missing or infinite, if there are fewer subjects than ``cv``
            folds, if every training age is the same (no line to fit), or if
            ``correction="de_lange"`` and the out-of-fold predictions do not increase with
            age (a slope of at most 0, which the division cannot undo).
        """
        validate_constraints(self._parameter_constraints, self.get_params(deep=False),
                             type(self).__name__)
        inner = Ridge() if self.estimator is None else self.estimator
        if _is_classifier(inner):
            raise TypeError(
                f"BrainAgeRegressor's estimator must be a regressor of age; got "
                f"{type(inner).__name__}, a classifier. Use a regressor such as "
                "Ridge, or the classifier on its own for a diagnosis.")
        if y is None:
            raise ValueError("BrainAgeRegressor requires y to be passed, but the target y is "
                             "None: give the chronological age of each training subject.")
        _check_finite_age(y, "y (chronological age)")
        X, y = validate_data(self, X, y, y_numeric=True, accept_sparse=True,
                             ensure_all_finite=not self.__sklearn_tags__().input_tags.allow_nan)
        splitter = self._splitter()
        n_splits = splitter.get_n_splits(X, y)
        if X.shape[0] < max(n_splits, 2):
            raise ValueError(
                f"BrainAgeRegressor needs at least {max(n_splits, 2)} training subjects for "
                f"its cv={n_splits} folds of out-of-fold predictions; got "
                f"n_samples={X.shape[0]}. Lower "
                "cv or give more subjects.")
        if self.correction is None:
            slope, intercept, oof = 1.0, 0.0, np.full(X.shape[0], np.nan)
        else:
            oof = np.asarray(cross_val_predict(clone(inner), X, y, cv=splitter), dtype=float)
            slope, intercept = fit_bias_line(y, oof)
            if self.correction == "de_lange" and slope <= 0:
                raise ValueError(
                    f"correction='de_lange' divides by the slope of the out-of-fold "
                    f"predictions on age, and that slope is {slope:.3g}: the inner model "
                    "predicts no increase with age. Use correction='beheshti', or a model "
                    "that learns age.")
        self.estimator_ = clone(inner).fit(X, y)
        self.slope_ = float(slope)
        self.intercept_ = float(intercept)
        self.oof_predictions_ = oof
        return self

    def predict(self, X: Any, age: Any = None) -> np.ndarray:
        """Brain age: the inner model's prediction, corrected with each subject's age.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        age : array-like of shape (n_samples,) or None, default=None
            Chronological age; required unless ``correction`` is None.

        Returns
        -------
        brain_age : ndarray of shape (n_samples,)
            Corrected predictions (the inner model's when ``correction`` is None).

        Raises
        ------
        ValueError
            If ``age`` is missing while a correction is on, of the wrong length, or holds
            missing or infinite values.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse=True,
                          ensure_all_finite=not self.__sklearn_tags__().input_tags.allow_nan)
        predicted = np.asarray(self.estimator_.predict(X), dtype=float)
        if self.correction is None:
            return predicted
        if age is None:
            raise ValueError(
                f"BrainAgeRegressor(correction={self.correction!r}).predict needs each "
                "subject's chronological age: predict(X, age=age). In a Pipeline, pass "
                "age=age to its predict with sklearn.set_config(enable_metadata_routing=True) "
                "(the regressor requests it). scikit-learn's cross_val_predict and scorers "
                "pass no metadata to predict: use anatcl_sklearn.brainage.cross_val_brain_age, "
                "or correction=None for the uncorrected predictions.")
        return self.correct(predicted, age)

    def correct(self, predicted: Any, age: Any) -> np.ndarray:
        """Apply the fitted correction to predictions of the inner model.

        Parameters
        ----------
        predicted : array-like of shape (n_samples,)
            Uncorrected predictions, e.g. ``self.estimator_.predict(X)``.
        age : array-like of shape (n_samples,)
            Chronological age.

        Returns
        -------
        corrected : ndarray of shape (n_samples,)
            The corrected brain age (``predicted`` itself when ``correction`` is None).
        """
        check_is_fitted(self)
        predicted = np.asarray(predicted, dtype=float).reshape(-1)
        age = check_age(age, len(predicted), "age")
        if self.correction is None:
            return predicted
        if self.correction == "de_lange":
            return (predicted - self.intercept_) / self.slope_
        return predicted + age - (self.slope_ * age + self.intercept_)

    def brain_age_gap(self, X: Any, age: Any) -> np.ndarray:
        """The brain-age gap: corrected brain age minus chronological age.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        age : array-like of shape (n_samples,)
            Chronological age.

        Returns
        -------
        gap : ndarray of shape (n_samples,)
            ``predict(X, age=age) - age`` (positive: a brain that looks older).
        """
        check_is_fitted(self)
        age_values = check_age(age, _n_samples(X), "age")
        return self.predict(X, age=age_values) - age_values

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R² of the **uncorrected** predictions against chronological age ``y``.

        The corrected predictions use the true age and would score a model that always
        predicts the mean as perfect; the uncorrected ones measure what the model learnt,
        which is what a grid search should select on.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features.
        y : array-like of shape (n_samples,)
            Chronological age.
        sample_weight : array-like of shape (n_samples,) or None, default=None
            Sample weights.

        Returns
        -------
        score : float
            R² of ``self.estimator_.predict(X)``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, accept_sparse=True,
                          ensure_all_finite=not self.__sklearn_tags__().input_tags.allow_nan)
        return float(r2_score(y, self.estimator_.predict(X), sample_weight=sample_weight))


def fit_bias_line(age: Any, predicted: Any) -> tuple[float, float]:
    """Least-squares line ``predicted ≈ slope * age + intercept``; a ValueError if age is constant."""
    age = np.asarray(age, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if np.ptp(age) == 0:
        raise ValueError(f"Every training age is {float(age[0])!r}: the age-bias correction needs a "
                         "range of ages to fit its line.")
    slope, intercept = np.polyfit(age, predicted, 1)
    return float(slope), float(intercept)


def _is_classifier(estimator: Any) -> bool:
    try:
        return bool(is_classifier(estimator))
    except AttributeError:  # no scikit-learn tags: the old attribute, if any
        return getattr(estimator, "_estimator_type", None) == "classifier"


def _n_samples(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def brain_age_gap(estimator: Any, X: Any, age: Any) -> np.ndarray:
    """The brain-age gap of a fitted brain-age model or pipeline, in one call.

    Parameters
    ----------
    estimator : BrainAgeRegressor or Pipeline ending in one
        Fitted.
    X : array-like or list of images or paths
        What ``estimator.predict`` takes (images, for a pipeline starting with
        :class:`~anatcl_sklearn.AnatCLEmbedder`).
    age : array-like of shape (n_samples,)
        Chronological age.

    Returns
    -------
    gap : ndarray of shape (n_samples,)
        ``estimator.predict(X, age=age) - age``.

    Raises
    ------
    ValueError
        If ``age`` is not one finite number per subject.
    """
    age_values = check_age(age, _n_samples(X), "age")
    return np.asarray(estimator.predict(X, age=age_values), dtype=float) - age_values
