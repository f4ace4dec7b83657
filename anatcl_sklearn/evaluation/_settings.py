"""Run settings of the paper-table examples, read from ``ANATCL_*`` environment variables."""

import os
from pathlib import Path

from sklearn.utils import Bunch

from ._methods import PAPER_METHODS
from ._protocol import RELEASED_METHODS

__all__ = ["FAST_METHODS", "load_example_data", "settings_from_env"]

#: The rows of a fast run: one self-supervised, one age-supervised and one anatomical method.
FAST_METHODS = ("SimCLR", "y-Aware", "AnatCL-G3")


def settings_from_env(example, *, default_output, environ=None):
    """Read the shared settings of the paper-table examples from the environment.

    Parameters
    ----------
    example : str
        Name of the example: its figures and tables go to ``<output>/<example>/``.
    default_output : str or os.PathLike
        Output folder when ``ANATCL_EXAMPLES_OUTPUT`` is unset.
    environ : mapping or None, default=None
        The environment to read (None: :data:`os.environ`).

    Returns
    -------
    settings : sklearn.utils.Bunch
        ``fast`` (``ANATCL_EXAMPLES_FAST`` set and not ``0``), ``openbhb_dir``
        (``ANATCL_OPENBHB_DIR`` or None), ``official`` (``ANATCL_WEIGHTS=official``),
        ``fold`` (``ANATCL_FOLD``, default 0), ``checkpoint_dir``
        (``ANATCL_CHECKPOINT_DIR`` or None), ``output`` (the example's folder, created),
        ``training`` (:class:`~anatcl_sklearn.AnatCLEmbedder` parameters: the paper's on
        OpenBHB, ``ANATCL_EPOCHS`` default 300; a short synthetic run otherwise, default 2
        epochs when fast, 8 otherwise), ``cv`` and ``inner_cv`` (3 when fast, else 5),
        ``n_pretrain`` (synthetic pretraining subjects: 32 when fast, else 96) and
        ``methods`` (the rows to run: the released AnatCL rows when official weights are
        asked for without OpenBHB, :data:`FAST_METHODS` when fast, else every
        :data:`PAPER_METHODS` row).

    Raises
    ------
    ValueError
        If ``ANATCL_EPOCHS`` or ``ANATCL_FOLD`` is not an integer, or ``ANATCL_WEIGHTS`` is set
        to anything but ``official``.
    """
    env = os.environ if environ is None else environ
    fast = env.get("ANATCL_EXAMPLES_FAST", "0") not in ("", "0")
    openbhb_dir = env.get("ANATCL_OPENBHB_DIR") or None
    weights = env.get("ANATCL_WEIGHTS", "").strip()
    if weights.lower() not in ("", "official"):
        raise ValueError(
            f"ANATCL_WEIGHTS={weights!r} is not understood by the paper-table examples: set "
            "ANATCL_WEIGHTS=official to evaluate the released AnatCL weights (the global and local "
            "rows), or leave it unset. (plot_pretrained_weights.py takes a weights name or a "
            "checkpoint file instead.)"
        )
    official = weights.lower() == "official"
    values = {}
    for key, default in (("ANATCL_FOLD", "0"),
                         ("ANATCL_EPOCHS", "300" if openbhb_dir else "2" if fast else "8")):
        try:
            values[key] = int(env.get(key, default))
        except ValueError:
            raise ValueError(f"{key} must be an integer; got {env.get(key)!r}.") from None
    if openbhb_dir:
        training = {"batch_size": 32, "lr": 1e-4, "weight_decay": 5e-5,
                    "max_epochs": values["ANATCL_EPOCHS"]}
    else:
        training = {"batch_size": 16, "lr": 1e-3, "max_epochs": values["ANATCL_EPOCHS"]}
    if official and not openbhb_dir:
        methods = list(RELEASED_METHODS)  # only AnatCL's weights are released
    elif fast:
        methods = list(FAST_METHODS)
    else:
        methods = list(PAPER_METHODS)
    output = Path(env.get("ANATCL_EXAMPLES_OUTPUT") or default_output) / example
    output.mkdir(parents=True, exist_ok=True)
    return Bunch(fast=fast, openbhb_dir=openbhb_dir, official=official,
                 fold=values["ANATCL_FOLD"], checkpoint_dir=env.get("ANATCL_CHECKPOINT_DIR"),
                 output=output, training=training, cv=3 if fast else 5,
                 inner_cv=3 if fast else 5, n_pretrain=32 if fast else 96, methods=methods)


def load_example_data(settings, cohort_dirs, *, n_subjects, shape=(24, 28, 24), verbose=True):
    """Pretraining data and downstream cohorts of a paper-table example: real or synthetic.

    Parameters
    ----------
    settings : sklearn.utils.Bunch
        As returned by :func:`settings_from_env`: pretraining data come from OpenBHB's
        training split when ``openbhb_dir`` is set, from synthetic brains otherwise, and
        are not needed (None) when only released weights are used.
    cohort_dirs : mapping of str to str or None
        ``{cohort name: folder}``: a folder is read by :func:`load_cohort`; None makes
        synthetic subjects of that cohort (seeds 2, 3, ... in order).
    n_subjects : int
        Subjects of each synthetic cohort.
    shape : tuple of int, default=(24, 28, 24)
        Grid of the synthetic brains.
    verbose : bool, default=True
        Print each cohort's size.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``pretrain`` (Bunch or None), ``cohorts`` (``{name: Bunch}``), ``kinds``
        (``{name: "real" or "synthetic"}``), ``real`` (whether any cohort is real) and
        ``label`` (a caption saying which data the numbers come from).

    Raises
    ------
    RuntimeError
        If a real cohort is given without an encoder for its grid (neither
        ``ANATCL_OPENBHB_DIR`` nor ``ANATCL_WEIGHTS=official``), before loading anything.
    """
    from ..datasets import load_openbhb, make_synthetic_brains
    from ._cohorts import load_cohort

    kinds = {c: "real" if d else "synthetic" for c, d in cohort_dirs.items()}
    real = any(cohort_dirs.values())
    if real and not (settings.openbhb_dir or settings.official):
        raise RuntimeError(
            "Real cohorts are CAT12 maps of 121x145x121 voxels: they need an encoder trained "
            "on that grid. Set ANATCL_OPENBHB_DIR (pretrain on OpenBHB) or "
            "ANATCL_WEIGHTS=official."
        )
    label = ("real cohorts" if all(k == "real" for k in kinds.values())
             else "SYNTHETIC cohorts, not the paper's data or numbers" if not real
             else "mixed: " + ", ".join(f"{c} {k}" for c, k in kinds.items()))
    pretrain = None
    if settings.openbhb_dir:
        pretrain = load_openbhb(settings.openbhb_dir, split="train")
    elif not settings.official:  # the same synthetic pretraining as the OpenBHB example
        pretrain = make_synthetic_brains(settings.n_pretrain, shape=shape, random_state=0)
    cohorts = {}
    for seed, (name, folder) in enumerate(cohort_dirs.items(), start=2):
        if folder:
            cohorts[name] = load_cohort(folder)
        else:
            cohorts[name] = make_synthetic_brains(n_subjects, shape=shape, cohort=name,
                                                  random_state=seed)
        if verbose:
            print(f"{name} ({kinds[name]}): {len(cohorts[name].images)} subjects")
    return Bunch(pretrain=pretrain, cohorts=cohorts, kinds=kinds, real=real, label=label)
