"""
Tuning AnatCL with GridSearchCV and routed metadata
===================================================

AnatCL has three knobs the paper fixed by hand: the width ``sigma`` (years) of the age
kernel and the weights ``lambda_age`` and ``lambda_anat`` of its two terms (Eq. 4). Here a
:class:`~sklearn.model_selection.GridSearchCV` tunes them end to end: each candidate
pretrains an :class:`~anatcl_sklearn.AnatCLEmbedder` on the training folds -- with the
age and anatomy of those subjects only, routed as metadata -- and is scored by a ridge
probe of age on the held-out fold.

Metadata routing is what makes this work: ``age`` and ``anatomy`` are per-subject
metadata, so scikit-learn must slice them along with ``X`` in every split.
``set_fit_request(age=True, anatomy=True)`` asks for them, inside
``sklearn.config_context(enable_metadata_routing=True)``.

By default the example runs on **synthetic brains**. Run as shipped (no environment
variable), it took 1 min 48 s on two idle CPU cores (measured once).

Environment variables (all optional):

``ANATCL_OPENBHB_DIR``
    Search on the first ``ANATCL_GRID_SUBJECTS`` (default 512) subjects of OpenBHB's
    training split at full resolution (a GPU job); ``ANATCL_EPOCHS`` sets the epochs per
    fit (default 50).
``ANATCL_EXAMPLES_FAST=1``, ``ANATCL_EXAMPLES_OUTPUT``
    A tiny grid; where figures and CSV files go (default ``examples/output/``).
"""

# %%
# Real data (optional)
# --------------------
# Everything this example reads from the environment (``ANATCL_*``, listed above) is read
# here; without it, it runs on synthetic data.
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sklearn
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.datasets import load_openbhb, make_synthetic_brains
from anatcl_sklearn.evaluation import make_probe

FAST = os.environ.get("ANATCL_EXAMPLES_FAST", "0") not in ("", "0")
OPENBHB_DIR = os.environ.get("ANATCL_OPENBHB_DIR")
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = Path(os.environ.get("ANATCL_EXAMPLES_OUTPUT") or here / "output") / "plot_grid_search"
OUTPUT.mkdir(parents=True, exist_ok=True)

if OPENBHB_DIR:
    LABEL = "OpenBHB"
    data = load_openbhb(OPENBHB_DIR, split="train")
    n = min(int(os.environ.get("ANATCL_GRID_SUBJECTS", "512")), len(data.age))
    X, age, anatomy = data.images[:n], data.age[:n], data.anatomy[:n]
    TRAINING = {"batch_size": 32, "lr": 1e-4,
                "max_epochs": int(os.environ.get("ANATCL_EPOCHS", "50"))}
    GRID = {"sigma": [1.0, 2.0, 4.0], "lambda_age": [0.5, 1.0], "lambda_anat": [0.0, 0.5, 1.0]}
    CV = 3
else:
    LABEL = "SYNTHETIC brains"
    data = make_synthetic_brains(40 if FAST else 72, shape=(24, 28, 24), random_state=0)
    X, age, anatomy = data.images, data.age, data.anatomy
    TRAINING = {"batch_size": 16, "lr": 1e-3, "max_epochs": 2 if FAST else 4}
    GRID = {"sigma": [1.0, 4.0], "lambda_age": [1.0] if FAST else [0.5, 1.0],
            "lambda_anat": [0.0, 1.0]}
    CV = 2 if FAST else 3
n_candidates = int(np.prod([len(v) for v in GRID.values()]))
print(f"{n_candidates} candidates x {CV} folds on {len(age)} subjects ({LABEL})")

# %%
# The search
# ----------
# ``refit=False``: we want the map of scores, not a final model (refitting the best one
# would be one more pretraining).
with sklearn.config_context(enable_metadata_routing=True):
    embedder = AnatCLEmbedder(method="anatcl", random_state=0, verbose=0, **TRAINING)
    embedder.set_fit_request(age=True, anatomy=True)
    pipe = make_pipeline(embedder, make_probe("regression", inner_cv=3, random_state=0))
    search = GridSearchCV(
        pipe,
        {f"anatclembedder__{name}": values for name, values in GRID.items()},
        scoring="neg_mean_absolute_error",
        cv=KFold(CV, shuffle=True, random_state=0),
        refit=False,
    )
    search.fit(X, age, age=age, anatomy=anatomy)

results = pd.DataFrame(search.cv_results_)
params = [f"param_anatclembedder__{name}" for name in GRID]
results["MAE mean"] = -results["mean_test_score"]
results["MAE std"] = results["std_test_score"]
results = results[params + ["MAE mean", "MAE std", "rank_test_score", "mean_fit_time"]]
results.columns = list(GRID) + ["MAE mean", "MAE std", "rank", "fit time (s)"]
results["data"] = LABEL
results.to_csv(OUTPUT / "grid_search.csv", index=False)
print(results.sort_values("rank").to_string(index=False))
best = results.sort_values("rank").iloc[0]
print("Best: " + ", ".join(f"{name}={best[name]}" for name in GRID)
      + f" (age MAE {best['MAE mean']:.2f} years)")

# %%
# The grid, one panel per ``lambda_age``
# --------------------------------------
# Each cell is the held-out age MAE of the ridge probe (years, lower is better).
sigmas, anats = GRID["sigma"], GRID["lambda_anat"]
fig, axes = plt.subplots(1, len(GRID["lambda_age"]),
                         figsize=(3.6 * len(GRID["lambda_age"]) + 2.4, 3.6), squeeze=False,
                         layout="constrained")
vmin, vmax = results["MAE mean"].min(), results["MAE mean"].max()
for ax, lam in zip(axes[0], GRID["lambda_age"]):
    grid = np.full((len(anats), len(sigmas)), np.nan)
    for _, r in results[results["lambda_age"] == lam].iterrows():
        grid[anats.index(r["lambda_anat"]), sigmas.index(r["sigma"])] = r["MAE mean"]
    image = ax.imshow(grid, cmap="viridis_r", vmin=vmin, vmax=vmax, origin="lower")
    middle = (vmin + vmax) / 2
    for (i, j), value in np.ndenumerate(grid):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                color="black" if value < middle else "white")
    ax.set_xticks(range(len(sigmas)), [f"{s:g}" for s in sigmas])
    ax.set_yticks(range(len(anats)), [f"{a:g}" for a in anats])
    ax.set_xlabel("sigma (years)")
    ax.set_ylabel("lambda_anat")
    ax.set_title(f"lambda_age = {lam:g}", fontsize=9)
fig.colorbar(image, ax=axes[0].tolist(), label="age MAE (years)")
fig.suptitle(f"GridSearchCV over AnatCL's sigma and lambdas\n({LABEL})", fontsize=10)
fig.savefig(OUTPUT / "grid_search.png", dpi=100)
print(f"Figures and tables written to {OUTPUT.name}/ in the examples' output folder.")
plt.show()
