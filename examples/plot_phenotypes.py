"""
Clinical scores and phenotypes (Table 5)
========================================

Can a frozen brain-MRI encoder predict clinical assessments? As in the paper, each
pretrained encoder embeds SchizConnect and ABIDE-I once, and linear probes predict
binarised scores -- AIMS overall, upper and lower body (none or minimal vs mild and
above), Calgary depression (absent vs mild and above), handedness (right vs other) and
Simpson-Angus gait (normal vs other) -- scored with balanced accuracy, and ABIDE's IQ
(full-scale, verbal, performance; ridge regression) scored with the mean absolute error.

By default every cohort is **synthetic**: ``make_synthetic_brains`` gives its
SchizConnect- and ABIDE-like subjects scores weakly tied to their anatomy. The numbers show
the protocol at work; they are not the paper's. The synthetic ABIDE-I is the same as in the schizophrenia and autism
example, drawn large enough (about 650 subjects) that its rarest group fills 5 folds.

Environment variables (all optional):

``ANATCL_SCHIZCONNECT_DIR``
    A real SchizConnect folder for :func:`anatcl_sklearn.evaluation.load_cohort`:
    ``participants.tsv`` (or ``.csv``) with the columns ``aims_overall``, ``aims_upper``,
    ``aims_lower`` (0-4), ``depression`` (Calgary, 0-3), ``handedness`` (``R``, ``L``,
    ``A``), ``gait`` (Simpson-Angus, 0-4) and an ``image`` column of CAT12 grey-matter
    maps.
``ANATCL_ABIDE_VBM_DIR``
    A real ABIDE-I folder: the phenotypic file as distributed (``HANDEDNESS_CATEGORY``,
    ``FIQ``, ``VIQ``, ``PIQ``; -9999 is missing), saved as ``participants.csv`` with an
    added ``image`` column. Real images need an encoder trained on their grid: also set
    ``ANATCL_OPENBHB_DIR`` or ``ANATCL_WEIGHTS=official``.
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
S = settings_from_env("plot_phenotypes", default_output=here / "output")
COHORT_DIRS = {"schizconnect": os.environ.get("ANATCL_SCHIZCONNECT_DIR"),
               "abide": os.environ.get("ANATCL_ABIDE_VBM_DIR")}
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
run = run_paper_table(5, pretrain=data.pretrain, cohorts=cohorts, methods=encoders,
                      cv=S.cv, inner_cv=INNER_CV, encoder_cache=S.cache, verbose=True)
ROWS = run.methods

# %%
# Table 5
# -------
for result in run.results[ROWS[0]]:
    if result.class_counts:
        counts = ", ".join(f"{k:g}: {v}" for k, v in result.class_counts.items())
        print(f"{result.task.label}: subjects per class {counts}")
    else:
        print(f"{result.task.label}: {result.n_samples} subjects")
report_paper_table(run.results, 5, S.output, rows=ROWS,
                   header=f"Table 5 -- balanced accuracy (%) or MAE, {S.cv} outer / {INNER_CV} inner folds ({data.label}; {MODE})",
                   title=f"Phenotype probes ({data.label})",
                   metadata={"data": "; ".join(f"{c}={d}" for c, d in data.kinds.items())})
print(f"Figures and tables written to {S.output.name}/ in the examples' output folder.")
plt.show()
