"""Datasets: a loader for OpenBHB, a synthetic brain generator for examples and tests, and a
writer of synthetic brains as NIfTI files (inputs for the command line)."""

from ._nifti_writer import write_synthetic_brains
from ._openbhb import load_openbhb
from ._synthetic import make_synthetic_brains

__all__ = ["load_openbhb", "make_synthetic_brains", "write_synthetic_brains"]
