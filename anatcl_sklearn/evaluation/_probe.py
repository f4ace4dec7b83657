"""Linear probes on frozen embeddings, the paper's downstream protocol.

The probe follows the reference brain-age code of the same authors
(EIDOSLAB/contrastive-brain-age-prediction, ``src/models/estimators.py``): ``Ridge`` with
``alpha`` in ``10 ** [-2, -1, 0, 1, 2]`` selected by 5-fold ``GridSearchCV`` on R², and
``LogisticRegression`` with ``C`` on the same grid selected on balanced accuracy. The AnatCL
release has no evaluation code; where we differ from the brain-age code we say so:

- features are standardised inside the grid search (the reference feeds raw features to
  ``saga`` with ``max_iter=150``, which often stops before converging);
- ``lbfgs`` with ``max_iter=2000`` replaces ``saga``;
- ``class_weight="balanced"``, so the probe optimises what balanced accuracy measures (rare
  groups such as PDD-NOS would otherwise be predicted as controls);
- the inner folds shrink when a training fold holds fewer subjects of a class than
  ``inner_cv`` (and the grid is skipped, C = 1, when a class has a single subject).
"""

from __future__ import annotations

import numbers
import os
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, check_memory
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from .._typing import ArrayLike, Images, PathLike, RandomState

from ._hashing import stable_hash
from ._results import ProbeResult
from ._tasks import KINDS, Task, get_task

if TYPE_CHECKING:
    import pandas as pd
    from joblib import Memory
    from sklearn.base import BaseEstimator
    from sklearn.pipeline import Pipeline

__all__ = ["PROBE_GRID", "embed", "linear_probe", "make_probe"]

