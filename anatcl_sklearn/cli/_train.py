"""The training command: ``anatcl-sklearn train`` (alias: ``torchrun ... -m anatcl_sklearn.distributed``).

A thin layer over the one training engine, :meth:`AnatCLEmbedder.fit`, which detects torchrun
and trains with DistributedDataParallel. Every rank runs this script with the same arguments and
reads the same list of subjects (paths and metadata; each rank loads its own shard's volumes).
Rank 0 writes the saved-model folder (``model.safetensors`` + ``config.json`` + model card) and,
with ``--released-checkpoint``, a file in the released AnatCL layout. Per-epoch checkpoints
go to ``--checkpoint-dir`` (default ``OUTPUT/checkpoints``): rerunning the same command
resumes from the last finished epoch.
"""

import argparse
from typing import Any
import os
import sys
from pathlib import Path

import numpy as np

from ._errors import error
from ._types import choices, number, parameter

_LAUNCH = """\
launch (N machines with G GPUs each; run the same command on every machine):
  torchrun --nnodes=N --nproc-per-node=G --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT \\
      -m anatcl_sklearn.distributed --openbhb /data/openbhb --epochs 300 --output anatcl-run
one machine, CPU only (gloo), a demo on synthetic brains:
  torchrun --nproc-per-node=2 -m anatcl_sklearn.distributed --synthetic 64 --shape 32 38 32 \\
      --epochs 2 --batch-size 8 --num-workers 0 --output demo-run
"""


