"""check_images: every input form validated from headers, before any work.

Types, the number of images, one shared 3-D shape, numeric dtypes, file formats and
readability, and one shared grid: images whose affines disagree (orientation, voxel size,
rotation, origin) are refused, naming two of them, since the same voxel index would be
different anatomy. With a conform target the shapes and affines may differ (each volume is
resampled as it is read), but every image must carry an affine unless it is already of the
target's shape.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

from .._typing import ArrayLike, Images
from ._files import (
    affine_of,
    check_dtype,
    check_regular_file,
    nifti_header,
    npy_header,
    zooms_of,
)
from ._grid import (
    OPENBHB_AFFINE,
    OPENBHB_SHAPE,
    affine_mismatch,
    axcodes,
    check_affine,
    check_shape,
    describe_affine,
    mm,
    zooms_of_affine,
)
from ._grid import (
    warn_grid as _warn_grid,
)
from ._array_images import _ArrayImages
from ._reading import (
    SUPPORTED_EXTENSIONS,
    ImageCollection,
    _Item,
    _item_source,
    _ItemImages,
    _label,
)

__all__ = ["check_images"]

_ACCEPTED = (
    "an array of shape (n_images, D, H, W) or (n_images, 1, D, H, W) (numpy or torch), or a "
    "list/tuple/pandas Series/1-D object array whose elements are paths (str or os.PathLike) "
    "to .nii, .nii.gz or .npy files or nibabel images"
)


def check_images(
    X: Images,
    *,
    name: str = "X",
    check_finite: bool | str = "auto",
    warn_grid: bool = True,
    conform: bool | tuple[Sequence[int], ArrayLike] = False,
) -> ImageCollection:
    """Validate images given in any supported form and wrap them in a lazy collection.

    Everything knowable from headers is checked here, before any training: types, the
    number of images, one shared 3-D shape, numeric dtypes, file formats and readability,
    one shared grid (orientation, voxel size and origin of the affines). File voxels are not
    read (unless ``check_finite=True``).

    Parameters
    ----------
    X : array-like, list of paths or images, or ImageCollection
        One of:

        - a numpy array or torch tensor of shape ``(n_images, D, H, W)`` or
          ``(n_images, 1, D, H, W)``, numeric and not complex; it is referenced, not
          copied;
        - a list, tuple, pandas Series or 1-D object/str array whose elements are paths
          (``str`` or :class:`os.PathLike`) to ``.nii``, ``.nii.gz`` or ``.npy`` files, or
          nibabel images (mixed freely). A NIfTI may carry a trailing singleton 4th axis;
          a ``.npy`` may hold ``(D, H, W)``, ``(1, D, H, W)`` or ``(1, 1, D, H, W)``;
        - an :class:`ImageCollection` (checked again with the options given here).

        A single volume (a 3-D array, one image, one path) is refused: pass a list. So is a
        4-D image (one subject per element): split it with :func:`split_4d`.
    name : str, default="X"
        Name of the argument, used in error messages.
    check_finite : {"auto", True, False}, default="auto"
        Search for NaN or inf voxels. ``"auto"`` scans arrays and in-memory images now
        and files as each is loaded (so a file is read once per pass, not twice);
        ``True`` scans files now too, one at a time (this also verifies every
        ``.nii.gz`` against its checksum up front); ``False`` never checks.
    warn_grid : bool, default=True
        Emit one :class:`GridWarning` when the images are not on OpenBHB's grid
        (:data:`OPENBHB_SHAPE`, :data:`OPENBHB_AFFINE`).
    conform : bool or tuple (shape, affine), default=False
        Resample each volume to a target grid as it is read (:func:`conform_image`):
        ``True`` for OpenBHB's grid, or a ``(shape, affine)`` pair. Images may then differ
        in shape and orientation, but each needs an affine (NIfTI files, nibabel images);
        arrays and ``.npy`` files, which have none, are accepted only when already of the
        target's shape, and are then taken to be on its grid.

    Returns
    -------
    images : ImageCollection
        Lazy collection of the ``n_images`` volumes, in the order of ``X``.

    Raises
    ------
    TypeError
        If ``X`` or one of its elements has a type not listed above (a single path or
        image included), or an array or file holds non-numeric or complex values.
    ValueError
        If ``X`` is empty, a 3-D array, a 4-D image, not of one shared 3-D shape or grid,
        holds non-finite values (see ``check_finite``), or a file has an unsupported
        extension or cannot be read (damaged ``.nii.gz`` files included), or its header
        announces more than 2**28 voxels per volume or more than the file can hold; messages
        name the offending sources, with their shapes or axis codes and voxel sizes.
    FileNotFoundError
        If a path does not exist.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}.")
    if not (isinstance(check_finite, (bool, np.bool_))
            or (isinstance(check_finite, str) and check_finite == "auto")):
        raise ValueError(f'check_finite must be "auto", True or False; got {check_finite!r}.')
    check_finite = check_finite if isinstance(check_finite, str) else bool(check_finite)
    if not isinstance(warn_grid, (bool, np.bool_)):
        raise TypeError(f"warn_grid must be a bool, got {type(warn_grid).__name__}.")
    target = resolve_target(conform)
    return _check_images(X, name, check_finite, warn_grid, target=target)


