"""Reading voxels: the lazy :class:`ImageCollection` and the one NIfTI / ``.npy`` reader.

:func:`~anatcl_sklearn.images.check_images` validates headers and builds a collection; the
estimator then reads one float32 volume at a time with :meth:`ImageCollection.load`, so a
cohort of thousands of files never sits in memory. A collection may carry a target grid
(``conform=True``): each volume is then conformed (:mod:`._conform`) as it is read. Files
are read by :mod:`._files` (a ``.nii.gz`` checked against its gzip checksum).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from contextlib import closing
from typing import TYPE_CHECKING, NamedTuple, SupportsIndex

import nibabel as nib
import numpy as np

from .._typing import ArrayLike, NDArray
from ._conform import _VolumeProxy, check_coverage, conform_data
from ._files import ImageReadError, image_voxels, load_nifti, nonfinite_voxels, out_of_memory
from ._identity import item_identity
from ._threads import read_in_order
from ._warm import WarmVolumes, no_hugepages

if TYPE_CHECKING:
    import hashlib

__all__ = ["ImageCollection"]

#: File name endings :func:`check_images` reads (matched case-insensitively).
SUPPORTED_EXTENSIONS = (".nii", ".nii.gz", ".npy")

# Voxels per chunk of the eager finite scan of arrays: bounds its temporaries (a float32
# cast of float64 input plus a boolean mask) to about 20 MB whatever the array's size.
_FINITE_CHUNK_VOXELS = 1 << 22
class _Item(NamedTuple):
    """One element of a list input: where its voxels are and how they are stored."""

    kind: str  # "nifti" or "npy" (a path), or "image" (a nibabel image object)
    obj: object  # absolute path (str) or the image
    raw_shape: tuple  # shape as stored, before dropping singleton axes
    affine: object = None  # voxel-to-world affine (4 x 4 ndarray) when the format has one


class ImageCollection:
    """A lazy, indexable, picklable set of 3-D volumes sharing one shape.

    Do not create it directly: :func:`check_images` builds it from arrays, paths or
    nibabel images after validating them. Volumes come out as float32 arrays of shape
    :attr:`shape` with :meth:`load` (one) or :meth:`load_batch` (several); files are
    opened on each call, so the collection holds no voxel data of its own (but for a
    bounded, one-use read-ahead that ``anatcl-sklearn embed``'s up-front check leaves, never
    pickled).

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
    affine : ndarray of shape (4, 4) or None, default=None
        The images' shared voxel-to-world affine, when known.
    conformed : bool, default=False
        Whether volumes are conformed to (``shape``, ``affine``) as they are read.

    Attributes
    ----------
    shape : tuple of int
        ``(D, H, W)``, shared by all images.
    zooms : tuple of float or None
        Voxel size in mm when any image carries one (NIfTI files, nibabel images), else
        None.
    affine : ndarray of shape (4, 4) or None
        The voxel-to-world affine the volumes come out on: the images' shared affine (NIfTI
        files, nibabel images), the target grid's when conformed, else None (arrays, .npy).
    conformed : bool
        True when each volume is resampled to (``shape``, ``affine``) as it is read.
    sources : list of str
        One description per image, in order: the absolute file path, ``"<array index i>"``
        for arrays or ``"<image #i>"`` for nibabel images, where ``i`` is the position in
        the ``X`` given to :func:`check_images`.
    check_finite : {"auto", True, False}
        Whether :meth:`load` refuses volumes with NaN or inf voxels (any value but False).
    """

    def __init__(self, shape: Sequence[int], zooms: Sequence[float] | None,
                 positions: ArrayLike, *, name: str = "X", check_finite: bool | str = "auto",
                 affine: ArrayLike | None = None, conformed: bool = False) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.zooms = None if zooms is None else tuple(float(z) for z in zooms)
        self.affine = None if affine is None else np.array(affine, dtype=np.float64)
        self.conformed = bool(conformed)
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

    # Decoded volumes that a check pass read (:meth:`_read_ahead`), each taken by the first load
    # of its position and then dropped: a bounded, one-use read-ahead, never pickled.
    _warm: WarmVolumes | None = None

    def _take_warm(self, pos):
        return None if self._warm is None else self._warm.take(pos)

    def _loads_are_copies(self):
        """Whether every load is a copy from memory (a volume read ahead, or an array or
        in-memory image that is not conformed): nothing a background reader could hide."""
        warm = self._warm if self._warm is not None else ()
        return all(int(pos) in warm or (self._in_memory_at(pos) and not self.conformed)
                   for pos in self._positions)

    def _read_ahead(self, max_bytes, workers=2, batch_size=None):
        """Read every volume now and refuse a damaged or non-finite one by name (what
        ``check_finite=True`` does), keeping up to ``max_bytes`` of the decoded volumes for the
        loads that follow, so a check-then-embed pass reads each file once. Files are decoded
        in ``workers`` threads (``1``: one at a time, in this thread) and checked in order of
        position: the error raised is the first failing position's, and about ``workers + 1``
        volumes exist beside those kept. With ``batch_size``, files are decoded into blocks
        that ``load_batch`` of those positions returns without a copy (images/_warm.py)."""
        self._scan_finite(eager_files=True)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_warm", None)  # a worker process or a pickle gets none of the read-ahead
        return state

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
    def update_identity(self, h: hashlib._Hash) -> None:
        """Feed what identifies these images into the hash ``h`` (e.g. :func:`hashlib.sha256`).

        Arrays by content (a memory map by its file, offset and layout), files by path, size and
        modification time; the run keys of ``AnatCLEmbedder``'s checkpoints use it.
        """
        raise NotImplementedError

    def __len__(self):
        return len(self._positions)

    @property
    def sources(self) -> list[str]:
        """list of str : One description per image (see the class docstring)."""
        return [self._source_at(pos) for pos in self._positions]

    @property
    def in_memory(self) -> bool:
        """bool : True when loading reads no file (in-memory arrays and images only)."""
        return all(self._in_memory_at(pos) for pos in self._positions)

    def load(self, i: SupportsIndex) -> NDArray[np.float32]:
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
        volume = self._take_warm(pos)
        if volume is None:  # (a volume read ahead was checked then)
            volume = self._read(pos)
            if self.check_finite is not False:
                self._check_volume_finite(volume, pos)
        return volume

    def load_batch(self, indices: ArrayLike | slice) -> NDArray[np.float32]:
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
        block = None if self._warm is None else self._warm.take_block(positions)
        if block is not None:  # read ahead into this very batch, checked then: no copy
            return block
        out = np.empty((len(positions), *self.shape), dtype=np.float32)
        for row, pos in enumerate(positions):
            warm = self._take_warm(pos)
            if warm is not None:  # checked when it was read ahead
                out[row] = warm
                continue
            self._read_into(pos, out[row])
            if self.check_finite is not False:
                self._check_volume_finite(out[row], pos)
        return out

    def subset(self, indices: ArrayLike | slice) -> ImageCollection:
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
        n_bad = nonfinite_voxels(volume)  # the one finiteness rule (conform_image's too)
        if not n_bad:
            return
        raise ValueError(
            f"{self._name}: {_label(self._source_at(pos))} has {n_bad} non-finite voxel(s) "
            f"(NaN or inf) out of {volume.size}{self._extra_nonfinite_hint()}. Fix or drop "
            "this image (if NaN marks voxels outside the brain, numpy.nan_to_num sets them to "
            f"0){self._nonfinite_advice}."
        )


class _ItemImages(ImageCollection):
    """Volumes stored as files (read on every load) or nibabel images."""

    def __init__(self, items, shape, zooms, *, name, check_finite, affine=None,
                 conformed=False, order=1):
        super().__init__(shape, zooms, np.arange(len(items)), name=name,
                         check_finite=check_finite, affine=affine, conformed=conformed)
        self._items = items
        self._order = order

    def update_identity(self, h):
        for pos in self._positions:
            item_identity(self._items[pos], h)

    def _source_at(self, pos):
        return _item_source(self._items[pos], pos)

    def _in_memory_at(self, pos):
        item = self._items[pos]
        return item.kind == "image" and not nib.is_proxy(item.obj.dataobj)

    def _scan_finite(self, eager_files, workers=2):
        # the stored voxels decide: conforming them first would only cost time
        self._check_stored(eager_files, workers if eager_files else 1)

    def _read_ahead(self, max_bytes, workers=2, batch_size=None):
        # the stored voxels, as _scan_finite reads them; kept only where they are what a load
        # returns (not conformed: conforming is left to the loads, alongside the forward)
        self._warm = WarmVolumes()
        with no_hugepages():
            self._check_stored(True, workers, self._warm, max_bytes, batch_size)
        self._warm.finish()

    def _check_stored(self, eager_files, workers, warm=None, max_bytes=0, batch_size=None):
        """Read the stored voxels (files only if ``eager_files``) in ``workers`` threads, check
        them in order of position (the first failing one's error raised); keep up to
        ``max_bytes`` of them in ``warm`` (decoded into its blocks of ``batch_size``)."""
        positions = [int(p) for p in self._positions if eager_files or self._in_memory_at(p)]
        kept = 0
        if warm is not None and batch_size and not self.conformed:
            kept = warm.plan(positions, self.shape, batch_size, max_bytes)

        def read(pos):
            return self._read(pos, conform=False,
                              out=None if warm is None else warm.destination(pos))

        with closing(read_in_order(read, positions, workers)) as volumes:
            for pos, volume in volumes:
                item = self._items[pos]
                self._check_volume_finite(volume, pos)
                if self.conformed and item.affine is not None:  # off the grid: refused now
                    assert self.affine is not None  # conformed: the target grid's affine
                    check_coverage(volume, item.affine, self.shape, self.affine,
                                   f"{self._name}: {_label(self._source_at(pos))}")
                elif warm is not None and (warm.is_planned(pos, volume) or (  # counted in plan
                        kept + volume.nbytes <= max_bytes and volume.shape == self.shape)):
                    kept += 0 if warm.is_planned(pos, volume) else volume.nbytes
                    warm.keep(pos, volume)
                del volume

    def _read(self, pos, conform=True, out=None):
        item = self._items[pos]
        source = _label(self._source_at(pos))
        try:
            # Values beyond the float32 range become inf here; the finite check reports them.
            with np.errstate(over="ignore"):
                raw = self._read_raw(item, pos)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{self._name}: file not found: {source} (it existed when the images were "
                "checked)."
            ) from exc
        except (MemoryError, ImageReadError) as exc:  # ours name the file; numpy's may be empty
            if isinstance(exc, MemoryError) and "not enough memory to read" not in str(exc):
                raise out_of_memory(f"{self._name}: {source}", exc) from exc
            raise
        except Exception as exc:  # one line (nibabel's "\n - could the file be damaged?")
            raise ValueError(f"{self._name}: could not read the voxels of {source}: "
                             f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc
        if tuple(raw.shape) != item.raw_shape:
            raise ValueError(
                f"{self._name}: {source} now holds an array of shape {tuple(raw.shape)}, but "
                f"its header had {item.raw_shape} when the images were checked."
            )
        volume_shape = raw.shape[-3:] if item.kind == "npy" else raw.shape[:3]
        raw = raw.reshape(volume_shape)
        with np.errstate(over="ignore"):  # beyond float32: inf, reported by the finite check
            if self.conformed and item.affine is not None and conform:
                if nonfinite_voxels(raw):
                    # interpolation would smear NaN over neighbours: report it as it is
                    return np.full(self.shape, np.nan, dtype=np.float32)
                assert self.affine is not None  # conformed: the target grid's affine
                check_coverage(raw, item.affine, self.shape, self.affine, f"{self._name}: {source}")
                return conform_data(raw, item.affine, self.shape, self.affine, self._order)
            if item.kind == "nifti":
                if out is not None and out.shape == raw.shape:  # a read-ahead block's row
                    np.copyto(out, raw, casting="unsafe")
                    return out
                return np.ascontiguousarray(raw, dtype=np.float32)  # usually Fortran-ordered
            # A memory map of the .npy, or the user's image data: always copy.
            return np.array(raw, dtype=np.float32, order="C")

    def _read_raw(self, item, pos):
        if item.kind == "npy":
            return np.load(item.obj, mmap_mode="r")
        # Stored dtype (scaled as the header says); _read or conforming casts it to float32.
        if item.kind == "nifti":  # read whole (ours, not a view of the file), .gz CRC-checked
            return np.asanyarray(load_nifti(item.obj, self._name, hand_over=True).dataobj)
        # a file-backed image is read as its path would be (bounded, .gz CRC-checked); the
        # user's in-memory data is copied in _read
        return image_voxels(item.obj, f"{self._name}: {_label(self._source_at(pos))}",
                            self._name)


def _item_source(item, pos):
    if item.kind != "image":
        return item.obj
    dataobj = item.obj.dataobj
    if isinstance(dataobj, _VolumeProxy) and dataobj.source is not None:
        return f"<image #{pos}> (volume {dataobj.index} of {dataobj.source})"
    filename = item.obj.get_filename()
    return f"<image #{pos}>" if filename is None else f"<image #{pos}> ({filename})"


def _label(source):
    """A source as messages show it: paths quoted, placeholders as they are."""
    return source if source.startswith("<") else f"'{source}'"