def build_parser(prog="anatcl-sklearn train"):
    """The argument parser of ``anatcl-sklearn train`` (and its torchrun alias).

    Parameters
    ----------
    prog : str, default="anatcl-sklearn train"
        The program name shown in usage lines (the alias passes
        ``python -m anatcl_sklearn.distributed``).

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    nonneg_int = number(int, 0)
    p = argparse.ArgumentParser(
        prog=prog,
        description="Pretrain AnatCL (or y-Aware, ExpW, SimCLR, L1) on one or several machines: "
                    "AnatCLEmbedder.fit under torchrun, with DistributedDataParallel and "
                    "embeddings all-gathered so that every anchor sees the whole global batch.",
        epilog=_LAUNCH, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = p.add_argument_group("data (one of)")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--openbhb", metavar="DIR", help="OpenBHB root (participants.tsv, ...)")
    source.add_argument("--images", metavar="TABLE",
                        help="a table of image paths, as 'embed' reads it: CSV (comma) or "
                             "TSV/.tab (tab) by extension, or .txt (one path per line); a "
                             "'path', 'image' or 'filename' column (relative to the table's "
                             "folder) and an 'age' column when the method needs it")
    source.add_argument("--synthetic", metavar="N", type=number(int, 2),
                        help="N synthetic brains (a demo; not real data)")
    data.add_argument("--anatomy", metavar="NPY",
                      help="with --images: .npy array (n, 68, 3) of Desikan CT, GMV, SA")
    data.add_argument("--split", default="train",
                      choices=["train", "internal_test", "external_test", "val"],
                      help="with --openbhb: the split to train on (default train)")
    data.add_argument("--max-subjects", type=number(int, 2), default=None, metavar="N",
                      help="use only the first N subjects (default: all)")
    data.add_argument("--shape", type=number(int, 16), nargs=3, default=(32, 38, 32),
                      metavar=("D", "H", "W"), help="grid of --synthetic (default 32 38 32)")
    data.add_argument("--conform", action="store_true",
                      help="resample every image to OpenBHB's grid through its affine")

    loss = p.add_argument_group("objective")
    loss.add_argument("--method", default="anatcl", choices=choices("method"),
                      help="pretraining objective (default anatcl; the others are the paper's "
                           "baselines)")
    loss.add_argument("--descriptor", default="global", choices=choices("descriptor"),
                      help="AnatCL's anatomy term: global or local (per-region) similarity "
                           "(default global)")
    loss.add_argument("--sigma", type=parameter("sigma"), default=2.0, help="age kernel width, years")
    loss.add_argument("--kernel", default="rbf", choices=choices("kernel"),
                      help="age similarity kernel (default rbf)")
    loss.add_argument("--lambda-age", type=parameter("lambda_age"), default=1.0,
                      help="weight of the age term (default 1)")
    loss.add_argument("--lambda-anat", type=parameter("lambda_anat"), default=1.0,
                      help="weight of the anatomy term (default 1)")
    loss.add_argument("--temperature", type=parameter("temperature"), default=0.1,
                      help="contrastive temperature (default 0.1)")
    loss.add_argument("--anatomy-scaling", default="auto", choices=choices("anatomy_scaling"),
                      help="min-max scaling of the anatomy measures (default auto: for the "
                           "local descriptor only)")

    train = p.add_argument_group("training (paper defaults)")
    train.add_argument("--arch", default="resnet18", choices=choices("arch"),
                       help="3D ResNet encoder (default resnet18, the paper's)")
    train.add_argument("--augment", default="none",
                       help="'none' (the paper), 'all' or '+'-joined flip, crop, cutout, blur, noise")
    train.add_argument("--epochs", type=parameter("max_epochs"), default=300,
                       help="training epochs (default 300)")
    train.add_argument("--batch-size", type=number(int, 2), default=32,
                       help="GLOBAL batch size, split among the processes (32)")
    train.add_argument("--lr", type=parameter("lr"), default=1e-4,
                       help="Adam learning rate (default 1e-4)")
    train.add_argument("--lr-step", type=parameter("lr_step"), default=10,
                       help="epochs between learning-rate decays (default 10)")
    train.add_argument("--lr-gamma", type=parameter("lr_gamma"), default=0.9,
                       help="learning-rate factor at each decay (default 0.9)")
    train.add_argument("--weight-decay", type=parameter("weight_decay"), default=5e-5,
                       help="Adam weight decay (default 5e-5)")
    train.add_argument("--precision", default="fp32", choices=choices("precision"),
                       help="training precision (default fp32; bf16 on recent GPUs)")
    train.add_argument("--sync-bn", action="store_true",
                       help="SyncBatchNorm over all processes (CUDA only)")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto: this process's GPU when there is one, else the CPU")
    train.add_argument("--cache", default="none", choices=choices("cache"),
                       help="keep the volumes in memory or on the device after the first "
                            "epoch (default none: read them every epoch)")
    train.add_argument("--num-workers", type=nonneg_int, default=None,
                       help="data loader workers per process (default: up to 4)")
    train.add_argument("--seed", type=nonneg_int, default=0,
                       help="random seed of the run (default 0)")

    out = p.add_argument_group("output")
    out.add_argument("--output", default="anatcl-distributed", metavar="DIR",
                     help="saved-model folder written by rank 0 (default anatcl-distributed)")
    out.add_argument("--released-checkpoint", metavar="FILE", default=None,
                     help="also write the weights in the released AnatCL .pth layout")
    out.add_argument("--checkpoint-dir", metavar="DIR", default=None,
                     help="per-epoch resumable checkpoints (default OUTPUT/checkpoints)")
    out.add_argument("--force", action="store_true",
                     help="replace a model.safetensors, config.json or README.md already in OUTPUT")
    p.add_argument("--verbose", type=number(int, 0, 2), default=1,
                   help="0 silent, 1 a line per epoch (default), 2 more")
    return p


def _check_outputs(args, parser):
    """Every output path is checked before any data is read or any epoch runs."""
    from ..models._saved import existing_model_files

    output = Path(args.output).expanduser()
    if output.is_symlink() and not output.exists():
        parser.error(f"--output {output}: a dangling symbolic link (to "
                     f"'{os.readlink(output)}'); remove it or give another folder.")
    if output.exists() and not output.is_dir():
        parser.error(f"--output {output}: a file is in the way; the output is a folder.")
    ancestor = next((a for a in output.absolute().parents if a.exists()), None)
    if not output.exists() and ancestor is not None and not ancestor.is_dir():
        parser.error(f"--output {output}: '{ancestor}' is a file, not a folder; the output "
                     "folder cannot be made under it.")
    existing = existing_model_files(output)
    if existing and not args.force:
        parser.error(f"--output {output} already holds a saved model's files "
                     f"({', '.join(existing)}); pass --force to replace them (per-epoch "
                     "checkpoints resume either way).")
    target = output if output.exists() else (ancestor or output.parent)
    if not os.access(target if target != Path("") else Path("."), os.W_OK):
        parser.error(f"--output {output}: '{target}' is not writable.")
    if args.released_checkpoint is not None:
        ckpt = Path(args.released_checkpoint).expanduser()
        if ckpt.is_dir() or str(args.released_checkpoint).endswith(os.sep):
            parser.error(f"--released-checkpoint {ckpt}: a folder; give a file path.")
        if not ckpt.parent.is_dir() or not os.access(ckpt.parent, os.W_OK):
            parser.error(f"--released-checkpoint {ckpt}: folder '{ckpt.parent}' is missing or "
                         "not writable.")
    if args.anatomy is not None and args.images is None:
        parser.error("--anatomy goes with --images (OpenBHB and synthetic data carry their own).")


def _read_table(args):
    """The --images table through the one reader of tables of image paths
    (:mod:`anatcl_sklearn.images._tables`): paths relative to the table, ``age`` if present."""
    from ..images._tables import read_image_table

    table = read_image_table(args.images, what="--images table")
    paths = [str(p) for p in table.paths]
    age = table.age()
    table_path = table.source
    anatomy = None
    if args.anatomy is not None:
        anatomy_path = Path(args.anatomy).expanduser()
        if not anatomy_path.is_file():
            raise FileNotFoundError(f"--anatomy file not found: '{anatomy_path}'.")
        anatomy = np.load(anatomy_path)
    return paths, age, anatomy, f"table {table_path} ({len(paths)} images)"


def load_data(args):
    """The images, age, anatomy and a description of what was read."""
    n = args.max_subjects
    if args.openbhb is not None:
        from ..datasets import load_openbhb

        data = load_openbhb(args.openbhb, split=args.split)
        images: Any = [str(p) for p in data.images]
        age, anatomy = data.age, data.anatomy
        what = f"OpenBHB {args.split} split at {args.openbhb}"
    elif args.images is not None:
        images, age, anatomy, what = _read_table(args)
    else:
        from ..datasets import make_synthetic_brains

        data = make_synthetic_brains(args.synthetic, shape=tuple(args.shape),
                                     random_state=args.seed)
        images, age, anatomy = data.images, data.age, data.anatomy
        what = f"synthetic brains (grid {tuple(args.shape)}; not real data)"
    if n is not None:
        images, age, anatomy = (None if a is None else a[:n] for a in (images, age, anatomy))
    return images, age, anatomy, f"{what}, {len(images)} subjects"


def main(argv=None, prog="anatcl-sklearn train"):
    """Parse, check, read, fit (on every rank); rank 0 writes the outputs.

    Returns
    -------
    status : int
        0 on success; 2 on a user error (bad data, a batch too small for the processes, an
        output that cannot be written), reported on one line of stderr, in flag words. Usage
        errors exit through :class:`SystemExit` with status 2.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    _check_outputs(args, parser)
    try:  # the one boundary: the library's refusals of the user's data or paths, one line
        return _run(args)
    except (ValueError, TypeError, OSError) as exc:
        return error(prog, exc)