def resolve_target(conform):
    """None, or the (shape, affine) target grid that ``conform`` asks for."""
    if conform is False or conform is None or isinstance(conform, np.bool_) and not conform:
        return None
    if conform is True or isinstance(conform, np.bool_):
        return OPENBHB_SHAPE, np.array(OPENBHB_AFFINE)
    if isinstance(conform, tuple) and len(conform) == 2:
        return check_shape(conform[0], "conform's shape"), check_affine(conform[1], "conform's affine")
    raise TypeError(f"conform must be True, False or a (shape, affine) pair; got {conform!r}.")


def _check_images(X, name, check_finite, warn_grid,
                  nonfinite_advice=ImageCollection._nonfinite_advice, target=None):
    """check_images after its argument checks; ``nonfinite_advice`` ends non-finite errors."""
    if isinstance(X, ImageCollection):
        images = _recheck(X, name, check_finite, target)
    else:
        images = _collect(X, name, check_finite, target)
    images._nonfinite_advice = nonfinite_advice
    if check_finite is not False:
        images._scan_finite(eager_files=check_finite is True)
    if warn_grid:
        _warn_grid(images, name)
    return images


def _recheck(images, name, check_finite, target):
    same_target = (target is None and not images.conformed) or (
        target is not None and images.conformed and tuple(target[0]) == images.shape
        and affine_mismatch(target[1], images.affine) is None)
    if same_target:
        return images._with_options(name, check_finite)
    if isinstance(images, _ItemImages):  # headers again, against the new target
        elements = [images._items[pos].obj for pos in images._positions]
        return _item_images(elements, name, check_finite, target)
    return _array_images(images._array[images._positions], name, check_finite, target)


def _collect(X, name, check_finite, target):
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(
            _four_d_hint(X, name) or f"{name} is a single path ({_short(X)}); pass a list of paths, one per "
            f"image, e.g. [{name}]."
        )
    if isinstance(X, SpatialImage):
        if len(X.shape) == 4 and X.shape[3] > 1:
            raise TypeError(_four_d_message(name, None, X.shape, X.get_filename()))
        raise TypeError(f"{name} is a single 3-D image; pass a list of 3-D images or paths, "
                        f"one per subject, e.g. [{name}].")
    torch = sys.modules.get("torch")  # X cannot be a tensor unless torch is imported
    if torch is not None and isinstance(X, torch.Tensor):
        X = _tensor_to_numpy(X, name)
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if isinstance(X, pandas.DataFrame):
            raise TypeError(
                f"{name} is a pandas DataFrame; pass the column of paths as a Series, e.g. "
                f"{name}['path']."
            )
        if isinstance(X, (pandas.Series, pandas.Index)):
            X = X.tolist()
    if isinstance(X, np.ndarray):
        if X.ndim == 1 and X.dtype.kind in "OU":
            X = X.tolist()
        else:
            return _array_images(X, name, check_finite, target)
    if isinstance(X, (list, tuple)):
        return _item_images(X, name, check_finite, target)
    raise TypeError(f"{name} must be {_ACCEPTED}; got {type(X).__name__}.")


def _four_d_message(name, i, shape, filename):
    where = f"{name}[{i}]" if i is not None else name
    what = f" '{filename}'" if filename else ""
    target = f"'{filename}'" if filename else "img"
    return (
        f"{where}{what} is a 4-D image of {'x'.join(map(str, shape[:3]))} voxels with "
        f"{shape[3]} volumes (like FSL-VBM's merged file), but each element of {name} must be "
        f"one subject's 3-D volume. Split it with anatcl_sklearn.split_4d({target}), which "
        "gives one lazy 3-D image per volume in order (X = [*split_4d(...)]), or embed it from "
        "the command line with `anatcl-sklearn embed`, which writes one row per volume."
    )


