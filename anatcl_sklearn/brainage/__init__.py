"""Brain age from embeddings: the age-bias correction fitted out of fold, and the folds together.

:class:`BrainAgeRegressor` wraps a regressor of age and corrects its regression towards the
mean age (Beheshti et al. 2019; de Lange & Cole 2020), with the correction's line fitted on
out-of-fold predictions of the training data; :func:`brain_age_gap` is the gap in one call,
:func:`cross_val_brain_age` the held-out brain age of a cohort, :func:`brain_age_report` the
figures a brain-age paper reports. :func:`make_fold_ensemble` puts the five released folds of
the weights together (:class:`FoldEnsemble`).
"""

from ._cv import cross_val_brain_age, predict_both
from ._ensemble import FoldEnsemble, make_fold_ensemble
from ._metrics import brain_age_report, format_report
from ._regressor import CORRECTIONS, BrainAgeRegressor, brain_age_gap

__all__ = [
    "CORRECTIONS",
    "BrainAgeRegressor",
    "FoldEnsemble",
    "brain_age_gap",
    "brain_age_report",
    "cross_val_brain_age",
    "format_report",
    "make_fold_ensemble",
    "predict_both",
]
