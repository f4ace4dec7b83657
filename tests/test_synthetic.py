"""Tests for make_synthetic_brains: structure, determinism, signal and errors."""

import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import f_oneway, spearmanr
from sklearn.linear_model import RidgeClassifierCV, RidgeCV
from sklearn.model_selection import (
    KFold,
    StratifiedKFold,
    cross_val_predict,
    cross_val_score,
)

from anatcl_sklearn.anatomy._regions import ANATOMY_MEASURES, DESIKAN_REGIONS
from anatcl_sklearn.datasets import make_synthetic_brains

SMALL = (24, 28, 24)
CT, GMV, SA = (ANATOMY_MEASURES.index(m) for m in ("CT", "GMV", "SA"))


def _region(name):
    return DESIKAN_REGIONS.index(name)


@pytest.fixture(scope="module")
def openbhb_small():
    return make_synthetic_brains(120, shape=SMALL, n_sites=3, random_state=0)


@pytest.fixture(scope="module")
def adni_small():
    return make_synthetic_brains(200, shape=SMALL, cohort="adni", random_state=1)


def _world_x(affine, shape):
    return affine[0, 0] * np.arange(shape[0]) + affine[0, 3]


def test_fields_shapes_dtypes_and_ranges(openbhb_small):
    data = openbhb_small
    n = 120
    assert data.images.shape == (n, *SMALL)
    assert data.images.dtype == np.float32
    assert data.images.min() >= 0.0
    assert 0.5 < data.images.max() <= 1.2
    # Mostly empty background, brain voxels well above zero.
    assert 0.02 < data.images.mean() < 0.3
    assert data.age.shape == (n,) and data.age.dtype == np.float64
    assert data.sex.dtype.kind == "i" and set(np.unique(data.sex)) == {0, 1}
    assert data.site.dtype.kind == "i" and set(np.unique(data.site)) <= {0, 1, 2}
    assert data.diagnosis.shape == (n,) and set(data.diagnosis) == {"HC"}
    assert data.regions == list(DESIKAN_REGIONS)
    assert data.measures == list(ANATOMY_MEASURES)
    assert data.cohort == "openbhb"
    assert "synthetic" in data.DESCR.lower()

    anatomy = data.anatomy
    assert anatomy.shape == (n, 68, 3) and np.isfinite(anatomy).all()
    assert 1.0 <= anatomy[..., CT].min() and anatomy[..., CT].max() <= 5.0
    assert 1.3 < np.median(anatomy[..., CT]) < 3.5
    assert 150 < anatomy[..., SA].min() and anatomy[..., SA].max() < 12000
    assert 500 < anatomy[..., GMV].min() and anatomy[..., GMV].max() < 40000
    # Regions differ: superior frontal is far larger than the frontal pole; the insula is
    # thicker than the pericalcarine cortex.
    mean = anatomy.mean(0)
    assert mean[_region("lh-superiorfrontal"), SA] > 10 * mean[_region("lh-frontalpole"), SA]
    assert mean[_region("rh-insula"), CT] > 1.4 * mean[_region("rh-pericalcarine"), CT]
    # GMV is CT x SA times a per-region constant near FreeSurfer's (about 1 to 1.5).
    ratio = anatomy[..., GMV] / (anatomy[..., CT] * anatomy[..., SA])
    assert 0.75 < ratio.min() and ratio.max() < 2.0

    participants = data.participants
    assert isinstance(participants, pd.DataFrame) and len(participants) == n
    assert list(participants.columns[:5]) == ["participant_id", "age", "sex", "site", "diagnosis"]
    assert participants["participant_id"].is_unique
    np.testing.assert_array_equal(participants["age"].to_numpy(), data.age)
    np.testing.assert_array_equal(participants["site"].to_numpy(), data.site)
    assert isinstance(data.phenotypes, pd.DataFrame) and data.phenotypes.shape == (n, 0)


def test_atlas_has_68_parcels_left_hemisphere_at_negative_x(openbhb_small):
    atlas = openbhb_small.atlas
    assert atlas.shape == SMALL
    assert set(np.unique(atlas)) == set(range(69))
    x = _world_x(openbhb_small.affine, SMALL)[:, None, None] * np.ones(SMALL)
    assert np.all(x[(atlas >= 1) & (atlas <= 34)] < 0)  # lh-* regions come first
    assert np.all(x[atlas > 34] > 0)