def _four_d_hint(path, name):
    """The 4-D message when a single path names a 4-D NIfTI, else None."""
    try:
        p = os.fspath(path)
        if isinstance(p, str) and p.lower().endswith((".nii", ".nii.gz")) and os.path.isfile(p):
            image = nib.load(p)
            shape = image.shape if isinstance(image, SpatialImage) else ()
            if len(shape) == 4 and shape[3] > 1:
                return _four_d_message(name, None, shape, os.path.abspath(p))
    except Exception:
        return None
    return None


def _tensor_to_numpy(tensor, name):
    if tensor.is_complex():
        raise TypeError(f"{name} is a complex tensor ({tensor.dtype}); images must be real-valued.")
    tensor = tensor.detach().cpu()
    try:
        return tensor.numpy()  # shares memory with a CPU tensor: no copy
    except TypeError:
        # dtypes numpy lacks (bfloat16, float8): one float32 copy is the only way in.
        return tensor.float().numpy()


def _array_images(X, name, check_finite, target=None):
    check_dtype(X.dtype, name)
    if X.ndim == 3:
        raise ValueError(
            f"{name} is a 3-D array of shape {X.shape}, a single volume; add the subject axis "
            f"({name}[np.newaxis]) or pass a list of images/paths."
        )
    if X.ndim == 5 and X.shape[1] != 1:
        raise ValueError(
            f"{name} has shape {X.shape}: {X.shape[1]} channels, but AnatCL takes one channel; "
            "expected (n_images, 1, D, H, W) or (n_images, D, H, W)."
        )
    if X.ndim not in (4, 5):
        raise ValueError(
            f"{name} is a {X.ndim}-D array of shape {X.shape}; expected (n_images, D, H, W) or "
            "(n_images, 1, D, H, W), or a list of image paths."
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 images, shape {X.shape}); at least one is needed.")
    if X.ndim == 5:
        X = X[:, 0]  # a view: the user's array is referenced, never copied
    if 0 in X.shape[1:]:
        raise ValueError(f"{name} has images of shape {X.shape[1:]} with an empty axis.")
    affine = None
    if target is not None:
        if tuple(X.shape[1:]) != tuple(target[0]):
            raise ValueError(_no_affine_message(name, "is an array", X.shape[1:], target))
        affine = target[1]  # already of the target's shape: taken to be on its grid
    return _ArrayImages(X, name=name, check_finite=check_finite, affine=affine)


def _no_affine_message(what, kind, shape, target):
    return (
        f"{what} {kind} of shape {tuple(shape)}, which has no affine, so conform=True cannot "
        f"place it on the {'x'.join(map(str, target[0]))} target grid. Pass NIfTI files or "
        "nibabel images (their affine says where the voxels are), or arrays already on the "
        "target grid."
    )


def _item_images(X, name, check_finite, target=None):
    if len(X) == 0:
        raise ValueError(f"{name} is empty (0 images); at least one is needed.")
    items, shape, zooms = [], None, None
    first = first_affine = None  # (index, source) of the first image, of the first affine
    for i, element in enumerate(X):
        item, item_zooms = _read_item(element, i, name)
        source = _label(_item_source(item, i))
        item_shape = _volume_shape(item, source, name, i)
        if target is not None:
            if item.affine is None and item_shape != tuple(target[0]):
                raise ValueError(_no_affine_message(f"{name}[{i}] {source}", "holds an array",
                                                    item_shape, target))
            items.append(item)
            continue
        if first is None:  # set with shape
            shape, first = item_shape, (i, source)
        elif item_shape != shape:
            raise ValueError(
                f"all images in {name} must share one shape: {name}[{i}] {source} has shape "
                f"{item_shape}, but {name}[{first[0]}] {first[1]} has shape {shape}. Pass "
                "conform=True to resample every image to one grid through its affine."
            )
        if item.affine is not None:
            if first_affine is None:
                first_affine = (i, source, item.affine)
            else:
                _check_same_grid(name, first_affine, (i, source, item.affine))
        if item_zooms is not None and zooms is None:
            zooms = item_zooms
        items.append(item)
    if target is not None:
        return _ItemImages(items, target[0], zooms_of_affine(target[1]), name=name,
                           check_finite=check_finite, affine=target[1], conformed=True)
    affine = None if first_affine is None else first_affine[2]
    return _ItemImages(items, shape, zooms, name=name, check_finite=check_finite, affine=affine)


