"""Synthetic brains: grey-matter maps, Desikan anatomy, labels and phenotypes, no download.

The generator is to brain MRI what :func:`sklearn.datasets.make_classification` is to
tables: data with a known structure for tests, examples and benchmarks. Each subject gets
Desikan-Killiany measures (CT, GMV, SA for 68 regions) from a simple generative model of age,
sex, site and diagnosis, and a CAT12-like modulated grey-matter map *drawn from those
measures*: the brain is an ellipsoid split into two hemispheres, its cortical ribbon is cut
into 68 parcels whose depth follows CT, whose extent follows SA and whose grey-matter density
follows GMV / (CT x SA). Subcortical blobs, a cerebellum and ventricles that grow with age
complete the picture; sites differ in intensity, noise and smoothness.

Nothing here claims anatomical accuracy: the data are for checking that code runs and that
signal which is present can be found."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

from ...anatomy._regions import (
    ANATOMY_MEASURES,
    DESIKAN_REGIONS,
)
from ..._typing import RandomState
from ...images._grid import OPENBHB_SHAPE
from ._anatomy_model import _COHORTS, _PHENOTYPE_COLUMNS
from ._cohorts import _draw_subjects
from ._geometry import _MIN_DIM, _affine_for
from ._rendering import _draw_images

# --------------------------------------------------------------------------------------
# Public function
# --------------------------------------------------------------------------------------


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})."
        )
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value}.")
    return int(value)


def _check_shape(shape):
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(
            f"shape must be a tuple of 3 ints, e.g. (121, 145, 121); got {shape!r}."
        ) from None
    if len(dims) != 3 or any(
        isinstance(d, bool) or not isinstance(d, numbers.Integral) for d in dims
    ):
        raise TypeError(f"shape must be a tuple of 3 ints, e.g. (121, 145, 121); got {shape!r}.")
    dims = tuple(int(d) for d in dims)
    if min(dims) < _MIN_DIM:
        raise ValueError(
            f"shape must have every dimension >= {_MIN_DIM} (a smaller grid cannot hold 68 "
            f"parcels); got {dims}."
        )
    return dims


def check_cohort_options(n_subjects, n_sites, shape, cohort, age_range):
    """The options a synthetic cohort shares (make_synthetic_brains, write_synthetic_bids),
    checked once: ``(n_subjects, n_sites, shape, age_range)`` as used."""
    n_subjects = _check_int(n_subjects, "n_subjects", 1)
    n_sites = _check_int(n_sites, "n_sites", 1)
    shape = _check_shape(shape)
    if not isinstance(cohort, str) or cohort not in _COHORTS:
        raise ValueError(f"cohort must be one of {sorted(_COHORTS)}; got {cohort!r}.")
    return n_subjects, n_sites, shape, _check_age_range(age_range)


def _check_age_range(age_range):
    if age_range is None:
        return None
    try:
        low, high = (float(a) for a in age_range)
    except (TypeError, ValueError):
        raise TypeError(
            f"age_range must be None or a pair (low, high) of numbers; got {age_range!r}."
        ) from None
    if not (np.isfinite(low) and np.isfinite(high) and 0.0 <= low < high <= 100.0):
        raise ValueError(
            f"age_range must satisfy 0 <= low < high <= 100 (years); got {age_range!r}."
        )
    return low, high


def make_synthetic_brains(
    n_subjects: int = 100,
    *,
    shape: tuple[int, int, int] = OPENBHB_SHAPE,
    cohort: str = "openbhb",
    n_sites: int = 4,
    age_range: tuple[float, float] | None = None,
    random_state: RandomState = None,
    return_images: bool = True,
) -> Bunch:
    """Generate synthetic grey-matter maps with Desikan anatomy, labels and phenotypes.

    A stand-in for OpenBHB and the AnatCL downstream cohorts that needs no download. Each
    subject's Desikan-Killiany measures (cortical thickness, grey-matter volume and surface
    area of 68 regions) follow age, sex, site and diagnosis, and the image is drawn from
    them: an ellipsoidal brain whose cortical ribbon is split into 68 parcels (left
    hemisphere at negative x) with depth proportional to CT, extent following SA and
    grey-matter density following GMV / (CT x SA), plus subcortical grey-matter blobs, a
    cerebellum and ventricles that grow with age. Sites differ in intensity scale, noise
    and smoothness; males have larger brains; diagnoses thin and shrink their regions.

    Parameters
    ----------
    n_subjects : int, default=100
        Number of subjects.
    shape : tuple of 3 int, default=(121, 145, 121)
        Image grid. The default is OpenBHB's CAT12 grid at 1.5 mm; another shape covers the
        same field of view with resized voxels (see ``affine``). Every dimension must be at
        least 16.
    cohort : {"openbhb", "adni", "oasis3", "schizconnect", "abide"}, default="openbhb"
        Which population to imitate:

        - ``"openbhb"``: healthy controls ("HC"), ages 6-86.
        - ``"adni"``: "HC", "sMCI", "pMCI", "AD"; AD thins and shrinks the medial and
          lateral temporal, precuneus and posterior cingulate cortex, shrinks the
          hippocampus and enlarges the ventricles; pMCI shows a milder form, sMCI a trace.
          Ages 55-90.
        - ``"oasis3"``: "HC", "AD" (AD pattern as above), ages 42-95.
        - ``"schizconnect"``: "HC", "SCZ-broad", "SCZ-strict", "schizoaffective",
          "bipolar" (frontal, temporal and insular thinning, subtle for bipolar), ages
          16-66, with phenotypes ``aims_overall``, ``aims_upper``, ``aims_lower``
          (AIMS, 0-4), ``depression`` (Calgary, 0-3), ``handedness`` ("R", "L", "A") and
          ``gait`` (Simpson-Angus, 0-4).
        - ``"abide"``: "HC", "autism", "asperger", "pdd-nos" (small diffuse effects),
          ages 7-64, with phenotypes ``handedness``, ``fiq``, ``viq``, ``piq`` (WASI IQ).

        Group proportions follow the cohort sizes reported in the AnatCL paper, with at
        least 3 subjects per group once ``n_subjects`` is large enough (100 for four
        groups).
    n_sites : int, default=4
        Number of acquisition sites. Each site has its own intensity scale, noise level,
        smoothness, white-matter level and a small thickness bias; site sizes are unequal.
    age_range : tuple of 2 float or None, default=None
        If given, ages are drawn uniformly from ``[low, high]`` (``0 <= low < high <=
        100``) instead of from the cohort's age distribution.
    random_state : int, RandomState instance or None, default=None
        Seed or random generator, for reproducible output across calls.
    return_images : bool, default=True
        If False, skip the images (``images`` and ``atlas`` are None): metadata and
        anatomy only, much faster. The anatomy is the same as with images for the same
        ``random_state``.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the fields

        images : ndarray of shape ``(n_subjects, *shape)``, dtype float32, or None
            Modulated grey-matter-like maps, values in [0, 1.2] (mostly below 1).
        age : ndarray of shape (n_subjects,), dtype float64
            Age in years.
        sex : ndarray of shape (n_subjects,), dtype int64
            0 female, 1 male.
        site : ndarray of shape (n_subjects,), dtype int64
            Site index in ``range(n_sites)``.
        diagnosis : ndarray of shape (n_subjects,), dtype object
            Group label (``"HC"`` for healthy controls).
        anatomy : ndarray of shape (n_subjects, 68, 3), dtype float64
            Desikan measures: CT (mm), GMV (mm^3), SA (mm^2), regions in ``regions`` order.
        phenotypes : pandas.DataFrame
            The cohort's phenotype columns (no columns for openbhb, adni and oasis3).
        participants : pandas.DataFrame
            ``participant_id``, ``age``, ``sex``, ``site``, ``diagnosis`` and the phenotype
            columns, one row per subject.
        regions : list of str
            The 68 Desikan region names.
        measures : list of str
            ``["CT", "GMV", "SA"]``.
        affine : ndarray of shape (4, 4)
            Voxel-to-world (RAS, mm) affine: ``diag(-1.5, 1.5, 1.5)`` with origin
            ``(90, -126, -72)`` on the default grid; for another shape the voxel sizes are
            ``1.5 * (121, 145, 121) / shape`` and the field of view is unchanged.
        atlas : ndarray of shape ``shape``, dtype int16, or None
            Template parcellation (0 outside the cortex, ``1 + region index`` inside).
        cohort : str
            The ``cohort`` argument.
        DESCR : str
            Description of the (synthetic) data.

    Raises
    ------
    ValueError
        If ``cohort`` is unknown, ``n_subjects`` or ``n_sites`` is below 1, a dimension of
        ``shape`` is below 16, or ``age_range`` is out of order or out of ``[0, 100]``.
    TypeError
        If an argument has the wrong type.

    Notes
    -----
    Anatomy model (relative factors multiply the template values, which are rounded
    FreeSurfer means of young people): CT thins by 0.35 % per year times a regional rate
    (faster frontally, slower in visual and medial temporal cortex); SA grows until 12 and
    shrinks by 0.12 % per year after 20 and is about 9 % larger in males; GMV is
    ``k * CT * SA`` with a per-region ``k`` and 3 % noise. Region-specific and whole-brain
    noise, site biases and diagnosis patterns come on top.

    Generation is vectorised: about 0.5 ms per subject on a 24x28x24 grid and 0.04-0.06 s
    per subject on the full grid (two CPU cores), after a template that is computed once
    per shape and process (about 1.3 s at full size, cached). Memory is the images array
    plus about two and a half volumes of scratch.

    Examples
    --------
    >>> from anatcl_sklearn.datasets import make_synthetic_brains
    >>> data = make_synthetic_brains(8, shape=(24, 28, 24), random_state=0)
    >>> data.images.shape, data.anatomy.shape
    ((8, 24, 28, 24), (8, 68, 3))
    >>> ad = make_synthetic_brains(20, cohort="adni", return_images=False, random_state=0)
    >>> sorted(set(ad.diagnosis))
    ['AD', 'HC', 'pMCI', 'sMCI']
    """
    n_subjects, n_sites, shape, age_range = check_cohort_options(
        n_subjects, n_sites, shape, cohort, age_range)
    if not isinstance(return_images, (bool, np.bool_)):
        raise TypeError(f"return_images must be a bool; got {return_images!r}.")
    rng = check_random_state(random_state)
    spec = _COHORTS[cohort]

    draws = _draw_subjects(spec, cohort, n_subjects, n_sites, age_range, rng)
    images = atlas = None
    if return_images:
        images, atlas = _draw_images(draws, spec.pattern, shape)

    diagnosis = draws["diagnosis"]
    width = max(4, len(str(n_subjects)))
    participants = pd.DataFrame(
        {
            "participant_id": [f"sub-{i + 1:0{width}d}" for i in range(n_subjects)],
            "age": draws["age"],
            "sex": draws["sex"],
            "site": draws["site"],
            "diagnosis": diagnosis.tolist(),
        }
    )
    phenotypes = pd.DataFrame(
        {name: draws["phenotypes"][name] for name in _PHENOTYPE_COLUMNS[cohort]},
        index=participants.index,
    )
    participants = pd.concat([participants, phenotypes], axis=1)

    affine = _affine_for(shape)
    descr = _DESCR.format(
        n=n_subjects,
        cohort=cohort,
        description=spec.description,
        counts=", ".join(f"{g}: {int(np.sum(diagnosis == g))}" for g in spec.groups),
        n_sites=n_sites,
        shape="x".join(map(str, shape)),
        voxel="x".join(f"{z:.3g}" for z in np.abs(np.diag(affine)[:3])),
        images="" if return_images else " (not generated: return_images=False)",
    )
    return Bunch(
        images=images,
        age=draws["age"],
        sex=draws["sex"],
        site=draws["site"],
        diagnosis=diagnosis,
        anatomy=draws["anatomy"],
        phenotypes=phenotypes,
        participants=participants,
        regions=list(DESIKAN_REGIONS),
        measures=list(ANATOMY_MEASURES),
        affine=affine,
        atlas=atlas,
        cohort=cohort,
        DESCR=descr,
    )


_DESCR = """\
Synthetic brains (anatcl_sklearn.datasets.make_synthetic_brains)
----------------------------------------------------------------
SYNTHETIC DATA: no real subject is behind any value. Generated for tests, examples and
benchmarks; results on these data say nothing about real brains.

{n} subjects, cohort "{cohort}": {description}
Groups: {counts}. Sites: {n_sites}.
Images{images}: {shape} grid, voxel {voxel} mm, CAT12-like modulated grey-matter maps drawn
from each subject's anatomy (68-parcel cortical ribbon whose depth follows CT, extent SA and
density GMV / (CT x SA); subcortical blobs, cerebellum, ventricles growing with age; site
intensity, noise and smoothness).
Anatomy: (n, 68, 3) Desikan-Killiany CT (mm), GMV (mm^3), SA (mm^2) from a generative model
of age, sex, site and diagnosis around rounded FreeSurfer means of young people.
"""
