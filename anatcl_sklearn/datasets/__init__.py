"""Datasets: loaders for OpenBHB and for a BIDS study's grey-matter maps, a synthetic brain
generator for examples and tests, and writers of synthetic brains as NIfTI files (a flat
folder, or a BIDS derivatives study)."""

from ._bids import load_bids
from ._bids_writer import write_synthetic_bids
from ._nifti_writer import write_synthetic_brains
from ._openbhb import load_openbhb
from ._synthetic import make_synthetic_brains

__all__ = ["load_bids", "load_openbhb", "make_synthetic_brains", "write_synthetic_bids",
           "write_synthetic_brains"]