def _check_same_grid(name, first, other):
    why = affine_mismatch(first[2], other[2])
    if why is None:
        return
    (i, a, aff_a), (j, b, aff_b) = first, other
    if why in ("orientation", "voxel size"):
        detail = (f"{name}[{j}] {b} is {axcodes(aff_b)} with {mm(zooms_of_affine(aff_b))} mm "
                  f"voxels, but {name}[{i}] {a} is {axcodes(aff_a)} with "
                  f"{mm(zooms_of_affine(aff_a))} mm voxels")
    else:
        detail = (f"{name}[{j}] {b} is on ({describe_affine(aff_b)}), but {name}[{i}] {a} is "
                  f"on ({describe_affine(aff_a)})")
    raise ValueError(
        f"all images in {name} must share one grid, but their affines differ in {why}: "
        f"{detail}; the same voxel would be different anatomy (left and right swapped, for "
        "mirrored orientations). Pass conform=True (AnatCLEmbedder or check_images) to "
        "resample every image to one grid through its affine."
    )


def check_image_path(element: object, i: int, name: str = "X") -> tuple[str, str]:
    """``("nifti" | "npy", absolute path)`` of the path ``name[i]``, from the file system's
    metadata alone (no file is opened): its type, that it exists and is a regular file. The one
    rule for an image path, used by the header reader and, before any weights are loaded, by
    :func:`anatcl_sklearn.embedder._plan.plan_fit`."""
    path = os.fspath(element)  # type: ignore[call-overload]
    if not isinstance(path, str):
        raise TypeError(f"{name}[{i}] is a bytes path ({_short(path)}); use a str path.")
    path = os.path.abspath(os.path.expanduser(path))
    lower = path.lower()
    if lower.endswith((".nii", ".nii.gz")):
        kind = "nifti"
    elif lower.endswith(".npy"):
        kind = "npy"
    else:
        raise ValueError(
            f"{name}[{i}] '{path}' has an unsupported file type; supported: "
            f"{', '.join(SUPPORTED_EXTENSIONS)}."
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}[{i}]: file not found: '{path}'.")
    if os.path.isdir(path):
        raise ValueError(f"{name}[{i}] '{path}' is a directory, not an image file.")
    check_regular_file(path, f"{name}[{i}]")  # a FIFO would hang the header read
    return kind, path


def _read_item(element, i, name):
    """Header of one list element as an _Item, plus its voxel size (or None)."""
    if isinstance(element, SpatialImage):
        check_dtype(np.dtype(element.get_data_dtype()), f"{name}[{i}] <image #{i}>")
        return (_Item("image", element, tuple(element.shape),
                      affine_of(element, f"{name}[{i}] <image #{i}>")),
                zooms_of(element))
    if isinstance(element, (np.ndarray, *_tensor_types())):
        raise TypeError(
            f"{name}[{i}] is an in-memory {type(element).__name__}; a list may hold paths or "
            f"nibabel images only. Stack arrays into one of shape (n_images, D, H, W) with "
            "np.stack."
        )
    if not isinstance(element, (str, os.PathLike)):
        raise TypeError(
            f"{name}[{i}] has type {type(element).__name__} ({_short(element)}); elements must "
            "be paths (str or os.PathLike) to .nii, .nii.gz or .npy files, or nibabel images."
        )
    kind, path = check_image_path(element, i, name)
    if kind == "npy":
        return _Item("npy", path, npy_header(path, i, name)), None
    raw_shape, zooms, affine = nifti_header(path, i, name)
    return _Item("nifti", path, raw_shape, affine), zooms


def _volume_shape(item, source, name, i):
    """(D, H, W) of one element, dropping the singleton axes its format allows."""
    raw = item.raw_shape
    if item.kind == "npy":
        ok = len(raw) in (3, 4, 5) and all(s == 1 for s in raw[:-3])
        shape = raw[-3:]
        allowed = "(D, H, W), (1, D, H, W) or (1, 1, D, H, W)"
    else:  # NIfTI and nibabel images: extra axes (time, components) come last
        if len(raw) == 4 and raw[3] > 1:
            filename = item.obj if item.kind == "nifti" else item.obj.get_filename()
            raise ValueError(_four_d_message(name, i, raw, filename))
        ok = len(raw) >= 3 and all(s == 1 for s in raw[3:])
        shape = raw[:3]
        allowed = "(D, H, W), optionally with trailing singleton axes such as (D, H, W, 1)"
    if not ok:
        raise ValueError(
            f"{name}: {source} holds an array of shape {raw}; expected one 3-D volume "
            f"{allowed}. Give one 3-D volume per subject."
        )
    if 0 in shape:
        raise ValueError(f"{name}: {source} has shape {raw} with an empty axis.")
    return tuple(int(s) for s in shape)


def _short(obj, limit=80):
    text = repr(obj)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _tensor_types():
    torch = sys.modules.get("torch")
    return () if torch is None else (torch.Tensor,)
