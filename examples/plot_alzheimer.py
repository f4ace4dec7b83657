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
``ANATCL_OPENBHB_DIR`` and the other pretraining variables
    ``ANATCL_EPOCHS``, ``ANATCL_WEIGHTS``, ``ANATCL_FOLD``, ``ANATCL_CHECKPOINT_DIR``: as in
    the OpenBHB pretraining example (``plot_pretraining_openbhb.py``).
``ANATCL_EXAMPLES_FAST=1``, ``ANATCL_EXAMPLES_OUTPUT``
    A tiny run; where figures and CSV files go (default ``examples/output/``).

The output below says which mode produced it (its first line). In the default mode (no
environment variable) the example uses synthetic cohorts at the smallest size that fills the paper's 5 outer folds in every task, probes with
3 inner folds instead of 5 to keep the page under five minutes on two CPU cores (real
cohorts get 5), and the encoders pretrained by the OpenBHB example
(``plot_pretraining_openbhb.py``), loaded from the gallery's encoder cache when that example
ran first (trained here otherwise, and cached for the next example). The fast mode
(``ANATCL_EXAMPLES_FAST=1``, which the documentation site renders) runs three methods for
two epochs with 3 outer folds.
"""

# %%
# Real data (optional)
# --------------------
# Everything this example reads from the environment (``ANATCL_*``, listed above) is read
# here: real cohorts where their folders are given, synthetic ones otherwise; pretraining
# data from OpenBHB, synthetic brains, or none when only the released weights are used.
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
from sklearn.decomposition import PCA

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.evaluation import (
    PAPER_METHODS,
    RELEASED_METHODS,
    report_paper_table,
    run_paper_table,
)
from anatcl_sklearn.evaluation._gallery import (
    cache_description,
    load_example_data,
    settings_from_env,
)

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
S = settings_from_env("plot_alzheimer", default_output=here / "output")
COHORT_DIRS = {"adni": os.environ.get("ANATCL_ADNI_DIR"),
               "oasis3": os.environ.get("ANATCL_OASIS3_DIR")}
if not (S.openbhb_dir or any(COHORT_DIRS.values()) or S.official):
    # Synthetic brains use a small grid on purpose; the warning is for released weights.
    warnings.filterwarnings("ignore", category=GridWarning)
MODE = "fast mode" if S.fast else "default mode"
print(f"Running in the {MODE}; encoder cache: {cache_description(S)}.")
# A synthetic cohort is drawn at the smallest size from 60 subjects up at which every class
# of every task of the cohort fills the outer folds (the printed size says so).
data = load_example_data(S, COHORT_DIRS, n_subjects=60, cv=S.cv)
cohorts = data.cohorts
INNER_CV = S.inner_cv if data.real else 3

# %%
# One encoder per row of the table
# --------------------------------
# Each row is an :class:`~anatcl_sklearn.AnatCLEmbedder` with the paper's method, or the
# released weights of AnatCL when ``ANATCL_WEIGHTS=official``.
encoders = {}
for row in S.methods:
    if S.official and row in RELEASED_METHODS:
        encoders[row] = AnatCLEmbedder(pretrained=RELEASED_METHODS[row], fold=S.fold)
    else:
        encoders[row] = AnatCLEmbedder(**PAPER_METHODS[row], **S.training, random_state=0,
                                       verbose=0, checkpoint_dir=S.checkpoint_dir)

# %%
# Pretrain each method, embed every cohort once, probe every task
# ---------------------------------------------------------------
# :func:`~anatcl_sklearn.evaluation.run_paper_table` fits each encoder on the pretraining
# subjects (``fit(images, age=..., anatomy=...)``), freezes it, embeds each cohort once
# (``transform``) and cross-validates the paper's linear probe
# (:func:`~anatcl_sklearn.evaluation.linear_probe`) on those embeddings for every task of
# the table. ``encoder_cache`` keeps each pretrained encoder and its embeddings on disk,
# keyed by content: an encoder pretrained with the same parameters on the same subjects by
# another example is loaded, not trained again.
run = run_paper_table(3, pretrain=data.pretrain, cohorts=cohorts, methods=encoders,
                      cv=S.cv, inner_cv=INNER_CV, encoder_cache=S.cache, verbose=True)
ROWS = run.methods

# %%
# Table 3
# -------
for result in run.results[ROWS[0]]:
    if result.class_counts:
        counts = ", ".join(f"{k:g}: {v}" for k, v in result.class_counts.items())
        print(f"{result.task.label}: subjects per class {counts}")
    else:
        print(f"{result.task.label}: {result.n_samples} subjects")
report_paper_table(run.results, 3, S.output, rows=ROWS,
                   header=f"Table 3 -- balanced accuracy (%), {S.cv} outer / {INNER_CV} inner folds ({data.label}; {MODE})",
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
print(f"Figures and tables written to {S.output.name}/ in the examples' output folder.")
plt.show()