def test_affine_is_openbhb_grid_and_keeps_field_of_view_when_resized():
    default = make_synthetic_brains(2, return_images=False, random_state=0).affine
    expected = np.diag([-1.5, 1.5, 1.5, 1.0])
    expected[:3, 3] = [90.0, -126.0, -72.0]
    np.testing.assert_allclose(default, expected)

    small = make_synthetic_brains(2, shape=SMALL, return_images=False, random_state=0).affine
    np.testing.assert_allclose(
        np.abs(np.diag(small)[:3]), 1.5 * np.array([121, 145, 121]) / np.array(SMALL)
    )
    # The outer corners of both grids are the same points in the world.
    for affine, shape in ((default, (121, 145, 121)), (small, SMALL)):
        corner_lo = affine @ [-0.5, -0.5, -0.5, 1.0]
        corner_hi = affine @ np.array([s - 0.5 for s in shape] + [1.0])
        np.testing.assert_allclose(corner_lo[:3], [90.75, -126.75, -72.75])
        np.testing.assert_allclose(corner_hi[:3], [-90.75, 90.75, 108.75])


def test_same_seed_same_data_other_seed_other_data():
    kwargs = dict(shape=SMALL, cohort="schizconnect")
    first = make_synthetic_brains(6, random_state=3, **kwargs)
    again = make_synthetic_brains(6, random_state=np.random.RandomState(3), **kwargs)
    other = make_synthetic_brains(6, random_state=4, **kwargs)
    for key in ("images", "anatomy", "age", "sex", "site"):
        np.testing.assert_array_equal(first[key], again[key])
    pd.testing.assert_frame_equal(first.participants, again.participants)
    assert not np.array_equal(first.images, other.images)
    assert not np.array_equal(first.anatomy, other.anatomy)
    # Neither the grid nor skipping the images changes the subjects.
    meta = make_synthetic_brains(6, random_state=3, return_images=False, **kwargs)
    resized = make_synthetic_brains(6, random_state=3, cohort="schizconnect", shape=(20, 20, 20))
    assert meta.images is None and meta.atlas is None
    for key in ("anatomy", "age", "sex", "site"):
        np.testing.assert_array_equal(first[key], meta[key])
        np.testing.assert_array_equal(first[key], resized[key])
    pd.testing.assert_frame_equal(first.participants, meta.participants)


def test_images_are_fresh_arrays_each_call():
    first = make_synthetic_brains(2, shape=SMALL, random_state=0)
    first.images[:] = -1.0  # must not leak into the cached template or later calls
    first.atlas[:] = 0
    again = make_synthetic_brains(2, shape=SMALL, random_state=0)
    assert again.images.min() >= 0.0 and again.atlas.max() == 68


def test_linear_model_predicts_age_from_images(openbhb_small):
    data = openbhb_small
    X = data.images.reshape(len(data.age), -1)
    model = RidgeCV(alphas=np.logspace(-2, 4, 13))
    predicted = cross_val_predict(model, X, data.age, cv=KFold(5, shuffle=True, random_state=0))
    r2 = 1 - np.sum((predicted - data.age) ** 2) / np.sum((data.age - data.age.mean()) ** 2)
    mae = np.mean(np.abs(predicted - data.age))
    mae_mean = np.mean(np.abs(data.age - data.age.mean()))
    assert r2 > 0.5, r2
    assert mae < 0.6 * mae_mean, (mae, mae_mean)


def test_mean_thickness_falls_with_age():
    data = make_synthetic_brains(400, return_images=False, random_state=0)
    assert data.age.min() < 12 and data.age.max() > 70  # OpenBHB spans 6-86
    assert 6.0 <= data.age.min() and data.age.max() <= 86.0
    rho = spearmanr(data.anatomy[..., CT].mean(1), data.age)[0]
    assert rho < -0.5, rho


def test_sites_differ_in_intensity():
    # Same-aged subjects, so that what is left between sites is the site itself.
    data = make_synthetic_brains(90, shape=SMALL, n_sites=3, age_range=(30, 32), random_state=5)
    brain = data.images.reshape(len(data.site), -1).mean(1)
    groups = [brain[data.site == s] for s in range(3)]
    assert min(len(g) for g in groups) >= 5
    assert f_oneway(*groups).pvalue < 1e-3
    single = make_synthetic_brains(5, n_sites=1, return_images=False, random_state=0)
    assert set(single.site) == {0}


def test_males_have_more_grey_matter(openbhb_small):
    data = make_synthetic_brains(800, return_images=False, random_state=2)
    total = data.anatomy[..., GMV].sum(1)
    assert total[data.sex == 1].mean() > 1.05 * total[data.sex == 0].mean()
    # The images carry it too.
    images = openbhb_small
    mass = images.images.reshape(len(images.sex), -1).sum(1)
    assert mass[images.sex == 1].mean() > mass[images.sex == 0].mean()


