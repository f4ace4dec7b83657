"""``anatcl-sklearn embed``: embed brain images with a pretrained AnatCL encoder, into a table.

``anatcl-sklearn embed INPUT... --output FILE`` (or ``python -m anatcl_sklearn embed``). Every input is checked (and read once) before any embedding; a user error ends the run
with exit status 2 and one line on stderr, and never leaves an output file behind.
"""

import argparse
import collections
import glob
import importlib.util
import os
import re
import sys
import time
import warnings

from ..images._tables import TABLE_EXTENSIONS
from ._bids_output import OutputError, check_sources, open_derivative
from ._embedding import embed_checked, wait_for_stopped
from ._errors import error, flag_words
from ._reporter import Reporter
from ._types import choices, number

PROG = "anatcl-sklearn embed"
#: How much of the volumes the up-front check decodes is kept for the embedding that follows
#: (121 full-size volumes), instead of decoding those files a second time.
READ_AHEAD_BYTES = 1 << 30
#: Precision of ``--precision auto`` on the CPU (on CUDA it is "bf16").
_CPU_DEFAULT_PRECISION = "fp32"
_OUTPUT_EXTENSIONS = (".csv", ".parquet")
_CHUNK_BATCHES = 8  # images per transform call: this many batches (one progress update each)


class UserError(Exception):
    """A problem with the command line or the inputs: exit status 2, one line on stderr."""


def _device(text):
    """An argparse ``type=`` for ``--device``: "auto" or anything :class:`torch.device` reads."""
    if text == "auto":
        return text
    import torch

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"invalid device: {text!r} (use auto, cpu, cuda or cuda:N)") from None
    return text


