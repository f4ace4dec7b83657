"""Min-max scaling of anatomical measures, per region and per measure (the paper's gamma)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._typing import ArrayLike, FloatArray

__all__ = ["AnatomyScaler"]


class AnatomyScaler(TransformerMixin, BaseEstimator):
    """Scale anatomical measures to a range, separately for every region and measure.

    This is the normalisation :math:`\\gamma` of AnatCL (Eq. 2 of the paper): each of the
    ``n_regions x n_measures`` components (68 Desikan regions x CT, GMV, SA) is mapped
    linearly so that its minimum and maximum over the training subjects become
    ``feature_range``. Fit it on the training subjects only, then transform any split.

    Parameters
    ----------
    feature_range : tuple (min, max), default=(0, 1)
        Range of the transformed training data; ``min < max``, both finite.
    clip : bool, default=False
        Clip transformed values to ``feature_range``. Subjects outside the training
        range (for example from a test site) otherwise map outside it.

    Attributes
    ----------
    data_min_ : ndarray of shape (n_regions, n_measures)
        Per-component minimum seen in ``fit``.
    data_max_ : ndarray of shape (n_regions, n_measures)
        Per-component maximum seen in ``fit``.
    data_range_ : ndarray of shape (n_regions, n_measures)
        ``data_max_ - data_min_``.
    scale_ : ndarray of shape (n_regions, n_measures)
        Per-component factor: ``X_scaled = X * scale_ + min_``.
    min_ : ndarray of shape (n_regions, n_measures)
        Per-component offset.
    n_regions_ : int
        Number of regions seen in ``fit`` (second axis of X).
    n_measures_ : int
        Number of measures seen in ``fit`` (third axis of X).
    n_samples_seen_ : int
        Number of subjects seen in ``fit``.

    See Also
    --------
    sklearn.preprocessing.MinMaxScaler : The same scaling for 2-D ``(n_samples,
        n_features)`` arrays; use it for flattened anatomy features.

    Notes
    -----
    Inputs must be 3-D arrays ``(n_subjects, n_regions, n_measures)``, as returned by
    :func:`read_aparcstats2table` or :func:`~anatcl_sklearn.datasets.load_openbhb`;
    ``transform`` requires the ``(n_regions, n_measures)`` seen in ``fit``. Flattened
    2-D arrays are refused rather than guessed at: reshape them, or use
    :class:`~sklearn.preprocessing.MinMaxScaler`. Because inputs are not 2-D, the
    estimator does not set ``n_features_in_``; ``n_regions_`` and ``n_measures_`` take its
    place.

    A component that is constant in the training data (``max == min``) is treated as if
    its range were 1, as in scikit-learn's ``MinMaxScaler``: the training value maps to
    the low end of ``feature_range``, no NaN is produced, and ``inverse_transform`` stays
    exact.

    NaN and infinite values are refused with a ``ValueError``. Float32 input stays
    float32; other inputs are converted to float64. Inputs are never modified in place.

    Examples
    --------
    >>> import numpy as np
    >>> from anatcl_sklearn.anatomy import AnatomyScaler
    >>> X = np.array([[[1.0, 10.0]], [[3.0, 30.0]], [[2.0, 20.0]]])  # 3 subjects, 1 region
    >>> AnatomyScaler().fit_transform(X)[:, 0, :]
    array([[0. , 0. ],
           [1. , 1. ],
           [0.5, 0.5]])
    """

    def __init__(self, feature_range: tuple[float, float] = (0, 1), clip: bool = False) -> None:
        self.feature_range = feature_range
        self.clip = clip

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    def _check_params(self) -> tuple[float, float]:
        feature_range = self.feature_range
        if (
            not isinstance(feature_range, (tuple, list))
            or len(feature_range) != 2
            or not all(
                isinstance(v, numbers.Real) and not isinstance(v, bool) for v in feature_range
            )
        ):
            raise ValueError(
                "feature_range must be a tuple (min, max) of two real numbers, "
                f"got {feature_range!r}."
            )
        low, high = float(feature_range[0]), float(feature_range[1])
        if not (np.isfinite(low) and np.isfinite(high)) or low >= high:
            raise ValueError(
                "feature_range must be finite with min < max, "
                f"got {tuple(feature_range)!r}."
            )
        if not isinstance(self.clip, (bool, np.bool_)):
            raise TypeError(f"clip must be a bool, got {type(self.clip).__name__}.")
        return low, high

    def _validate_X(self, X: ArrayLike, *, reset: bool) -> np.ndarray:
        """Return X as a new float array of shape (n, R, M), checking it first."""
        if hasattr(X, "dtype") and np.issubdtype(X.dtype, np.complexfloating):
            raise TypeError("X must hold real numbers, got a complex array.")
        try:
            array = np.asarray(X)
            dtype = np.float32 if array.dtype == np.float32 else np.float64
            array = array.astype(dtype, copy=True)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "X must be an array-like of numbers of shape "
                f"(n_subjects, n_regions, n_measures); could not convert it: {exc}"
            ) from None
        if array.ndim != 3:
            hint = (
                " For flattened 2-D (n_samples, n_features) arrays use "
                "sklearn.preprocessing.MinMaxScaler, or reshape to 3-D."
                if array.ndim == 2
                else ""
            )
            raise ValueError(
                "X must be a 3-D array of shape (n_subjects, n_regions, n_measures), "
                f"got an array of shape {array.shape}.{hint}"
            )
        if array.shape[1] == 0 or array.shape[2] == 0:
            raise ValueError(
                f"X has shape {array.shape}; it needs at least one region and one measure."
            )
        if reset:
            if array.shape[0] == 0:
                raise ValueError(f"X has shape {array.shape}; fit needs at least one subject.")
        elif array.shape[1:] != (self.n_regions_, self.n_measures_):
            raise ValueError(
                f"X has shape {array.shape}, but {type(self).__name__} was fitted on "
                f"(n_subjects, {self.n_regions_}, {self.n_measures_}): "
                f"expected (n_subjects, {self.n_regions_}, {self.n_measures_})."
            )
        finite = np.isfinite(array)
        if not finite.all():
            subject, region, measure = np.argwhere(~finite)[0]
            raise ValueError(
                f"X contains {int((~finite).sum())} NaN or infinite value(s), e.g. at subject "
                f"{subject}, region {region}, measure {measure}; impute or drop them first."
            )
        return array

    def fit(self, X: ArrayLike, y: Any = None) -> AnatomyScaler:
        """Compute the per-region, per-measure minimum and maximum.

        Parameters
        ----------
        X : array-like of shape (n_subjects, n_regions, n_measures)
            Anatomical measures of the training subjects.
        y : None
            Ignored; present for API consistency.

        Returns
        -------
        self : AnatomyScaler
            The fitted scaler.
        """
        low, high = self._check_params()
        array = self._validate_X(X, reset=True)
        data_min = array.min(axis=0).astype(np.float64)
        data_max = array.max(axis=0).astype(np.float64)
        data_range = data_max - data_min
        # A zero range would divide by zero; a unit range keeps constant components at
        # the low end and inverse_transform exact.
        safe_range = np.where(data_range == 0.0, 1.0, data_range)
        self.data_min_ = data_min
        self.data_max_ = data_max
        self.data_range_ = data_range
        self.scale_ = (high - low) / safe_range
        self.min_ = low - data_min * self.scale_
        self.n_regions_ = array.shape[1]
        self.n_measures_ = array.shape[2]
        self.n_samples_seen_ = array.shape[0]
        return self

    def transform(self, X: ArrayLike) -> FloatArray:
        """Scale X with the minimum and maximum learned in ``fit``.

        Parameters
        ----------
        X : array-like of shape (n_subjects, n_regions, n_measures)
            Anatomical measures, with the regions and measures seen in ``fit``.

        Returns
        -------
        X_scaled : ndarray of shape (n_subjects, n_regions, n_measures)
            Scaled copy of X (float32 if X is float32, float64 otherwise).
        """
        check_is_fitted(self)
        low, high = self._check_params()
        array = self._validate_X(X, reset=False)
        out = array * self.scale_.astype(array.dtype) + self.min_.astype(array.dtype)
        if self.clip:
            np.clip(out, low, high, out=out)
        return out

    def inverse_transform(self, X: ArrayLike) -> FloatArray:
        """Map scaled values back to the original units.

        Parameters
        ----------
        X : array-like of shape (n_subjects, n_regions, n_measures)
            Scaled anatomical measures.

        Returns
        -------
        X_original : ndarray of shape (n_subjects, n_regions, n_measures)
            Copy of X in the units seen in ``fit``.
        """
        check_is_fitted(self)
        array = self._validate_X(X, reset=False)
        return (array - self.min_.astype(array.dtype)) / self.scale_.astype(array.dtype)
