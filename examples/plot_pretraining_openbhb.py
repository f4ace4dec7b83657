"""
Pretraining and OpenBHB probes (Table 2)
========================================

Pretrain a 3D ResNet-18 with each method of the paper -- SimCLR, L1 age regression,
y-Aware, ExpW and AnatCL with the global (G3) and local (L3) anatomical descriptor -- then
freeze it and probe its embeddings of held-out subjects with the paper's linear models:
age (ridge regression, mean absolute error in years) and sex (logistic regression,
balanced accuracy), 5-fold cross-validated.

By default the example runs on **synthetic brains**: small grids, few subjects, a few
epochs. Its numbers show that the pipeline works and that pretraining finds signal the
synthetic generator put there; they are not the paper's. The output below says which mode
produced it (its first line). In the default mode (no environment variable) 96 synthetic
subjects pretrain each method for 8 epochs, 120 others are probed with 5 outer folds and,
to keep the page under five minutes on two CPU cores, 3 inner folds (5 on real data, as in
the paper). The fast mode (``ANATCL_EXAMPLES_FAST=1``, which the documentation site
renders) runs three methods for two epochs on 32 subjects and probes 60 with 3 folds.

Each pretrained encoder is saved in an on-disk cache keyed by its parameters and its
training data: the Alzheimer's, psychiatry and phenotype examples pretrain the same methods
on the same subjects, so they load these encoders instead of training them again (delete
the cache folder and they train again).

Environment variables (all optional):

``ANATCL_OPENBHB_DIR``
    Folder of OpenBHB (holding ``participants.tsv``): pretrain on its training split and
    probe its validation split with the paper's settings (300 epochs, batch 32, learning
    rate 1e-4 decayed by 0.9 every 10 epochs) -- a GPU job of hours per method.
``ANATCL_EPOCHS``
    Pretraining epochs (default 300 on OpenBHB, 8 on synthetic brains).
``ANATCL_WEIGHTS=official``
    Use the released AnatCL weights (downloaded once) for the two AnatCL rows instead of
    pretraining them; ``ANATCL_FOLD`` picks the fold (default 0).
``ANATCL_CHECKPOINT_DIR``
    Save each pretraining run there; a later run with the same settings and data (this
    example again, or the Alzheimer's, psychiatry and phenotype examples) reloads it
    instead of training again.
``ANATCL_EXAMPLES_FAST=1``
    A tiny run (three methods, two epochs), as the test suite does.
``ANATCL_EXAMPLES_OUTPUT``
    Where figures and CSV files go (default ``examples/output/``).
"""

# %%
# Real data (optional)
# --------------------
# Everything this example reads from the environment (``ANATCL_*``, listed above) is read
# here; without it, it runs on synthetic brains.
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.datasets import load_openbhb, make_synthetic_brains
from anatcl_sklearn.evaluation import (
    PAPER_METHODS,
    PAPER_TABLES,
    RELEASED_METHODS,
    linear_probe,
    report_paper_table,
)
from anatcl_sklearn.evaluation._encoder_cache import fit_or_load
from anatcl_sklearn.evaluation._gallery import (
    FAST_METHODS,
    cache_description,
    settings_from_env,
)

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
S = settings_from_env("plot_pretraining_openbhb", default_output=here / "output")
REAL = bool(S.openbhb_dir)
if not (REAL or S.official):
    # Synthetic brains use a small grid on purpose; the warning is for released weights.
    warnings.filterwarnings("ignore", category=GridWarning)
if REAL:
    pretrain = load_openbhb(S.openbhb_dir, split="train")
    evaluation = load_openbhb(S.openbhb_dir, split="val")
    CV, INNER_CV = 5, 5
else:
    pretrain = make_synthetic_brains(S.n_pretrain, shape=(24, 28, 24), random_state=0)
    evaluation = make_synthetic_brains(60 if S.fast else 120, shape=(24, 28, 24),
                                       random_state=1)
    CV, INNER_CV = S.cv, 3
