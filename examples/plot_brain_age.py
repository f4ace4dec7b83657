"""
Brain age from a BIDS study: bias-corrected, by diagnostic group
================================================================

A brain-age study from end to end: a BIDS derivatives folder of grey-matter maps, an
AnatCL encoder, a regressor of age trained on the healthy controls, the linear age-bias
correction, and the brain-age gap (corrected brain age minus chronological age) of each
diagnostic group.

The model is one scikit-learn pipeline, images in, brain age out::

    make_pipeline(AnatCLEmbedder(pretrained=...), BrainAgeRegressor(ridge))

:class:`~anatcl_sklearn.brainage.BrainAgeRegressor` fits the ridge on the training
subjects, and the correction's line on **out-of-fold** predictions of those same subjects,
so neither the held-out controls nor the patients ever shape it. Chronological age reaches
the correction through scikit-learn's metadata routing: ``predict(X, age=age)``.

By default the study is **synthetic**: an ADNI-like cohort (healthy controls, stable and
progressive MCI, Alzheimer's disease) written by
:func:`~anatcl_sklearn.datasets.write_synthetic_bids` as CAT12 ``mwp1`` maps on a small
24 x 28 x 24 grid, one session per subject, and an encoder pretrained on other synthetic
brains (the gallery's AnatCL-G3 encoder, loaded from the encoder cache when the OpenBHB
example ran first). Its numbers show the workflow, not real brain ages.

Environment variables (all optional):

``ANATCL_BIDS_DIR``
    A real BIDS derivatives folder of CAT12 or deepmriprep maps
    (``mwp1sub-*_T1w.nii[.gz]``), read by :func:`~anatcl_sklearn.datasets.load_bids`, with a
    ``participants.tsv`` holding ``age`` and ``diagnosis`` (``HC`` or ``CN`` for the
    controls); each subject's first map is used. Needs ``ANATCL_WEIGHTS=official``.
``ANATCL_WEIGHTS=official``, ``ANATCL_FOLD``
    Use the released AnatCL weights (global descriptor), all five folds together
    (:func:`~anatcl_sklearn.brainage.make_fold_ensemble`), or the one ``ANATCL_FOLD`` names.
``ANATCL_EXAMPLES_FAST=1``, ``ANATCL_EXAMPLES_OUTPUT``
    A tiny run (100 subjects, 3 folds, a 2-epoch encoder); where the figure and table go
    (default ``examples/output/``). The fast mode's encoder has learnt little about age and
    each training fold holds 24 controls, so its brain ages and its corrected gap are noise;
    the default mode's held-out r(gap, age) went from -0.83 to 0.05 with the correction.

In the default mode (200 subjects, 5 folds), with an empty encoder cache (pretraining the
encoder included), ``time python examples/plot_brain_age.py`` took 26 s on two idle CPU
cores, and 2 min 31 s on two cores shared with other processes (load average 2 to 4; torch's
two threads contend there; 44 s with ``OMP_NUM_THREADS=1`` under the same load); the fast
mode (``ANATCL_EXAMPLES_FAST=1``) 31 s under that load.
"""

# %%
# Real data (optional)
# --------------------
# Everything the example reads from the environment is read here: a real BIDS folder and
# the released weights when given, a synthetic BIDS study otherwise.
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import sklearn
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.brainage import (
    BrainAgeRegressor,
    brain_age_gap,
    brain_age_report,
    cross_val_brain_age,
    format_report,
    make_fold_ensemble,
)
from anatcl_sklearn.datasets import (
    load_bids,
    make_synthetic_brains,
    write_synthetic_bids,
)
from anatcl_sklearn.evaluation import PAPER_METHODS
from anatcl_sklearn.evaluation._encoder_cache import fit_or_load
from anatcl_sklearn.evaluation._gallery import cache_description, settings_from_env

here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
S = settings_from_env("plot_brain_age", default_output=here / "output")
BIDS_DIR = os.environ.get("ANATCL_BIDS_DIR")
FOLDS = "all" if "ANATCL_FOLD" not in os.environ else S.fold
if BIDS_DIR and not S.official:
    raise RuntimeError("A real BIDS folder holds CAT12 maps of 121x145x121 voxels: set "
                       "ANATCL_WEIGHTS=official to embed them with the released weights.")
if not S.official:
    warnings.filterwarnings("ignore", category=GridWarning)  # a small synthetic grid, on purpose
MODE = "fast mode" if S.fast else "default mode"
print(f"Running in the {MODE}; encoder cache: {cache_description(S)}.")


if BIDS_DIR:
    root, LABEL = BIDS_DIR, "real BIDS study"
else:
    root = write_synthetic_bids(S.output / "bids-study", n_subjects=100 if S.fast else 200,
                                sessions=None, cohort="adni", shape=(24, 28, 24),
                                random_state=2, overwrite=True).root
    LABEL = "SYNTHETIC study, not real brain ages"
# The maps by their BIDS names, joined with participants.tsv (age, diagnosis); one map per
# subject (its first session and run), with an age and a diagnosis.
bids = load_bids(root, participants=True)
scans = (bids.frame.dropna(subset=["age", "diagnosis"])
         .drop_duplicates("participant_id").reset_index(drop=True))
