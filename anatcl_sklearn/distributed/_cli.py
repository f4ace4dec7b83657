"""Command line of multi-process pretraining: ``torchrun ... -m anatcl_sklearn.distributed``.

Every rank runs this script with the same arguments, reads the same list of subjects (paths
and metadata only; each rank loads the volumes of its own shard) and calls
:func:`train_distributed`.
"""

import argparse
import os
from pathlib import Path

import numpy as np

from ._train import train_distributed

_LAUNCH = """\
launch (N machines with G GPUs each; run the same command on every machine):
  torchrun --nnodes=N --nproc-per-node=G --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT \\
      -m anatcl_sklearn.distributed --openbhb /data/openbhb --epochs 300 --output anatcl.pt
one machine, CPU only (gloo), a demo on synthetic brains:
  torchrun --nproc-per-node=2 -m anatcl_sklearn.distributed --synthetic 64 --shape 32 38 32 \\
      --epochs 2 --batch-size 8 --output demo.pt
"""


def build_parser():
    """Return the argument parser of ``python -m anatcl_sklearn.distributed``.

    Returns
    -------
    parser : argparse.ArgumentParser
        The parser.
    """
    p = argparse.ArgumentParser(
        prog="python -m anatcl_sklearn.distributed",
        description="Pretrain AnatCL (or y-Aware, ExpW, SimCLR) with DistributedDataParallel on "
                    "one or several machines; embeddings are all-gathered so that every anchor "
                    "is contrasted with the whole global batch.",
        epilog=_LAUNCH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = p.add_argument_group("data (one of)")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--openbhb", metavar="DIR",
                        help="OpenBHB root (participants.tsv, train/, val/)")
    source.add_argument("--images", metavar="TABLE",
                        help="CSV/TSV with a 'path' column (relative to the table's folder) and "
                             "an 'age' column when the method needs age")
    source.add_argument("--synthetic", metavar="N", type=int,
                        help="N synthetic brains (a demo; not real data)")
    data.add_argument("--anatomy", metavar="NPY",
                      help="with --images: .npy array (n, 68, 3) of Desikan CT, GMV, SA")
    data.add_argument("--split", default="train",
                      choices=["train", "internal_test", "external_test", "val"],
                      help="OpenBHB split (default train)")
    data.add_argument("--max-subjects", type=int, default=None, metavar="N",
                      help="use only the first N subjects")
    data.add_argument("--shape", type=int, nargs=3, default=(32, 38, 32), metavar=("D", "H", "W"),
                      help="grid of --synthetic (default 32 38 32)")

    loss = p.add_argument_group("objective")
    loss.add_argument("--method", default="anatcl", choices=["anatcl", "yaware", "expw", "simclr"])
    loss.add_argument("--descriptor", default="global", choices=["global", "local"])
    loss.add_argument("--sigma", type=float, default=2.0, help="age kernel width, years (2)")
    loss.add_argument("--kernel", default="rbf", choices=["rbf", "gaussian", "cauchy"])
    loss.add_argument("--lambda-age", type=float, default=1.0)
    loss.add_argument("--lambda-anat", type=float, default=1.0)
    loss.add_argument("--temperature", type=float, default=0.1)
    loss.add_argument("--anatomy-scaling", default="auto", choices=["auto", "minmax", "none"])

    train = p.add_argument_group("training (paper defaults)")
    train.add_argument("--arch", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    train.add_argument("--augment", default="none",
                       help="'none' (the paper), 'all' or '+'-joined names of flip, crop, cutout, "
                            "blur, noise")
    train.add_argument("--epochs", type=int, default=300)
    train.add_argument("--batch-size", type=int, default=32,
                       help="GLOBAL batch size, divided among the ranks (32)")
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--lr-step", type=int, default=10, help="epochs between decays (10)")
    train.add_argument("--lr-gamma", type=float, default=0.9, help="decay factor (0.9)")
    train.add_argument("--weight-decay", type=float, default=5e-5,
                       help="Adam weight decay (default 5e-5, as the released AnatCL runs)")
    train.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                       help="bf16 autocast (CUDA only)")
    train.add_argument("--sync-bn", action="store_true",
                       help="SyncBatchNorm over all ranks (CUDA only); without it BatchNorm "
                            "statistics are those of each rank's shard")
    train.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    train.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"])
    train.add_argument("--num-workers", type=int, default=None,
                       help="data loader workers per rank (default: up to 4, leaving one core "
                            "per rank for training)")
    train.add_argument("--seed", type=int, default=0)

    out = p.add_argument_group("checkpoints")
    out.add_argument("--output", default="anatcl-distributed.pt", metavar="PATH",
                     help="checkpoint written by rank 0 (default anatcl-distributed.pt)")
    out.add_argument("--save-every", type=int, default=1, metavar="EPOCHS")
    out.add_argument("--resume", metavar="PATH", default=None,
                     help="continue from a checkpoint written by this command")
    p.add_argument("--verbose", type=int, default=1)
    return p


