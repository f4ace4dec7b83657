"""Anatomy as training metadata: the shape every trainer requires and the scaling rule."""

from __future__ import annotations

import numpy as np

from ._regions import N_MEASURES, N_REGIONS

SCALINGS = ("auto", "minmax", "none")


def check_desikan_shape(anatomy: np.ndarray, n: int) -> None:
    """Raise ValueError unless ``anatomy`` has shape ``(n, 68, 3)``.

    Parameters
    ----------
    anatomy : numpy.ndarray
        The measures given for ``n`` images.
    n : int
        The number of images.
    """
    if anatomy.shape != (n, N_REGIONS, N_MEASURES):
        raise ValueError(
            f"anatomy must have shape ({n}, {N_REGIONS}, {N_MEASURES}): one row per image, the "
            f"{N_REGIONS} Desikan regions and the measures (CT, GMV, SA); got shape "
            f"{anatomy.shape}."
        )


def resolve_scaling(scaling: str, descriptor: str | None) -> str:
    """The scaling a trainer applies: ``"auto"`` is min-max for the local descriptor (the
    paper's γ in Eq. 2) and none otherwise.

    Parameters
    ----------
    scaling : {"auto", "minmax", "none"}
        The requested scaling.
    descriptor : {"global", "local"} or None
        The AnatCL descriptor (None for methods without anatomy).

    Returns
    -------
    scaling : {"minmax", "none"}
    """
    if scaling == "auto":
        return "minmax" if descriptor == "local" else "none"
    return scaling
