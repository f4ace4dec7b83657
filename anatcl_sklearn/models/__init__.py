"""3D ResNet encoders, the AnatCL model and its pretrained weights.

The public surface of this sub-package:

- :class:`ResNet3D`, :func:`build_encoder`, :data:`ARCHITECTURES`: 3D ResNet-18,
  -34 and -50 encoders for (n_samples, 1, D, H, W) volumes;
- :class:`AnatCLModel`: encoder plus the two-layer projection head, with the
  parameter names of the released AnatCL checkpoints;
- :func:`load_checkpoint`: safe loading of checkpoint files and state dicts;
- :data:`OFFICIAL_WEIGHTS`, :func:`fetch_official_weights`,
  :func:`resolve_pretrained`: the released ``anatcl-global`` and
  ``anatcl-local`` weights (5 folds each), downloaded once into a verified cache
  and converted once to safetensors;
- :func:`save_model_dir`, :func:`load_model_dir`, :func:`convert_checkpoint`:
  the saved-model folder (``model.safetensors`` + ``config.json`` + a
  ``README.md`` model card), read without unpickling.
"""

from ._anatcl_model import AnatCLModel
from ._checkpoint import load_checkpoint
from ._convert import convert_checkpoint
from ._official import OFFICIAL_WEIGHTS, fetch_official_weights
from ._pretrained import resolve_pretrained
from ._resnet3d import ARCHITECTURES, ResNet3D, build_encoder
from ._saved import load_model_dir, save_model_dir

__all__ = [
    "ARCHITECTURES",
    "AnatCLModel",
    "OFFICIAL_WEIGHTS",
    "ResNet3D",
    "build_encoder",
    "convert_checkpoint",
    "fetch_official_weights",
    "load_checkpoint",
    "load_model_dir",
    "resolve_pretrained",
    "save_model_dir",
]
