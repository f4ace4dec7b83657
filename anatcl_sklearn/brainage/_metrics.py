"""The figures a brain-age paper reports: MAE, r, and the gap's correlation with age."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._regressor import check_age

__all__ = ["brain_age_report", "format_report"]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _row(age: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    gap = predicted - age
    residual = np.sum((age - predicted) ** 2)
    total = np.sum((age - age.mean()) ** 2)
    return {
        "MAE": float(np.mean(np.abs(gap))),
        "r": _pearson(age, predicted),
        "R2": float(1 - residual / total) if total > 0 else float("nan"),
        "mean_gap": float(np.mean(gap)),
        "r_gap_age": _pearson(gap, age),
    }


def brain_age_report(age: Any, predicted: Any,
                     corrected: Any = None) -> dict[str, dict[str, float]]:
    """MAE, Pearson r, R², mean gap and the gap's correlation with age, before and after correction.

    Report these on held-out predictions (e.g. from
    :func:`~anatcl_sklearn.brainage.cross_val_brain_age`). The corrected row's MAE, r and R²
    are inflated by construction (the correction uses the true age: de Lange & Cole 2020):
    report the uncorrected row's accuracy, and the corrected row's ``r_gap_age`` to show
    the bias is gone.

    Parameters
    ----------
    age : array-like of shape (n_samples,)
        Chronological age.
    predicted : array-like of shape (n_samples,)
        Uncorrected brain age.
    corrected : array-like of shape (n_samples,) or None, default=None
        Corrected brain age; None leaves its row out.

    Returns
    -------
    report : dict
        ``{"uncorrected": row, "corrected": row}`` (the second only with ``corrected``),
        each row ``{"MAE", "r", "R2", "mean_gap", "r_gap_age", "n"}``: mean absolute error
        in years, Pearson r of brain age with age, R², mean gap (brain age minus age) and
        Pearson r of the gap with age.

    Raises
    ------
    ValueError
        If the arrays differ in length or hold missing or infinite values.

    Examples
    --------
    >>> from anatcl_sklearn.brainage import brain_age_report
    >>> brain_age_report([20, 40, 60], [30, 40, 50])["uncorrected"]["r_gap_age"]
    -1.0
    """
    age_values = check_age(age, len(np.asarray(age).reshape(-1)), "age")
    rows = {"uncorrected": check_age(predicted, len(age_values), "predicted")}
    if corrected is not None:
        rows["corrected"] = check_age(corrected, len(age_values), "corrected")
    report = {}
    for name, values in rows.items():
        row = _row(age_values, values)
        row["n"] = float(len(age_values))
        report[name] = row
    return report


def format_report(report: dict[str, dict[str, float]]) -> str:
    """A brain-age report (:func:`brain_age_report`) as a plain-text table.

    Parameters
    ----------
    report : dict
        As returned by :func:`brain_age_report`.

    Returns
    -------
    table : str
        One line per row, with a header.
    """
    lines = [f"{'':12s} {'MAE':>6s} {'r':>6s} {'R2':>6s} {'mean gap':>9s} {'r(gap, age)':>12s}"]
    for name, row in report.items():
        lines.append(f"{name:12s} {row['MAE']:6.2f} {row['r']:6.2f} {row['R2']:6.2f} "
                     f"{row['mean_gap']:9.2f} {row['r_gap_age']:12.2f}")
    return "\n".join(lines)