def test_alzheimer_atrophy_in_expected_regions():
    data = make_synthetic_brains(800, cohort="adni", return_images=False, random_state=0)
    ct = data.anatomy[..., CT]
    mean = {g: ct[data.diagnosis == g].mean(0) for g in ("HC", "sMCI", "pMCI", "AD")}
    change = mean["AD"] / mean["HC"] - 1
    for name in ("entorhinal", "parahippocampal", "inferiortemporal", "precuneus"):
        for hemi in ("lh", "rh"):
            assert change[_region(f"{hemi}-{name}")] < -0.03, name
    for name in ("pericalcarine", "precentral", "paracentral"):
        assert abs(change[_region(f"lh-{name}")]) < 0.03, name
    assert change[_region("lh-entorhinal")] < change[_region("lh-superiorfrontal")] - 0.06
    # pMCI is an intermediate form.
    entorhinal = _region("rh-entorhinal")
    order = [mean[g][entorhinal] for g in ("HC", "sMCI", "pMCI", "AD")]
    assert order == sorted(order, reverse=True)
    volume = data.anatomy[..., GMV]
    assert (
        volume[data.diagnosis == "AD", entorhinal].mean()
        < 0.9 * volume[data.diagnosis == "HC", entorhinal].mean()
    )


def test_alzheimer_visible_and_decodable_in_images(adni_small):
    data = adni_small
    keep = np.isin(data.diagnosis, ["HC", "AD"])
    X = data.images[keep].reshape(keep.sum(), -1)
    y = (data.diagnosis[keep] == "AD").astype(int)
    # Less grey matter in the AD-pattern parcels.
    atlas = data.atlas.ravel()
    ad_regions = ("entorhinal", "parahippocampal", "inferiortemporal", "middletemporal")
    parcels = [1 + _region(f"{h}-{r}") for h in ("lh", "rh") for r in ad_regions]
    mass = X[:, np.isin(atlas, parcels)].sum(1)
    assert mass[y == 1].mean() < mass[y == 0].mean()
    # Linearly decodable well above chance.
    scores = cross_val_score(
        RidgeClassifierCV(alphas=np.logspace(-1, 5, 13)),
        X,
        y,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
        scoring="balanced_accuracy",
    )
    assert scores.mean() > 0.65, scores


COHORT_GROUPS = {
    "openbhb": ["HC"],
    "adni": ["HC", "sMCI", "pMCI", "AD"],
    "oasis3": ["HC", "AD"],
    "schizconnect": ["HC", "SCZ-broad", "SCZ-strict", "schizoaffective", "bipolar"],
    "abide": ["HC", "autism", "asperger", "pdd-nos"],
}
AGE_LIMITS = {
    "openbhb": (6, 86),
    "adni": (55, 90),
    "oasis3": (42, 95),
    "schizconnect": (16, 66),
    "abide": (7, 64),
}


@pytest.mark.parametrize("cohort", sorted(COHORT_GROUPS))
def test_cohort_labels_ages_and_proportions(cohort):
    data = make_synthetic_brains(100, cohort=cohort, return_images=False, random_state=0)
    counts = pd.Series(data.diagnosis).value_counts()
    assert sorted(counts.index) == sorted(COHORT_GROUPS[cohort])
    assert counts.min() >= 3  # even PDD-NOS and bipolar at n = 100
    low, high = AGE_LIMITS[cohort]
    assert low <= data.age.min() and data.age.max() <= high
    assert (data.participants["diagnosis"] == data.diagnosis).all()


def test_group_proportions_follow_the_paper():
    abide = make_synthetic_brains(1000, cohort="abide", return_images=False, random_state=0)
    share = pd.Series(abide.diagnosis).value_counts(normalize=True)
    assert 0.50 < share["HC"] < 0.60 and 0.30 < share["autism"] < 0.38
    assert share["pdd-nos"] < 0.02  # rare, as in ABIDE-I
    oasis = make_synthetic_brains(500, cohort="oasis3", return_images=False, random_state=0)
    assert 0.10 < np.mean(oasis.diagnosis == "AD") < 0.16
    scz = make_synthetic_brains(400, cohort="schizconnect", return_images=False, random_state=0)
    assert 0.42 < np.mean(scz.diagnosis == "HC") < 0.54
    # ABIDE is mostly male, and younger than ADNI.
    assert abide.sex.mean() > 0.75
    adni = make_synthetic_brains(300, cohort="adni", return_images=False, random_state=0)
    assert np.median(abide.age) < 25 < 60 < np.median(adni.age)