def _first(n, *arrays):
    return [a if a is None or n is None else a[:n] for a in arrays]


def _read_table(args, parser):
    import pandas as pd

    table_path = Path(args.images).expanduser()
    if not table_path.is_file():
        raise FileNotFoundError(f"--images table not found: '{table_path}'.")
    table = pd.read_csv(table_path, sep=None, engine="python")
    if "path" not in table.columns:
        parser.error(f"--images {table_path}: no 'path' column; found {list(table.columns)}.")
    paths = [p if Path(p).is_absolute() else str(table_path.parent / p)
             for p in table["path"].astype(str)]
    age = table["age"].to_numpy(dtype=float) if "age" in table.columns else None
    anatomy = None
    if args.anatomy is not None:
        anatomy_path = Path(args.anatomy).expanduser()
        if not anatomy_path.is_file():
            raise FileNotFoundError(f"--anatomy file not found: '{anatomy_path}'.")
        anatomy = np.load(anatomy_path)
    return paths, age, anatomy, f"table {table_path} ({len(paths)} images)"


def load_data(args, parser=None):
    """Read the images, age and anatomy named by parsed arguments.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments of :func:`build_parser`.
    parser : argparse.ArgumentParser, default=None
        Used to report argument errors; a new one when None.

    Returns
    -------
    images : list of str or ndarray
        Image paths, or the synthetic volumes.
    age : ndarray of shape (n,) or None
    anatomy : ndarray of shape (n, 68, 3) or None
    description : str
        What was read, for the log and the checkpoint.
    """
    parser = parser or build_parser()
    if args.anatomy is not None and args.images is None:
        parser.error("--anatomy goes with --images (OpenBHB and synthetic data carry their own).")
    n = args.max_subjects
    if n is not None and n < 2:
        parser.error(f"--max-subjects must be at least 2; got {n}.")
    if args.openbhb is not None:
        from ..datasets import load_openbhb

        data = load_openbhb(args.openbhb, split=args.split)
        images, age, anatomy = _first(n, [str(p) for p in data.images], data.age, data.anatomy)
        return images, age, anatomy, f"OpenBHB {args.split} split at {args.openbhb} ({len(images)} subjects)"
    if args.images is not None:
        paths, age, anatomy, what = _read_table(args, parser)
        images, age, anatomy = _first(n, paths, age, anatomy)
        return images, age, anatomy, what
    if args.synthetic < 2:
        parser.error(f"--synthetic needs at least 2 subjects; got {args.synthetic}.")
    from ..datasets import make_synthetic_brains

    data = make_synthetic_brains(args.synthetic, shape=tuple(args.shape), random_state=args.seed)
    return (data.images, data.age, data.anatomy,
            f"synthetic brains ({args.synthetic} subjects, grid {tuple(args.shape)}; not real data)")


def main(argv=None):
    """Parse arguments, read the data and train; run on every rank by torchrun.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments; ``sys.argv[1:]`` when None.

    Returns
    -------
    status : int
        0 on success.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    images, age, anatomy, description = load_data(args, parser)
    result = train_distributed(
        images, age=age, anatomy=anatomy, method=args.method, descriptor=args.descriptor,
        sigma=args.sigma, kernel=args.kernel, lambda_age=args.lambda_age,
        lambda_anat=args.lambda_anat, temperature=args.temperature, arch=args.arch,
        augment=args.augment, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_step=args.lr_step, lr_gamma=args.lr_gamma, weight_decay=args.weight_decay,
        anatomy_scaling=args.anatomy_scaling, sync_bn=args.sync_bn, precision=args.precision,
        device=args.device, backend=args.backend,
        num_workers=_default_workers() if args.num_workers is None else args.num_workers,
        checkpoint=args.output, save_every=args.save_every, resume=args.resume, seed=args.seed,
        data_description=description, verbose=args.verbose,
    )
    if args.verbose and (result.world_size == 1 or _rank() == 0):
        print(f"checkpoint: {result.checkpoint} (epoch {result.epoch}, run {result.run_id})", flush=True)
    return 0


def _rank():
    return int(os.environ.get("RANK", "0"))


def _default_workers():
    """Up to 4 loader workers per rank, from the cores left after one per local rank."""
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    spare = (os.cpu_count() or 1) // ranks - 1
    return max(0, min(4, spare))
