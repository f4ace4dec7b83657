"""Image inputs: arrays, file paths and nibabel images behind one lazy collection.

:func:`check_images` turns whatever the user passed as ``X`` into an
:class:`ImageCollection`: it validates everything that can be validated from headers
(types, shapes, dtypes, file formats, voxel sizes) before any training starts, and the
estimator then reads one float32 volume at a time with :meth:`ImageCollection.load`.

Files are read lazily. ``check_images`` reads only headers (a NIfTI header, or the few
hundred bytes of a ``.npy`` header), so a cohort of thousands of subjects is checked in
seconds and its voxels are read once, when a batch needs them. The cost of this choice is
that a file whose *voxels* are broken (a truncated ``.nii.gz``, NaNs inside) is reported
when it is first loaded, not by ``check_images``. Uncompressed files are the exception
for truncation: their expected size is known from the header, so a short ``.nii`` or
``.npy`` is refused up front.

Non-finite voxels are searched as follows (``check_finite``):

- ``"auto"`` (default): arrays and in-memory nibabel images are scanned in
  ``check_images`` (vectorised, in chunks, without a float copy of the whole array);
  files and file-backed images are checked as each volume is loaded, because scanning
  them up front would read every file twice per run.
- ``True``: files too are scanned in ``check_images``, one file at a time.
- ``False``: no check.

Volumes are used in their stored voxel order: nothing is reoriented or resampled, so all
images must already share one grid (the released AnatCL weights expect OpenBHB's CAT12
grid of 121 x 145 x 121 voxels at 1.5 mm, see :class:`GridWarning`).
"""

import math
import operator
import os
import sys
import warnings
from typing import NamedTuple

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

__all__ = [
    "ANATCL_GRID_SHAPE",
    "ANATCL_VOXEL_SIZE",
    "SUPPORTED_EXTENSIONS",
    "GridWarning",
    "ImageCollection",
    "check_images",
]

#: Voxel grid of the released AnatCL weights (OpenBHB CAT12 grey-matter maps).
ANATCL_GRID_SHAPE = (121, 145, 121)
#: Voxel size in mm of that grid.
ANATCL_VOXEL_SIZE = (1.5, 1.5, 1.5)
#: File name endings :func:`check_images` reads (matched case-insensitively).
SUPPORTED_EXTENSIONS = (".nii", ".nii.gz", ".npy")

# Voxel sizes closer than this (mm) are the same grid: headers store float32 zooms.
_ZOOM_ATOL = 1e-3
# Voxels per chunk of the eager finite scan of arrays: bounds its temporaries (a float32
# cast of float64 input plus a boolean mask) to about 20 MB whatever the array's size.
_FINITE_CHUNK_VOXELS = 1 << 22
_ACCEPTED = (
    "an array of shape (n_images, D, H, W) or (n_images, 1, D, H, W) (numpy or torch), or a "
    "list/tuple/pandas Series/1-D object array whose elements are paths (str or os.PathLike) "
    "to .nii, .nii.gz or .npy files or nibabel images"
)


class GridWarning(UserWarning):
    """Images are not on the grid the released AnatCL weights were trained on.

    The pretrained encoders saw CAT12 grey-matter maps of 121 x 145 x 121 voxels at 1.5 mm
    (OpenBHB). Other shapes run through the network (it pools globally) but their
    embeddings are not what the weights learnt to produce; resample or pad the images, or
    train on your own grid. Silence it with ``check_images(..., warn_grid=False)`` or the
    :mod:`warnings` filters.
    """


class _Item(NamedTuple):
    """One element of a list input: where its voxels are and how they are stored."""

    kind: str  # "nifti" or "npy" (a path), or "image" (a nibabel image object)
    obj: object  # absolute path (str) or the image
    raw_shape: tuple  # shape as stored, before dropping singleton axes


