"""The command line: ``anatcl-sklearn`` (or ``python -m anatcl_sklearn``).

- no subcommand: the demo (:mod:`._demo`): pretrain on synthetic brains (or OpenBHB), probe;
- ``embed INPUT... --output FILE``: images to a table of embeddings (:mod:`._embed`);
- ``convert CHECKPOINT OUT_DIR``: a torch checkpoint to a saved-model folder (:mod:`._convert`).
"""

import sys

__all__ = ["main"]

_SUBCOMMANDS = ("embed", "convert")


def main(argv=None):
    """Dispatch to a subcommand, or run the demo; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["embed"]:
        from ._embed import main as run
    elif argv[:1] == ["convert"]:
        from ._convert import main as run
    else:
        from ._demo import main as demo

        return demo(argv)
    return run(argv[1:])