scans["diagnosis"] = scans["diagnosis"].replace({"CN": "HC"})
print(f"{len(scans)} subjects ({LABEL}): "
      + ", ".join(f"{g} {n}" for g, n in scans["diagnosis"].value_counts().items()))

# %%
# The encoder
# -----------
# Synthetic: AnatCL pretrained on other synthetic brains (``fit_or_load`` is ``fit`` with
# the gallery's encoder cache), saved as a folder; ``AnatCLEmbedder(pretrained=folder)``
# then only loads it. Real: the released weights.
if S.official:
    encoder = AnatCLEmbedder(pretrained="anatcl-global", fold=0, conform=True, verbose=0)
else:
    pretrain = make_synthetic_brains(S.n_pretrain, shape=(24, 28, 24), random_state=0)
    fitted = fit_or_load(AnatCLEmbedder(**PAPER_METHODS["AnatCL-G3"], **S.training,
                                        random_state=0, verbose=0,
                                        checkpoint_dir=S.checkpoint_dir),
                         pretrain.images, age=pretrain.age, anatomy=pretrain.anatomy,
                         cache=S.cache)
    print(f"encoder: {'loaded from the cache' if fitted.loaded else 'pretrained'}")
    encoder = AnatCLEmbedder(pretrained=str(fitted.folder), verbose=0)

# %%
# The brain-age model, in plain sight
# -----------------------------------
# Images in, brain age out. The ridge's penalty is chosen by ``RidgeCV`` inside each fit,
# on the raw embeddings (no ``StandardScaler``: many ReLU features of an encoder are nearly
# constant, and scaling them to unit variance can turn one subject's small activation into
# an absurd prediction);
# ``BrainAgeRegressor`` fits the correction ``predicted ≈ slope * age + intercept`` on
# 5-fold out-of-fold predictions of its training subjects and returns
# ``predicted + age - (slope * age + intercept)`` (Beheshti et al. 2019). With the released
# weights, the five folds together are one more line (each member corrected, then
# averaged).
sklearn.set_config(enable_metadata_routing=True)  # age reaches predict through routing
model = make_pipeline(
    encoder,
    BrainAgeRegressor(RidgeCV(alphas=np.logspace(-1, 5, 13)), cv=5, random_state=0),
)
if S.official and FOLDS == "all":
    model = make_fold_ensemble(model, folds=range(5), param="anatclembedder__fold")
elif S.official:
    model.set_params(anatclembedder__fold=FOLDS)

# %%
# Healthy controls: held-out brain age, before and after the correction
# ---------------------------------------------------------------------
# The controls' brain age is cross-validated: each control is predicted by a model (ridge
# and correction) fitted on the other folds' controls. Before the correction the gap falls
# with age (regression to the mean); after it, it does not.
controls = scans["diagnosis"].eq("HC").to_numpy()
paths = np.asarray(scans["path"], dtype=object)
age = scans["age"].to_numpy(dtype=float)
held_out = cross_val_brain_age(model, list(paths[controls]), age[controls], cv=S.cv,
                               random_state=0)
report = brain_age_report(held_out.age, held_out.predicted, held_out.corrected)
print(f"Healthy controls, {S.cv}-fold held-out brain age:")
print(format_report(report))

# %%
# Patients: the model fitted on all controls
# ------------------------------------------
# Patients never enter training, so the model (and its correction) fitted on every control
# predicts them directly; ``brain_age_gap`` is ``predict(X, age=age) - age`` in one call.
model.fit(list(paths[controls]), age[controls])
gap = np.empty(len(scans))
gap[controls] = held_out.corrected_gap
gap[~controls] = brain_age_gap(model, list(paths[~controls]), age[~controls])
scans["brain_age_gap"] = gap
groups = [g for g in ("HC", "sMCI", "pMCI", "AD") if g in set(scans["diagnosis"])]
summary = scans.groupby("diagnosis")["brain_age_gap"].agg(["count", "mean", "std"]).loc[groups]
print("Corrected brain-age gap by group (years):")
print(summary.round(2).to_string())
summary.to_csv(S.output / "brain_age_gap.csv")

# %%
# The figure
# ----------
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
ax = axes[0]
ax.scatter(held_out.age, held_out.gap, s=12, label="uncorrected", alpha=0.7)
ax.scatter(held_out.age, held_out.corrected_gap, s=12, label="corrected", alpha=0.7)
ax.axhline(0, color="grey", lw=0.8)
ax.set_xlabel("chronological age (years)")
ax.set_ylabel("brain-age gap (years)")
ax.set_title(f"Controls, held out: r(gap, age) "
             f"{report['uncorrected']['r_gap_age']:.2f} -> "
             f"{report['corrected']['r_gap_age']:.2f}", fontsize=9)
ax.legend(fontsize=8)
ax = axes[1]
ax.boxplot([scans.loc[scans["diagnosis"] == g, "brain_age_gap"] for g in groups],
           tick_labels=groups)
ax.axhline(0, color="grey", lw=0.8)
ax.set_ylabel("corrected brain-age gap (years)")
ax.set_title("By diagnostic group", fontsize=9)
fig.suptitle(f"Brain age ({LABEL})", fontsize=10)
fig.savefig(S.output / "brain_age.png", dpi=100)
plt.show()
