"""Synthetic brains (:func:`make_synthetic_brains`), one idea per module.

- :mod:`._anatomy_model`: the template anatomy, age and sex effects, diagnoses and cohorts;
- :mod:`._geometry`: the template geometry (ellipsoid, hemispheres, parcels, blobs) on a grid;
- :mod:`._cohorts`: subjects drawn for a cohort, their phenotypes and Desikan measures;
- :mod:`._rendering`: grey-matter maps drawn from each subject's measures;
- :mod:`._generator`: :func:`make_synthetic_brains`, its checks and its description."""

from ._generator import make_synthetic_brains

__all__ = ["make_synthetic_brains"]
