"""Rendering: a CAT12-like modulated grey-matter map drawn from each subject's measures."""

import numpy as np
from scipy import ndimage

from ...anatomy._regions import (
    N_REGIONS,
)
from ._anatomy_model import _DENSITY_AGE_RATE, _K_TEMPLATE, _REFERENCE_AGE, _SA_TEMPLATE
from ._geometry import (
    _BLOB_MAX_SCALE,
    _BLOBS,
    _FILL,
    _FOLDING,
    _GM_LEVEL,
    _MEDIAL_TEMPORAL_BLOBS,
    _N_QUANTILES,
    _SCALE_RANGE,
    _VENTRICLE_MAX,
    _geometry,
)

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


