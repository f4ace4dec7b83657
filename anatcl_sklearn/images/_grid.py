"""The voxel grid: OpenBHB's, how a grid is described, compared, and warned about.

A grid is a shape ``(D, H, W)`` plus a voxel-to-world affine (4 x 4, millimetres, RAS+ world
as in NIfTI). Orientation lives in the affine alone: LAS and RAS copies of one brain have the
same shape, and only :func:`nibabel.orientations.aff2axcodes` tells them apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from .._typing import ArrayLike
from ..exceptions import GridWarning, warn

if TYPE_CHECKING:
    from ._reading import ImageCollection

__all__ = [
    "OPENBHB_AFFINE",
    "OPENBHB_SHAPE",
    "OPENBHB_VOXEL_SIZE",
    "GridWarning",
]

#: Voxel grid of OpenBHB's CAT12 VBM grey-matter maps, the grid of the released AnatCL
#: weights: 121 x 145 x 121 voxels.
OPENBHB_SHAPE = (121, 145, 121)
#: Voxel size of that grid, in mm.
OPENBHB_VOXEL_SIZE = (1.5, 1.5, 1.5)


def _openbhb_affine() -> np.ndarray:
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (90.0, -126.0, -72.0)
    affine.setflags(write=False)  # a shared constant: nobody may change it in place
    return affine


#: Voxel-to-world affine of that grid (MNI space, mm): ``diag(-1.5, 1.5, 1.5)`` with the
#: first voxel's centre at (90, -126, -72), i.e. LAS axes. Read-only.
OPENBHB_AFFINE = _openbhb_affine()

# Voxel sizes closer than this (mm) are the same: headers store float32 zooms.
ZOOM_ATOL = 1e-3
# Two affines are one grid when their linear parts agree to this (relative to the voxel
# size) and their origins to this fraction of a voxel.
_LINEAR_RTOL = 1e-3
_ORIGIN_VOXEL_FRACTION = 0.1


def zooms_of_affine(affine: ArrayLike) -> tuple[float, ...]:
    """Voxel sizes (mm) of an affine: the norms of its linear part's columns."""
    return tuple(float(z) for z in np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))


def axcodes(affine: ArrayLike) -> str:
    """Axis codes such as ``"LAS"`` of an affine."""
    return "".join(str(c) for c in nib.aff2axcodes(np.asarray(affine)))


def describe_affine(affine: ArrayLike) -> str:
    """``LAS, 1.5x1.5x1.5 mm, origin (90, -126, -72)`` for messages."""
    origin = ", ".join(f"{v:g}" for v in np.round(np.asarray(affine)[:3, 3], 3))
    return f"{axcodes(affine)}, {mm(zooms_of_affine(affine))} mm voxels, origin ({origin})"


