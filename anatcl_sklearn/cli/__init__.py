"""The command line: ``anatcl-sklearn`` (or ``python -m anatcl_sklearn``).

- ``demo`` (also with no command, e.g. ``anatcl-sklearn --epochs 3``): pretrain on synthetic
  brains (or OpenBHB), then probe (:mod:`._demo`);
- ``embed INPUT... --output FILE``: images to a table of embeddings (:mod:`._embed`);
- ``convert CHECKPOINT OUT_DIR``: a torch checkpoint to a saved-model folder (:mod:`._convert`);
- ``synthetic DIR``: synthetic brains as NIfTI files plus participants.tsv (:mod:`._synthetic`).

Each command is a module with ``build_parser()`` and ``main(argv)``, listed once in
:data:`COMMANDS`; adding a command is adding one line there.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "DEFAULT_COMMAND", "build_parser", "main"]

PROG = "anatcl-sklearn"

#: name -> (module with ``build_parser()`` and ``main(argv)``, one-line summary for --help).
COMMANDS = {
    "demo": ("anatcl_sklearn.cli._demo",
             ("pretrain on synthetic brains (or OpenBHB), then probe age and sex against the "
              "untrained encoder (the default command)")),
    "embed": ("anatcl_sklearn.cli._embed",
              "embed brain images with pretrained weights into a .csv or .parquet table"),
    "train": ("anatcl_sklearn.cli._train",
              ("pretrain AnatCL or a baseline (one process, several GPUs, or under torchrun) "
               "and save a model folder")),
    "convert": ("anatcl_sklearn.cli._convert",
                "turn a torch checkpoint into a saved-model folder (safetensors)"),
    "synthetic": ("anatcl_sklearn.cli._synthetic",
                  ("write synthetic brains as NIfTI files plus participants.tsv, to try the "
                   "other commands")),
}
#: The command run when the first argument names none (no argument, or an option).
DEFAULT_COMMAND = "demo"


def _version() -> str:
    from .._version import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: its help lists the commands (each command parses its own options).

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(
        prog=PROG,
        description="AnatCL brain-MRI embeddings for scikit-learn, from the command line. "
                    f"With no command, or with only options, runs '{DEFAULT_COMMAND}' "
                    f"('{PROG} --epochs 3' is '{PROG} {DEFAULT_COMMAND} --epochs 3').",
        epilog=f"Each command takes --help, e.g. '{PROG} embed --help'. "
               f"'python -m anatcl_sklearn' is the same as '{PROG}'.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                   help="print the version and exit")
    sub = p.add_subparsers(title="commands", dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    for name, (_, summary) in COMMANDS.items():
        sub.add_parser(name, help=summary, add_help=False)
    return p


def command_parser(name: str) -> argparse.ArgumentParser:
    """The full argument parser of command ``name`` (its module's ``build_parser()``)."""
    return importlib.import_module(COMMANDS[name][0]).build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command (the demo when none is named); return the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        The command's exit status. Usage errors exit through :class:`SystemExit` (status 2).
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if argv[:1] and argv[0] in COMMANDS:
        name, rest = argv[0], argv[1:]
    elif argv[:1] in (["-h"], ["--help"], ["--version"]):
        build_parser().parse_args(argv[:1])  # prints and exits
        return 0  # pragma: no cover
    elif argv[:1] and not argv[0].startswith("-"):
        build_parser().parse_args(argv[:1])  # "invalid choice: ..." naming the commands
        return 2  # pragma: no cover
    else:
        name, rest = DEFAULT_COMMAND, argv
    return importlib.import_module(COMMANDS[name][0]).main(rest)
