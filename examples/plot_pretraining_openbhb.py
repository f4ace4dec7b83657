"""
Pretraining and OpenBHB probes (Table 2)
========================================

Pretrain a 3D ResNet-18 with each method of the paper -- SimCLR, L1 age regression,
y-Aware, ExpW and AnatCL with the global (G3) and local (L3) anatomical descriptor -- then
freeze it and probe its embeddings of held-out subjects with the paper's linear models:
age (ridge regression, mean absolute error in years) and sex (logistic regression,
balanced accuracy), 5-fold cross-validated.

By default the example runs on **synthetic brains** in a few minutes on a CPU: small
grids, few subjects, a few epochs. Its numbers show that the pipeline works and that
pretraining finds signal the synthetic generator put there; they are not the paper's.

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
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.decomposition import PCA

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.datasets import load_openbhb, make_synthetic_brains
from anatcl_sklearn.evaluation import (
    PAPER_METHODS,
    PAPER_TABLES,
    embed,
    linear_probe,
    plot_results,
    results_table,
    save_results_csv,
)

FAST = os.environ.get("ANATCL_EXAMPLES_FAST", "0") not in ("", "0")
OPENBHB_DIR = os.environ.get("ANATCL_OPENBHB_DIR")
REAL = bool(OPENBHB_DIR)
OFFICIAL = os.environ.get("ANATCL_WEIGHTS", "").lower() == "official"
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = Path(os.environ.get("ANATCL_EXAMPLES_OUTPUT") or here / "output")
OUTPUT = OUTPUT / "plot_pretraining_openbhb"
OUTPUT.mkdir(parents=True, exist_ok=True)

if REAL:
    DATA = "OpenBHB"
    TRAINING = dict(batch_size=32, lr=1e-4, weight_decay=5e-5,
                    max_epochs=int(os.environ.get("ANATCL_EPOCHS", 300)))
    CV, INNER_CV = 5, 5
elif FAST:
    DATA = "synthetic"
    SHAPE, N_PRETRAIN, N_EVAL = (24, 28, 24), 32, 60
    TRAINING = dict(batch_size=16, lr=1e-3, max_epochs=int(os.environ.get("ANATCL_EPOCHS", 2)))
    CV, INNER_CV = 3, 3
else:
    DATA = "synthetic"
    SHAPE, N_PRETRAIN, N_EVAL = (24, 28, 24), 128, 200
    TRAINING = dict(batch_size=16, lr=1e-3, max_epochs=int(os.environ.get("ANATCL_EPOCHS", 8)))
    CV, INNER_CV = 5, 5
# The fast run keeps one self-supervised, one age-supervised and one anatomical method.
ROWS = ["SimCLR", "y-Aware", "AnatCL-G3"] if FAST and not REAL else list(PAPER_METHODS)
RELEASED = {"AnatCL-G3": "anatcl-global", "AnatCL-L3": "anatcl-local"}
LABEL = "OpenBHB" if REAL else "SYNTHETIC brains, not the paper's data or numbers"

# %%
# Data
# ----
# Pretraining sees one set of subjects; the probes are cross-validated on others, so no
# probe is scored on an image the encoder was trained on.
if REAL:
    pretrain = load_openbhb(OPENBHB_DIR, split="train")
    evaluation = load_openbhb(OPENBHB_DIR, split="val")
else:
    pretrain = make_synthetic_brains(N_PRETRAIN, shape=SHAPE, random_state=0)
    evaluation = make_synthetic_brains(N_EVAL, shape=SHAPE, random_state=1)
print(f"Pretraining on {len(pretrain.age)} subjects, probing {len(evaluation.age)} ({LABEL}).")


# %%
# Pretrain each method, embed the held-out subjects once
# -----------------------------------------------------
def make_embedder(row):
    if OFFICIAL and row in RELEASED:
        return AnatCLEmbedder(pretrained=RELEASED[row], fold=int(os.environ.get("ANATCL_FOLD", 0)))
    return AnatCLEmbedder(**PAPER_METHODS[row], **TRAINING, random_state=0, verbose=0,
                          checkpoint_dir=os.environ.get("ANATCL_CHECKPOINT_DIR"))


histories, embeddings = {}, {}
for row in ROWS:
    start = time.perf_counter()
    embedder = make_embedder(row).fit(pretrain.images, age=pretrain.age,
                                      anatomy=pretrain.anatomy)
    embeddings[row] = embed(embedder, evaluation.images)
    if embedder.history_ is not None and len(embedder.history_):
        histories[row] = embedder.history_[:, "train_loss"]
    print(f"{row:>10}: pretrained and embedded in {time.perf_counter() - start:.1f} s")

# %%
# Learning curves
# ---------------
# The losses of different methods are on different scales (the L1 loss is in years), so
# each gets its own panel.
fig, axes = plt.subplots(1, len(histories), figsize=(2.6 * len(histories) + 0.4, 2.6),
                         squeeze=False)
for ax, (row, loss) in zip(axes[0], histories.items()):
    ax.plot(np.arange(1, len(loss) + 1), loss, marker="o")
    ax.set_title(row, fontsize=9)
    ax.set_xlabel("epoch")
axes[0, 0].set_ylabel("training loss")
fig.suptitle(f"Pretraining loss per epoch ({LABEL})", fontsize=10)
fig.tight_layout()
fig.savefig(OUTPUT / "learning_curves.png", dpi=100)

# %%
# Linear probes: age and sex
# --------------------------
results = {
    row: [linear_probe(Z, None, evaluation.participants, task, cv=CV, inner_cv=INNER_CV,
                       random_state=0, name=row)
          for task in PAPER_TABLES[2]]
    for row, Z in embeddings.items()
}
table = results_table(results, rows=ROWS, columns=PAPER_TABLES[2])
print(f"Table 2 -- {LABEL}")
print(table.to_string())
table.to_csv(OUTPUT / "table2.csv")
save_results_csv(results, OUTPUT / "table2_folds.csv", rows=ROWS, columns=PAPER_TABLES[2],
                 metadata={"data": DATA})

fig = plot_results(results, rows=ROWS, columns=PAPER_TABLES[2],
                   title=f"OpenBHB probes, {CV}-fold CV ({LABEL})")
fig.savefig(OUTPUT / "table2.png", dpi=100)

# %%
# Embeddings coloured by age
# --------------------------
# The first two principal components of each encoder's embeddings. Age-aware methods
# should lay subjects out along age.
fig, axes = plt.subplots(1, len(embeddings), figsize=(2.8 * len(embeddings) + 0.8, 2.8),
                         squeeze=False)
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
