"""
Schizophrenia and autism: SchizConnect and ABIDE-I probes (Table 4)
===================================================================

The paper's frozen-encoder protocol on psychiatric conditions: pretrain each method on
healthy brains (OpenBHB), embed the subjects of SchizConnect and ABIDE-I once, and
cross-validate a logistic-regression probe of each patient group against healthy controls
-- schizophrenia (broad and strict), schizoaffective and bipolar disorder; autism,
Asperger's and PDD-NOS -- scored with balanced accuracy.

By default every cohort is **synthetic**: ``make_synthetic_brains`` imitates SchizConnect
(frontal, temporal and insular thinning) and ABIDE-I (small diffuse effects). The numbers
show the protocol at work; they are not the paper's. The synthetic cohorts keep the
paper's group proportions, and PDD-NOS was 7 of ABIDE-I's 995 subjects: 300 synthetic
subjects would hold 3 of them, fewer than the 5 folds, so
:func:`~anatcl_sklearn.evaluation.load_example_data` draws the synthetic ABIDE-I larger
(632 subjects) until every class of every task fills the folds, and prints so.
Run as shipped (no environment variable), it took 20 minutes on two CPU cores (measured once, the
cores shared with other work).

Environment variables (all optional):

``ANATCL_SCHIZCONNECT_DIR``
    A real SchizConnect folder for :func:`anatcl_sklearn.evaluation.load_cohort`:
    ``participants.tsv`` (or ``.csv``) with a ``diagnosis`` column (``HC``, ``SCZ-broad``,
    ``SCZ-strict``, ``schizoaffective``, ``bipolar``) and an ``image`` column of CAT12
    grey-matter maps.
``ANATCL_ABIDE_VBM_DIR``
    A real ABIDE-I folder: the phenotypic file as distributed (``DX_GROUP``,
    ``DSM_IV_TR``), saved as ``participants.csv`` with an added ``image`` column. Real
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

from anatcl_sklearn import GridWarning
from anatcl_sklearn.evaluation import (
    load_example_data,
    report_paper_table,
    run_paper_table,
    settings_from_env,
)

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
S = settings_from_env("plot_psychiatry", default_output=here / "output")
COHORT_DIRS = {"schizconnect": os.environ.get("ANATCL_SCHIZCONNECT_DIR"),
               "abide": os.environ.get("ANATCL_ABIDE_VBM_DIR")}

# %%
# Data
# ----
# Real cohorts where their folders are given, synthetic ones otherwise; pretraining data
# from OpenBHB, synthetic brains, or none when only the released weights are used. With
# ``cv=S.cv``, a synthetic cohort grows past ``n_subjects`` when a class of one of its tasks
# could not fill the folds (ABIDE-I's PDD-NOS).
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
run = run_paper_table(4, pretrain=data.pretrain, cohorts=cohorts, methods=S.methods,
                      training=S.training, cv=S.cv, inner_cv=S.inner_cv,
                      checkpoint_dir=S.checkpoint_dir, official_weights=S.official, fold=S.fold)
ROWS = run.methods
for row in ROWS:
    print(f"{row}: embedded {', '.join(cohorts)}")

# %%
# Table 4
# -------
for result in run.results[ROWS[0]]:
    if result.class_counts:
        print(f"{result.task.label}: subjects per class {result.class_counts}")
    else:
        print(f"{result.task.label}: {result.n_samples} subjects")
report_paper_table(run.results, 4, S.output, rows=ROWS,
                   header=f"Table 4 -- balanced accuracy (%), {S.cv}-fold CV ({data.label})",
                   title=f"Schizophrenia and autism probes ({data.label})",
                   metadata={"data": "; ".join(f"{c}={d}" for c, d in data.kinds.items())})
print(f"Figures and tables written to {S.output}")
plt.show()
