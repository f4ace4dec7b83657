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
signal which is present can be found.
"""

import functools
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from sklearn.utils import Bunch, check_random_state

from ..anatomy._regions import (
    ANATOMY_MEASURES,
    DESIKAN_HEMISPHERE_REGIONS,
    DESIKAN_REGIONS,
    N_REGIONS,
)
from ..images._grid import OPENBHB_AFFINE, OPENBHB_SHAPE

__all__ = ["make_synthetic_brains"]

# --------------------------------------------------------------------------------------
# Template anatomy
# --------------------------------------------------------------------------------------

# Per-region typical values near age 20: cortical thickness (mm), surface area (mm^2) and
# k = GMV / (CT * SA). Rounded means of both hemispheres of FreeSurfer 6 Desikan tables of
# about a thousand ABIDE-I participants (mean age ~17); summary figures only, no data.
_TEMPLATE = {
    "bankssts": (2.75, 1040, 1.00),
    "caudalanteriorcingulate": (2.75, 740, 1.10),
    "caudalmiddlefrontal": (2.75, 2360, 1.15),
    "cuneus": (2.10, 1530, 1.10),
    "entorhinal": (3.50, 390, 1.40),
    "fusiform": (2.85, 3390, 1.15),
    "inferiorparietal": (2.75, 5320, 1.15),
    "inferiortemporal": (2.90, 3350, 1.20),
    "isthmuscingulate": (2.80, 1040, 1.10),
    "lateraloccipital": (2.35, 4990, 1.15),
    "lateralorbitofrontal": (2.90, 2650, 1.10),
    "lingual": (2.25, 3160, 1.10),
    "medialorbitofrontal": (2.65, 1860, 1.15),
    "middletemporal": (3.05, 3360, 1.25),
    "parahippocampal": (2.85, 750, 1.15),
    "paracentral": (2.60, 1520, 1.10),
    "parsopercularis": (2.85, 1600, 1.15),
    "parsorbitalis": (2.95, 730, 1.30),
    "parstriangularis": (2.75, 1470, 1.20),
    "pericalcarine": (1.80, 1450, 0.95),
    "postcentral": (2.20, 4280, 1.15),
    "posteriorcingulate": (2.85, 1270, 1.10),
    "precentral": (2.65, 5070, 1.10),
    "precuneus": (2.70, 4130, 1.10),
    "rostralanteriorcingulate": (3.00, 790, 1.15),
    "rostralmiddlefrontal": (2.55, 6090, 1.20),
    "superiorfrontal": (3.00, 7500, 1.15),
    "superiorparietal": (2.40, 5680, 1.15),
    "superiortemporal": (2.95, 3790, 1.20),
    "supramarginal": (2.80, 4020, 1.15),
    "frontalpole": (2.95, 260, 1.45),
    "temporalpole": (3.65, 460, 1.45),
    "transversetemporal": (2.60, 420, 1.10),
    "insula": (3.25, 2220, 1.00),
}

# Where each parcel sits on its hemisphere: a direction (lateral, anterior, superior) from the
# hemisphere's centre; negative "lateral" is the medial wall. Approximate lobar layout.
_CENTROIDS = {
    "bankssts": (0.90, -0.30, -0.05),
    "caudalanteriorcingulate": (-1.00, 0.30, 0.20),
    "caudalmiddlefrontal": (0.50, 0.30, 0.75),
    "cuneus": (-0.60, -0.85, 0.10),
    "entorhinal": (-0.30, 0.25, -0.90),
    "fusiform": (0.05, -0.45, -0.90),
    "inferiorparietal": (0.70, -0.65, 0.30),
    "inferiortemporal": (0.50, -0.20, -0.85),
    "isthmuscingulate": (-0.90, -0.45, 0.00),
    "lateraloccipital": (0.45, -0.90, -0.10),
    "lateralorbitofrontal": (0.40, 0.75, -0.50),
    "lingual": (-0.50, -0.75, -0.45),
    "medialorbitofrontal": (-0.40, 0.75, -0.45),
    "middletemporal": (0.85, -0.10, -0.50),
    "parahippocampal": (-0.45, -0.15, -0.85),
    "paracentral": (-0.60, -0.05, 0.80),
    "parsopercularis": (0.85, 0.35, 0.10),
    "parsorbitalis": (0.70, 0.65, -0.20),
    "parstriangularis": (0.80, 0.55, 0.05),
    "pericalcarine": (-0.50, -0.90, -0.10),
    "postcentral": (0.60, -0.20, 0.75),
    "posteriorcingulate": (-1.00, -0.10, 0.25),
    "precentral": (0.55, 0.05, 0.80),
    "precuneus": (-0.70, -0.60, 0.40),
    "rostralanteriorcingulate": (-0.90, 0.60, -0.05),
    "rostralmiddlefrontal": (0.50, 0.80, 0.30),
    "superiorfrontal": (-0.20, 0.50, 0.80),
    "superiorparietal": (0.30, -0.60, 0.75),
    "superiortemporal": (0.90, 0.00, -0.20),
    "supramarginal": (0.85, -0.35, 0.40),
    "frontalpole": (0.00, 1.00, 0.00),
    "temporalpole": (0.30, 0.45, -0.85),
    "transversetemporal": (0.75, -0.10, 0.05),
    "insula": (0.95, 0.20, -0.05),
}

# How fast each region thins with age relative to the average (frontal and lateral temporal
# cortex faster, primary visual and medial temporal cortex slower in healthy ageing).
_AGE_SLOPE = {
    **dict.fromkeys(
        (
            "caudalmiddlefrontal",
            "lateralorbitofrontal",
            "medialorbitofrontal",
            "parsopercularis",
            "parsorbitalis",
            "parstriangularis",
            "rostralmiddlefrontal",
            "superiorfrontal",
            "frontalpole",
        ),
        1.25,
    ),
    **dict.fromkeys(
        ("superiortemporal", "middletemporal", "inferiortemporal", "bankssts", "insula"), 1.1
    ),
    **dict.fromkeys(("cuneus", "lingual", "pericalcarine", "lateraloccipital"), 0.7),
    **dict.fromkeys(("entorhinal", "parahippocampal", "temporalpole"), 0.5),
    **dict.fromkeys(
        (
            "caudalanteriorcingulate",
            "isthmuscingulate",
            "posteriorcingulate",
            "rostralanteriorcingulate",
        ),
        0.8,
    ),
}


def _per_region(table, default=0.0):
    """(68,) float array from a {hemisphere region name: value} table, both hemispheres."""
    half = np.array([table.get(name, default) for name in DESIKAN_HEMISPHERE_REGIONS], float)
    return np.concatenate([half, half])


_CT_TEMPLATE = _per_region({k: v[0] for k, v in _TEMPLATE.items()})
_SA_TEMPLATE = _per_region({k: v[1] for k, v in _TEMPLATE.items()})
_K_TEMPLATE = _per_region({k: v[2] for k, v in _TEMPLATE.items()})
_AGE_SLOPE_R = _per_region(_AGE_SLOPE, default=1.0)
_MOTOR = np.array(
    [
        name.split("-", 1)[1]
        in ("precentral", "paracentral", "postcentral", "caudalmiddlefrontal")
        for name in DESIKAN_REGIONS
    ]
)
_FRONTAL_CINGULATE = np.array(
    [
        name.split("-", 1)[1]
        in (
            "medialorbitofrontal",
            "rostralanteriorcingulate",
            "caudalanteriorcingulate",
            "lateralorbitofrontal",
        )
        for name in DESIKAN_REGIONS
    ]
)

_REFERENCE_AGE = 20.0
_CT_AGE_RATE = 0.0035  # relative thinning per year, all ages (cortex thins from childhood on)
_DENSITY_AGE_RATE = 0.0015  # grey/white contrast loss per year, seen as lower GM density
_CT_NOISE, _CT_GLOBAL = 0.045, 0.04  # relative SD: region-specific and whole-brain
_SA_NOISE, _SA_GLOBAL = 0.08, 0.07
_GMV_NOISE = 0.03
_SEX_SA = (0.955, 1.045)  # female, male: about 9 % more surface (so volume) in males
_SEX_CT = (1.01, 1.0)

# --------------------------------------------------------------------------------------
# Diagnoses: relative cortical changes at severity 1 (positive = loss)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pattern:
    ct: np.ndarray  # (68,) relative thinning
    sa: np.ndarray  # (68,) relative surface loss
    gmv: np.ndarray  # (68,) extra relative volume (density) loss
    ventricles: float  # relative enlargement of the ventricles
    medial_temporal: float  # relative shrinkage of hippocampus and amygdala


def _pattern(ct, default, sa_ratio, gmv_ratio, ventricles=0.0, medial_temporal=0.0):
    ct = _per_region(ct, default)
    return _Pattern(ct, sa_ratio * ct, gmv_ratio * ct, ventricles, medial_temporal)


_AD = _pattern(
    {
        "entorhinal": 0.14,
        "parahippocampal": 0.11,
        "temporalpole": 0.10,
        "inferiortemporal": 0.08,
        "middletemporal": 0.07,
        "fusiform": 0.06,
        "precuneus": 0.06,
        "isthmuscingulate": 0.06,
        "inferiorparietal": 0.05,
        "bankssts": 0.05,
        "posteriorcingulate": 0.04,
        "supramarginal": 0.04,
        "superiorparietal": 0.03,
        "superiortemporal": 0.03,
    },
    default=0.012,
    sa_ratio=0.3,
    gmv_ratio=0.5,
    ventricles=0.35,
    medial_temporal=0.2,
)
_SCZ = _pattern(
    {
        "superiorfrontal": 0.05,
        "rostralmiddlefrontal": 0.04,
        "caudalmiddlefrontal": 0.03,
        "parsopercularis": 0.04,
        "parstriangularis": 0.04,
        "parsorbitalis": 0.04,
        "lateralorbitofrontal": 0.04,
        "medialorbitofrontal": 0.045,
        "frontalpole": 0.03,
        "superiortemporal": 0.05,
        "middletemporal": 0.04,
        "transversetemporal": 0.04,
        "bankssts": 0.03,
        "temporalpole": 0.04,
        "inferiortemporal": 0.03,
        "insula": 0.05,
        "caudalanteriorcingulate": 0.035,
        "rostralanteriorcingulate": 0.035,
    },
    default=0.01,
    sa_ratio=0.2,
    gmv_ratio=0.4,
    ventricles=0.12,
    medial_temporal=0.04,
)
# Autism: small, diffuse and of the opposite sign (slightly thicker, larger cortex).
_ASD = _pattern(
    {
        name: -0.025
        for name in (
            "superiorfrontal",
            "rostralmiddlefrontal",
            "caudalmiddlefrontal",
            "medialorbitofrontal",
            "superiortemporal",
            "middletemporal",
            "bankssts",
            "supramarginal",
        )
    },
    default=-0.012,
    sa_ratio=0.6,
    gmv_ratio=0.2,
)
_NONE = _pattern({}, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class _Cohort:
    groups: tuple  # diagnosis labels, healthy controls first
    counts: tuple  # group sizes reported in the AnatCL paper (proportions are kept)
    severity: tuple  # severity of the cohort's pattern, per group
    pattern: _Pattern
    ages: str  # age sampler name
    age_shift: tuple  # years added to the sampled age, per group
    p_male: tuple  # per group
    description: str


_COHORTS = {
    "openbhb": _Cohort(
        ("HC",),
        (1,),
        (0.0,),
        _NONE,
        "openbhb",
        (0.0,),
        (0.48,),
        "OpenBHB-like healthy controls, ages 6-86.",
    ),
    # The paper reports 712 MCI; the 60 / 40 stable / progressive split is ours.
    "adni": _Cohort(
        ("HC", "sMCI", "pMCI", "AD"),
        (633, 430, 282, 409),
        (0.0, 0.15, 0.4, 0.7),
        _AD,
        "adni",
        (0.0, 0.0, 0.5, 1.0),
        (0.47, 0.6, 0.58, 0.53),
        "ADNI-like: healthy controls, stable and progressive MCI and Alzheimer's disease "
        "(medial temporal, lateral temporal and posterior parietal atrophy), ages 55-90.",
    ),
    "oasis3": _Cohort(
        ("HC", "AD"),
        (597, 88),
        (0.0, 0.7),
        _AD,
        "oasis3",
        (0.0, 4.0),
        (0.42, 0.5),
        "OASIS-3-like: healthy controls and Alzheimer's disease, ages 42-95.",
    ),
    "schizconnect": _Cohort(
        ("HC", "SCZ-broad", "SCZ-strict", "schizoaffective", "bipolar"),
        (180, 102, 74, 11, 9),
        (0.0, 0.8, 1.0, 0.9, 0.3),
        _SCZ,
        "schizconnect",
        (0.0, 0.0, 0.0, 2.0, 3.0),
        (0.6, 0.75, 0.78, 0.6, 0.5),
        "SchizConnect-like: healthy controls, schizophrenia (broad, strict), schizoaffective "
        "and bipolar disorder (frontal, temporal and insular thinning, subtle in bipolar), "
        "ages 16-66, with AIMS, Calgary depression, handedness and Simpson-Angus gait "
        "phenotypes.",
    ),
    "abide": _Cohort(
        ("HC", "autism", "asperger", "pdd-nos"),
        (556, 339, 93, 7),
        (0.0, 1.0, 0.6, 0.8),
        _ASD,
        "abide",
        (0.0, 0.0, 0.0, 0.0),
        (0.82, 0.88, 0.9, 0.85),
        "ABIDE-I-like: healthy controls, autism, Asperger's and PDD-NOS (small diffuse "
        "effects), ages 7-64, with handedness and WASI full-scale, verbal and performance "
        "IQ phenotypes.",
    ),
}

_PHENOTYPE_COLUMNS = {
    "openbhb": (),
    "adni": (),
    "oasis3": (),
    "schizconnect": (
        "aims_overall",
        "aims_upper",
        "aims_lower",
        "depression",
        "handedness",
        "gait",
    ),
    "abide": ("handedness", "fiq", "viq", "piq"),
}

# --------------------------------------------------------------------------------------
# Template geometry, world coordinates in mm (OpenBHB / MNI-like orientation)
# --------------------------------------------------------------------------------------

_DEFAULT_SHAPE = OPENBHB_SHAPE
_MIN_DIM = 16
_OPENBHB_ZOOMS = np.diag(OPENBHB_AFFINE)[:3]  # signed: (-1.5, 1.5, 1.5)
# outer voxel edges of the OpenBHB grid, (90.75, -126.75, -72.75): first centre minus half a voxel
_FIELD_OF_VIEW_EDGE = OPENBHB_AFFINE[:3, 3] - _OPENBHB_ZOOMS / 2
_BRAIN_CENTRE = np.array([0.0, -17.0, 14.0])
_BRAIN_AXES = np.array([68.0, 86.0, 60.0])  # semi-axes of the cerebral ellipsoid at scale 1
_MIDLINE_HALF_GAP = 1.0
_BRIDGE = ((-15.0, -10.0), (40.0, 38.0))  # (y, z) centre and semi-axes, mm
# A smooth shell cannot hold the folded cortex, so the ribbon is deeper than CT: depth =
# _FOLDING * CT, about the depth of the grey-matter band of a real VBM map.
_FOLDING = 4.0
_CT_MAX = 5.0
_SCALE_RANGE = (0.85, 1.15)  # linear brain scale, sqrt(total SA / template total SA)
_FILL = 0.85  # fraction of each template parcel covered by cortex; the rest is sulcal CSF
_GM_LEVEL = 0.8  # modulated GM value of a full grey-matter voxel before site scaling
_VENTRICLE_MAX = 2.6
_N_QUANTILES = 101

# (x, y, z) centre for the right hemisphere (x mirrored for the left), semi-axes, GM level.
_BLOBS = {
    "thalamus": ((10.0, -19.0, 3.0), (7.0, 11.0, 6.0), 0.75),
    "caudate": ((13.0, 10.0, 11.0), (4.5, 13.0, 7.0), 0.8),
    "putamen": ((25.0, 2.0, 1.0), (5.5, 13.0, 9.0), 0.8),
    "hippocampus": ((27.0, -23.0, -12.0), (5.0, 17.0, 5.5), 0.8),
    "amygdala": ((23.0, -4.0, -19.0), (6.0, 6.0, 6.0), 0.8),
    "cerebellum": ((24.0, -62.0, -33.0), (24.0, 24.0, 17.0), 0.75),
}
_MEDIAL_TEMPORAL_BLOBS = ("hippocampus", "amygdala")
_BLOB_MAX_SCALE = 1.25
_VENTRICLE = ((9.0, -8.0, 19.0), (4.0, 24.0, 7.0))


def _affine_for(shape):
    """OpenBHB's 1.5 mm affine, with voxels resized so ``shape`` spans the same field of view."""
    zooms = _OPENBHB_ZOOMS * np.array(_DEFAULT_SHAPE, float) / np.array(shape, float)
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = _FIELD_OF_VIEW_EDGE + zooms / 2
    return affine


