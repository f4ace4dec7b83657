"""Entry point of ``torchrun ... -m anatcl_sklearn.distributed`` (run on every rank).

Example, on each of N machines with G GPUs::

    torchrun --nnodes=N --nproc-per-node=G --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT \\
        -m anatcl_sklearn.distributed --openbhb /data/openbhb --epochs 300 --output anatcl-run

``python -m anatcl_sklearn.distributed --help`` lists every option.
"""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