def _run(args):
    from .. import AnatCLEmbedder

    images, age, anatomy, description = load_data(args)
    output = Path(args.output).expanduser()
    est = AnatCLEmbedder(
        method=args.method, descriptor=args.descriptor, sigma=args.sigma, kernel=args.kernel,
        lambda_age=args.lambda_age, lambda_anat=args.lambda_anat, temperature=args.temperature,
        arch=args.arch, augment=args.augment, max_epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, lr_step=args.lr_step, lr_gamma=args.lr_gamma, weight_decay=args.weight_decay,
        device=args.device, precision=args.precision, cache=args.cache,
        anatomy_scaling=args.anatomy_scaling, conform=args.conform, distributed="auto",
        sync_batchnorm=args.sync_bn,
        num_workers=_default_workers() if args.num_workers is None else args.num_workers,
        checkpoint_dir=args.checkpoint_dir or output / "checkpoints",
        random_state=args.seed, verbose=args.verbose,
    )
    if args.images is not None:
        _check_table_age(args, est, images, age)
    est.fit(images, age=age, anatomy=anatomy)
    if _rank() == 0:
        est.save_pretrained(output, training_data=description)
        if args.released_checkpoint:
            _save_released(est, args, description)
        if args.verbose:
            print(f"saved model: {output} ({len(est.history_)} epochs)", flush=True)
    return 0


def _check_table_age(args, est, images, age):
    """The --images table's age, in its own words: a missing column or a missing value is
    named with the table (and the image), not as the library's ``age`` argument."""
    from ..embedder._params import needs_age

    if not needs_age(est):
        return
    if age is None:
        raise ValueError(f"--images table {args.images!r} has no 'age' column, and --method "
                         f"{args.method} needs each image's age (add the column, or pass "
                         "--lambda-age 0).")
    bad = np.flatnonzero(~np.isfinite(np.asarray(age, dtype=float)))
    if bad.size:
        raise ValueError(f"--images table {args.images!r}: {bad.size} image(s) without a finite "
                         f"age (first: {images[bad[0]]!r}, age {age[bad[0]]!r}); give each "
                         "image its age or drop its row.")


def _save_released(est, args, description):
    """The weights in the released AnatCL layout (opts Namespace of builtins, "model")."""
    import torch

    from .. import __version__
    from .._atomic import atomic_write

    opts = argparse.Namespace(
        method=args.method, descriptor=args.descriptor, arch=args.arch, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, temperature=args.temperature,
        sigma=args.sigma, input_shape=list(est.input_shape_),
        input_affine=None if est.input_affine_ is None else est.input_affine_.tolist(),
        data=description, anatcl_sklearn_version=__version__)
    state = {"opts": opts, "model": est.net_.module_.state_dict(), "optimizer": {},
             "epoch": len(est.history_), "run_id": "anatcl-sklearn"}
    atomic_write(Path(args.released_checkpoint).expanduser(), lambda tmp: torch.save(state, tmp))


def _rank():
    return int(os.environ.get("RANK", "0"))


def _default_workers():
    """Up to 4 loader workers per process, from the cores left after one per local process."""
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    spare = (os.cpu_count() or 1) // ranks - 1
    return max(0, min(4, spare))


if __name__ == "__main__":
    sys.exit(main())
