"""``python -m anatcl_sklearn [COMMAND] ...``, the same as ``anatcl-sklearn``: see
:mod:`anatcl_sklearn.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