def affine_mismatch(a: ArrayLike, b: ArrayLike) -> str | None:
    """Why two affines are not one grid (a short phrase), or None when they are."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if axcodes(a) != axcodes(b):
        return "orientation"
    za, zb = np.array(zooms_of_affine(a)), np.array(zooms_of_affine(b))
    if not np.allclose(za, zb, rtol=0, atol=ZOOM_ATOL):
        return "voxel size"
    if not np.allclose(a[:3, :3], b[:3, :3], rtol=0, atol=_LINEAR_RTOL * za.min()):
        return "rotation"
    if np.abs(a[:3, 3] - b[:3, 3]).max() > _ORIGIN_VOXEL_FRACTION * za.min():
        return "origin"
    return None


def check_affine(affine: ArrayLike, name: str = "affine") -> np.ndarray:
    """A float64 4 x 4 copy of a valid voxel-to-world affine, or a ValueError naming it."""
    try:
        out = np.array(affine, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 4x4 array of numbers; got {type(affine).__name__}.") from None
    if out.shape != (4, 4):
        raise ValueError(f"{name} must have shape (4, 4); got {out.shape}.")
    if not np.isfinite(out).all():
        raise ValueError(f"{name} has non-finite values.")
    if not np.allclose(out[3], (0, 0, 0, 1)):
        raise ValueError(f"{name} must end with the row (0, 0, 0, 1); got {out[3].tolist()}.")
    if abs(np.linalg.det(out[:3, :3])) < 1e-12:
        raise ValueError(f"{name} is singular (its 3x3 part has determinant 0).")
    return out


#: An image is refused when less than this fraction of its non-zero voxels lands inside the
#: target grid (conform_image and conform=True): a native-space scan or a wrong origin would
#: otherwise conform to a blank or half-cut volume.
MIN_COVERAGE = 0.75


def check_coverage(
    data: ArrayLike, source_affine: ArrayLike, shape: Sequence[int], affine: ArrayLike, label: str
) -> None:
    """Refuse (ValueError naming ``label``) a volume whose affine puts less than
    :data:`MIN_COVERAGE` of its non-zero voxels inside the target grid (a voxel is inside
    when its centre falls within the grid's outer voxel faces). An all-zero volume is not
    judged here."""
    ijk = np.flatnonzero(np.asarray(data).reshape(-1, order="C"))
    if ijk.size == 0:
        return
    if ijk.size > 200_000:  # a regular subsample: the fraction, not every voxel
        ijk = ijk[:: ijk.size // 200_000 + 1]
    idx = np.stack(np.unravel_index(ijk, np.shape(data)), axis=1).astype(np.float64)
    m = np.linalg.inv(np.asarray(affine, float)) @ np.asarray(source_affine, float)
    t = idx @ m[:3, :3].T + m[:3, 3]
    inside = np.all((t >= -0.5) & (t <= np.asarray(shape, float) - 0.5), axis=1)
    fraction = float(inside.mean())
    if fraction < MIN_COVERAGE:
        raise ValueError(
            f"{label}: only {100 * fraction:.1f}% of its non-zero voxels lie inside the target "
            f"grid ({_grid_text(tuple(shape), affine)}); at least {100 * MIN_COVERAGE:g}% must. "
            "Its affine places it elsewhere (a native-space scan, a wrong origin): register "
            "it to MNI space (e.g. CAT12's mwp1 output) or fix its affine."
        )


def check_shape(shape: Iterable[Any], name: str = "shape") -> tuple[int, ...]:
    """A tuple of 3 positive Python ints, or an error naming ``name``."""
    try:
        values = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be 3 positive integers; got {shape!r}.") from None
    if len(values) != 3 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v > 0
            for v in values):
        raise ValueError(f"{name} must be 3 positive integers; got {shape!r}.")
    return tuple(int(v) for v in values)


def mm(zooms: Iterable[float]) -> str:
    return "x".join(f"{z:g}" for z in zooms)


def _grid_text(
    shape: Iterable[int], affine: ArrayLike | None = None, zooms: Iterable[float] | None = None
) -> str:
    text = "x".join(str(s) for s in shape) + " voxels"
    if affine is not None:
        text += f" ({describe_affine(affine)})"
    elif zooms is not None:
        text += f" of {mm(zooms)} mm"
    return text


_CONFORM_ADVICE = (
    "Pass conform=True to AnatCLEmbedder (or use anatcl_sklearn.conform_image) to resample "
    "them through their affine; CAT12 >= 12.8 writes 113x137x113 by default, and its "
    "cat.extopts.bb = 16 option writes the OpenBHB grid directly."
)


def warn_grid(
    images: ImageCollection, name: str, hint: str = "pass warn_grid=False if this is intended"
) -> None:
    """check_images' warning: images not on OpenBHB's grid (shape, voxel size, orientation)."""
    if _on_grid(images, OPENBHB_SHAPE, OPENBHB_AFFINE):
        return
    warn(
        f"{name} has images of {_grid_text(images.shape, images.affine, images.zooms)}, but the "
        f"released AnatCL weights were trained on OpenBHB CAT12 maps of "
        f"{_grid_text(OPENBHB_SHAPE, OPENBHB_AFFINE)}; pretrained embeddings of other grids "
        f"are not meaningful. {_CONFORM_ADVICE} Or {hint}.",
        GridWarning,
    )


def _on_grid(images: ImageCollection, shape: Sequence[int], affine: ArrayLike | None) -> bool:
    if tuple(images.shape) != tuple(shape):
        return False
    if images.affine is not None and affine is not None:
        return affine_mismatch(images.affine, affine) is None
    if images.zooms is not None and affine is not None:
        return np.allclose(images.zooms, zooms_of_affine(affine), rtol=0, atol=ZOOM_ATOL)
    return True


def warn_pretrained_grid(
    images: ImageCollection,
    trained_shape: Sequence[int] | None,
    trained_affine: ArrayLike | None = None,
    name: str = "X",
) -> None:
    """Warn when pretrained weights meet images of another grid than they were trained on.

    ``trained_shape`` / ``trained_affine`` are the grid the weights record
    (:attr:`AnatCLModel.input_shape`, :attr:`AnatCLModel.input_affine`); when the shape is None
    the weights are taken for the released ones (OpenBHB's grid).
    """
    if trained_shape is None:
        trained_shape, trained_affine = OPENBHB_SHAPE, OPENBHB_AFFINE
    if _on_grid(images, trained_shape, trained_affine):
        return
    warn(
        f"{name} has images of {_grid_text(images.shape, images.affine, images.zooms)}, but "
        f"these pretrained weights were trained on {_grid_text(trained_shape, trained_affine)};"
        f" their embeddings of other grids are not meaningful. {_CONFORM_ADVICE} Silence this "
        "with warnings.filterwarnings('ignore', category=anatcl_sklearn.GridWarning) if it is "
        "intended.",
        GridWarning,
    )


def affine_or_openbhb(shape: Sequence[int], affine: ArrayLike | None) -> np.ndarray | None:
    """The affine of a grid: the one recorded, else OpenBHB's for OpenBHB's shape (arrays and
    .npy files of that shape, OpenBHB's own format, are taken to be on its grid), else None."""
    if affine is not None:
        return np.asarray(affine, dtype=np.float64)
    return np.array(OPENBHB_AFFINE) if tuple(shape) == OPENBHB_SHAPE else None


_NO_AFFINE = {
    "weights": ("conform=True, but these pretrained weights record a training grid of {grid} "
                "voxels without its affine, so there is no grid to conform to; conform the images "
                "yourself (anatcl_sklearn.conform_image with that grid's affine) and pass "
                "conform=False."),
    "fit": ("conform=True, but this embedder was fitted on images without an affine (arrays or "
            ".npy files on a {grid} grid), so there is no grid to conform to; set "
            "conform=False and pass images on that grid."),
}


def target_grid(
    conform: bool | tuple[Sequence[int], ArrayLike] | None,
    recorded_shape: Sequence[int] | None = None,
    recorded_affine: ArrayLike | None = None,
    *,
    recorded_by: str = "weights",
) -> tuple[tuple[int, ...], np.ndarray] | None:
    """The grid images are conformed to: the one function that decides it.

    Parameters
    ----------
    conform : bool or (shape, affine)
        False: no target (images must share one grid). True: the recorded grid if there is one
        (the pretrained weights' in ``fit``, the fitted one in ``transform``), else OpenBHB's.
        A (shape, affine) pair: that grid.
    recorded_shape, recorded_affine : tuple and array of shape (4, 4), default=None
        The grid the weights (or the fit) record; an OpenBHB-shaped grid without an affine is
        OpenBHB's.
    recorded_by : {"weights", "fit"}, default="weights"
        Who recorded it, for the message when it has no affine.

    Returns
    -------
    target : None or (shape, affine)
    """
    if recorded_shape is None or conform is False or conform is None or (
            isinstance(conform, (tuple, list))):
        from ._checking import resolve_target

        return resolve_target(conform)
    if isinstance(conform, np.bool_) and not conform:
        return None
    affine = affine_or_openbhb(recorded_shape, recorded_affine)
    if affine is None:
        raise ValueError(_NO_AFFINE[recorded_by].format(
            grid="x".join(map(str, recorded_shape))))
    return tuple(int(s) for s in recorded_shape), affine
