"""
Released weights on a folder of NIfTI files
===========================================

The shortest way to use AnatCL: load pretrained weights into an
:class:`~anatcl_sklearn.AnatCLEmbedder`, point it at grey-matter maps on disk, and get one
512-d embedding per brain. With the released weights and your own CAT12 maps
(``mri/mwp1*.nii``)::

    from pathlib import Path
    from anatcl_sklearn import AnatCLEmbedder

    paths = sorted(str(p) for p in Path("cat12").glob("mri/mwp1*.nii"))
    embedder = AnatCLEmbedder(pretrained="anatcl-global", fold=0,  # downloaded once
                              conform=True)
    Z = embedder.fit(paths).transform(paths)                       # (n_subjects, 512)

``fit`` trains nothing here: it loads the weights (the paper's frozen encoder); files are
read lazily, batch by batch. The weights were trained on OpenBHB's grid, 121x145x121 voxels
at 1.5 mm, which CAT12 < 12.8 writes; CAT12 >= 12.8 writes 113x137x113 by default
(``cat.extopts.bb = 12``), and ``conform=True`` pads it back exactly (or set
``cat.extopts.bb = 16``). Maps from FSL-VBM, fMRIPrep or SPM12 are resampled through their
affine by ``conform=True`` too; the example ``plot_from_your_pipeline.py`` shows each
pipeline's output and what conforming does (and does not) fix.

This example needs no download. By default it writes a folder of **synthetic** NIfTI
files, makes its own checkpoint in the released file format by a short pretraining on
other synthetic brains, and embeds the folder with it. The figure shows the embeddings
against age; the numbers say nothing about the released weights.
Run as shipped (no environment variable), it took 27 s on two idle CPU cores (measured once).

Environment variables (all optional):

``ANATCL_WEIGHTS``
    Released weights to use instead: ``anatcl-global`` or ``anatcl-local`` (downloaded
    once into ``~/.cache/anatcl_sklearn``; never in the fast mode) or a checkpoint file.
    ``ANATCL_FOLD`` picks the fold (0-4, default 0).
``ANATCL_NIFTI_DIR``
    Your folder of grey-matter maps: either ``participants.tsv`` / ``.csv`` with an
    ``image`` column (and an ``age`` column to colour the figure), see
    :func:`anatcl_sklearn.evaluation.load_cohort`, or just ``.nii`` / ``.nii.gz`` files.
``ANATCL_EXAMPLES_FAST=1``, ``ANATCL_EXAMPLES_OUTPUT``
    A tiny run; where figures, CSV files and the synthetic folder go (default
    ``examples/output/``).
"""

# %%
# Real data (optional)
# --------------------
# Everything this example reads from the environment (``ANATCL_*``, listed above) is read
# here; without it, it runs on synthetic data.
import argparse
import os
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.evaluation import embed, linear_probe, load_cohort, save_results_csv
from anatcl_sklearn.models import OFFICIAL_WEIGHTS

FAST = os.environ.get("ANATCL_EXAMPLES_FAST", "0") not in ("", "0")
WEIGHTS = os.environ.get("ANATCL_WEIGHTS") or None
CONFORM = bool(os.environ.get("ANATCL_NIFTI_DIR") and WEIGHTS)  # your maps onto the weights' grid
NIFTI_DIR = os.environ.get("ANATCL_NIFTI_DIR") or None
if not (NIFTI_DIR or WEIGHTS):
    # Synthetic brains use a small grid on purpose; the warning is for released weights.
    warnings.filterwarnings("ignore", category=GridWarning)
FOLD = int(os.environ.get("ANATCL_FOLD", "0"))
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = Path(os.environ.get("ANATCL_EXAMPLES_OUTPUT") or here / "output")
OUTPUT = OUTPUT / "plot_pretrained_weights"
OUTPUT.mkdir(parents=True, exist_ok=True)
if FAST and WEIGHTS in OFFICIAL_WEIGHTS:
    print(f"Fast mode downloads nothing: ignoring ANATCL_WEIGHTS={WEIGHTS}.")
    WEIGHTS = None
SHAPE = (24, 28, 24)
N_SUBJECTS, N_PRETRAIN, EPOCHS = (30, 32, 2) if FAST else (120, 128, 8)

# %%
# A folder of NIfTI files
# -----------------------
# Synthetic grey-matter maps written as ``.nii.gz`` with their affine (the OpenBHB field
# of view; on this coarse grid a voxel is about 7.5 mm instead of 1.5 mm), and a
# ``participants.tsv`` listing each file and the subject's age.
if NIFTI_DIR:
    folder = Path(NIFTI_DIR).expanduser()
    if any((folder / name).is_file() for name in ("participants.tsv", "participants.csv")):
        cohort = load_cohort(folder)
        paths, participants = cohort.images, cohort.participants
    else:
        paths = sorted(str(p) for p in folder.iterdir()
                       if p.name.endswith((".nii", ".nii.gz")))
        participants = pd.DataFrame({"image": paths})
    LABEL = f"images from {folder}"
