"""Conforming: bring a volume onto a target grid through its affine.

When the target's voxel centres are source voxel centres (same voxel size, axes that only
flip or swap, an offset of whole voxels), the volume is reordered and zero-padded or cropped
exactly, with no interpolation: CAT12 >= 12.8's 113 x 137 x 113 maps land bit for bit on
OpenBHB's grid, and LAS and RAS copies of one image give the same array. Otherwise the volume
is resampled with :func:`scipy.ndimage.affine_transform` (already a dependency; nibabel's own
``nibabel.processing.resample_from_to`` wraps the same function but keeps integer input
dtypes, which truncates interpolated values, and cannot use the faster diagonal path), in
float32, zero outside the source's field of view.

:func:`split_4d` gives one lazy 3-D image per volume of a 4-D file (FSL-VBM's merged
grey-matter file), for inputs that must hold one subject per element.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

from .._typing import ArrayLike, PathLike
from ..exceptions import ImageReadError
from ._files import (
    affine_of,
    check_dtype,
    check_regular_file,
    image_voxels,
    nonfinite_voxels,
    out_of_memory,
)
from ._grid import (
    MIN_COVERAGE,
    OPENBHB_AFFINE,
    OPENBHB_SHAPE,
    check_affine,
    check_coverage,
    check_shape,
)

__all__ = ["INTERPOLATIONS", "MIN_COVERAGE", "conform_image", "split_4d"]

#: Interpolation names of :func:`conform_image` and their spline orders.
INTERPOLATIONS = {"nearest": 0, "linear": 1, "cubic": 3}

# A matrix entry this close to an integer counts as one (voxel units).
_EXACT_ATOL = 1e-4


def conform_image(
    img: PathLike | SpatialImage,
    shape: Sequence[int] = OPENBHB_SHAPE,
    affine: ArrayLike = OPENBHB_AFFINE,
    interpolation: str = "linear",
) -> nib.Nifti1Image:
    """Put one 3-D image on a target grid (by default OpenBHB's), through its affine.

    Orientation, voxel size and field of view are all taken from the image's affine: a LAS
    or RAS image, a 1 mm or 2 mm map and a cropped bounding box all come out on the target
    grid. When the target's voxel centres are voxel centres of the image (same voxel size,
    axes that at most flip or swap, a whole-voxel offset: CAT12 >= 12.8's default 113 x 137 x
    113 output, or a reoriented copy), the result is an exact reordering with zero padding or
    cropping, bit for bit; otherwise it is interpolated (``interpolation``) and voxels outside
    the image's field of view are 0.

    An image whose affine puts less than ``MIN_COVERAGE`` (75%) of its non-zero voxels inside
    the target grid (a voxel counts when its centre lies within the grid's outer voxel faces)
    is refused with a ValueError naming it: a native-space scan or a wrong origin would
    otherwise conform to a blank, or silently cut, volume.

    Only the grid changes: a map from another pipeline (FSL-VBM, fMRIPrep, SPM) still differs
    from CAT12's in modulation, smoothing and template, which conforming cannot undo.

    Parameters
    ----------
    img : str, os.PathLike or nibabel image
        A ``.nii`` / ``.nii.gz`` path or a nibabel image, 3-D (a trailing singleton axis is
        allowed). A plain array is refused: it has no affine to place it with.
    shape : tuple of 3 int, default=OPENBHB_SHAPE
        Target grid shape.
    affine : array of shape (4, 4), default=OPENBHB_AFFINE
        Target voxel-to-world affine.
    interpolation : {"linear", "nearest", "cubic"}, default="linear"
        Used only when the grids do not line up exactly.

    Returns
    -------
    conformed : nibabel.Nifti1Image
        float32 data of ``shape`` with the target ``affine``.

    Raises
    ------
    TypeError
        If ``img`` is an array or another type, or holds complex or non-numeric values (as
        :func:`check_images`).
    ValueError
        If ``img`` is 4-D with several volumes, has no affine or an invalid one (non-finite,
        singular), is damaged or truncated, announces more than 2**28 voxels (checked before
        anything is allocated), has NaN or inf voxels once read as float32, lies mostly outside
        the target grid (see above), or an argument is invalid.

    Examples
    --------
    >>> import nibabel as nib, numpy as np
    >>> from anatcl_sklearn import OPENBHB_AFFINE, conform_image
    >>> cat12_bb12 = np.diag([-1.5, 1.5, 1.5, 1.0]); cat12_bb12[:3, 3] = (84, -120, -72)
    >>> img = nib.Nifti1Image(np.ones((113, 137, 113), np.float32), cat12_bb12)
    >>> out = conform_image(img)
    >>> out.shape, bool(np.allclose(out.affine, OPENBHB_AFFINE))
    ((121, 145, 121), True)
    >>> float(out.get_fdata()[4:117, 4:141, 0:113].min()), float(out.get_fdata().sum())
    (1.0, 1749353.0)
    """
    shape = check_shape(shape)
    affine = check_affine(affine)
    order = _interpolation_order(interpolation)
    label, img = _as_image(img, "img")
    source_affine = affine_of(img, f"img {label}")  # invalid: refused by name
    if source_affine is None:
        raise ValueError(f"img {label} has no affine, so it cannot be placed on a grid.")
    data = _volume_data(img, label)
    check_coverage(data, source_affine, shape, affine, f"img {label}")
    out = conform_data(data, source_affine, shape, affine, order)
    conformed = nib.Nifti1Image(out, affine.copy())
    conformed.header.set_xyzt_units("mm")
    return conformed


def conform_data(data, source_affine, shape, affine, order=1):
    """float32 array of ``shape`` on grid ``affine`` from ``data`` on ``source_affine``.

    Exact reordering and padding when the voxel centres line up; separable trilinear
    interpolation (about 4x faster than scipy's general path) when the target axes are
    source axes scaled (the usual case: other voxel size, flipped or swapped axes);
    :func:`scipy.ndimage.affine_transform` otherwise. Outside the source's field of view
    the result is 0.
    """
    data = np.asarray(data)  # any real dtype: cast to float32 by the first pass, not before
    if data.dtype.kind not in "biuf":
        data = data.astype(np.float32)
    shape = tuple(int(s) for s in shape)
    # target voxel -> source voxel
    source_affine = np.asarray(source_affine, float)
    for what, a in (("source_affine", source_affine), ("affine", np.asarray(affine, float))):
        if a.shape != (4, 4) or not np.isfinite(a).all() or abs(np.linalg.det(a[:3, :3])) < 1e-12:
            raise ValueError(f"{what} must be a finite 4x4 affine with non-zero voxel sizes "
                             f"(an invertible 3x3 part); got voxel sizes "
                             f"{np.round(np.linalg.norm(a[:3, :3], axis=0), 6).tolist()}.")
    m = np.linalg.inv(source_affine) @ np.asarray(affine, float)
    linear, offset = m[:3, :3], m[:3, 3]
    exact = _exact_mapping(linear, offset)
    if exact is not None:
        return _reorder_pad_crop(data, shape, *exact)
    axes = _monomial_axes(linear)
    if axes is not None and order == 1:
        view = data.transpose(axes)
        scales = np.array([linear[axes[j], j] for j in range(3)])
        return _separable_linear(view, shape, scales, offset[axes])
    from scipy.ndimage import affine_transform

    if not data.flags.c_contiguous:  # scipy walks the input in C order: 3x faster so
        data = np.ascontiguousarray(data)
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    return affine_transform(
        data, linear, offset=offset, output_shape=shape, output=np.float32, order=order,
        mode="constant", cval=0.0, prefilter=order > 1)


def _monomial_axes(linear):
    """Source axis of each target axis when every target axis is one scaled source axis."""
    nonzero = np.abs(linear) > 1e-9 * np.abs(linear).max()
    if not ((nonzero.sum(axis=0) == 1).all() and (nonzero.sum(axis=1) == 1).all()):
        return None
    return [int(np.flatnonzero(nonzero[:, j])[0]) for j in range(3)]


def _separable_linear(view, shape, scales, offsets):
    """Trilinear interpolation as three 1-D passes: target index t_j samples the source at
    scales[j] * t_j + offsets[j] along axis j of ``view``; 0 outside [0, n - 1] (as scipy's
    ``mode="constant"``)."""
    # C order first (NIfTI data comes Fortran-ordered), in the stored dtype (a uint8 map is
    # copied at a quarter of the float32 cost): the gathers below are 3x faster on it, and a
    # fixed pass order gives the same bits whatever the storage order.
    out = np.ascontiguousarray(view)
    for k in range(3):  # the gather along the contiguous last axis, the slowest, comes last
        n = view.shape[k]
        c = scales[k] * np.arange(shape[k]) + offsets[k]
        valid = (c >= -_EXACT_ATOL) & (c <= n - 1 + _EXACT_ATOL)
        c = np.clip(c, 0, n - 1)
        i0 = np.minimum(np.floor(c).astype(np.intp), max(n - 2, 0))
        w = c - i0
        bshape = [1, 1, 1]
        bshape[k] = -1
        lo = np.take(out, i0, axis=k).astype(np.float32, copy=False)
        lo *= np.where(valid, 1 - w, 0).astype(np.float32).reshape(bshape)
        if n > 1:
            hi = np.take(out, i0 + 1, axis=k).astype(np.float32, copy=False)
            hi *= np.where(valid, w, 0).astype(np.float32).reshape(bshape)
            lo += hi
        out = lo
    return np.ascontiguousarray(out)


def _exact_mapping(linear, offset):
    """(source axis per target axis, sign per axis, integer offset) when target voxel centres
    are source voxel centres, else None."""
    rounded = np.round(linear)
    if not np.allclose(linear, rounded, rtol=0, atol=_EXACT_ATOL):
        return None
    if not (np.abs(rounded).sum(axis=0) == 1).all() or not (np.abs(rounded).sum(axis=1) == 1).all():
        return None  # not a signed permutation (scaling or shear)
    if not np.allclose(offset, np.round(offset), rtol=0, atol=_EXACT_ATOL):
        return None
    axes = [int(np.flatnonzero(rounded[:, j])[0]) for j in range(3)]
    signs = [int(rounded[axes[j], j]) for j in range(3)]
    return axes, signs, np.round(offset).astype(int)


def _reorder_pad_crop(data, shape, axes, signs, offset):
    """out[t] = data[src(t)], src_axis(j) = sign_j * t_j + offset, zero where out of range."""
    view = data.transpose(axes)
    starts = []
    for j in range(3):
        n = view.shape[j]
        c = offset[axes[j]]
        if signs[j] < 0:  # flip the axis: the index becomes (n - 1 - c) + t
            view = np.flip(view, axis=j)
            c = n - 1 - c
        starts.append(c)
    out = np.zeros(shape, dtype=np.float32)
    dst, src = [], []
    for j in range(3):
        lo = max(0, -starts[j])
        hi = min(shape[j], view.shape[j] - starts[j])
        if hi <= lo:
            return out  # no overlap: the target lies outside the image's field of view
        dst.append(slice(lo, hi))
        src.append(slice(lo + starts[j], hi + starts[j]))
    out[tuple(dst)] = view[tuple(src)]
    return out


def _interpolation_order(interpolation):
    if not isinstance(interpolation, str) or interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"interpolation={interpolation!r} is not supported; expected one of "
            f"{list(INTERPOLATIONS)}."
        )
    return INTERPOLATIONS[interpolation]


def _as_image(img, name, lazy=False):
    """(label for messages, nibabel image) of a path or image; arrays and others refused.

    A path is read whole and checked (a .nii.gz against its CRC), or with ``lazy`` only its
    header is parsed (nibabel reads the voxels on demand)."""
    if isinstance(img, SpatialImage):
        filename = img.get_filename()
        return (f"'{filename}'" if filename else "(in memory)"), img
    if isinstance(img, (str, os.PathLike)):
        from ._files import load_nifti, verify_gzip

        path = os.path.abspath(os.path.expanduser(os.fspath(img)))
        check_regular_file(path, name)
        if not lazy:
            return f"'{path}'", load_nifti(path, name)
        if path.lower().endswith(".gz"):
            verify_gzip(path, name)  # once, whole, in constant memory
        try:
            return f"'{path}'", nib.load(path)
        except (FileNotFoundError, PermissionError):
            raise
        except Exception as exc:
            raise ValueError(f"{name}: could not read '{path}' as NIfTI: "
                             f"{type(exc).__name__}: {exc}") from exc
    if isinstance(img, np.ndarray) or type(img).__module__.startswith("torch"):
        raise TypeError(
            f"{name} is a plain {type(img).__name__} of shape {tuple(img.shape)}: it has no "
            "affine, so nothing says where its voxels are in space. Pass a NIfTI path or a "
            "nibabel image (e.g. nibabel.Nifti1Image(array, affine)) whose affine places it."
        )
    raise TypeError(f"{name} must be a NIfTI path or a nibabel image; got {type(img).__name__}.")


def _volume_data(img, label):
    shape = tuple(img.shape)
    if len(shape) == 4 and shape[3] > 1:
        raise ValueError(
            f"img {label} is a 4-D image of {'x'.join(map(str, shape[:3]))} voxels with "
            f"{shape[3]} volumes; conform one 3-D volume at a time, e.g. each image of "
            "anatcl_sklearn.split_4d(img)."
        )
    if len(shape) < 3 or any(s != 1 for s in shape[3:]):
        raise ValueError(f"img {label} has shape {shape}; expected one 3-D volume.")
    check_dtype(np.dtype(img.get_data_dtype()), f"img {label}")  # check_images' dtype rule
    try:  # scaled when the header says so; a file behind it read bounded, .gz CRC-checked
        data = image_voxels(img, f"img {label}", "img").reshape(shape[:3])
    except MemoryError as exc:
        raise out_of_memory(f"img {label}", exc) from exc
    except (ImageReadError, FileNotFoundError):  # already name the file
        raise
    except (OSError, EOFError, ValueError) as exc:  # a header without (all) its voxels
        detail = " ".join(str(exc).split())
        raise ImageReadError(f"img {label}: could not read its {'x'.join(map(str, shape[:3]))} "
                             f"voxels; the file is truncated or damaged ({type(exc).__name__}: "
                             f"{detail}).") from exc
    check_dtype(data.dtype, f"img {label}")
    n_bad = nonfinite_voxels(data)  # check_images' finiteness rule: as float32
    if n_bad:
        raise ValueError(f"img {label} has {n_bad} non-finite voxel{'s' * (n_bad > 1)} (NaN or "
                         f"inf once read as float32) out of {data.size}; fix them before "
                         "conforming (numpy.nan_to_num sets NaN to 0).")
    return data


# -- 4-D files -------------------------------------------------------------------------


class _VolumeProxy:
    """One volume of a 4-D image's data, read only when asked (nibabel's proxy protocol)."""

    is_proxy = True

    def __init__(self, dataobj, index, source):
        self._dataobj = dataobj
        self.index = index
        self.source = source  # the 4-D file's path, or None
        self.shape = tuple(int(s) for s in dataobj.shape[:3])
        self.ndim = 3
        self.dtype = np.dtype(getattr(dataobj, "dtype", np.float32))

    def __array__(self, dtype=None, copy=None):
        volume = np.asarray(self._dataobj[..., self.index])
        return volume if dtype is None else volume.astype(dtype, copy=False)

    def __getitem__(self, key):
        return np.asarray(self)[key]


def split_4d(img: PathLike | SpatialImage) -> list[SpatialImage]:
    """One lazy 3-D image per volume of a 4-D image (e.g. FSL-VBM's merged grey-matter file).

    Nothing is read but the header: each returned image reads its own volume when loaded,
    so the list can go to :class:`~anatcl_sklearn.AnatCLEmbedder` as ``X`` (one subject per
    element, in the file's order). A ``.nii.gz`` path is checked once, whole, against its
    gzip checksum first. Reading volume ``t`` of a ``.nii.gz`` decompresses the file up to
    it, so for a large merged file decompress it once (``gunzip -k``) and pass the ``.nii``.

    Parameters
    ----------
    img : str, os.PathLike or nibabel image
        A 4-D NIfTI (a 3-D one gives a list of one image).

    Returns
    -------
    volumes : list of nibabel.Nifti1Image
        ``img.shape[3]`` images of ``img.shape[:3]``, each with ``img``'s affine.
    """
    label, image = _as_image(img, "img", lazy=True)
    path = image.get_filename()
    shape = tuple(image.shape)
    if len(shape) == 3:
        return [image]
    if len(shape) != 4:
        raise ValueError(f"img {label} has shape {shape}; expected a 4-D (or 3-D) image.")
    if image.affine is None:
        raise ValueError(f"img {label} has no affine.")
    header = image.header.copy()
    header.set_data_shape(shape[:3])
    return [nib.Nifti1Image(_VolumeProxy(image.dataobj, t, path), image.affine.copy(), header)
            for t in range(shape[3])]
