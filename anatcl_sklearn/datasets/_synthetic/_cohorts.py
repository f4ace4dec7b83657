"""Subjects: ages, sexes, sites, diagnoses and phenotypes drawn for a cohort, and their Desikan
measures (CT, GMV, SA)."""

import numpy as np

from ...anatomy._regions import (
    ANATOMY_MEASURES,
    N_REGIONS,
)
from ._anatomy_model import (
    _AGE_SLOPE_R,
    _CT_AGE_RATE,
    _CT_GLOBAL,
    _CT_NOISE,
    _CT_TEMPLATE,
    _FRONTAL_CINGULATE,
    _GMV_NOISE,
    _K_TEMPLATE,
    _MOTOR,
    _REFERENCE_AGE,
    _SA_GLOBAL,
    _SA_NOISE,
    _SA_TEMPLATE,
    _SEX_CT,
    _SEX_SA,
)
from ._geometry import _CT_MAX

# --------------------------------------------------------------------------------------
# Subjects
# --------------------------------------------------------------------------------------


_AGE_LIMITS = {
    "openbhb": (6.0, 86.0),
    "adni": (55.0, 90.0),
    "oasis3": (42.0, 95.0),
    "schizconnect": (16.0, 66.0),
    "abide": (7.0, 64.0),
}


