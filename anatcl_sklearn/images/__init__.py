"""Brain images in: reading, checking and conforming grey-matter maps.

- :func:`check_images` validates arrays, ``.nii`` / ``.nii.gz`` / ``.npy`` paths and nibabel
  images from their headers and returns a lazy :class:`ImageCollection`
  (:mod:`._checking`, :mod:`._reading`).
- :func:`conform_image` puts an image on OpenBHB's grid (or any other) through its affine,
  exactly when the voxel centres line up; :func:`split_4d` gives one lazy 3-D image per
  volume of a 4-D file (:mod:`._conform`).
- :data:`OPENBHB_SHAPE`, :data:`OPENBHB_AFFINE`: the grid of OpenBHB's CAT12 maps and of the
  released weights; :class:`GridWarning` (:mod:`._grid`).
"""

from ._checking import check_images
from ._conform import INTERPOLATIONS, conform_image, split_4d
from ._grid import OPENBHB_AFFINE, OPENBHB_SHAPE, OPENBHB_VOXEL_SIZE, GridWarning
from ._reading import SUPPORTED_EXTENSIONS, ImageCollection

__all__ = [
    "INTERPOLATIONS",
    "OPENBHB_AFFINE",
    "OPENBHB_SHAPE",
    "OPENBHB_VOXEL_SIZE",
    "SUPPORTED_EXTENSIONS",
    "GridWarning",
    "ImageCollection",
    "check_images",
    "conform_image",
    "split_4d",
]