class ImageCollection:
    """A lazy, indexable, picklable set of 3-D volumes sharing one shape.

    Do not create it directly: :func:`check_images` builds it from arrays, paths or
    nibabel images after validating them. Volumes come out as float32 arrays of shape
    :attr:`shape` with :meth:`load` (one) or :meth:`load_batch` (several); files are
    opened on each call, so the collection holds no voxel data of its own.

    Parameters
    ----------
    shape : tuple of int
        ``(D, H, W)`` of every volume.
    zooms : tuple of float or None
        Voxel size in mm, or None when unknown.
    positions : array-like of int
        Storage positions of the images, in order (what :meth:`subset` narrows).
    name : str, default="X"
        Name of the user's argument, used in error messages.
    check_finite : {"auto", True, False}, default="auto"
        See :func:`check_images`.

    Attributes
    ----------
    shape : tuple of int
        ``(D, H, W)``, shared by all images.
    zooms : tuple of float or None
        Voxel size in mm when any image carries one (NIfTI files, nibabel images), else
        None.
    sources : list of str
        One description per image, in order: the absolute file path, ``"<array index i>"``
        for arrays or ``"<image #i>"`` for nibabel images, where ``i`` is the position in
        the ``X`` given to :func:`check_images`.
    check_finite : {"auto", True, False}
        Whether :meth:`load` refuses volumes with NaN or inf voxels (any value but False).
    """

    def __init__(self, shape, zooms, positions, *, name="X", check_finite="auto"):
        self.shape = tuple(int(s) for s in shape)
        self.zooms = None if zooms is None else tuple(float(z) for z in zooms)
        self.check_finite = check_finite
        self._positions = np.asarray(positions, dtype=np.intp)
        self._name = name

    # -- what subclasses provide -------------------------------------------------------
    def _source_at(self, pos):
        raise NotImplementedError

    def _read(self, pos):
        """float32 C-contiguous (D, H, W) array of storage position ``pos``, owned by the caller."""
        raise NotImplementedError

    def _read_into(self, pos, out):
        out[...] = self._read(pos)

    def _in_memory_at(self, pos):
        raise NotImplementedError

    # the way out named by the non-finite error; callers whose users cannot set check_finite
    # (AnatCLEmbedder) clear it through _check_images
    _nonfinite_advice = ", or pass check_finite=False to skip this check"

    def _extra_nonfinite_hint(self):
        return ""

    def _scan_finite(self, eager_files):
        """Raise on the first non-finite volume, reading all (files only if ``eager_files``)."""
        for pos in self._positions:
            if eager_files or self._in_memory_at(pos):
                self._check_volume_finite(self._read(pos), pos)

    # -- public interface --------------------------------------------------------------
    def __len__(self):
        return len(self._positions)

    @property
    def sources(self):
        """list of str : One description per image (see the class docstring)."""
        return [self._source_at(pos) for pos in self._positions]

    @property
    def in_memory(self):
        """bool : True when loading reads no file (in-memory arrays and images only)."""
        return all(self._in_memory_at(pos) for pos in self._positions)

    def load(self, i):
        """Read one volume.

        Parameters
        ----------
        i : int
            Position in this collection; negative values count from the end.

        Returns
        -------
        volume : ndarray of shape (D, H, W), dtype float32
            A new C-contiguous array: changing it changes neither the source nor later
            loads.

        Raises
        ------
        ValueError
            If the volume has NaN or inf voxels (unless ``check_finite=False``), or a file
            cannot be read or no longer matches its checked header; the message names the
            source.
        FileNotFoundError
            If the file was deleted since :func:`check_images`.
        """
        pos = self._positions[self._check_position(i)]
        volume = self._read(pos)
        if self.check_finite is not False:
            self._check_volume_finite(volume, pos)
        return volume

    def load_batch(self, indices):
        """Read several volumes into one array.

        Parameters
        ----------
        indices : array-like of int or bool, or slice
            Positions in this collection (any order, repeats allowed), a boolean mask of
            length ``len(self)``, or a slice.

        Returns
        -------
        volumes : ndarray of shape (len(indices), D, H, W), dtype float32
            A new C-contiguous array, in the order of ``indices``.
        """
        positions = self._positions[self._resolve(indices)]
        out = np.empty((len(positions), *self.shape), dtype=np.float32)
        for row, pos in enumerate(positions):
            self._read_into(pos, out[row])
            if self.check_finite is not False:
                self._check_volume_finite(out[row], pos)
        return out

    def subset(self, indices):
        """Select images without reading any voxels.

        Parameters
        ----------
        indices : array-like of int or bool, or slice
            As in :meth:`load_batch`; the order of ``indices`` is kept.

        Returns
        -------
        collection : ImageCollection
            Shares the storage (paths, images or array) of this one; :attr:`sources` keep
            naming the positions in the original ``X``.
        """
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._positions = self._positions[self._resolve(indices)]
        return new

    def __repr__(self):
        zooms = "" if self.zooms is None else f", zooms={self.zooms}"
        return (f"ImageCollection(n_images={len(self)}, shape={self.shape}{zooms}, "
                f"in_memory={self.in_memory})")

    # -- helpers -----------------------------------------------------------------------
    def _with_options(self, name, check_finite):
        new = self.subset(slice(None))
        new._name = name
        new.check_finite = check_finite
        return new

    def _check_position(self, i):
        if isinstance(i, (bool, np.bool_)):
            raise TypeError(f"image index must be an integer, got {i!r}.")
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(
                f"image index must be an integer, got {type(i).__name__}; use load_batch or "
                "subset for several images."
            ) from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"image index {i} is out of range for {n} images.")
        return i % n

    def _resolve(self, indices):
        n = len(self)
        if isinstance(indices, slice):
            return np.arange(n)[indices]
        idx = np.asarray(indices)
        if idx.ndim != 1:
            raise ValueError(
                "indices must be 1-D (positions, a boolean mask or a slice); "
                f"got shape {idx.shape}."
            )
        if idx.size == 0:
            return np.empty(0, dtype=np.intp)
        if idx.dtype == np.bool_:
            if idx.shape[0] != n:
                raise IndexError(f"boolean mask has length {idx.shape[0]}, expected {n}.")
            return np.flatnonzero(idx)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices must be integers or booleans; got dtype {idx.dtype}.")
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"index {idx[bad][0]} is out of range for {n} images.")
        return np.where(idx < 0, idx + n, idx).astype(np.intp)

    def _check_volume_finite(self, volume, pos):
        # isfinite(...).all() is a fast pass; counting only runs when something is wrong.
        if np.isfinite(volume).all():
            return
        n_bad = volume.size - int(np.count_nonzero(np.isfinite(volume)))
        raise ValueError(
            f"{self._name}: {_label(self._source_at(pos))} has {n_bad} non-finite voxel(s) "
            f"(NaN or inf) out of {volume.size}{self._extra_nonfinite_hint()}. Fix or drop "
            "this image (if NaN marks voxels outside the brain, numpy.nan_to_num sets them to "
            f"0){self._nonfinite_advice}."
        )