def _group_counts(proportions, n):
    """Deterministic group sizes: largest remainders, with a small floor for rare groups
    (at least 3 each once n >= 100 for four groups) so every group can be evaluated."""
    proportions = np.asarray(proportions, float) / np.sum(proportions)
    exact = proportions * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    floor = min(3, n // (3 * len(counts)))
    for group in range(len(counts)):
        while counts[group] < floor:
            counts[np.argmax(counts)] -= 1
            counts[group] += 1
    return counts


def _sample_ages(sampler, n, rng):
    """Ages before the per-group shift and the clip to ``_AGE_LIMITS[sampler]``."""
    if sampler == "openbhb":  # many young adults, a child tail and a flat adult tail
        kind = rng.choice(3, size=n, p=[0.45, 0.25, 0.30])
        young, child, adult = (
            rng.normal(23.0, 5.0, n),
            rng.uniform(6.0, 18.0, n),
            rng.uniform(18.0, 86.0, n),
        )
        return np.choose(kind, [young, child, adult])
    if sampler == "adni":
        return rng.normal(74.0, 7.0, n)
    if sampler == "oasis3":
        return rng.normal(69.0, 9.0, n)
    if sampler == "schizconnect":
        return rng.normal(36.0, 12.0, n)
    return np.exp(rng.normal(np.log(15.0), 0.45, n))  # abide: mostly children and teenagers


def _spread(low, high, n, rng):
    """``n`` values in ``[low, high]``, one per stratum in random order, so that even two
    sites are never near-copies of each other."""
    return low + (high - low) * (rng.permutation(n) + rng.uniform(size=n)) / n


def _sa_age_factor(age):
    # Surface area grows through childhood, peaks in adolescence, then shrinks slowly.
    return 1.0 - 0.006 * np.maximum(12.0 - age, 0.0) - 0.0012 * np.maximum(age - 20.0, 0.0)


def _ordinal(latent, thresholds):
    return np.digitize(latent, thresholds).astype(np.int64)


def _handedness(latent, rng):
    """'R', 'L' or 'A' (ambidextrous) from a latent tendency to non-right-handedness."""
    p_non_right = 1.0 / (1.0 + np.exp(-latent))
    non_right = rng.uniform(size=latent.shape) < p_non_right
    left = rng.uniform(size=latent.shape) < 2 / 3
    return np.where(non_right, np.where(left, "L", "A"), "R").astype(object)


def _standardised_mean(noise, columns):
    """Mean of region-specific relative CT noise over ``columns``, in units of its SD."""
    return noise[:, columns].mean(1) / (_CT_NOISE / np.sqrt(np.count_nonzero(columns)))


def _phenotypes(cohort, diagnosis_idx, age, ct_noise, global_size, rng):
    """Clinical phenotypes: patients score higher; motor and mood scores are weakly tied to
    regional thickness, IQ to whole-brain thickness and size (``global_size``, in SDs)."""
    n = len(age)
    half = N_REGIONS // 2
    thin_motor = -_standardised_mean(ct_noise, _MOTOR)
    # Left-minus-right motor thickness, a weak handedness cue.
    asymmetry = _standardised_mean(ct_noise[:, :half] - ct_noise[:, half:], _MOTOR[:half])
    asymmetry /= np.sqrt(2.0)
    if cohort == "schizconnect":
        thin_frontal = -_standardised_mean(ct_noise, _FRONTAL_CINGULATE)
        aims = (
            np.array([0.0, 1.6, 1.9, 1.6, 0.9])[diagnosis_idx]
            + 0.35 * thin_motor
            + rng.normal(0.0, 0.8, n)
        )
        aims_upper = aims + rng.normal(0.0, 0.5, n)
        aims_lower = aims + rng.normal(0.0, 0.5, n)
        depression = (
            np.array([0.0, 1.0, 1.1, 1.5, 1.3])[diagnosis_idx]
            + 0.3 * thin_frontal
            + rng.normal(0.0, 0.8, n)
        )
        gait = (
            np.array([0.0, 1.2, 1.4, 1.1, 0.6])[diagnosis_idx]
            + 0.35 * thin_motor
            + 0.02 * (age - 36.0)
            + rng.normal(0.0, 0.8, n)
        )
        handedness = _handedness(-2.1 + 0.5 * (diagnosis_idx > 0) + 0.6 * asymmetry, rng)
        aims_thresholds = [1.0, 1.8, 2.5, 3.2]
        return {
            "aims_overall": _ordinal(aims, aims_thresholds),
            "aims_upper": _ordinal(aims_upper, aims_thresholds),
            "aims_lower": _ordinal(aims_lower, aims_thresholds),
            "depression": _ordinal(depression, [0.8, 1.8, 2.7]),
            "handedness": handedness,
            "gait": _ordinal(gait, [1.0, 1.8, 2.6, 3.4]),
        }
    if cohort == "abide":
        fiq = (
            np.array([108.0, 101.0, 106.0, 100.0])[diagnosis_idx]
            + 4.0 * global_size
            + rng.normal(0.0, 13.5, n)
        )
        viq = fiq + np.array([0.0, -2.0, 3.0, -1.0])[diagnosis_idx] + rng.normal(0.0, 6.0, n)
        piq = 2.0 * fiq - viq + rng.normal(0.0, 3.0, n)  # FIQ is about the mean of the two
        handedness = _handedness(-2.0 + 0.4 * (diagnosis_idx > 0) + 0.6 * asymmetry, rng)

        def as_iq(iq):
            return np.clip(np.rint(iq), 40, 160).astype(np.int64)

        return {"handedness": handedness, "fiq": as_iq(fiq), "viq": as_iq(viq), "piq": as_iq(piq)}
    return {}


def _draw_subjects(spec, cohort, n, n_sites, age_range, rng):
    """Labels, site parameters, latent factors and anatomy of ``n`` subjects.

    Everything is drawn from ``rng`` in a fixed order that does not depend on the image
    grid or on whether images are made, so the same seed gives the same anatomy either way.
    """
    counts = _group_counts(spec.counts, n)
    group = rng.permutation(np.repeat(np.arange(len(spec.groups)), counts))
    if age_range is None:
        age = _sample_ages(spec.ages, n, rng) + np.asarray(spec.age_shift)[group]
        age = np.clip(age, *_AGE_LIMITS[spec.ages])
    else:
        age = rng.uniform(*age_range, size=n)
    sex = (rng.uniform(size=n) < np.asarray(spec.p_male)[group]).astype(np.int64)
    site = rng.choice(n_sites, size=n, p=rng.dirichlet(np.full(n_sites, 4.0))).astype(np.int64)
    sites = {
        "scale": _spread(0.85, 1.15, n_sites, rng),
        "noise": _spread(0.01, 0.05, n_sites, rng),
        "smooth_mm": _spread(0.6, 2.0, n_sites, rng),  # Gaussian sigma: FWHM 1.4-4.7 mm
        "wm": _spread(0.03, 0.08, n_sites, rng),
        "ct_bias": rng.normal(0.0, 0.015, n_sites),
    }
    severity = np.asarray(spec.severity)[group] * rng.uniform(0.4, 1.6, n)
    ct_global = rng.normal(0.0, _CT_GLOBAL, (n, 1))
    ct_noise = rng.normal(0.0, _CT_NOISE, (n, N_REGIONS))
    sa_global = rng.normal(0.0, _SA_GLOBAL, (n, 1))
    sa_noise = rng.normal(0.0, _SA_NOISE, (n, N_REGIONS))
    gmv_noise = rng.normal(0.0, _GMV_NOISE, (n, N_REGIONS))
    ventricle_noise = rng.normal(0.0, 0.12, n)
    blob_noise = rng.normal(0.0, 0.04, n)
    image_seeds = rng.randint(0, 2**31 - 1, size=n)
    global_size = (ct_global[:, 0] / _CT_GLOBAL + sa_global[:, 0] / _SA_GLOBAL) / np.sqrt(2)
    phenotypes = _phenotypes(cohort, group, age, ct_noise, global_size, rng)

    pattern = spec.pattern
    sev = severity[:, None]
    years = (age - _REFERENCE_AGE)[:, None]
    ct = (
        _CT_TEMPLATE
        * (1.0 - _CT_AGE_RATE * _AGE_SLOPE_R * years)
        * np.asarray(_SEX_CT)[sex][:, None]
        * (1.0 + sites["ct_bias"][site])[:, None]
        * np.exp(ct_global + ct_noise)
        * (1.0 - sev * pattern.ct)
    )
    ct = np.clip(ct, 1.0, _CT_MAX)
    sa = (
        _SA_TEMPLATE
        * _sa_age_factor(age)[:, None]
        * np.asarray(_SEX_SA)[sex][:, None]
        * np.exp(sa_global + sa_noise)
        * (1.0 - sev * pattern.sa)
    )
    gmv = _K_TEMPLATE * ct * sa * np.exp(gmv_noise) * (1.0 - sev * pattern.gmv)
    measures = {"CT": ct, "GMV": gmv, "SA": sa}
    return {
        "diagnosis": np.asarray(spec.groups, dtype=object)[group],
        "age": age,
        "sex": sex,
        "site": site,
        "sites": sites,
        "severity": severity,
        "ct": ct,
        "gmv": gmv,
        "sa": sa,
        "anatomy": np.stack([measures[name] for name in ANATOMY_MEASURES], axis=2),
        "ventricle_noise": ventricle_noise,
        "blob_noise": blob_noise,
        "image_seeds": image_seeds,
        "phenotypes": phenotypes,
    }


