"""An alias of :mod:`anatcl_sklearn.cli._train` (the ``anatcl-sklearn train`` command), kept for
``torchrun ... -m anatcl_sklearn.distributed`` and for code that imported it from here."""

from ..cli._train import build_parser, load_data
from ..cli._train import main as _train_main

__all__ = ["build_parser", "load_data", "main"]

PROG = "python -m anatcl_sklearn.distributed"


def main(argv=None):
    """``anatcl-sklearn train``, under the name ``python -m anatcl_sklearn.distributed``."""
    return _train_main(argv, prog=PROG)