def _ellipsoid_terms(points, centre, axes):
    """Normalised radius rho and 1 / |grad rho| (mm): depth below the surface at scale s is
    about (s - rho) / |grad rho|, exact on the surface and good within a few mm of it."""
    rel = (points - centre) / axes
    rho = np.sqrt(np.sum(rel**2, axis=-1))
    grad = np.sqrt(np.sum((rel / axes) ** 2, axis=-1))
    inv_grad = rho / np.maximum(grad, 1e-12)
    return rho.astype(np.float32), inv_grad.astype(np.float32)


def _hemisphere_directions(points):
    """Unit (lateral, anterior, superior) direction of each point from its hemisphere centre."""
    half = _BRAIN_AXES[0] / 2
    local = np.stack(
        [
            (np.abs(points[:, 0]) - half) / half,
            (points[:, 1] - _BRAIN_CENTRE[1]) / _BRAIN_AXES[1],
            (points[:, 2] - _BRAIN_CENTRE[2]) / _BRAIN_AXES[2],
        ],
        axis=1,
    )
    return local / np.maximum(np.linalg.norm(local, axis=1, keepdims=True), 1e-9)


def _centroid_directions():
    centroids = np.array([_CENTROIDS[name] for name in DESIKAN_HEMISPHERE_REGIONS], float)
    return centroids / np.linalg.norm(centroids, axis=1, keepdims=True)


