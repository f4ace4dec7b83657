"""anatcl-sklearn: AnatCL anatomical foundation models for brain MRI in scikit-learn."""

from ._version import __version__

__all__ = ["__version__"]
