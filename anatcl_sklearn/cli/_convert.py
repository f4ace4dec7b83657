"""``anatcl-sklearn convert CHECKPOINT OUT_DIR``: a torch checkpoint to a saved-model folder."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._errors import error
from ._types import number

PROG = "anatcl-sklearn convert"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``anatcl-sklearn convert``."""
    from ..models import ARCHITECTURES

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a torch checkpoint (the released AnatCL .pth files, "
                    "the distributed command's --released-checkpoint, or a state dict) into a saved-model folder: "
                    "model.safetensors + config.json + README.md, loadable with "
                    "AnatCLEmbedder(pretrained=OUT_DIR) without unpickling anything.",
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="the .pt/.pth file")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write (created if missing)")
    p.add_argument("--arch", choices=list(ARCHITECTURES), default="resnet18",
                   help="encoder architecture of the weights (default resnet18)")
    p.add_argument("--out-dim", type=number(int, 1), default=128,
                   help="projection head output size (default 128)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing model.safetensors, config.json or README.md in OUT_DIR")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``anatcl-sklearn convert``; 0 on success, 2 on a user error (one line on stderr)."""
    from ..models import convert_checkpoint
    from ..models._saved import CONFIG_NAME, WEIGHTS_NAME, existing_model_files

    args = build_parser().parse_args(sys.argv[2:] if argv is None else argv)
    out = os.path.abspath(os.path.expanduser(args.out_dir))
    try:
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"OUT_DIR {out!r} exists and is not a folder.")
        existing = existing_model_files(out)
        if existing and not args.force:
            raise ValueError(f"{out!r} already holds a saved model's files "
                             f"({', '.join(existing)}); pass --force to replace them.")
        config = convert_checkpoint(args.checkpoint, out, arch=args.arch, out_dim=args.out_dim)
    except (ValueError, TypeError, OSError) as exc:
        return error(PROG, exc)
    print(f"wrote {out} ({WEIGHTS_NAME} sha256 {config['weights_sha256'][:12]}..., "
          f"{CONFIG_NAME}, README.md)")
    return 0
