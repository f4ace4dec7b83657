"""Datasets: a loader for OpenBHB and a synthetic brain generator for examples and tests."""

from ._openbhb import load_openbhb
from ._synthetic import make_synthetic_brains

__all__ = ["load_openbhb", "make_synthetic_brains"]
