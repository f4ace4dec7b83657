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
Run as shipped (no environment variable), it took 6 minutes on two CPU cores (measured once, the
cores shared with other work).

Environment variables (all optional):

``ANATCL_ADNI_DIR``, ``ANATCL_OASIS3_DIR``
    A real cohort: a folder with ``participants.tsv`` (or ``.csv``) holding a
    ``diagnosis`` column (``HC``, ``sMCI``, ``pMCI``, ``AD``; ``CN`` is read as ``HC``) and
    an ``image`` column of CAT12 grey-matter maps (``.nii``, ``.nii.gz`` or ``.npy``, paths
    relative to the folder); see :func:`anatcl_sklearn.evaluation.load_cohort`. Real
    images need an encoder trained on their grid: also set ``ANATCL_OPENBHB_DIR`` or
    ``ANATCL_WEIGHTS=official``.
``ANATCL_OPENBHB_DIR`` and the other pretraining variables
    ``ANATCL_EPOCHS``, ``ANATCL_WEIGHTS``, ``ANATCL_FOLD``, ``ANATCL_CHECKPOINT_DIR``: as in
    the OpenBHB pretraining example (``plot_pretraining_openbhb.py``).
``ANATCL_EXAMPLES_FAST=1``, ``ANATCL_EXAMPLES_OUTPUT``
    A tiny run; where figures and CSV files go (default ``examples/output/``).
"""

# %%
# Settings
# --------
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.decomposition import PCA

from anatcl_sklearn import GridWarning
from anatcl_sklearn.evaluation import (
    load_example_data,
    report_paper_table,
    run_paper_table,
    settings_from_env,
)

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
S = settings_from_env("plot_alzheimer", default_output=here / "output")
COHORT_DIRS = {"adni": os.environ.get("ANATCL_ADNI_DIR"),
               "oasis3": os.environ.get("ANATCL_OASIS3_DIR")}

# %%
# Data
# ----
# Real cohorts where their folders are given, synthetic ones otherwise; pretraining data
# from OpenBHB, synthetic brains, or none when only the released weights are used.
if not (S.openbhb_dir or any(COHORT_DIRS.values()) or S.official):
    # Synthetic brains use a small grid on purpose; the warning is for released weights.
    warnings.filterwarnings("ignore", category=GridWarning)
data = load_example_data(S, COHORT_DIRS, n_subjects=60 if S.fast else 300, cv=S.cv)
cohorts = data.cohorts

# %%
# Pretrain each method, embed every cohort once, probe every task
# ---------------------------------------------------------------
# The encoder is frozen after pretraining; each cohort is embedded once and the embeddings
# serve every task of that cohort and every fold.
run = run_paper_table(3, pretrain=data.pretrain, cohorts=cohorts, methods=S.methods,
                      training=S.training, cv=S.cv, inner_cv=S.inner_cv,
                      checkpoint_dir=S.checkpoint_dir, official_weights=S.official, fold=S.fold)
ROWS = run.methods
for row in ROWS:
    print(f"{row}: embedded {', '.join(cohorts)}")

# %%
# Table 3
# -------
for result in run.results[ROWS[0]]:
    print(f"{result.task.label}: subjects per class {result.class_counts}")
report_paper_table(run.results, 3, S.output, rows=ROWS,
                   header=f"Table 3 -- balanced accuracy (%), {S.cv}-fold CV ({data.label})",
                   title=f"Alzheimer's disease probes ({data.label})",
                   metadata={"data": "; ".join(f"{c}={d}" for c, d in data.kinds.items())})

# %%
# What the probe sees
# -------------------
# The ADNI embeddings of the last method, first two principal components, coloured by
# group: a linear probe can only separate what is linearly apart.
row = ROWS[-1]
groups = cohorts["adni"].participants["diagnosis"].astype(str).to_numpy()
xy = PCA(n_components=2).fit_transform(run.embeddings[row]["adni"])
fig, ax = plt.subplots(figsize=(4.2, 3.6))
for group in sorted(set(groups)):
    ax.scatter(*xy[groups == group].T, s=12, label=group)
ax.legend(fontsize=8)
ax.set_xlabel("PC 1")
ax.set_ylabel("PC 2")
ax.set_title(f"{row} embeddings of ADNI ({data.kinds['adni']})", fontsize=9)
fig.tight_layout()
fig.savefig(S.output / "adni_embeddings.png", dpi=100)
print(f"Figures and tables written to {S.output}")
plt.show()