def _medial_distance(points):
    """Distance (mm) to the medial wall; none in the callosal / diencephalic bridge, where
    the hemispheres join and the midline holds white matter and deep grey matter."""
    centre, axes = _BRIDGE
    in_bridge = ((points[:, 1] - centre[0]) / axes[0]) ** 2 + (
        (points[:, 2] - centre[1]) / axes[1]
    ) ** 2 < 1.0
    distance = np.abs(points[:, 0]) - _MIDLINE_HALF_GAP
    return np.where(in_bridge, np.inf, distance).astype(np.float32)


def _template_depth(points):
    """Depth (mm) below the template's cortical surface (ellipsoid or medial wall)."""
    rho, inv_grad = _ellipsoid_terms(points, _BRAIN_CENTRE, _BRAIN_AXES)
    return np.minimum((1.0 - rho) * inv_grad, _medial_distance(points))


def _readonly(*arrays):
    for array in arrays:
        array.flags.writeable = False


@functools.lru_cache(maxsize=1)
def _parcel_weights():
    """Power-diagram weights that make each parcel's share of the hemisphere surface follow
    its template surface area (Voronoi cells of the fixed centroids would not)."""
    step = 2.0
    low = _BRAIN_CENTRE - _BRAIN_AXES - step
    high = _BRAIN_CENTRE + _BRAIN_AXES + step
    axes = [np.arange(1.0, high[0], step)] + [np.arange(low[d], high[d], step) for d in (1, 2)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    depth = _template_depth(points)
    surface = points[(depth >= 0) & (depth < step)]
    directions = _hemisphere_directions(surface)
    centroids = _centroid_directions()
    # A floor keeps the smallest parcels (frontal pole) visible on coarse grids.
    hemisphere_sa = _SA_TEMPLATE[: len(centroids)]
    target = np.maximum(hemisphere_sa / hemisphere_sa.sum(), 0.008)
    target /= target.sum()
    dots = directions @ centroids.T
    weights = np.zeros(len(centroids))
    # Small, clipped steps: neighbouring scores differ by a few hundredths, so larger
    # steps make cells flip between vanishing and swallowing their neighbours.
    for _ in range(300):
        share = np.bincount(np.argmax(dots + weights, axis=1), minlength=len(centroids))
        share = np.maximum(share / len(directions), 1e-4)
        weights += 0.01 * np.clip(np.log(target / share), -1.0, 1.0)
    _readonly(weights)
    return weights


@dataclass(frozen=True)
class _Geometry:
    """Everything about the template that does not change between subjects."""

    voxel: float  # mean voxel size (mm), the width of partial-volume edges
    sigma_per_mm: np.ndarray  # (3,) voxels per mm along each axis
    core_idx: np.ndarray  # flat indices of voxels that are white matter at every scale
    shell_idx: np.ndarray  # flat indices where cortex or the brain's edge may fall
    shell_rho: np.ndarray
    shell_inv_grad: np.ndarray
    shell_medial: np.ndarray  # distance (mm) to the midline gap
    shell_label: np.ndarray  # 0..67, Desikan order
    shell_margin: np.ndarray  # distance (mm) to the nearest other parcel
    margin_quantiles: np.ndarray  # (68, _N_QUANTILES) template margins, for area changes
    blobs: dict  # name -> (flat idx, rho, inv_grad, level)
    ventricle: tuple  # (flat idx, rho, inv_grad)
    atlas: np.ndarray  # template parcel labels, 0 = none, 1..68 Desikan order


def _grid_points(shape, affine, flat_idx):
    ijk = np.stack(np.unravel_index(flat_idx, shape), axis=1).astype(float)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _ellipsoid_voxels(shape, affine, voxel, centres, axes, max_scale):
    """Flat indices, normalised radius and 1 / |grad rho| of the voxels within ``max_scale``
    (plus one voxel) of the ellipsoids with semi-axes ``axes`` centred at ``centres``; a
    voxel in several keeps its smallest radius."""
    flat, rho_out, inv_out = [], [], []
    for centre in centres:
        centre = np.asarray(centre, float)
        reach = np.asarray(axes) * max_scale + voxel
        lo = np.floor((centre - reach - affine[:3, 3]) / np.diag(affine)[:3])
        hi = np.floor((centre + reach - affine[:3, 3]) / np.diag(affine)[:3])
        bounds = [
            np.arange(max(0, int(min(a, b))), min(n, int(max(a, b)) + 2))
            for a, b, n in zip(lo, hi, shape)
        ]
        grid = np.stack(np.meshgrid(*bounds, indexing="ij"), axis=-1).reshape(-1, 3)
        points = grid * np.diag(affine)[:3] + affine[:3, 3]
        rho, inv_grad = _ellipsoid_terms(points, centre, np.asarray(axes, float))
        keep = rho < max_scale + voxel / np.min(axes)
        flat.append(np.ravel_multi_index(tuple(grid[keep].T), shape))
        rho_out.append(rho[keep])
        inv_out.append(inv_grad[keep])
    flat, rho, inv_grad = (np.concatenate(a) for a in (flat, rho_out, inv_out))
    order = np.lexsort((rho, flat))
    flat, rho, inv_grad = flat[order], rho[order], inv_grad[order]
    first = np.concatenate([[True], flat[1:] != flat[:-1]])
    return flat[first], rho[first], inv_grad[first]


@functools.lru_cache(maxsize=4)
def _geometry(shape):
    """Precompute the template on the grid ``shape`` (cached: once per shape and process)."""
    affine = _affine_for(shape)
    zooms = np.abs(np.diag(affine)[:3])
    voxel = float(np.prod(zooms) ** (1 / 3))
    h = voxel / 2

    # Cerebrum: every voxel of the largest brain, split into an always-white core and a
    # shell where the ribbon and the outer edge can fall.
    flat, rho, inv_grad = _ellipsoid_voxels(
        shape, affine, voxel, [_BRAIN_CENTRE], _BRAIN_AXES, _SCALE_RANGE[1]
    )
    points = _grid_points(shape, affine, flat)
    medial = _medial_distance(points)
    depth_small = np.minimum((_SCALE_RANGE[0] - rho) * inv_grad, medial)
    depth_large = np.minimum((_SCALE_RANGE[1] - rho) * inv_grad, medial)
    in_core = depth_small - h > _FOLDING * _CT_MAX
    in_shell = ~in_core & (depth_large + h > 0)
    core_idx = flat[in_core]
    shell_idx, shell_rho, shell_inv = flat[in_shell], rho[in_shell], inv_grad[in_shell]
    shell_medial, shell_points = medial[in_shell], points[in_shell]

    # Parcels: power diagram of the centroid directions, per hemisphere; the margin to the
    # second-best parcel, in mm, lets a subject's parcel shrink or grow from its edges.
    directions = _hemisphere_directions(shell_points)
    centroids = _centroid_directions()
    weights = _parcel_weights()
    label = np.empty(len(shell_idx), np.int16)
    margin = np.empty(len(shell_idx), np.float32)
    hemisphere_centre = np.array([_BRAIN_AXES[0] / 2, _BRAIN_CENTRE[1], _BRAIN_CENTRE[2]])
    mirrored = np.column_stack([np.abs(shell_points[:, 0]), shell_points[:, 1:]])
    radius = np.linalg.norm(mirrored - hemisphere_centre, axis=1)
    for start in range(0, len(shell_idx), 65536):
        part = slice(start, start + 65536)
        scores = directions[part] @ centroids.T + weights
        best = np.argmax(scores, axis=1)
        rows = np.arange(len(best))
        s1 = scores[rows, best]
        scores[rows, best] = -np.inf
        second = np.argmax(scores, axis=1)
        s2 = scores[rows, second]
        chord = np.linalg.norm(centroids[best] - centroids[second], axis=1)
        label[part] = best
        margin[part] = (s1 - s2) / chord * radius[part]
    # DESIKAN_REGIONS lists the left hemisphere first; in RAS the right one has x > 0.
    label[shell_points[:, 0] > 0] += len(centroids)

    template_depth = np.minimum((1.0 - shell_rho) * shell_inv, shell_medial)
    template_ribbon = (template_depth >= 0) & (
        template_depth <= _FOLDING * _CT_TEMPLATE[label]
    )
    levels = np.linspace(0.0, 1.0, _N_QUANTILES)
    quantiles = np.zeros((N_REGIONS, _N_QUANTILES), np.float32)
    for region in range(N_REGIONS):
        values = margin[template_ribbon & (label == region)]
        if values.size:  # a coarse grid can miss a tiny parcel; it then never changes size
            quantiles[region] = np.quantile(values, levels)

    tau = quantiles[:, int(round((1 - _FILL) * (_N_QUANTILES - 1)))]
    atlas = np.zeros(int(np.prod(shape)), np.int16)
    covered = template_ribbon & (margin > tau[label])
    atlas[shell_idx[covered]] = label[covered] + 1

    blobs = {}
    for name, (centre, axes, level) in _BLOBS.items():
        centres = [centre, (-centre[0], centre[1], centre[2])]
        blobs[name] = (
            *_ellipsoid_voxels(shape, affine, voxel, centres, axes, _BLOB_MAX_SCALE),
            level,
        )
    centre, axes = _VENTRICLE
    ventricle = _ellipsoid_voxels(
        shape,
        affine,
        voxel,
        [centre, (-centre[0], centre[1], centre[2])],
        axes,
        _VENTRICLE_MAX,
    )
    for array in (*(b[:3] for b in blobs.values()), ventricle):
        _readonly(*array)
    atlas = atlas.reshape(shape)
    _readonly(
        core_idx,
        shell_idx,
        shell_rho,
        shell_inv,
        shell_medial,
        label,
        margin,
        quantiles,
        atlas,
    )
    return _Geometry(
        voxel=voxel,
        sigma_per_mm=1.0 / zooms,
        core_idx=core_idx,
        shell_idx=shell_idx,
        shell_rho=shell_rho,
        shell_inv_grad=shell_inv,
        shell_medial=shell_medial,
        shell_label=label,
        shell_margin=margin,
        margin_quantiles=quantiles,
        blobs=blobs,
        ventricle=ventricle,
        atlas=atlas,
    )


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


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------

_MAX_VALUE = 1.2


def _edge(depth, width):
    """Fraction of a voxel of ``width`` centred at ``depth`` that lies at positive depth."""
    fraction = depth / width
    fraction += 0.5
    return np.clip(fraction, 0.0, 1.0, out=fraction)


def _render(geom, subject, site, rng, work, out):
    """Draw one subject's grey-matter map into ``out`` (3-D float32); ``work`` is scratch.

    Arrays over the cortical shell are updated in place and dropped early so that the
    scratch stays within about two volumes at the full grid.
    """
    vox = np.float32(geom.voxel)
    h = vox / 2
    wm = np.float32(site["wm"])
    sigma = np.float32(site["noise"])
    flat = work.reshape(-1)
    flat.fill(0.0)
    flat[geom.core_idx] = wm + sigma * rng.standard_normal(len(geom.core_idx), np.float32)

    # Cortical shell: 1-D partial volumes across the brain's edge (inside), the ribbon
    # [0, folding * CT] (ribbon) and the parcel's edge (extent).
    label = geom.shell_label
    depth = np.float32(subject["scale"]) - geom.shell_rho
    depth *= geom.shell_inv_grad
    np.minimum(depth, geom.shell_medial, out=depth)
    inside = _edge(depth, vox)
    ribbon = np.minimum(depth + h, (_FOLDING * subject["ct"]).astype(np.float32)[label])
    depth -= h
    np.maximum(depth, 0.0, out=depth)
    ribbon -= depth
    del depth
    ribbon /= vox
    np.clip(ribbon, 0.0, 1.0, out=ribbon)
    noise = rng.standard_normal(len(label), np.float32)
    noise *= sigma
    noise *= inside
    value = inside
    value -= ribbon
    value *= wm
    value += noise
    del noise
    ribbon *= _edge(geom.shell_margin - subject["tau"].astype(np.float32)[label], vox)
    ribbon *= subject["density"].astype(np.float32)[label]
    value += ribbon
    del ribbon
    flat[geom.shell_idx] = value
    del value

    for name, (idx, rho, inv_grad, level) in geom.blobs.items():
        occupancy = _edge((np.float32(subject["blob_scale"][name]) - rho) * inv_grad, vox)
        occupancy *= np.float32(level * subject["blob_density"])
        flat[idx] = np.maximum(flat[idx], occupancy)

    idx, rho, inv_grad = geom.ventricle
    csf = _edge((np.float32(subject["ventricle_scale"]) - rho) * inv_grad, vox)
    flat[idx] *= 1.0 - csf

    flat *= np.float32(site["scale"])
    ndimage.gaussian_filter(
        work, sigma=site["smooth_mm"] * geom.sigma_per_mm, output=out, truncate=3.0
    )
    np.clip(out, 0.0, _MAX_VALUE, out=out)


def _draw_images(draws, pattern, shape):
    """Render every subject's grey-matter map on the grid ``shape``."""
    geom = _geometry(shape)
    n = len(draws["age"])
    age, ct, gmv, sa = draws["age"], draws["ct"], draws["gmv"], draws["sa"]
    severity, sites, site = draws["severity"], draws["sites"], draws["site"]
    years = age - _REFERENCE_AGE

    total_sa = sa.sum(1) / _SA_TEMPLATE.sum()
    scale = np.clip(np.sqrt(total_sa), *_SCALE_RANGE)
    # Each parcel covers a share of its template cell that follows its own SA relative to
    # the whole brain's (the brain's size already carries the total); the margin quantile
    # at that share is where the parcel's edge falls.
    fill = np.clip(_FILL * (sa / _SA_TEMPLATE) / total_sa[:, None], 0.05, 1.0)
    position = (1.0 - fill) * (_N_QUANTILES - 1)
    below = np.minimum(np.floor(position).astype(int), _N_QUANTILES - 2)
    regions = np.arange(N_REGIONS)
    tau = (below + 1 - position) * geom.margin_quantiles[regions, below] + (
        position - below
    ) * geom.margin_quantiles[regions, below + 1]
    density = (
        _GM_LEVEL
        * (gmv / (_K_TEMPLATE * ct * sa))
        * (1.0 - _DENSITY_AGE_RATE * years)[:, None]
    )
    ventricle_scale = np.clip(
        (1.0 + 0.012 * np.maximum(age - 25.0, 0.0))
        * (1.0 + severity * pattern.ventricles)
        * np.exp(draws["ventricle_noise"]),
        0.5,
        _VENTRICLE_MAX,
    )
    blob_factor = scale * (1.0 - 0.0015 * years) * np.exp(draws["blob_noise"])
    medial_factor = blob_factor * (1.0 - severity * pattern.medial_temporal)

    images = np.zeros((n, *shape), np.float32)
    work = np.empty(shape, np.float32)
    for i in range(n):
        blob_scale = {
            name: float(
                np.clip(
                    medial_factor[i] if name in _MEDIAL_TEMPORAL_BLOBS else blob_factor[i],
                    0.5,
                    _BLOB_MAX_SCALE,
                )
            )
            for name in _BLOBS
        }
        subject = {
            "scale": scale[i],
            "ct": ct[i],
            "tau": tau[i],
            "density": density[i],
            "blob_scale": blob_scale,
            "blob_density": 1.0 - _DENSITY_AGE_RATE * years[i],
            "ventricle_scale": ventricle_scale[i],
        }
        site_i = {key: value[site[i]] for key, value in sites.items()}
        rng = np.random.default_rng(draws["image_seeds"][i])
        _render(geom, subject, site_i, rng, work, images[i])
    return images, geom.atlas.copy()


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
    n_subjects=100,
    *,
    shape=OPENBHB_SHAPE,
    cohort="openbhb",
    n_sites=4,
    age_range=None,
    random_state=None,
    return_images=True,
):
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
    n_subjects = _check_int(n_subjects, "n_subjects", 1)
    n_sites = _check_int(n_sites, "n_sites", 1)
    shape = _check_shape(shape)
    if not isinstance(cohort, str) or cohort not in _COHORTS:
        raise ValueError(f"cohort must be one of {sorted(_COHORTS)}; got {cohort!r}.")
    age_range = _check_age_range(age_range)
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