# The fast run keeps one self-supervised, one age-supervised and one anatomical method.
ROWS = list(FAST_METHODS) if S.fast and not REAL else list(PAPER_METHODS)
LABEL = "OpenBHB" if REAL else "SYNTHETIC brains, not the paper's data or numbers"
MODE = "fast mode" if S.fast else "default mode"
print(f"Running in the {MODE}: pretraining on {len(pretrain.age)} subjects, probing "
      f"{len(evaluation.age)} ({LABEL}).")
print(f"Encoder cache: {cache_description(S)}.")

# %%
# Pretrain each method, embed the held-out subjects once, probe
# -------------------------------------------------------------
# Pretraining sees one set of subjects; the probes are cross-validated on others, so no
# probe is scored on an image the encoder was trained on. Each method is an
# :class:`~anatcl_sklearn.AnatCLEmbedder`: ``fit`` pretrains it with the subjects' age and
# anatomy, ``transform`` embeds subjects with the frozen encoder, and
# :func:`~anatcl_sklearn.evaluation.linear_probe` cross-validates the paper's linear probe
# of age (ridge, mean absolute error) and sex (logistic regression, balanced accuracy) on
# the embeddings. ``fit_or_load`` is ``encoder.fit(...)`` with the gallery's encoder cache:
# it trains once and saves the encoder (``save_pretrained``), and a later run loads it.
results, histories, embeddings = {}, {}, {}
for row in ROWS:
    if S.official and row in RELEASED_METHODS:
        encoder = AnatCLEmbedder(pretrained=RELEASED_METHODS[row], fold=S.fold)
    else:
        encoder = AnatCLEmbedder(**PAPER_METHODS[row], **S.training, random_state=0,
                                 verbose=0, checkpoint_dir=S.checkpoint_dir)
    fitted = fit_or_load(encoder, pretrain.images, age=pretrain.age,
                         anatomy=pretrain.anatomy, cache=S.cache)
    embeddings[row] = Z = fitted.embedder.transform(evaluation.images)
    results[row] = [linear_probe(Z, None, evaluation.participants, task, cv=CV,
                                 inner_cv=INNER_CV, random_state=0, name=row)
                    for task in PAPER_TABLES[2]]
    if fitted.history:
        histories[row] = fitted.history
    print(f"{row:>10}: {'loaded from the cache' if fitted.loaded else 'pretrained'}, "
          f"{Z.shape[1]} features per subject")

# %%
# Learning curves
# ---------------
# The losses of different methods are on different scales (the L1 loss is in years), so
# each gets its own panel.
fig, axes = plt.subplots(1, len(histories), figsize=(2.6 * len(histories) + 0.4, 2.8),
                         squeeze=False, layout="constrained")
for ax, (row, loss) in zip(axes[0], histories.items()):
    ax.plot(np.arange(1, len(loss) + 1), loss, marker="o")
    ax.set_title(row, fontsize=9)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
axes[0, 0].set_ylabel("training loss")
fig.suptitle(f"Pretraining loss per epoch ({LABEL})", fontsize=10)
fig.savefig(S.output / "learning_curves.png", dpi=100)

# %%
# Table 2: age and sex
# --------------------
report_paper_table(results, 2, S.output, rows=ROWS,
                   header=f"Table 2 -- {LABEL}, {MODE}, {CV} outer / {INNER_CV} inner folds",
                   title=f"OpenBHB probes, {CV}-fold CV ({LABEL})",
                   metadata={"data": "OpenBHB" if REAL else "synthetic"})

# %%
# Embeddings coloured by age
# --------------------------
# The first two principal components of each encoder's embeddings. Age-aware methods
# should lay subjects out along age.
fig, axes = plt.subplots(1, len(embeddings), figsize=(2.8 * len(embeddings) + 1.0, 3.2),
                         squeeze=False, layout="constrained")
for ax, (row, Z) in zip(axes[0], embeddings.items()):
    xy = PCA(n_components=2).fit_transform(Z)
    points = ax.scatter(xy[:, 0], xy[:, 1], c=evaluation.age, cmap="viridis", s=10)
    ax.set_title(row, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(points, ax=axes[0].tolist(), label="age (years)")
fig.suptitle(f"Embeddings (PCA) coloured by age ({LABEL})", fontsize=10)
fig.savefig(S.output / "embeddings_age.png", dpi=100)
print(f"Figures and tables written to {S.output.name}/ in the examples' output folder.")
plt.show()
