"""The template geometry: the brain ellipsoid, hemispheres, the 68 parcels' voxels, subcortical
blobs and ventricles, on any grid (world coordinates in mm, OpenBHB / MNI-like)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ...anatomy._regions import (
    DESIKAN_HEMISPHERE_REGIONS,
    N_REGIONS,
)
from ...images._grid import OPENBHB_AFFINE, OPENBHB_SHAPE
from ._anatomy_model import _CENTROIDS, _CT_TEMPLATE, _SA_TEMPLATE

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
    flat_out: list[np.ndarray] = []
    rho_out: list[np.ndarray] = []
    inv_out: list[np.ndarray] = []
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
        flat_out.append(np.ravel_multi_index(tuple(grid[keep].T), shape))
        rho_out.append(rho[keep])
        inv_out.append(inv_grad[keep])
    flat, rho, inv_grad = (np.concatenate(a) for a in (flat_out, rho_out, inv_out))
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


