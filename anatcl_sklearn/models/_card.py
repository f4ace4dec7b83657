"""The model card (``README.md``) of a saved-model folder, generated from its config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["model_card", "PAPER_BIBTEX"]

PAPER_BIBTEX = """@article{barbano2026anatcl,
  title   = {Anatomical Foundation Models for Brain {MRIs}},
  author  = {Barbano, Carlo Alberto and Brunello, Matteo and Dufumier, Benoit and
             Grangetto, Marco},
  journal = {Pattern Recognition Letters},
  year    = {2026}
}"""

_METHODS = {
    "anatcl": "AnatCL (age and anatomy, Eq. 4 of the paper)",
    "yaware": "y-Aware (age-weighted InfoNCE)",
    "expw": "ExpW (exponentially weighted contrastive loss on age)",
    "simclr": "SimCLR (self-supervised)",
    "l1": "L1 age regression",
}


def model_card(config: Mapping[str, Any], title: str | None = None) -> str:
    """Markdown model card for a saved model, with Hugging Face Hub front matter.

    Parameters
    ----------
    config : dict
        The completed config of :func:`~anatcl_sklearn.models._saved.save_model_dir`.
    title : str, default=None
        First heading; defaults to a description of the method.

    Returns
    -------
    card : str
    """
    model = config.get("model", {})
    training = config.get("training") or {}
    grid = config.get("input") or {}
    method = training.get("method")
    label: str = _METHODS.get(method or "", method or "unknown method")
    if method == "anatcl":
        label += f", {training.get('descriptor', '?')} descriptor"
    title = title or f"AnatCL encoder: {model.get('arch', '?')} pretrained with {label}"
    shape = "x".join(str(s) for s in grid.get("shape") or []) or "unknown"
    voxel = "x".join(f"{v:g}" for v in grid.get("voxel_size") or []) or "?"
    rows = [("Architecture", f"3D {model.get('arch', '?')} encoder "
                             f"({model.get('n_features', '?')} features) + projection head "
                             f"({model.get('n_features', '?')} -> {model.get('out_dim', '?')}, "
                             f"{'L2-normalised' if model.get('normalize', True) else 'raw'})"),
            ("Input grid", f"{shape} voxels"
                           + (f", {voxel} mm, {grid.get('orientation')} axes"
                              if grid.get("affine") else " (no affine recorded)")),
            ("Objective", label)]
    for key, name in (("sigma", "age kernel width (years)"), ("kernel", "age kernel"),
                      ("lambda_age", "lambda_age"), ("lambda_anat", "lambda_anat"),
                      ("temperature", "temperature"), ("augment", "augmentation"),
                      ("epochs_run", "epochs run"), ("batch_size", "batch size"),
                      ("lr", "learning rate"), ("weight_decay", "weight decay"),
                      ("anatomy_scaling", "anatomy scaling"), ("n_subjects", "training subjects"),
                      ("pretrained_from", "initialised from")):
        if training.get(key) is not None:
            rows.append((name[0].upper() + name[1:], str(training[key])))
    versions = config.get("versions") or {}
    rows.append(("Saved with", ", ".join(f"{k} {v}" for k, v in versions.items())))
    rows.append(("Weights SHA-256", f"`{config.get('weights_sha256', '?')}`"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    data = training.get("data") or "not recorded"
    return f"""---
library_name: anatcl-sklearn
tags:
- neuroimaging
- brain-mri
- contrastive-learning
- anatcl
- scikit-learn
---

# {title}

A 3D convolutional encoder of brain grey-matter maps, trained with
anatcl-sklearn (`pip install anatcl-sklearn`) following AnatCL
(Barbano et al., *Anatomical foundation models for brain MRIs*, Pattern Recognition Letters
2026). Its 512-d embeddings feed ordinary scikit-learn models (linear probes for diagnosis,
age or clinical scores).

## How it was made

| | |
|---|---|
{table}

Training data: {data}.

## Intended use and limits

- Input: modulated grey-matter maps in MNI space on the grid above (CAT12 VBM, as OpenBHB).
  Maps from other pipelines (FSL-VBM, fMRIPrep, SPM) can be put on the grid with
  `conform=True`, but their modulation, smoothing and template differ from CAT12's: check the
  embeddings on your own controls before trusting them.
- A research tool, not a medical device: no diagnosis should rest on it alone. Embeddings carry
  site, scanner and population effects of the training data.
- The weights were trained on healthy subjects only when the data above says so; performance
  on patients is what downstream probes measure, not a guarantee.

## How to use it

```python
from anatcl_sklearn import AnatCLEmbedder

embedder = AnatCLEmbedder(pretrained="path/to/this/folder", conform=True).fit(paths)
Z = embedder.transform(paths)  # (n_images, 512)
```

or from the command line:

```
anatcl-sklearn embed 'sub-*/mri/mwp1*.nii' --weights path/to/this/folder --conform --output embeddings.csv
```

The folder holds `model.safetensors` (the encoder `encoder.*` and head `head.0`, `head.2`),
`config.json` (architecture, input grid and affine, training settings, the fitted anatomy
scaler) and this card. Loading it unpickles nothing.

## Citation

```bibtex
{PAPER_BIBTEX}
```
"""