def build_parser():
    """The argument parser of ``anatcl-sklearn embed``.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Embed brain images (CAT12 grey-matter maps) with a pretrained AnatCL "
                    "encoder and write one row per image: an 'image' column, then the features.",
        epilog="INPUT is a .nii, .nii.gz or .npy file; a glob pattern (quoted; ** recurses); or "
               "a list file: .txt (one path per line, # comments) or .csv/.tsv/.tab (a 'path', "
               "'image' or 'filename' column, or a single column). Relative paths in a list "
               "file are read from the list file's folder. A 4-D NIfTI gives one row per volume, "
               "named PATH#T.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="images, glob patterns or list files")
    p.add_argument("--bids", metavar="DIR",
                   help="instead of INPUT: a BIDS derivatives folder (or a study holding one); "
                        "its grey-matter maps are found by their names: CAT12 / deepmriprep "
                        "mwp1<source>_T1w.nii[.gz], fMRIPrep *_space-<X>_label-GM_probseg")
    p.add_argument("--pipeline", metavar="NAME",
                   help="with --bids: the pipeline whose maps to read when DIR holds several "
                        "(cat12, deepmriprep, fmriprep...)")
    p.add_argument("--space", metavar="SPACE",
                   help="with --bids: the template space of label-GM_probseg maps when there "
                        "are several (e.g. MNI152NLin2009cAsym)")
    p.add_argument("--output", "-o", required=True, metavar="FILE",
                   help="table to write: .csv or .parquet (.parquet needs pyarrow: "
                        'pip install "anatcl-sklearn[parquet]"); with --bids, a folder '
                        "(no such extension) receives a BIDS derivative: "
                        "dataset_description.json, embeddings.tsv and embeddings.json")
    p.add_argument("--weights", default="anatcl-global", metavar="W",
                   help="official name (anatcl-global, anatcl-local), a checkpoint file or a "
                        "saved model's folder (default: anatcl-global)")
    p.add_argument("--fold", type=number(int, 0, 4), default=0,
                   help="fold of the official weights, 0 to 4 (default 0)")
    p.add_argument("--conform", action="store_true",
                   help="resample each image to the weights' grid (the released weights': "
                        "121x145x121 at 1.5 mm, MNI)")
    p.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help=f"default auto: bf16 on CUDA, {_CPU_DEFAULT_PRECISION} on the CPU")
    p.add_argument("--batch-size", type=number(int, 1), default=8, help="images per batch (default 8)")
    p.add_argument("--output-kind", choices=("encoder", "projection"), default="encoder",
                   help="encoder features (512 for ResNet-18) or the 128-d projection")
    p.add_argument("--inference", choices=choices("inference"),
                   default="auto", help="how the encoder runs (default auto: eager for a few "
                   "images, the fastest installed backend for many)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--update", action="store_true",
                   help="with --bids and an output folder: embed only the maps the folder's "
                        "table lacks and append them, the existing rows untouched (refused if "
                        "the folder records other weights or settings)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress and no summary line")
    return p


# ---------------------------------------------------------------- output checks
def _parquet_engine():
    """The installed parquet engine pandas can use, or None."""
    return next((m for m in ("pyarrow", "fastparquet") if importlib.util.find_spec(m)), None)


def _check_output(path, force):
    """Refuse an output that cannot be written, before any work; return its absolute path."""
    lower = path.lower()
    if not lower.endswith(_OUTPUT_EXTENSIONS):
        raise UserError(f"--output {path!r}: unsupported file type; use one of "
                        f"{', '.join(_OUTPUT_EXTENSIONS)} (or, with --bids, a folder).")
    if lower.endswith(".parquet") and _parquet_engine() is None:
        raise UserError('--output .parquet needs pyarrow: pip install "anatcl-sklearn[parquet]" '
                        "(or write .csv).")
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path):
        raise UserError(f"--output {path!r} is a folder.")
    if os.path.lexists(path) and not force:
        raise UserError(f"--output {path!r} exists; pass --force to overwrite it.")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise UserError(f"--output folder {folder!r} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"--output folder {folder!r} is not writable.")
    return path


def _check_weights(weights):
    """Refuse ``--weights`` naming neither official weights nor an existing path."""
    from ..models import OFFICIAL_WEIGHTS

    if weights in OFFICIAL_WEIGHTS:
        return weights
    path = os.path.expanduser(weights)
    if not os.path.exists(path):
        raise UserError(f"--weights {weights!r} is neither an official name "
                        f"({', '.join(OFFICIAL_WEIGHTS)}) nor an existing file or folder.")
    return str(path)


# ---------------------------------------------------------------- inputs
def _read_list(path):
    """Paths named by a list file (.txt, .csv, .tsv or .tab), made absolute from its folder:
    the one reader of tables of image paths (:mod:`anatcl_sklearn.images._tables`)."""
    from ..images._tables import read_image_table

    try:
        return read_image_table(path, what="list file").paths
    except (ValueError, OSError) as exc:
        raise UserError(str(exc)) from None


def expand_inputs(inputs):
    """Turn the INPUT arguments into absolute image paths, in order.

    Parameters
    ----------
    inputs : list of str
        Image files, glob patterns (``glob.glob(recursive=True)``, sorted; matches are
        image paths) and list files (``.txt``, ``.csv``, ``.tsv``, ``.tab``; read by
        :func:`anatcl_sklearn.images._tables.read_image_table`).

    Returns
    -------
    paths : list of str
        One absolute path per image; duplicates are kept.

    Raises
    ------
    UserError
        If a pattern matches no file or a list file is missing, unreadable or malformed.
    """
    paths: list[str] = []
    for arg in inputs:
        ext = os.path.splitext(arg)[1].lower()
        if not os.path.lexists(arg) and any(c in arg for c in "*?["):
            matches = sorted(m for m in glob.glob(arg, recursive=True) if not os.path.isdir(m))
            if not matches:
                raise UserError(f"INPUT pattern {arg!r} matched no files.")
            paths.extend(os.path.abspath(m) for m in matches)
        elif ext in TABLE_EXTENSIONS:
            paths.extend(_read_list(arg))
        else:
            paths.append(os.path.abspath(arg))
    return paths


def _split_volumes(paths):
    """One (label, item) per row: a 4-D NIfTI gives ``(path#t, 3-D image)`` per volume."""
    import nibabel

    import anatcl_sklearn

    rows = []
    for path in paths:
        shape = ()
        if path.lower().endswith((".nii", ".nii.gz")) and os.path.isfile(path):
            try:
                shape = nibabel.load(path).shape  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001  unreadable: check_images says why
                pass
        if len(shape) == 4 and shape[3] > 1:
            rows.extend((f"{path}#{t}", vol) for t, vol in enumerate(anatcl_sklearn.split_4d(path)))
        else:
            rows.append((path, path))
    return rows


def _name_rows(message, labels):
    """Name the row's file in a message about ``INPUT[i]``, ``X[i]`` or ``<image #i>``."""
    def label(i):
        return repr(labels[int(i)]) if int(i) < len(labels) else None

    message = re.sub(r"<image #(\d+)>", lambda m: label(m.group(1)) or m.group(0), message)
    match = re.search(r"\b(?:INPUT|X)\[(\d+)\]", message)
    if match and label(match.group(1)) and labels[int(match.group(1))] not in message:
        message += f" (INPUT[{match.group(1)}] is {label(match.group(1))})"
    return message


# ---------------------------------------------------------------- writing
def write_table(table, path):
    """Write a DataFrame to ``path`` (.csv or .parquet) atomically.

    Through :func:`anatcl_sklearn._atomic.atomic_write`: a temporary file in the same folder
    with the permissions of a new file, renamed onto ``path`` (a symbolic link there is
    replaced, its target untouched), removed on any failure.

    Parameters
    ----------
    table : pandas.DataFrame
    path : str
        Absolute path of the output.
    """
    from .._atomic import atomic_write

    if path.lower().endswith(".csv"):
        atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
    else:
        atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))