class _ArrayImages(ImageCollection):
    """Volumes stored in one (n, D, H, W) array that the user owns; never copied whole."""

    def __init__(self, array, *, name, check_finite):
        super().__init__(array.shape[1:], None, np.arange(array.shape[0]),
                         name=name, check_finite=check_finite)
        self._array = array

    def _source_at(self, pos):
        return f"<array index {pos}>"

    def _in_memory_at(self, pos):
        return not isinstance(self._array, np.memmap)

    def _read(self, pos):
        with np.errstate(over="ignore"):  # float64 beyond float32 range -> inf, caught by check
            return np.array(self._array[pos], dtype=np.float32, order="C")

    def _read_into(self, pos, out):
        with np.errstate(over="ignore"):
            np.copyto(out, self._array[pos], casting="unsafe")

    def _extra_nonfinite_hint(self):
        if self._array.dtype.kind == "f" and self._array.dtype.itemsize > 4:
            return " once read as float32 (values beyond +-3.4e38 become inf)"
        return ""

    def _scan_finite(self, eager_files):
        array = self._array
        if array.dtype.kind != "f":  # integers and booleans are always finite
            return
        voxels = max(1, math.prod(self.shape))
        step = max(1, _FINITE_CHUNK_VOXELS // voxels)
        positions = self._positions
        contiguous = len(positions) and np.array_equal(
            positions, np.arange(positions[0], positions[0] + len(positions)))
        for start in range(0, len(positions), step):
            chunk_pos = positions[start:start + step]
            block = (array[chunk_pos[0]:chunk_pos[-1] + 1] if contiguous else array[chunk_pos])
            with np.errstate(over="ignore"):
                if array.dtype.itemsize > 4:
                    block = block.astype(np.float32)
                finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
            if not finite.all():
                pos = chunk_pos[int(np.flatnonzero(~finite)[0])]
                self._check_volume_finite(self._read(pos), pos)


class _ItemImages(ImageCollection):
    """Volumes stored as files (read on every load) or nibabel images."""

    def __init__(self, items, shape, zooms, *, name, check_finite):
        super().__init__(shape, zooms, np.arange(len(items)),
                         name=name, check_finite=check_finite)
        self._items = items

    def _source_at(self, pos):
        return _item_source(self._items[pos], pos)

    def _in_memory_at(self, pos):
        item = self._items[pos]
        return item.kind == "image" and not nib.is_proxy(item.obj.dataobj)

    def _read(self, pos):
        item = self._items[pos]
        source = _label(self._source_at(pos))
        try:
            # Values beyond the float32 range become inf here; the finite check reports them.
            with np.errstate(over="ignore"):
                if item.kind == "npy":
                    raw = np.load(item.obj, mmap_mode="r")
                elif item.kind == "nifti":
                    # mmap=False: the array nibabel returns is ours, not a view of the file.
                    raw = np.asarray(nib.load(item.obj, mmap=False).dataobj, dtype=np.float32)
                elif nib.is_proxy(item.obj.dataobj):
                    raw = np.asarray(item.obj.dataobj, dtype=np.float32)
                else:
                    raw = np.asarray(item.obj.dataobj)  # cast by the copy below
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{self._name}: file not found: {source} (it existed when the images were "
                "checked)."
            ) from exc
        except MemoryError:
            raise
        except Exception as exc:
            raise ValueError(
                f"{self._name}: could not read the voxels of {source}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if tuple(raw.shape) != item.raw_shape:
            raise ValueError(
                f"{self._name}: {source} now holds an array of shape {tuple(raw.shape)}, but "
                f"its header had {item.raw_shape} when the images were checked."
            )
        raw = raw.reshape(self.shape)
        if item.kind == "nifti":
            # Freshly read, usually Fortran-ordered: one copy makes it C-contiguous.
            return np.ascontiguousarray(raw, dtype=np.float32)
        # A memory map of the .npy, or the user's image data: always copy.
        with np.errstate(over="ignore"):
            return np.array(raw, dtype=np.float32, order="C")


# -- check_images ---------------------------------------------------------------------


def check_images(X, *, name="X", check_finite="auto", warn_grid=True):
    """Validate images given in any supported form and wrap them in a lazy collection.

    Everything knowable from headers is checked here, before any training: types, the
    number of images, one shared 3-D shape, numeric dtypes, file formats and readability,
    one shared voxel size. File voxels are not read (unless ``check_finite=True``).

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

        A single volume (a 3-D array, one image, one path) is refused: pass a list.
    name : str, default="X"
        Name of the argument, used in error messages.
    check_finite : {"auto", True, False}, default="auto"
        Search for NaN or inf voxels. ``"auto"`` scans arrays and in-memory images now
        and files as each is loaded (so a file is read once per pass, not twice);
        ``True`` scans files now too, one at a time; ``False`` never checks.
    warn_grid : bool, default=True
        Emit one :class:`GridWarning` when the images are not 121 x 145 x 121 voxels or
        their voxel size is known and not 1.5 mm.

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
        If ``X`` is empty, a 3-D array, not of one shared 3-D shape or voxel size, holds
        non-finite values (see ``check_finite``), or a file has an unsupported extension
        or cannot be read; messages name the offending source and the shapes involved.
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

    return _check_images(X, name, check_finite, warn_grid)


def _check_images(X, name, check_finite, warn_grid,
                  nonfinite_advice=ImageCollection._nonfinite_advice):
    """check_images after its argument checks; ``nonfinite_advice`` ends non-finite errors."""
    if isinstance(X, ImageCollection):
        images = X._with_options(name, check_finite)
    else:
        images = _collect(X, name, check_finite)
    images._nonfinite_advice = nonfinite_advice
    if check_finite is not False:
        images._scan_finite(eager_files=check_finite is True)
    if warn_grid:
        _warn_grid(images, name, stacklevel=4)  # the caller of check_images
    return images


def _collect(X, name, check_finite):
    if isinstance(X, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{name} is a single path ({_short(X)}); pass a list of paths, one per image, "
            f"e.g. [{name}]."
        )
    if isinstance(X, SpatialImage):
        what = (f"a single {len(X.shape)}-D image of shape {tuple(X.shape)}"
                if len(X.shape) > 3 else "a single 3-D image")
        raise TypeError(
            f"{name} is {what}; pass a list of 3-D images or paths, one per subject"
            + (" (split a 4-D image with nibabel.funcs.four_to_three)." if len(X.shape) > 3
               else f", e.g. [{name}].")
        )
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
            return _array_images(X, name, check_finite)
    if isinstance(X, (list, tuple)):
        return _item_images(X, name, check_finite)
    raise TypeError(f"{name} must be {_ACCEPTED}; got {type(X).__name__}.")


def _tensor_to_numpy(tensor, name):
    if tensor.is_complex():
        raise TypeError(f"{name} is a complex tensor ({tensor.dtype}); images must be real-valued.")
    tensor = tensor.detach().cpu()
    try:
        return tensor.numpy()  # shares memory with a CPU tensor: no copy
    except TypeError:
        # dtypes numpy lacks (bfloat16, float8): one float32 copy is the only way in.
        return tensor.float().numpy()


def _check_dtype(dtype, what):
    if dtype.kind == "c":
        raise TypeError(f"{what} holds complex values (dtype {dtype}); images must be real-valued.")
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{what} has non-numeric dtype {dtype}; images must be numeric (float, int or bool)."
        )


def _array_images(X, name, check_finite):
    _check_dtype(X.dtype, name)
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
    return _ArrayImages(X, name=name, check_finite=check_finite)


def _item_images(X, name, check_finite):
    if len(X) == 0:
        raise ValueError(f"{name} is empty (0 images); at least one is needed.")
    items, shape, zooms = [], None, None
    first_source = first_zoom_source = None
    for i, element in enumerate(X):
        item, item_zooms = _read_item(element, i, name)
        source = _label(_item_source(item, i))
        item_shape = _volume_shape(item, source, name)
        if shape is None:
            shape, first_source = item_shape, source
        elif item_shape != shape:
            raise ValueError(
                f"all images in {name} must share one shape: {name}[{i}] {source} has shape "
                f"{item_shape}, but {name}[0] {first_source} has shape {shape}."
            )
        if item_zooms is not None:
            if zooms is None:
                zooms, first_zoom_source = item_zooms, source
            elif not np.allclose(item_zooms, zooms, rtol=0, atol=_ZOOM_ATOL):
                # Same shape, different voxel size: the same voxel index is different anatomy.
                raise ValueError(
                    f"all images in {name} must share one voxel size: {name}[{i}] {source} has "
                    f"{_mm(item_zooms)} mm voxels, but {first_zoom_source} has {_mm(zooms)} mm."
                )
        items.append(item)
    return _ItemImages(items, shape, zooms, name=name, check_finite=check_finite)


def _item_source(item, pos):
    if item.kind != "image":
        return item.obj
    filename = item.obj.get_filename()
    return f"<image #{pos}>" if filename is None else f"<image #{pos}> ({filename})"


def _label(source):
    """A source as messages show it: paths quoted, placeholders as they are."""
    return source if source.startswith("<") else f"'{source}'"


def _read_item(element, i, name):
    """Header of one list element as an _Item, plus its voxel size (or None)."""
    if isinstance(element, SpatialImage):
        _check_dtype(np.dtype(element.get_data_dtype()), f"{name}[{i}] <image #{i}>")
        return _Item("image", element, tuple(element.shape)), _zooms_of(element)
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
    path = os.fspath(element)
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
    if kind == "npy":
        return _Item("npy", path, _npy_header(path, i, name)), None
    raw_shape, zooms = _nifti_header(path, i, name)
    return _Item("nifti", path, raw_shape), zooms


def _npy_header(path, i, name):
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(fh)
            else:  # numpy writes 3.0 only for non-latin-1 field names: never an image
                raise ValueError(f"unsupported .npy format version {version}")
            data_offset = fh.tell()
            file_size = os.fstat(fh.fileno()).st_size
    except OSError:  # permissions, I/O: already name the file and are not a format problem
        raise
    except Exception as exc:
        raise ValueError(
            f"{name}[{i}] could not read '{path}' as a .npy file: {type(exc).__name__}: {exc}"
        ) from exc
    _check_dtype(dtype, f"{name}[{i}] '{path}'")
    expected = data_offset + math.prod(shape) * dtype.itemsize
    if file_size < expected:
        raise ValueError(
            f"{name}[{i}] '{path}' is truncated: its header announces an array of shape {shape} "
            f"({expected} bytes with the header) but the file has {file_size} bytes."
        )
    return tuple(shape)


def _nifti_header(path, i, name):
    try:
        img = nib.load(path)  # parses the header; voxels stay on disk
    except (FileNotFoundError, PermissionError, MemoryError):
        raise
    except Exception as exc:
        raise ValueError(
            f"{name}[{i}] could not read '{path}' as NIfTI: {type(exc).__name__}: {exc}"
        ) from exc
    dtype = np.dtype(img.get_data_dtype())
    _check_dtype(dtype, f"{name}[{i}] '{path}'")
    shape = tuple(int(s) for s in img.shape)
    if not path.lower().endswith(".gz"):
        # Uncompressed: the size is known from the header, so truncation costs one stat.
        expected = int(img.dataobj.offset) + math.prod(shape) * dtype.itemsize
        file_size = os.path.getsize(path)
        if file_size < expected:
            raise ValueError(
                f"{name}[{i}] '{path}' is truncated: its header announces {shape} voxels of "
                f"{dtype} ({expected} bytes with the header) but the file has {file_size} bytes."
            )
    return shape, _zooms_of(img)


def _zooms_of(img):
    try:
        zooms = img.header.get_zooms()
    except Exception:  # headers without voxel sizes (rare nibabel formats)
        return None
    if len(zooms) < 3:
        return None
    return tuple(float(z) for z in zooms[:3])


def _volume_shape(item, source, name):
    """(D, H, W) of one element, dropping the singleton axes its format allows."""
    raw = item.raw_shape
    if item.kind == "npy":
        ok = len(raw) in (3, 4, 5) and all(s == 1 for s in raw[:-3])
        shape = raw[-3:]
        allowed = "(D, H, W), (1, D, H, W) or (1, 1, D, H, W)"
    else:  # NIfTI and nibabel images: extra axes (time, components) come last
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


def _warn_grid(images, name, stacklevel=3, hint="pass warn_grid=False if this is intended"):
    shape_ok = images.shape == ANATCL_GRID_SHAPE
    zooms_ok = images.zooms is None or np.allclose(
        images.zooms, ANATCL_VOXEL_SIZE, rtol=0, atol=_ZOOM_ATOL)
    if shape_ok and zooms_ok:
        return
    grid = "x".join(str(s) for s in images.shape) + " voxels"
    if images.zooms is not None:
        grid += f" of {_mm(images.zooms)} mm"
    warnings.warn(
        f"{name} has images of {grid}, but the released AnatCL weights were trained on "
        f"OpenBHB CAT12 maps of {'x'.join(map(str, ANATCL_GRID_SHAPE))} voxels of "
        f"{_mm(ANATCL_VOXEL_SIZE)} mm; pretrained embeddings of other grids are not "
        f"meaningful. Resample or pad the images, or {hint}.",
        GridWarning,
        stacklevel=stacklevel,
    )


def warn_pretrained_grid(images, trained_shape, name="X", stacklevel=3):
    """Warn when pretrained weights meet images of another grid than they were trained on.

    ``trained_shape`` is the grid the weights record (:attr:`AnatCLModel.input_shape`); when
    it is None the weights are taken for the released ones (OpenBHB, 121 x 145 x 121 at 1.5 mm).
    """
    if trained_shape is None:
        _warn_grid(images, name, stacklevel=stacklevel + 1,
                   hint="silence this with warnings.filterwarnings('ignore', "
                        "category=anatcl_sklearn.GridWarning) if it is intended")
        return
    if tuple(images.shape) != tuple(trained_shape):
        warnings.warn(
            f"{name} has images of {'x'.join(map(str, images.shape))} voxels, but these "
            f"pretrained weights were trained on {'x'.join(map(str, trained_shape))} (the grid "
            "their checkpoint records); their embeddings of other grids are not meaningful. "
            "Resample or pad the images to that grid.",
            GridWarning,
            stacklevel=stacklevel,
        )


def _mm(zooms):
    return "x".join(f"{z:g}" for z in zooms)


def _short(obj, limit=80):
    text = repr(obj)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _tensor_types():
    torch = sys.modules.get("torch")
    return () if torch is None else (torch.Tensor,)
