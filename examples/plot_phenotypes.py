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
the protocol at work; they are not the paper's. The synthetic ABIDE-I is drawn with 632
subjects rather than 300, as in the schizophrenia and autism example, so that its rarest
group fills 5 folds. Run as shipped (no environment variable), it took 39 minutes on two
CPU cores (measured once, the cores heavily shared with other work: load 4 to 7).

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
"""

# %%
# Settings
# --------
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt

from anatcl_sklearn import GridWarning
from anatcl_sklearn.evaluation import (
    load_example_data,
    report_paper_table,
    run_paper_table,
    settings_from_env,
)

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
S = settings_from_env("plot_phenotypes", default_output=here / "output")
COHORT_DIRS = {"schizconnect": os.environ.get("ANATCL_SCHIZCONNECT_DIR"),
               "abide": os.environ.get("ANATCL_ABIDE_VBM_DIR")}

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
run = run_paper_table(5, pretrain=data.pretrain, cohorts=cohorts, methods=S.methods,
                      training=S.training, cv=S.cv, inner_cv=S.inner_cv,
                      checkpoint_dir=S.checkpoint_dir, official_weights=S.official, fold=S.fold)
ROWS = run.methods
for row in ROWS:
    print(f"{row}: embedded {', '.join(cohorts)}")

# %%
# Table 5
# -------
for result in run.results[ROWS[0]]:
    if result.class_counts:
        print(f"{result.task.label}: subjects per class {result.class_counts}")
    else:
        print(f"{result.task.label}: {result.n_samples} subjects")
report_paper_table(run.results, 5, S.output, rows=ROWS,
                   header=f"Table 5 -- balanced accuracy (%) or MAE, {S.cv}-fold CV ({data.label})",
                   title=f"Phenotype probes ({data.label})",
                   metadata={"data": "; ".join(f"{c}={d}" for c, d in data.kinds.items())})
print(f"Figures and tables written to {S.output}")
plt.show()