# ---------------------------------------------------------------- BIDS in
def _read_bids(args):
    """The maps of the --bids folder (:func:`anatcl_sklearn.datasets.load_bids`)."""
    from ..datasets import load_bids

    try:
        return load_bids(args.bids, pipeline=args.pipeline, space=args.space)
    except (ValueError, TypeError, OSError) as exc:
        raise UserError(f"--bids: {exc}") from None


# ---------------------------------------------------------------- the command
def _embed(args, reporter):
    import pandas as pd

    import anatcl_sklearn
    from anatcl_sklearn import AnatCLEmbedder

    try:
        bids, derivative = check_sources(args)
    except OutputError as exc:
        raise UserError(str(exc)) from None
    if derivative is None:
        output = _check_output(args.output, args.force)
    weights = _check_weights(args.weights)

    study = None
    if bids:
        study = _read_bids(args)
        paths = list(study.images)
    else:
        paths = expand_inputs(args.inputs)
    for p in paths:  # names are written as UTF-8: refused now, not after all the embedding
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"INPUT {p!r} has a file name that is not valid UTF-8 (the "
                            "\\udcNN escapes stand for its undecodable bytes), so it cannot be "
                            "written to the output's 'image' column; rename the file.") from None
    repeated = [p for p, k in collections.Counter(paths).items() if k > 1]
    if repeated:
        reporter.warn(f"{len(repeated)} input file(s) appear more than once (first: "
                      f"{repeated[0]!r}); each occurrence gets its own row.")
    device = args.device
    precision = args.precision
    if precision == "auto":
        import torch

        on_cuda = (torch.cuda.is_available() if device == "auto"
                   else str(device).startswith("cuda"))
        precision = "bf16" if on_cuda else _CPU_DEFAULT_PRECISION

    if study is not None:  # BIDS maps are one volume each: a 4-D file is refused by name
        frame = study.frame
        if derivative is not None:
            try:
                derivative = open_derivative(args, derivative, study, weights, precision)
            except OutputError as exc:
                raise UserError(str(exc)) from None
            new = derivative.new_rows(frame)
            if not new:
                if not args.quiet:
                    reporter._write(f"nothing new: the {len(frame)} maps under {study.root} "
                                    f"are in {derivative.folder} already\n")
                return 0
            frame = frame.iloc[new].reset_index(drop=True)
            paths = list(frame["path"])
        rows = [(p, p) for p in paths]
    else:
        rows = _split_volumes(paths)
    labels = [label for label, _ in rows]
    items = [item for _, item in rows]

    try:  # every header read, the grid checked: no voxel yet
        images = anatcl_sklearn.check_images(items, name="INPUT", check_finite="auto",
                                             warn_grid=False, conform=args.conform)
    except (ValueError, TypeError, OSError) as exc:
        raise UserError(_name_rows(str(exc), labels)) from None
    n = len(items)
    inference = _inference_for(args, n, images, device, precision)

    t0 = time.perf_counter()
    # The embedder conforms to the weights' own grid when they record one (the collection
    # checked against OpenBHB's is then re-checked against it, headers only).
    est = AnatCLEmbedder(pretrained=weights, fold=args.fold, device=device,
                         precision=precision, batch_size=args.batch_size,
                         output=args.output_kind, verbose=0, conform=args.conform,
                         inference=inference)
    try:  # every file checked while the weights load, then embedded (cli/_embedding.py)
        Z = embed_checked(est, images, READ_AHEAD_BYTES, _CHUNK_BATCHES * args.batch_size,
                          reporter.progress)
        reporter.end_line()
    except (ValueError, TypeError, OSError) as exc:
        reporter.end_line()
        raise UserError(_name_rows(str(exc), labels)) from None
    names = list(est.get_feature_names_out())
    if derivative is not None:
        output = derivative.folder
        try:
            derivative.write(frame, Z, names)
        except OutputError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            raise UserError(f"cannot write {output!r}: {exc}") from None
    else:
        table = pd.DataFrame(Z, columns=names)
        table.insert(0, "image", labels)
        if study is not None:  # the maps' BIDS entities first
            for i, column in enumerate(study.entities):
                table.insert(i, column, study.frame[column].to_numpy())
        if not args.force and os.path.lexists(output):  # appeared while embedding
            raise UserError(f"--output {output!r} exists; pass --force to overwrite it.")
        try:
            write_table(table, output)
        except OSError as exc:
            raise UserError(f"cannot write {output!r}: {exc}") from None
    if not args.quiet and not reporter.tty:
        reporter._write(f"wrote {n} embeddings of {Z.shape[1]} features to {output} in "
                        f"{time.perf_counter() - t0:.1f} s\n")
    return 0


