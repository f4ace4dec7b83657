"""Desikan-Killiany anatomy: region names, FreeSurfer readers and the AnatCL min-max scaler.

Every anatomy array in this package has shape ``(n_subjects, 68, 3)``: regions in
:data:`DESIKAN_REGIONS` order, measures in :data:`ANATOMY_MEASURES` order (CT, GMV, SA).
"""

from ._freesurfer import read_aparc_stats, read_aparcstats2table
from ._regions import (
    ANATOMY_MEASURES,
    DESIKAN_HEMISPHERE_REGIONS,
    DESIKAN_REGIONS,
    N_MEASURES,
    N_REGIONS,
)
from ._scaler import AnatomyScaler

__all__ = [
    "ANATOMY_MEASURES",
    "AnatomyScaler",
    "DESIKAN_HEMISPHERE_REGIONS",
    "DESIKAN_REGIONS",
    "N_MEASURES",
    "N_REGIONS",
    "read_aparc_stats",
    "read_aparcstats2table",
]
