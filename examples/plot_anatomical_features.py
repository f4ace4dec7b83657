"""
Which Desikan measures carry age? An anatomical feature study (Table 6)
=======================================================================

AnatCL's positives are chosen by anatomy: cortical thickness (CT), grey-matter volume
(GMV) and surface area (SA) of the 68 Desikan-Killiany regions. The paper picked these
measures with a preliminary study (its Table 6): a ridge regression predicting age from
each measure alone. This example repeats the study on the healthy controls of a cohort
(cross-validated mean absolute error and R², against a model that predicts the mean
age), then runs the ABIDE-I label rules -- autism, Asperger's and PDD-NOS vs controls,
handedness, full-scale, verbal and performance IQ -- with the same linear probes on the
anatomy itself, no image needed.

By default the measures are **synthetic** (``make_synthetic_brains(cohort="abide")``);
they follow a simple model of ageing, so the numbers only show the method at work.
Run as shipped (no environment variable), it took 30 s on two idle CPU cores (measured once).

Environment variables (all optional):

``ANATCL_ABIDE_DIR``
    A folder like ``abide-freesurfer6``: the six FreeSurfer ``aparcstats2table`` tables
    ``{lh,rh}.aparc_table_{thickness,area,volume}.tsv`` (subjects named ``<SITE>_<SUB_ID>``)
    and the ABIDE-I phenotypic file ``Phenotypic_V1_0b_preprocessed1.csv``. The example
    then runs on real ABIDE-I anatomy (FreeSurfer 6) and phenotypes.
``ANATCL_EXAMPLES_FAST=1``, ``ANATCL_EXAMPLES_OUTPUT``
    A smaller run (3-fold CV); where figures and CSV files go (default
    ``examples/output/``).

The paper ran its study on OpenBHB (about 4,000 subjects aged 6-88) with seven measures;
ABIDE-I controls are mostly children and young adults, so the errors are smaller and not
comparable.
"""

# %%
# Real data (optional)
# --------------------
# Everything this example reads from the environment (``ANATCL_*``, listed above) is read
# here; without it, it runs on synthetic data.
import os
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.dummy import DummyRegressor
from sklearn.model_selection import KFold, cross_val_predict, cross_validate

from anatcl_sklearn.anatomy import ANATOMY_MEASURES, read_aparcstats2table
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.evaluation import (
    TASKS,
    linear_probe,
    make_probe,
    plot_results,
    results_table,
    save_results_csv,
)

FAST = os.environ.get("ANATCL_EXAMPLES_FAST", "0") not in ("", "0")
ABIDE_DIR = os.environ.get("ANATCL_ABIDE_DIR")
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = Path(os.environ.get("ANATCL_EXAMPLES_OUTPUT") or here / "output")
OUTPUT = OUTPUT / "plot_anatomical_features"
OUTPUT.mkdir(parents=True, exist_ok=True)
CV, INNER_CV = (3, 3) if FAST else (5, 5)
PHENOTYPIC_FILE = "Phenotypic_V1_0b_preprocessed1.csv"
ABIDE_TASKS = ["abide-autism", "abide-asperger", "abide-pddnos", "abide-handedness",
               "abide-fiq", "abide-viq", "abide-piq"]

# %%
# Anatomy and phenotypes
# ----------------------
# Real tables name subjects ``<SITE>_<SUB_ID>`` (``Caltech_0051456``); the phenotypic
# file's ``SUB_ID`` is the trailing number.
if ABIDE_DIR:
    LABEL = "ABIDE-I, FreeSurfer 6"
    subject_ids, anatomy = read_aparcstats2table(ABIDE_DIR)
    phenotypes = pd.read_csv(Path(ABIDE_DIR) / PHENOTYPIC_FILE)
    sub_id = [int(re.search(r"(\d+)$", s).group(1)) for s in subject_ids]
    by_id = phenotypes.drop_duplicates("SUB_ID").set_index("SUB_ID")
    has_row = np.isin(sub_id, by_id.index)
    anatomy = anatomy[has_row]
    participants = by_id.loc[np.asarray(sub_id)[has_row]].reset_index()
    print(f"{len(participants)} of {len(subject_ids)} FreeSurfer subjects have phenotypes.")
else:
    LABEL = "SYNTHETIC anatomy, not real data"
    brains = make_synthetic_brains(400 if FAST else 1000, cohort="abide",
                                   return_images=False, random_state=0)
    anatomy, participants = brains.anatomy, brains.participants

# Controls are the reference group of the diagnosis tasks; age is read from ``age`` or
# ABIDE's ``AGE_AT_SCAN``.
age = TASKS["openbhb-age"].labels(participants).to_numpy()
controls = (TASKS["abide-autism"].labels(participants) == 0).to_numpy() & np.isfinite(age)
print(f"{controls.sum()} controls, age {age[controls].min():.1f}-{age[controls].max():.1f} "
      f"(mean {age[controls].mean():.1f}) -- {LABEL}")

