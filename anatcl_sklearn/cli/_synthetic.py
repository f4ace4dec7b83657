"""``anatcl-sklearn synthetic DIR``: synthetic brains as NIfTI files, to try the other commands.

Writes what :func:`anatcl_sklearn.datasets.write_synthetic_brains` writes: one
``sub-NNNN_mwp1.nii.gz`` per subject with its grid's affine, and ``participants.tsv``
(participant_id, age, sex, site, diagnosis, path), itself a list file for ``embed``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._errors import error
from ._types import number

PROG = "anatcl-sklearn synthetic"
_COHORTS = ("openbhb", "adni", "oasis3", "schizconnect", "abide")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``anatcl-sklearn synthetic``.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Write synthetic brains (CAT12-like grey-matter maps drawn from a "
                    "generative model of anatomy, age and sex; not real data) as gzipped NIfTI "
                    "files with their affine, plus participants.tsv, to try 'anatcl-sklearn "
                    "embed' and the documentation's recipes without downloading anything.",
        epilog="Then: anatcl-sklearn embed DIR/participants.tsv --output embeddings.csv "
               "(or \"DIR/*.nii.gz\"). The default grid is the released weights' (121 145 121, "
               "1.5 mm, MNI); a smaller grid keeps the field of view with larger voxels and "
               "needs --conform with the official weights.",
    )
    p.add_argument("folder", metavar="DIR",
                   help="folder to write into (created if missing)")
    p.add_argument("--n-subjects", type=number(int, 1), default=8,
                   help="number of subjects, one image each (default 8)")
    p.add_argument("--shape", type=number(int, 16), nargs=3, default=(121, 145, 121),
                   metavar=("D", "H", "W"),
                   help="image grid, each dimension at least 16 (default 121 145 121)")
    p.add_argument("--cohort", choices=_COHORTS, default="openbhb",
                   help="population to imitate: healthy controls (openbhb, the default) or a "
                        "clinical cohort with its diagnoses")
    p.add_argument("--random-state", type=number(int, 0), default=0,
                   help="seed: the same seed writes the same files (default 0)")
    p.add_argument("--force", action="store_true",
                   help="replace existing files of the same names (default: refuse)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``anatcl-sklearn synthetic``.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after ``synthetic`` (default: ``sys.argv[2:]``).

    Returns
    -------
    status : int
        0 on success, 2 on a user error (one line on stderr).
    """
    from ..datasets import write_synthetic_brains

    args = build_parser().parse_args(sys.argv[2:] if argv is None else argv)
    try:
        data = write_synthetic_brains(args.folder, args.n_subjects, shape=tuple(args.shape),
                                      cohort=args.cohort, random_state=args.random_state,
                                      overwrite=args.force)
    except (ValueError, TypeError, OSError) as exc:
        return error(PROG, exc)
    print(f"wrote {len(data.paths)} synthetic brains ({'x'.join(map(str, args.shape))} grid) "
          f"and {data.participants_path}")
    return 0
