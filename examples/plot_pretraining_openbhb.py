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
synthetic generator put there; they are not the paper's. Run as shipped (no environment
variable), it took 5 minutes on two CPU cores (measured once, the cores shared with other
work).

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
# Settings
# --------
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.decomposition import PCA

from anatcl_sklearn import GridWarning
from anatcl_sklearn.datasets import load_openbhb, make_synthetic_brains
from anatcl_sklearn.evaluation import (
    FAST_METHODS,
    PAPER_METHODS,
    report_paper_table,
    run_paper_table,
    settings_from_env,
)

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
S = settings_from_env("plot_pretraining_openbhb", default_output=here / "output")
REAL = bool(S.openbhb_dir)
if not (REAL or S.official):
    # Synthetic brains use a small grid on purpose; the warning is for released weights.
    warnings.filterwarnings("ignore", category=GridWarning)
OUTPUT = S.output
DATA = "OpenBHB" if REAL else "synthetic"
SHAPE, N_EVAL = (24, 28, 24), 60 if S.fast else 200
CV, INNER_CV = (5, 5) if REAL else (S.cv, S.inner_cv)
# The fast run keeps one self-supervised, one age-supervised and one anatomical method.
ROWS = list(FAST_METHODS) if S.fast and not REAL else list(PAPER_METHODS)
LABEL = "OpenBHB" if REAL else "SYNTHETIC brains, not the paper's data or numbers"

# %%
# Data
# ----
# Pretraining sees one set of subjects; the probes are cross-validated on others, so no
# probe is scored on an image the encoder was trained on.
if REAL:
    pretrain = load_openbhb(S.openbhb_dir, split="train")
    evaluation = load_openbhb(S.openbhb_dir, split="val")
else:
    pretrain = make_synthetic_brains(S.n_pretrain, shape=SHAPE, random_state=0)
    evaluation = make_synthetic_brains(N_EVAL, shape=SHAPE, random_state=1)
print(f"Pretraining on {len(pretrain.age)} subjects, probing {len(evaluation.age)} ({LABEL}).")

# %%
# Pretrain each method, embed the held-out subjects once, probe
# -------------------------------------------------------------
# Linear probes of age and sex on the frozen embeddings (Table 2).
run = run_paper_table(2, pretrain=pretrain, cohorts={"openbhb": evaluation}, methods=ROWS,
                      training=S.training, cv=CV, inner_cv=INNER_CV,
                      checkpoint_dir=S.checkpoint_dir, official_weights=S.official, fold=S.fold)
results, histories = run.results, run.histories
embeddings = {row: Z["openbhb"] for row, Z in run.embeddings.items()}
for row in ROWS:
    print(f"{row:>10}: pretrained and embedded in {run.fit_times[row]:.1f} s")

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
fig.savefig(OUTPUT / "learning_curves.png", dpi=100)

# %%
# Table 2: age and sex
# --------------------
report_paper_table(results, 2, OUTPUT, rows=ROWS, header=f"Table 2 -- {LABEL}",
                   title=f"OpenBHB probes, {CV}-fold CV ({LABEL})", metadata={"data": DATA})

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
fig.savefig(OUTPUT / "embeddings_age.png", dpi=100)
print(f"Figures and tables written to {OUTPUT}")
plt.show()