# %%
# Age from each measure (Table 6)
# -------------------------------
features = {m: anatomy[:, :, i] for i, m in enumerate(ANATOMY_MEASURES)}
features["CT+GMV+SA"] = anatomy.reshape(len(anatomy), -1)
outer = KFold(CV, shuffle=True, random_state=0)
scoring = {"mae": "neg_mean_absolute_error", "r2": "r2"}
rows = {}
for name, X in features.items():
    scores = cross_validate(make_probe("regression", inner_cv=INNER_CV, random_state=0),
                            X[controls], age[controls], cv=outer, scoring=scoring)
    rows[name] = scores
rows["mean age (no anatomy)"] = cross_validate(
    DummyRegressor(), features["CT"][controls], age[controls], cv=outer, scoring=scoring)
table6 = pd.DataFrame(
    {
        "MAE (years)": [f"{-s['test_mae'].mean():.2f} ± {s['test_mae'].std():.2f}"
                        for s in rows.values()],
        "R²": [f"{s['test_r2'].mean():.2f} ± {s['test_r2'].std():.2f}" for s in rows.values()],
        "MAE mean": [-s["test_mae"].mean() for s in rows.values()],
        "MAE std": [s["test_mae"].std() for s in rows.values()],
        "R² mean": [s["test_r2"].mean() for s in rows.values()],
        "R² std": [s["test_r2"].std() for s in rows.values()],
    },
    index=pd.Index(list(rows), name="Desikan measure"),
)
table6["data"] = LABEL
print(f"Table 6 -- ridge age prediction, {CV}-fold CV, {controls.sum()} controls ({LABEL})")
print(table6[["MAE (years)", "R²"]].to_string())
table6.to_csv(OUTPUT / "table6.csv")

fig, (ax_bar, ax_fit) = plt.subplots(1, 2, figsize=(8.4, 3.4))
names = list(rows)
ax_bar.bar(range(len(names)), table6["MAE mean"], yerr=table6["MAE std"], capsize=3,
           color=["C0", "C1", "C2", "C3", "lightgrey"], edgecolor="black", linewidth=0.5)
ax_bar.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
ax_bar.set_ylabel("MAE (years), lower is better")
ax_bar.set_title("Age from each measure", fontsize=9)
predicted = cross_val_predict(make_probe("regression", inner_cv=INNER_CV, random_state=0),
                              features["CT+GMV+SA"][controls], age[controls], cv=outer)
ax_fit.scatter(age[controls], predicted, s=6, alpha=0.6)
lims = [age[controls].min(), age[controls].max()]
ax_fit.plot(lims, lims, color="grey", linestyle="--", linewidth=0.8)
ax_fit.set_xlabel("age (years)")
ax_fit.set_ylabel("predicted from CT+GMV+SA")
ax_fit.set_title("Held-out predictions", fontsize=9)
fig.suptitle(f"Ridge age prediction from Desikan measures ({LABEL})", fontsize=10)
fig.tight_layout()
fig.savefig(OUTPUT / "table6.png", dpi=100)

# %%
# ABIDE-I diagnoses and phenotypes from anatomy
# ---------------------------------------------
# The tasks' rules read the phenotypic columns as distributed (``DX_GROUP``, ``DSM_IV_TR``,
# ``HANDEDNESS_CATEGORY``, ``FIQ``..., -9999 missing) or the synthetic ones; subjects
# outside both groups of a task, or with a missing value, are left out.
measure_rows = ["CT+GMV+SA"] if FAST else list(features)
results = {
    name: [linear_probe(features[name], None, participants, task, cv=CV, inner_cv=INNER_CV,
                        random_state=0, name=name)
           for task in ABIDE_TASKS]
    for name in measure_rows
}
for result in results[measure_rows[0]]:
    counts = result.class_counts or f"{result.n_samples} subjects"
    print(f"{result.task.label}: {result.task.description} {counts}")
table = results_table(results, rows=measure_rows, columns=ABIDE_TASKS)
print(f"ABIDE-I tasks from anatomy, {CV}-fold CV ({LABEL})")
print(table.to_string())
table.to_csv(OUTPUT / "abide_tasks.csv")
save_results_csv(results, OUTPUT / "abide_tasks_folds.csv", rows=measure_rows,
                 columns=ABIDE_TASKS, metadata={"data": LABEL})
fig = plot_results(results, rows=measure_rows, columns=ABIDE_TASKS,
                   title=f"ABIDE-I tasks from Desikan anatomy ({LABEL})")
fig.savefig(OUTPUT / "abide_tasks.png", dpi=100)
print(f"Figures and tables written to {OUTPUT.name}/ in the examples' output folder.")
plt.show()
