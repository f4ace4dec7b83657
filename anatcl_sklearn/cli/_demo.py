"""Command line: pretrain AnatCL and probe the embeddings (``python -m anatcl_sklearn``).

With no data path it runs on synthetic brains (96 subjects on a 32x38x32 grid, 12 epochs: about
39 s on two idle CPU cores); with ``--openbhb DIR`` it runs on OpenBHB's training split at full size.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._errors import error
from ._types import number

PROG = "anatcl-sklearn demo"
MIN_SUBJECTS = 20


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``anatcl-sklearn demo`` (also run with no command).

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Pretrain an AnatCL 3D ResNet on brain MRIs, then linear-probe age and sex "
                    "on its embeddings, against the same encoder untrained.",
        epilog="'anatcl-sklearn' with no command runs this demo ('anatcl-sklearn --epochs 3' "
               "too). Other commands: 'anatcl-sklearn embed INPUT... --output FILE' embeds your "
               "own images with pretrained weights; 'anatcl-sklearn synthetic DIR' writes "
               "synthetic brains as NIfTI files to try it on; 'anatcl-sklearn convert "
               "CHECKPOINT OUT_DIR' turns a torch checkpoint into a shareable safetensors folder "
               "(see 'anatcl-sklearn --help'; 'python -m anatcl_sklearn ...' works too).",
    )
    p.add_argument("--openbhb", metavar="DIR", default=None,
                   help="OpenBHB root (participants.tsv, train/...); default: synthetic brains")
    p.add_argument("--n-subjects", type=number(int, 1), default=96,
                   help="synthetic subjects (default 96), or the first N OpenBHB subjects")
    p.add_argument("--shape", type=number(int, 1), nargs=3, default=(32, 38, 32), metavar=("D", "H", "W"),
                   help="synthetic grid (default 32 38 32; the real grid is 121 145 121)")
    p.add_argument("--method", default="anatcl",
                   choices=["anatcl", "yaware", "expw", "simclr", "l1"],
                   help="pretraining objective (default anatcl; the others are the paper's "
                        "baselines: y-Aware, exponential weighting, SimCLR, L1 age regression)")
    p.add_argument("--descriptor", default="global", choices=["global", "local"],
                   help="AnatCL's anatomy term: global (whole-brain) or local (per-region) "
                        "similarity (default global)")
    p.add_argument("--epochs", type=number(int, 0), default=12,
                   help="pretraining epochs, at least 1 (default 12)")
    p.add_argument("--batch-size", type=number(int, 2), default=16,
                   help="pretraining batch size, at least 2 (default 16)")
    p.add_argument("--lr", type=number(float, 0, low_open=True), default=1e-3,
                   help="learning rate (default 1e-3 for the short demo; the paper uses 1e-4)")
    p.add_argument("--random-state", type=number(int, 0), default=0,
                   help="seed of the synthetic brains, the training and the probes' folds "
                        "(default 0)")
    p.add_argument("--verbose", type=number(int, 0, 2), default=1,
                   help="0: results only; 1: a line per epoch (default); 2: plus a progress bar")
    return p


def _parse(argv):
    p = build_parser()
    args = p.parse_args(argv)
    if args.epochs == 0:
        p.error("--epochs must be at least 1: the demo compares the pretrained encoder with the "
                "untrained one, and 0 epochs would compare the untrained encoder with itself.")
    if args.n_subjects < MIN_SUBJECTS:
        p.error(f"--n-subjects must be at least {MIN_SUBJECTS}: the probes use 5 stratified "
                f"folds (got {args.n_subjects}).")
    if args.openbhb is not None and not Path(args.openbhb).expanduser().is_dir():
        p.error(f"--openbhb {args.openbhb}: no such folder.")
    return p, args


def _load(args):
    if args.openbhb:
        from ..datasets import load_openbhb

        data = load_openbhb(args.openbhb, split="train")
        n = min(args.n_subjects, len(data.age)) if args.n_subjects else len(data.age)
        return (list(data.images[:n]), np.asarray(data.age[:n]), np.asarray(data.sex[:n]),
                np.asarray(data.anatomy[:n]), f"OpenBHB train split ({n} subjects)")
    from ..datasets import make_synthetic_brains

    data = make_synthetic_brains(args.n_subjects, shape=tuple(args.shape),
                                 random_state=args.random_state)
    return (data.images, data.age, data.sex, data.anatomy,
            (f"synthetic brains ({args.n_subjects} subjects, grid {tuple(args.shape)}; "
             "not real data)"))


def _probe(Z, age, sex, random_state):
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    mae = -cross_val_score(ridge, Z, age, scoring="neg_mean_absolute_error",
                           cv=KFold(5, shuffle=True, random_state=random_state))
    logreg = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    bacc = cross_val_score(logreg, Z, sex, scoring="balanced_accuracy",
                           cv=StratifiedKFold(5, shuffle=True, random_state=random_state))
    return mae, bacc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo: pretrain, embed, probe; print a small table.

    Returns
    -------
    status : int
        0; 2 on a user error (a grid too small, an unreadable OpenBHB tree), reported on one
        line of stderr in flag words. Usage errors exit through :class:`SystemExit`.
    """
    _, args = _parse(argv)
    try:  # the one boundary: the library's refusals of the user's options or data, one line
        return _run(args)
    except (ValueError, TypeError, OSError) as exc:
        return error(PROG, exc)


def _run(args):
    from .. import AnatCLEmbedder

    X, age, sex, anatomy, what = _load(args)
    print(f"Data: {what}")
    common = {"method": args.method, "descriptor": args.descriptor,
              "batch_size": args.batch_size, "lr": args.lr, "random_state": args.random_state}
    untrained = AnatCLEmbedder(max_epochs=0, verbose=0, **common).fit(X, age=age, anatomy=anatomy)
    t0 = time.perf_counter()
    trained = AnatCLEmbedder(max_epochs=args.epochs, verbose=args.verbose, **common)
    trained.fit(X, age=age, anatomy=anatomy)
    elapsed = time.perf_counter() - t0
    label = f"{args.method} ({args.descriptor})" if args.method == "anatcl" else args.method
    print(f"Pretrained {label} for {args.epochs} epochs in {elapsed:.1f} s; "
          f"final train loss {trained.history_[-1, 'train_loss']:.4f}")
    rows = []
    for name, est in (("untrained encoder", untrained), (f"{args.method} pretrained", trained)):
        mae, bacc = _probe(est.transform(X), age, sex, args.random_state)
        rows.append((name, mae, bacc))
    print(f"\nLinear probes on {trained.n_features_out_}-d embeddings (5-fold CV, mean ± std):")
    print(f"{'encoder':<24}{'age MAE (years)':>18}{'sex balanced acc.':>20}")
    for name, mae, bacc in rows:
        print(f"{name:<24}{mae.mean():>10.2f} ± {mae.std():<5.2f}{bacc.mean():>12.3f} ± {bacc.std():.3f}")
    ratio = rows[1][1].mean() / rows[0][1].mean()
    print(f"\nAge MAE ratio pretrained / untrained: {ratio:.2f} (below 1 means pretraining helped)")
    return 0
