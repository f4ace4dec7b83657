"""
Alzheimer's disease: ADNI and OASIS-3 probes (Table 3)
=======================================================

The paper's frozen-encoder protocol on Alzheimer's disease: pretrain each method on
healthy brains (OpenBHB), embed the subjects of ADNI and OASIS-3 once, and
cross-validate a logistic-regression probe for healthy controls vs Alzheimer's disease
(ADNI, OASIS-3) and stable vs progressive mild cognitive impairment (ADNI), scored with
balanced accuracy.

By default every cohort is **synthetic**: ``make_synthetic_brains`` imitates ADNI and
OASIS-3 with an Alzheimer's-like atrophy pattern (medial temporal and posterior cortex,
ventricles). The numbers show the protocol at work; they are not the paper's.

Environment variables (all optional):

``ANATCL_ADNI_DIR``, ``ANATCL_OASIS3_DIR``
    A real cohort: a folder with ``participants.tsv`` (or ``.csv``) holding a
    ``diagnosis`` column (``HC``, ``sMCI``, ``pMCI``, ``AD``; ``CN`` is read as ``HC``) and
    an ``image`` column of CAT12 grey-matter maps (``.nii``, ``.nii.gz`` or ``.npy``, paths
    relative to the folder); see :func:`anatcl_sklearn.evaluation.load_cohort`. Real
    images need an encoder trained on their grid: also set ``ANATCL_OPENBHB_DIR`` or
    ``ANATCL_WEIGHTS=official``.
``ANATCL_OPENBHB_DIR``, ``ANATCL_EPOCHS``, ``ANATCL_WEIGHTS``, ``ANATCL_FOLD``, ``ANATCL_CHECKPOINT_DIR``
    Pretraining, as in :ref:`sphx_glr_auto_examples_plot_pretraining_openbhb.py`.
``ANATCL_EXAMPLES_FAST=1``, ``ANATCL_EXAMPLES_OUTPUT``
    A tiny run; where figures and CSV files go (default ``examples/output/``).
"""

# %%
# Settings
# --------
import os
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.decomposition import PCA

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.datasets import load_openbhb, make_synthetic_brains
from anatcl_sklearn.evaluation import (
    PAPER_METHODS,
    PAPER_TABLES,
    TASKS,
    embed,
    linear_probe,
    load_cohort,
    plot_results,
    results_table,
    save_results_csv,
)

FAST = os.environ.get("ANATCL_EXAMPLES_FAST", "0") not in ("", "0")
OPENBHB_DIR = os.environ.get("ANATCL_OPENBHB_DIR")
OFFICIAL = os.environ.get("ANATCL_WEIGHTS", "").lower() == "official"
COHORT_DIRS = {"adni": os.environ.get("ANATCL_ADNI_DIR"),
               "oasis3": os.environ.get("ANATCL_OASIS3_DIR")}
REAL_COHORTS = any(COHORT_DIRS.values())
if REAL_COHORTS and not (OPENBHB_DIR or OFFICIAL):
    raise RuntimeError(
        "Real cohorts are CAT12 maps of 121x145x121 voxels: they need an encoder trained on "
        "that grid. Set ANATCL_OPENBHB_DIR (pretrain on OpenBHB) or ANATCL_WEIGHTS=official."
    )
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = Path(os.environ.get("ANATCL_EXAMPLES_OUTPUT") or here / "output") / "plot_alzheimer"
OUTPUT.mkdir(parents=True, exist_ok=True)

SHAPE = (24, 28, 24)
if OPENBHB_DIR:
    TRAINING = dict(batch_size=32, lr=1e-4, weight_decay=5e-5,
                    max_epochs=int(os.environ.get("ANATCL_EPOCHS", 300)))
else:  # the same synthetic pretraining as the OpenBHB example
    TRAINING = dict(batch_size=16, lr=1e-3,
                    max_epochs=int(os.environ.get("ANATCL_EPOCHS", 2 if FAST else 8)))
N_PRETRAIN, N_COHORT = (32, 60) if FAST else (128, 300)
CV, INNER_CV = (3, 3) if FAST and not REAL_COHORTS else (5, 5)
RELEASED = {"AnatCL-G3": "anatcl-global", "AnatCL-L3": "anatcl-local"}
if OFFICIAL and not OPENBHB_DIR:
    ROWS = list(RELEASED)  # only AnatCL's weights are released; baselines need OpenBHB