def _inference_for(args, n, images, device, precision):
    """--inference auto decided for the whole run (transform sees a chunk at a time)."""
    import torch

    from anatcl_sklearn.embedder._inference import choose_backend, require_backend

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = choose_backend(args.inference, n, tuple(images.shape), device, precision)
    try:
        require_backend(backend)
    except ImportError as exc:
        raise UserError(str(exc)) from None
    return backend


def main(argv=None):
    """Run ``anatcl-sklearn embed``.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after ``embed`` (default: ``sys.argv[2:]``).

    Returns
    -------
    status : int
        0 on success, 2 on a user error (reported in one line on stderr), 130 when
        interrupted. Usage errors exit through :class:`SystemExit` with status 2.
    """
    args = build_parser().parse_args(sys.argv[2:] if argv is None else argv)
    reporter = Reporter(args.quiet, PROG)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = reporter.warn
            return _embed(args, reporter)
    except UserError as exc:
        reporter.end_line()
        status = error(PROG, exc)  # one line, in the command line's words
    except KeyboardInterrupt:
        reporter.end_line()
        sys.stderr.write(f"{PROG}: interrupted; no output written.\n")
        status = 130
    try:  # the line is out; the weights' thread, told to stop, ends its step
        wait_for_stopped()
    except KeyboardInterrupt:  # a second Ctrl-C: leave it to end on its own
        return 130
    return status
