"""The synthetic anatomy model: the template (CT, SA, folding per region), age and sex effects,
the diagnoses' patterns and the cohorts (groups, ages, phenotype columns)."""

from dataclasses import dataclass

import numpy as np

from ...anatomy._regions import (
    DESIKAN_HEMISPHERE_REGIONS,
    DESIKAN_REGIONS,
)

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