else:
    folder = OUTPUT / "nifti"
    folder.mkdir(exist_ok=True)
    brains = make_synthetic_brains(N_SUBJECTS, shape=SHAPE, random_state=1)
    for pid, image in zip(brains.participants["participant_id"], brains.images):
        nib.save(nib.Nifti1Image(image, brains.affine), folder / f"{pid}_gm.nii.gz")
    participants = brains.participants.assign(
        image=[f"{pid}_gm.nii.gz" for pid in brains.participants["participant_id"]])
    participants.to_csv(folder / "participants.tsv", sep="\t", index=False)
    cohort = load_cohort(folder)
    paths, participants = cohort.images, cohort.participants
    LABEL = "SYNTHETIC brains and weights, not the released model"
print(f"{len(paths)} images, e.g. {Path(paths[0]).name}")

# %%
# Weights in the released format
# ------------------------------
# The released checkpoints are ``torch.save`` dictionaries with the model's weights under
# ``"model"`` and the training options (an ``argparse.Namespace``) under ``"opts"``.
# Without released weights at hand, we make such a file with a short AnatCL pretraining.
if WEIGHTS is None:
    pretrain = make_synthetic_brains(N_PRETRAIN, shape=SHAPE, random_state=0)
    trainer = AnatCLEmbedder(method="anatcl", descriptor="global", max_epochs=EPOCHS,
                             batch_size=16, lr=1e-3, random_state=0, verbose=0)
    trainer.fit(pretrain.images, age=pretrain.age, anatomy=pretrain.anatomy)
    WEIGHTS = OUTPUT / "anatcl-synthetic_fold0.pth"
    torch.save(
        {
            "opts": argparse.Namespace(model="resnet18", method="anatcl", descriptor="global",
                                       epochs=EPOCHS, lr=1e-3, data="synthetic"),
            "model": trainer.net_.module_.state_dict(),
            "optimizer": {},
            "epoch": EPOCHS,
            "run_id": "synthetic",
        },
        WEIGHTS,
    )
    print(f"Saved a checkpoint in the released format: {Path(WEIGHTS).name}")

# %%
# Embed the folder
# ----------------
# ``embed(..., memory=...)`` caches the embeddings on disk: a second call with the same
# weights and files reads them back instead of running the network again. Your own maps are
# conformed to the weights' grid as they are read (``conform=True``: CAT12 >= 12.8 writes
# 113x137x113 by default); the synthetic folder is already on its checkpoint's grid.
embedder = AnatCLEmbedder(pretrained=WEIGHTS, fold=FOLD,
                          conform=CONFORM).fit(paths)
cache = OUTPUT / "embedding-cache"
start = time.perf_counter()
Z = embed(embedder, paths, memory=cache)
first = time.perf_counter() - start
start = time.perf_counter()
Z_again = embed(embedder, paths, memory=cache)
print(f"Embeddings {Z.shape}: {first:.2f} s, then {time.perf_counter() - start:.2f} s "
      "from the cache")
assert np.array_equal(Z, Z_again)

# %%
# Embeddings against age
# ----------------------
age = pd.to_numeric(participants["age"], errors="coerce").to_numpy() \
    if "age" in participants else np.full(len(paths), np.nan)
pcs = PCA(n_components=2).fit_transform(Z)
ids = participants.get("participant_id", pd.Series(range(len(paths))))
pd.DataFrame({"participant_id": ids, "image": paths, "age": age, "pc1": pcs[:, 0],
              "pc2": pcs[:, 1]}).to_csv(OUTPUT / "embeddings.csv", index=False)

fig, (ax_pca, ax_age) = plt.subplots(1, 2, figsize=(8.4, 3.4))
points = ax_pca.scatter(pcs[:, 0], pcs[:, 1], c=age, cmap="viridis", s=14)
ax_pca.set_xlabel("PC 1")
ax_pca.set_ylabel("PC 2")
ax_pca.set_title("Embeddings, coloured by age", fontsize=9)
fig.colorbar(points, ax=ax_pca, label="age (years)")
known = np.isfinite(age)
if known.sum() >= 10:
    result = linear_probe(Z[known], None, age[known], "regression", cv=3, inner_cv=3,
                          random_state=0, name="AnatCL")
    print(f"Ridge probe of age on the embeddings: MAE {result.format()} years (3-fold CV)")
    save_results_csv([result], OUTPUT / "age_probe.csv", metadata={"data": LABEL})
    ax_age.scatter(age, pcs[:, 0], s=14)
    ax_age.set_xlabel("age (years)")
    ax_age.set_ylabel("PC 1")
    ax_age.set_title(f"PC 1 against age; ridge probe MAE {result.mean:.1f} y", fontsize=9)
else:
    ax_age.set_visible(False)
fig.suptitle(f"AnatCL embeddings of a NIfTI folder ({LABEL})", fontsize=10)
fig.tight_layout()
fig.savefig(OUTPUT / "embeddings_age.png", dpi=100)
print(f"Figures and tables written to {OUTPUT.name}/ in the examples' output folder.")
plt.show()