#: Values of LogisticRegression's ``C`` and Ridge's ``alpha`` tried by the inner search.
PROBE_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _check_folds(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        raise ValueError(
            f"{name} must be an int >= 2{' or None' if allow_none else ''}; got {value!r}."
        )
    return int(value)


def make_probe(
    kind: str,
    *,
    inner_cv: int | None = 5,
    random_state: RandomState = None,
    n_jobs: int | None = None,
) -> GridSearchCV | Pipeline:
    """The paper's linear probe: standardise, then a small grid search on a linear model.

    Parameters
    ----------
    kind : {"classification", "regression"}
        ``LogisticRegression`` (``C`` in :data:`PROBE_GRID`, balanced class weights, chosen
        on balanced accuracy) or ``Ridge`` (``alpha`` in :data:`PROBE_GRID`, chosen on R²).
    inner_cv : int or None, default=5
        Folds of the inner grid search (stratified for classification, shuffled K-fold
        for regression). None fits the model once with ``C = 1`` / ``alpha = 1``.
    random_state : int, RandomState instance or None, default=None
        Shuffling of the inner folds.
    n_jobs : int or None, default=None
        Parallel jobs of the grid search.

    Returns
    -------
    probe : GridSearchCV or Pipeline
        An unfitted estimator.

    Examples
    --------
    >>> from anatcl_sklearn.evaluation import make_probe
    >>> make_probe("regression").param_grid
    {'ridge__alpha': [0.01, 0.1, 1.0, 10.0, 100.0]}
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}.")
    inner_cv = _check_folds(inner_cv, "inner_cv", allow_none=True)
    if kind == "classification":
        model = LogisticRegression(max_iter=2000, class_weight="balanced")
        param, scoring, splitter = "logisticregression__C", "balanced_accuracy", StratifiedKFold
    else:
        model = Ridge()
        param, scoring, splitter = "ridge__alpha", "r2", KFold
    pipe = make_pipeline(StandardScaler(), model)
    if inner_cv is None:
        return pipe
    return GridSearchCV(
        pipe,
        {param: list(PROBE_GRID)},
        cv=splitter(inner_cv, shuffle=True, random_state=random_state),
        scoring=scoring,
        n_jobs=n_jobs,
    )


def _transform(transformer, X, transformer_key=None):
    # Module-level so that joblib.Memory can cache it. The cache is keyed on X and on
    # transformer_key, a hash of the transformer by value: joblib's own hash of a fitted
    # skorch net changes from call to call (see _hashing).
    return transformer.transform(X)


def _check_transformer(transformer):
    if not hasattr(transformer, "transform"):
        raise TypeError(
            f"Expected a fitted transformer or pipeline with a transform method; got "
            f"{type(transformer).__name__}."
        )
    check_is_fitted(transformer)


def embed(
    transformer: BaseEstimator, X: Images, *, memory: PathLike | Memory | None = None
) -> np.ndarray:
    """Embed ``X`` with a fitted transformer, once: cached on disk when ``memory`` is given.

    Parameters
    ----------
    transformer : estimator
        A fitted transformer or pipeline, e.g. an :class:`~anatcl_sklearn.AnatCLEmbedder`.
    X : array-like or list of paths or images
        Its input (one entry per subject).
    memory : str, os.PathLike, joblib.Memory or None, default=None
        Cache folder (or :class:`joblib.Memory`). Calls with the same transformer (its
        parameters and fitted weights) and the same ``X`` read the embeddings from disk
        instead of recomputing them. Files behind paths are keyed by their paths, not their
        contents: clear the cache if files change.

    Returns
    -------
    embeddings : ndarray of shape (n_subjects, n_features)

    Raises
    ------
    TypeError
        If ``transformer`` has no ``transform`` method.
    sklearn.exceptions.NotFittedError
        If it is not fitted.
    """
    _check_transformer(transformer)
    if memory is None:
        embeddings = _transform(transformer, X)
    else:
        if isinstance(memory, os.PathLike):
            memory = os.fspath(memory)  # check_memory takes str or Memory only
        cached = check_memory(memory).cache(_transform, ignore=["transformer"])
        embeddings = cached(transformer, X, transformer_key=stable_hash(transformer))
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2:
        raise ValueError(
            f"{type(transformer).__name__}.transform returned an array of shape "
            f"{embeddings.shape}; expected (n_subjects, n_features)."
        )
    return embeddings


def _score(kind, y_true, y_pred):
    if kind == "classification":
        return balanced_accuracy_score(y_true, y_pred)
    return mean_absolute_error(y_true, y_pred)


def _check_task_size(task, labels, cv):
    """``(target, class_counts)`` of a task's labelled subjects, or a ValueError when they
    cannot fill ``cv`` outer folds: fewer than two classes, a class with fewer than ``cv``
    subjects, or fewer than ``2 * cv`` labelled subjects for regression. ``labels`` is
    ``task.labels(participants)`` (NaN: left out). :func:`linear_probe` checks this before
    probing; :func:`run_paper_table` and the gallery's data loader before any training."""
    target = labels[labels.notna().to_numpy()].to_numpy()
    if task.kind != "classification":
        target = target.astype(np.float64)
        if len(target) < 2 * cv:
            raise ValueError(
                f"Task {task.name!r}: {len(target)} labelled subjects are too few for cv={cv} "
                f"(at least {2 * cv} needed)."
            )
        return target, None
    classes, counts = np.unique(target, return_counts=True)
    class_counts = {_plain(c): int(n) for c, n in zip(classes, counts)}
    if len(classes) < 2:
        raise ValueError(
            f"Task {task.name!r}: need two classes, found {class_counts} among "
            f"{len(target)} labelled subjects (of {len(labels)})."
        )
    if counts.min() < cv:
        raise ValueError(
            f"Task {task.name!r}: the smallest class has {counts.min()} subjects "
            f"({class_counts}), fewer than cv={cv} folds; lower cv or add subjects."
        )
    return target, class_counts


def linear_probe(
    embeddings_or_transformer: ArrayLike | BaseEstimator,
    X: Images = None,
    y: pd.DataFrame | ArrayLike | None = None,
    task: str | Task | None = None,
    *,
    cv: int = 5,
    inner_cv: int | None = 5,
    random_state: RandomState = None,
    memory: PathLike | Memory | None = None,
    name: str | None = None,
    n_jobs: int | None = None,
) -> ProbeResult:
    """Cross-validate the paper's linear probe on frozen embeddings for one task.

    Outer folds are stratified for classification and shuffled K-fold for regression;
    inside each training fold, :func:`make_probe` picks ``C`` or ``alpha`` by an inner
    grid search. The score is the balanced accuracy or the mean absolute error on each
    outer test fold.

    Parameters
    ----------
    embeddings_or_transformer : array-like of shape (n_subjects, n_features) or estimator
        Precomputed embeddings, or a fitted transformer / pipeline whose
        ``transform(X)`` gives them (computed once, see ``memory``). The transformer is
        never refitted: the encoder stays frozen, as in the paper.
    X : array-like or list of paths or images, default=None
        Input of the transformer; must be None when embeddings are given.
    y : pandas.DataFrame or array-like of shape (n_subjects,)
        The cohort's participants table (the task's rule makes the labels), or raw values
        of the task's column (e.g. diagnosis strings, handedness codes, IQ scores).
        Subjects the task leaves out (other groups, missing values) are dropped.
    task : str or Task
        A :data:`TASKS` name, a :class:`Task`, or ``"classification"`` /
        ``"regression"`` to use ``y`` as given.
    cv : int, default=5
        Outer folds.
    inner_cv : int or None, default=5
        Inner grid-search folds (fewer when a class is too small; None: no grid).
    random_state : int, RandomState instance or None, default=None
        Shuffling of the outer and inner folds.
    memory : str, os.PathLike, joblib.Memory or None, default=None
        Cache for the embeddings of a transformer (see :func:`embed`).
    name : str or None, default=None
        Row label stored in the result, e.g. the pretraining method.
    n_jobs : int or None, default=None
        Parallel jobs of the inner grid search.

    Returns
    -------
    result : ProbeResult
        ``scores`` per outer fold, ``mean``, ``std``, ``metric`` and the chosen
        hyper-parameters.

    Raises
    ------
    ValueError
        If ``y`` does not give one label per subject, a class has fewer than ``cv``
        subjects, fewer than two classes remain, or the arguments are out of range.
    TypeError
        If ``task`` or the first argument has the wrong type.

    Examples
    --------
    >>> import numpy as np
    >>> from anatcl_sklearn.evaluation import linear_probe
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.normal(size=(60, 8))
    >>> diagnosis = np.where(Z[:, 0] > 0, "AD", "HC")
    >>> result = linear_probe(Z, None, diagnosis, "adni-ad", cv=3, random_state=0)
    >>> result.metric, result.mean > 0.8
    ('balanced_accuracy', True)
    """
    if task is None:
        raise TypeError("task is required: a TASKS name, a Task, or 'classification' / "
                        "'regression'.")
    task = get_task(task)
    cv = _check_folds(cv, "cv")
    inner_cv = _check_folds(inner_cv, "inner_cv", allow_none=True)
    if y is None:
        raise ValueError("y is required: the participants table or one label per subject.")
    labels = task.labels(y)

    if hasattr(embeddings_or_transformer, "transform"):
        if X is None:
            name = type(embeddings_or_transformer).__name__
            raise ValueError(f"X is required to embed subjects with the {name}.")
        if hasattr(X, "__len__") and len(X) != len(labels):
            raise ValueError(
                f"X has {len(X)} subjects but y has {len(labels)}; they must match."
            )
        embeddings = embed(embeddings_or_transformer, X, memory=memory)
    else:
        if X is not None:
            raise ValueError(
                "X must be None when precomputed embeddings are given (X is the input of a "
                "transformer)."
            )
        try:
            embeddings = np.asarray(embeddings_or_transformer, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(
                "The first argument must be a 2-D array of embeddings or a fitted transformer; "
                f"got {type(embeddings_or_transformer).__name__}."
            ) from None
        if embeddings.ndim != 2:
            raise ValueError(
                f"embeddings must be 2-D (n_subjects, n_features); got shape "
                f"{embeddings.shape}. To embed images, pass a fitted transformer and X."
            )
    if len(embeddings) != len(labels):
        raise ValueError(
            f"embeddings have {len(embeddings)} subjects but y has {len(labels)}; they must "
            "match."
        )
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("embeddings hold NaN or infinite values.")

    keep = labels.notna().to_numpy()
    Z = embeddings[keep]
    target, class_counts = _check_task_size(task, labels, cv)
    if task.kind == "classification":
        outer = StratifiedKFold(cv, shuffle=True, random_state=random_state)
    else:
        outer = KFold(cv, shuffle=True, random_state=random_state)

    # The probes' matrices (n x 512) are too small to gain from BLAS threads, and idle
    # OpenBLAS threads spinning against each other made a 48 x 512 logistic fit 50x slower
    # on two cores (100 ms instead of 2 ms).
    with threadpool_limits(limits=1, user_api="blas"):
        scores, best = _cross_validate(task, Z, target, outer, inner_cv, random_state, n_jobs)
    return ProbeResult(
        task=task,
        scores=np.asarray(scores, dtype=np.float64),
        n_samples=len(target),
        n_features=int(Z.shape[1]),
        name=name,
        best_params=tuple(best),
        class_counts=class_counts,
    )


def _cross_validate(task, Z, target, outer, inner_cv, random_state, n_jobs):
    scores, best = [], []
    for train, test in outer.split(Z, target):
        inner = inner_cv
        if inner is not None:
            smallest = (np.unique(target[train], return_counts=True)[1].min()
                        if task.kind == "classification" else len(train) // 2)
            inner = min(inner, smallest)
            inner = inner if inner >= 2 else None
        probe = make_probe(task.kind, inner_cv=inner, random_state=random_state, n_jobs=n_jobs)
        probe.fit(Z[train], target[train])
        scores.append(_score(task.kind, target[test], probe.predict(Z[test])))
        best.append(dict(getattr(probe, "best_params_", {})))
    return scores, best


def _plain(value):
    """Python scalars for the class-count dict (0.0 rather than np.float64(0.0))."""
    return value.item() if hasattr(value, "item") else value
