"""The released folds together: one clone of a pipeline per fold, predictions averaged.

scikit-learn's :class:`~sklearn.ensemble.VotingRegressor` and ``VotingClassifier`` would do,
but their ``predict`` takes no metadata, so a brain-age member could not receive ``age``;
:class:`FoldEnsemble` is the same averaging with metadata routed to every member.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import sklearn
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._available_if import available_if
from sklearn.utils._metadata_requests import (
    MetadataRouter,
    MethodMapping,
    process_routing,
)
from sklearn.utils.validation import check_is_fitted

__all__ = ["FoldEnsemble", "make_fold_ensemble"]


def _routing() -> bool:
    return bool(sklearn.get_config()["enable_metadata_routing"])


class FoldEnsemble(MetaEstimatorMixin, BaseEstimator):
    """One clone of ``estimator`` per value of ``param``, fitted alike, predictions averaged.

    Meant for the five released folds of AnatCL's weights: ``param="anatclembedder__fold"``
    and ``values=range(5)`` give five pipelines that differ only in the encoder's fold.
    A regressor's predictions are averaged; a classifier's probabilities are averaged
    (soft voting) and ``predict`` returns the most probable class. The ensemble is a
    regressor or a classifier as ``estimator`` is.

    Metadata (``age`` for a :class:`~anatcl_sklearn.brainage.BrainAgeRegressor`, ``age``
    and ``anatomy`` for an embedder's ``fit``) reaches every member: with scikit-learn's
    metadata routing by the members' requests, without it as given.

    Parameters
    ----------
    estimator : estimator
        The member template (a Pipeline, usually), cloned once per value.
    param : str, default="anatclembedder__fold"
        The parameter that differs between members (``set_params`` name). For encoders
        you trained yourself, one folder per fold: ``"anatclembedder__pretrained"``.
    values : iterable, default=(0, 1, 2, 3, 4)
        One member per value.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted members, in the order of ``values``.
    classes_ : ndarray
        The classes (classifiers only).
    """

    def __init__(self, estimator: Any, *, param: str = "anatclembedder__fold",
                 values: Iterable[Any] = (0, 1, 2, 3, 4)) -> None:
        self.estimator = estimator
        self.param = param
        self.values = values

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        inner = self.estimator.__sklearn_tags__()
        tags.estimator_type = inner.estimator_type
        tags.input_tags = inner.input_tags
        tags.target_tags = inner.target_tags
        if inner.regressor_tags is not None:
            tags.regressor_tags = inner.regressor_tags
        if inner.classifier_tags is not None:
            tags.classifier_tags = inner.classifier_tags
        return tags

    def _check(self) -> list[Any]:
        if not isinstance(self.param, str) or not self.param:
            raise TypeError(f"FoldEnsemble's param must be a parameter name (str); got "
                            f"{self.param!r}.")
        try:
            values = list(self.values)
        except TypeError:
            raise TypeError(f"FoldEnsemble's values must be an iterable of parameter values; "
                            f"got {type(self.values).__name__}.") from None
        if not values:
            raise ValueError("FoldEnsemble's values is empty: give one value per member.")
        valid = self.estimator.get_params(deep=True)
        if self.param not in valid:
            close = sorted(name for name in valid if name.endswith(self.param.split("__")[-1]))
            hint = (f" Parameters with that ending: {close}." if close else
                    f" Its steps (or nested estimators): "
                    f"{sorted({n.split('__')[0] for n in valid if '__' in n})}.")
            raise ValueError(f"FoldEnsemble's param {self.param!r} is not a parameter of "
                             f"{type(self.estimator).__name__}.{hint}")
        return values

    def _params(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if _routing():
            return dict(getattr(process_routing(self, method, **params).estimator, method))
        return params

    def fit(self, X: Any, y: Any = None, **params: Any) -> FoldEnsemble:
        """Fit one clone of ``estimator`` per value of ``param``.

        Parameters
        ----------
        X : array-like or list of images or paths
            Training data.
        y : array-like or None, default=None
            Target.
        **params : dict
            Fit metadata for every member (routed by their requests when metadata
            routing is on).

        Returns
        -------
        self : FoldEnsemble
            Fitted.

        Raises
        ------
        ValueError
            If ``param`` is not a parameter of ``estimator`` or ``values`` is empty.
        """
        values = self._check()
        fit_params = self._params("fit", params)
        members = []
        for value in values:
            member = clone(self.estimator).set_params(**{self.param: value})
            members.append(member.fit(X, y, **fit_params))
        self.estimators_ = members
        if hasattr(members[0], "n_features_in_"):
            self.n_features_in_ = members[0].n_features_in_
        if is_classifier(self):
            self.classes_ = members[0].classes_
            for member in members[1:]:
                if not np.array_equal(member.classes_, self.classes_):
                    raise ValueError("FoldEnsemble's members learnt different classes.")
        return self

    def predict(self, X: Any, **params: Any) -> np.ndarray:
        """Average of the members' predictions (regressor) or the soft vote (classifier).

        Parameters
        ----------
        X : array-like or list of images or paths
            Data.
        **params : dict
            Predict metadata for every member, e.g. ``age=age`` for brain age.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predictions.
        """
        check_is_fitted(self)
        if is_classifier(self):
            return self.classes_[np.argmax(self.predict_proba(X, **params), axis=1)]
        predict_params = self._params("predict", params)
        return np.mean([np.asarray(m.predict(X, **predict_params), dtype=float)
                        for m in self.estimators_], axis=0)

    @available_if(lambda self: hasattr(self.estimator, "predict_proba"))
    def predict_proba(self, X: Any, **params: Any) -> np.ndarray:
        """Average of the members' class probabilities (classifiers only).

        Parameters
        ----------
        X : array-like or list of images or paths
            Data.
        **params : dict
            Metadata for every member's ``predict_proba``.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Mean probabilities, columns in the order of ``classes_``.

        """
        check_is_fitted(self)
        proba_params = self._params("predict_proba", params)
        return np.mean([m.predict_proba(X, **proba_params) for m in self.estimators_], axis=0)

    def score(self, X: Any, y: Any, **params: Any) -> float:
        """R² (regressor) or accuracy (classifier) of :meth:`predict`.

        Members that are brain-age models (ending in a
        :class:`~anatcl_sklearn.brainage.BrainAgeRegressor`) are scored, as that regressor
        scores, on their **uncorrected** predictions averaged: the corrected ones use the true
        age and would inflate R²; no ``age`` is needed.

        Parameters
        ----------
        X : array-like or list of images or paths
            Data.
        y : array-like
            True target.
        **params : dict
            Metadata for the members' ``predict``, e.g. ``age=age``.

        Returns
        -------
        score : float
            The score.
        """
        from ._cv import is_brain_age_model, predict_uncorrected

        if not is_classifier(self) and is_brain_age_model(self):
            check_is_fitted(self)
            return float(r2_score(y, predict_uncorrected(self, X)))
        predicted = self.predict(X, **params)
        if is_classifier(self):
            return float(accuracy_score(y, predicted))
        return float(r2_score(y, predicted))

    def get_metadata_routing(self) -> MetadataRouter:
        """The routing of metadata to the members (scikit-learn's metadata routing).

        Returns
        -------
        routing : sklearn.utils.metadata_routing.MetadataRouter
            ``fit``, ``predict``, ``predict_proba`` routed to the same member method; ``score``
            to the members' ``predict``.
        """
        mapping = (MethodMapping().add(caller="fit", callee="fit")
                   .add(caller="predict", callee="predict")
                   .add(caller="score", callee="predict"))
        if hasattr(self.estimator, "predict_proba"):
            mapping = mapping.add(caller="predict_proba", callee="predict_proba")
        return MetadataRouter(owner=type(self).__name__).add(estimator=self.estimator,
                                                             method_mapping=mapping)


def make_fold_ensemble(estimator: Any, folds: Iterable[Any] = range(5), *,
                       param: str = "anatclembedder__fold") -> FoldEnsemble:
    """The five released folds together: ``FoldEnsemble(estimator, param=param, values=folds)``.

    Parameters
    ----------
    estimator : estimator
        A member template, e.g. ``make_pipeline(AnatCLEmbedder(pretrained="anatcl-global"),
        BrainAgeRegressor())``.
    folds : iterable, default=range(5)
        One member per value of ``param``: the released folds 0-4, or one folder per fold
        with ``param="anatclembedder__pretrained"``.
    param : str, default="anatclembedder__fold"
        The member parameter the folds set.

    Returns
    -------
    ensemble : FoldEnsemble
        Unfitted.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from anatcl_sklearn import AnatCLEmbedder
    >>> from anatcl_sklearn.brainage import BrainAgeRegressor, make_fold_ensemble
    >>> ensemble = make_fold_ensemble(make_pipeline(
    ...     AnatCLEmbedder(pretrained="anatcl-global", conform=True), BrainAgeRegressor()))
    >>> len(ensemble.values)
    5
    """
    return FoldEnsemble(estimator, param=param, values=tuple(folds))
