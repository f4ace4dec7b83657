"""Brain age from one encoder fold vs the five folds together (issue #20 item 2), on synthetic data.

AnatCL's weights are released as five encoders, one per cross-validation fold of OpenBHB.
This script imitates that release at small scale and measures what the ensemble recipe
(:func:`anatcl_sklearn.brainage.make_fold_ensemble`) gives over a single fold:

1. a synthetic pretraining pool (``--n-pretrain`` brains, 24x28x24) is split into 5 folds;
   encoder ``k`` is an :class:`~anatcl_sklearn.AnatCLEmbedder` (AnatCL, global descriptor)
   pretrained on the pool minus fold ``k``, saved with ``save_pretrained`` into its own folder;
2. a separate synthetic cohort (``--n-cohort`` brains) is the study: for each encoder, the
   pipeline ``AnatCLEmbedder(pretrained=folder_k) -> BrainAgeRegressor(RidgeCV)`` is
   cross-validated (5 outer folds, the same splits for every row) with
   :func:`~anatcl_sklearn.brainage.cross_val_brain_age`;
3. the ensemble of the five pipelines
   (``make_fold_ensemble(pipe, folders, param="anatclembedder__pretrained")``: predictions
   averaged) is cross-validated on the same splits.

It prints and writes (``benchmarks/output/bench_fold_ensemble.{csv,md,png}``) the held-out MAE
of the uncorrected brain age, Pearson r, and the correlation of the gap with age before and
after correction, per encoder, their mean ± std, and the ensemble's.

Usage::

    python benchmarks/bench_fold_ensemble.py            # 100 pretraining brains, 8 epochs, 200 in the cohort
    python benchmarks/bench_fold_ensemble.py --quick    # 40, 2 epochs, 80: a smoke run
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _common
import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.brainage import (
    BrainAgeRegressor,
    brain_age_report,
    cross_val_brain_age,
    make_fold_ensemble,
)
from anatcl_sklearn.datasets import make_synthetic_brains

SHAPE = (24, 28, 24)
ALPHAS = np.logspace(-1, 5, 13)  # the ridge's penalty, chosen by RidgeCV inside each fit
# No StandardScaler before the ridge: a third of a small encoder's ReLU features are nearly
# constant on the training subjects, and scaling them to unit variance turned one held-out
# subject's small activation into a prediction of 2,876 years (encoder 2, first run).


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-pretrain", type=int, default=100)
    parser.add_argument("--n-cohort", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_pretrain, args.n_cohort, args.epochs = 40, 80, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=GridWarning)  # a small synthetic grid, on purpose
    info = _common.machine_header("cpu")
    _common.print_header(info)

    pool = make_synthetic_brains(args.n_pretrain, shape=SHAPE, random_state=args.seed)
    cohort = make_synthetic_brains(args.n_cohort, shape=SHAPE, random_state=args.seed + 1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folders = []
        for k, (train, _) in enumerate(KFold(5, shuffle=True, random_state=args.seed)
                                       .split(pool.images)):
            encoder = AnatCLEmbedder(method="anatcl", descriptor="global", max_epochs=args.epochs,
                                     batch_size=16, lr=1e-3, random_state=args.seed + k,
                                     verbose=0)
            encoder.fit(pool.images[train], age=pool.age[train], anatomy=pool.anatomy[train])
            folders.append(str(Path(tmp) / f"fold{k}"))
            encoder.save_pretrained(folders[-1])
            print(f"encoder {k}: pretrained on {len(train)} brains "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)

        pipe = make_pipeline(
            AnatCLEmbedder(verbose=0),
            BrainAgeRegressor(RidgeCV(alphas=ALPHAS), random_state=0))
        splits = KFold(5, shuffle=True, random_state=args.seed + 2)
        rows, results = [], {}
        for k, folder in enumerate(folders):
            member = pipe.set_params(anatclembedder__pretrained=folder)
            results[f"fold {k}"] = cross_val_brain_age(member, cohort.images, cohort.age,
                                                       cv=splits)
        ensemble = make_fold_ensemble(pipe, folders, param="anatclembedder__pretrained")
        results["5 folds together"] = cross_val_brain_age(ensemble, cohort.images, cohort.age,
                                                          cv=splits)
        # Chance: each held-out subject predicted as the mean age of its training fold.
        chance = np.empty(len(cohort.age))
        for train, test in splits.split(cohort.age):
            chance[test] = cohort.age[train].mean()
    elapsed = time.perf_counter() - start

    header = ["encoder", "MAE", "r", "r_gap_age", "r_gap_age_corrected"]
    for name, res in results.items():
        report = brain_age_report(res.age, res.predicted, res.corrected)
        rows.append([name, round(report["uncorrected"]["MAE"], 2),
                     round(report["uncorrected"]["r"], 3),
                     round(report["uncorrected"]["r_gap_age"], 3),
                     round(report["corrected"]["r_gap_age"], 3)])
    single = np.array([row[1] for row in rows[:5]])
    summary = (f"single fold: MAE {single.mean():.2f} ± {single.std(ddof=1):.2f} years "
               f"(mean ± std over the 5 encoders; best {single.min():.2f}, worst "
               f"{single.max():.2f}); 5 folds together: MAE {rows[5][1]:.2f} years")
    rows.insert(5, ["single fold, mean ± std", f"{single.mean():.2f} ± {single.std(ddof=1):.2f}",
                    "", "", ""])
    rows.append(["mean training age (chance)",
                 round(float(np.mean(np.abs(chance - cohort.age))), 2), "", "", ""])
    _common.print_table_header(header, width=24)
    for row in rows:
        _common.print_row(header, row, width=24)
    print(summary)
    notes = [(f"synthetic brains {SHAPE}: {args.n_pretrain} pretraining (5 encoders, each on "
              f"4/5 of them, {args.epochs} epochs), {args.n_cohort} in the cohort; brain age = "
              "BrainAgeRegressor(RidgeCV(alphas=logspace(-1, 5, 13))) on the raw embeddings, 5 "
              "outer folds (the same splits for every row); MAE of the uncorrected brain age"),
             summary, f"total {elapsed:.0f} s"]
    _common.write_table("bench_fold_ensemble", header, rows, info, notes)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    fig, ax = plt.subplots(figsize=(6, 3.2))
    names = [row[0] for row in rows if row[0] != "single fold, mean ± std"]
    maes = [row[1] for row in rows if row[0] != "single fold, mean ± std"]
    names[-1] = "chance"
    ax.bar(names, maes, color=["tab:blue"] * 5 + ["tab:orange", "tab:grey"])
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.axhline(single.mean(), color="tab:blue", ls="--", lw=1, label="single-fold mean")
    ax.set_ylabel("held-out MAE (years)")
    ax.set_title("Brain age: one encoder fold vs five together (synthetic)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(_common.OUTPUT / "bench_fold_ensemble.png", dpi=100)
    print(f"written {_common.OUTPUT / 'bench_fold_ensemble.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