elif FAST:
    ROWS = ["SimCLR", "y-Aware", "AnatCL-G3"]
else:
    ROWS = list(PAPER_METHODS)
DATA = {c: "real" if d else "synthetic" for c, d in COHORT_DIRS.items()}
LABEL = ("real cohorts" if all(d == "real" for d in DATA.values())
         else "SYNTHETIC cohorts, not the paper's data or numbers" if not REAL_COHORTS
         else "mixed: " + ", ".join(f"{c} {d}" for c, d in DATA.items()))

# %%
# Data
# ----
if OPENBHB_DIR:
    pretrain = load_openbhb(OPENBHB_DIR, split="train")
elif not OFFICIAL:
    pretrain = make_synthetic_brains(N_PRETRAIN, shape=SHAPE, random_state=0)
cohorts = {}
for seed, (name, folder) in enumerate(COHORT_DIRS.items(), start=2):
    if folder:
        cohorts[name] = load_cohort(folder)
    else:
        cohorts[name] = make_synthetic_brains(N_COHORT, shape=SHAPE, cohort=name,
                                              random_state=seed)
    print(f"{name} ({DATA[name]}): {len(cohorts[name].images)} subjects")


# %%
# Pretrain each method, embed every cohort once
# ---------------------------------------------
# The encoder is frozen after pretraining; each cohort is embedded once and the embeddings
# serve every task of that cohort and every fold.
def make_embedder(row):
    if OFFICIAL and row in RELEASED:
        return AnatCLEmbedder(pretrained=RELEASED[row], fold=int(os.environ.get("ANATCL_FOLD", 0)))
    return AnatCLEmbedder(**PAPER_METHODS[row], **TRAINING, random_state=0, verbose=0,
                          checkpoint_dir=os.environ.get("ANATCL_CHECKPOINT_DIR"))


embeddings = {}
for row in ROWS:
    embedder = make_embedder(row)
    if embedder.pretrained is None:
        embedder.fit(pretrain.images, age=pretrain.age, anatomy=pretrain.anatomy)
    else:  # released weights: fit only loads them
        embedder.fit(next(iter(cohorts.values())).images[:2])
    embeddings[row] = {name: embed(embedder, c.images) for name, c in cohorts.items()}
    print(f"{row}: embedded {', '.join(cohorts)}")

# %%
# Linear probes
# -------------
results = {
    row: [linear_probe(embeddings[row][TASKS[task].cohort], None,
                       cohorts[TASKS[task].cohort].participants, task, cv=CV,
                       inner_cv=INNER_CV, random_state=0, name=row)
          for task in PAPER_TABLES[3]]
    for row in ROWS
}
for result in results[ROWS[0]]:
    print(f"{result.task.label}: subjects per class {result.class_counts}")
table = results_table(results, rows=ROWS, columns=PAPER_TABLES[3])
print(f"Table 3 -- balanced accuracy (%), {CV}-fold CV ({LABEL})")
print(table.to_string())
table.to_csv(OUTPUT / "table3.csv")
save_results_csv(results, OUTPUT / "table3_folds.csv", rows=ROWS, columns=PAPER_TABLES[3],
                 metadata={"data": "; ".join(f"{c}={d}" for c, d in DATA.items())})
fig = plot_results(results, rows=ROWS, columns=PAPER_TABLES[3],
                   title=f"Alzheimer's disease probes ({LABEL})")
fig.savefig(OUTPUT / "table3.png", dpi=100)

# %%
# What the probe sees
# -------------------
# The ADNI embeddings of the last method, first two principal components, coloured by
# group: a linear probe can only separate what is linearly apart.
row = ROWS[-1]
groups = cohorts["adni"].participants["diagnosis"].astype(str).to_numpy()
xy = PCA(n_components=2).fit_transform(embeddings[row]["adni"])
fig, ax = plt.subplots(figsize=(4.2, 3.6))
for group in sorted(set(groups)):
    ax.scatter(*xy[groups == group].T, s=12, label=group)
ax.legend(fontsize=8)
ax.set_xlabel("PC 1")
ax.set_ylabel("PC 2")
ax.set_title(f"{row} embeddings of ADNI ({DATA['adni']})", fontsize=9)
fig.tight_layout()
fig.savefig(OUTPUT / "adni_embeddings.png", dpi=100)
print(f"Figures and tables written to {OUTPUT}")
plt.show()