def test_schizconnect_phenotypes():
    data = make_synthetic_brains(1500, cohort="schizconnect", return_images=False, random_state=0)
    ph = data.phenotypes
    top_score = {"aims_overall": 4, "aims_upper": 4, "aims_lower": 4, "depression": 3}
    top_score["gait"] = 4
    assert list(ph.columns) == [*list(top_score)[:4], "handedness", "gait"]
    for column, top in top_score.items():
        values = ph[column].to_numpy()
        assert values.dtype.kind == "i" and values.min() == 0 and values.max() == top
    assert set(ph["handedness"]) == {"R", "L", "A"}
    assert 0.75 < np.mean(ph["handedness"] == "R") < 0.95
    patient = data.diagnosis != "HC"
    for column in ("aims_overall", "depression", "gait"):
        assert ph[column][patient].mean() > ph[column][~patient].mean() + 0.3, column
    assert ph["aims_overall"][data.diagnosis == "bipolar"].mean() <= ph["aims_overall"][
        data.diagnosis == "SCZ-strict"
    ].mean()
    # Weakly tied to motor cortex: thinner motor regions (relative to the whole cortex),
    # higher AIMS.
    ct = np.log(data.anatomy[..., CT])
    motor_regions = ("precentral", "paracentral", "postcentral", "caudalmiddlefrontal")
    motor = [_region(f"{h}-{r}") for h in ("lh", "rh") for r in motor_regions]
    relative = ct[:, motor].mean(1) - ct.mean(1)
    rho = spearmanr(ph["aims_overall"][patient], relative[patient])[0]
    assert -0.6 < rho < -0.1, rho
    pd.testing.assert_frame_equal(data.participants[ph.columns], ph)


def test_abide_phenotypes():
    data = make_synthetic_brains(1500, cohort="abide", return_images=False, random_state=0)
    ph = data.phenotypes
    assert list(ph.columns) == ["handedness", "fiq", "viq", "piq"]
    assert set(ph["handedness"]) == {"R", "L", "A"}
    for column in ("fiq", "viq", "piq"):
        values = ph[column].to_numpy()
        assert values.dtype.kind == "i"
        assert 98 < values.mean() < 110 and 10 < values.std() < 20, column
    assert ph["fiq"][data.diagnosis == "HC"].mean() > ph["fiq"][data.diagnosis == "autism"].mean()
    # Weakly related to anatomy: larger brains (for age and sex) score a little higher.
    volume = np.log(data.anatomy[..., GMV].sum(1))
    design = np.column_stack([np.ones_like(data.age), data.age, data.age**2, data.sex])
    residual = volume - design @ np.linalg.lstsq(design, volume, rcond=None)[0]
    rho = spearmanr(ph["fiq"], residual)[0]
    assert 0.05 < rho < 0.5, rho


def test_age_range_overrides_the_cohort_ages():
    data = make_synthetic_brains(200, age_range=(40, 50), return_images=False, random_state=0)
    assert 40 <= data.age.min() and data.age.max() <= 50
    assert data.age.max() - data.age.min() > 8


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(cohort="ukbiobank"), ValueError, "cohort must be one of .*'abide'.*'schizconnect'"),
        (dict(shape=(24, 28, 15)), ValueError, r"shape .*>= 16.*\(24, 28, 15\)"),
        (dict(shape=(24, 28)), TypeError, "shape must be a tuple of 3 ints"),
        (dict(shape=(24.0, 28, 24)), TypeError, "shape must be a tuple of 3 ints"),
        (dict(n_subjects=0), ValueError, "n_subjects must be an int >= 1; got 0"),
        (dict(n_subjects=2.5), TypeError, "n_subjects must be an int"),
        (dict(n_subjects=True), TypeError, "n_subjects must be an int"),
        (dict(n_sites=0), ValueError, "n_sites must be an int >= 1"),
        (dict(age_range=(50, 40)), ValueError, "age_range must satisfy"),
        (dict(age_range=(-5, 40)), ValueError, "age_range must satisfy"),
        (dict(age_range=30), TypeError, "age_range must be None or a pair"),
        (dict(return_images="yes"), TypeError, "return_images must be a bool"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    kwargs = {"n_subjects": 2, **kwargs}
    n_subjects = kwargs.pop("n_subjects")
    with pytest.raises(error, match=match):
        make_synthetic_brains(n_subjects, **kwargs)


@pytest.mark.slow
def test_full_size_grid():
    start = time.perf_counter()
    data = make_synthetic_brains(2, random_state=0)
    elapsed = time.perf_counter() - start
    assert data.images.shape == (2, 121, 145, 121)
    assert data.images.dtype == np.float32
    assert 0.5 < data.images.max() <= 1.2
    assert data.atlas.shape == (121, 145, 121) and set(np.unique(data.atlas)) == set(range(69))
    # The two subjects differ and both have a brain in the middle of the grid.
    assert not np.array_equal(data.images[0], data.images[1])
    assert (data.images[:, 40:80, 50:100, 40:80] > 0.02).mean() > 0.5
    print(f"full-size grid: 2 subjects in {elapsed:.2f} s (includes the template)")
