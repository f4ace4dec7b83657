"""The gallery's plumbing: settings read from ``ANATCL_*`` environment variables, and data.

Private: the examples import it by this path (``anatcl_sklearn.evaluation._gallery``); it is
not part of the public :mod:`anatcl_sklearn.evaluation` API and may change without notice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sklearn.utils import Bunch

from .._typing import PathLike
from ._methods import PAPER_METHODS
from ._protocol import RELEASED_METHODS

__all__ = ["FAST_METHODS", "cache_description", "load_example_data", "settings_from_env",
           "synthetic_cohort_size"]

#: The rows of a fast run: one self-supervised, one age-supervised and one anatomical method.
FAST_METHODS = ("SimCLR", "y-Aware", "AnatCL-G3")


def settings_from_env(
    example: str, *, default_output: PathLike, environ: Mapping[str, str] | None = None
) -> Bunch:
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
        ``n_pretrain`` (synthetic pretraining subjects: 32 when fast, else 96),
        ``cache`` (the encoder cache shared by the examples:
        ``$ANATCL_SKLEARN_CACHE/gallery-encoders`` when that variable is set, else
        ``encoder-cache`` in the examples' output folder) and ``methods`` (the rows to run: the released AnatCL rows when official weights are
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
    root = Path(env.get("ANATCL_EXAMPLES_OUTPUT") or default_output)
    output = root / example
    output.mkdir(parents=True, exist_ok=True)
    cache = (Path(env["ANATCL_SKLEARN_CACHE"]) / "gallery-encoders"
             if env.get("ANATCL_SKLEARN_CACHE") else root / "encoder-cache")
    return Bunch(fast=fast, openbhb_dir=openbhb_dir, official=official,
                 fold=values["ANATCL_FOLD"], checkpoint_dir=env.get("ANATCL_CHECKPOINT_DIR"),
                 output=output, cache=cache, training=training, cv=3 if fast else 5,
                 inner_cv=3 if fast else 5, n_pretrain=32 if fast else 96, methods=methods)


def cache_description(settings: Bunch) -> str:
    """Where the encoder cache is, in words rather than as an absolute path."""
    cache = Path(settings.cache)
    if cache.name == "gallery-encoders":
        return "the gallery-encoders folder of $ANATCL_SKLEARN_CACHE"
    return f"the {cache.name} folder beside the examples' output"


def load_example_data(
    settings: Bunch,
    cohort_dirs: Mapping[str, str | None],
    *,
    n_subjects: int,
    shape: tuple[int, int, int] = (24, 28, 24),
    cv: int | None = None,
    verbose: bool = True,
) -> Bunch:
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
        Subjects of each synthetic cohort (more where ``cv`` asks for them).
    shape : tuple of int, default=(24, 28, 24)
        Grid of the synthetic brains.
    cv : int or None, default=None
        Outer folds every task of a synthetic cohort must fill, usually ``settings.cv``
        (None: ``n_subjects`` as given). Group proportions follow the paper's cohorts, so
        a rare group stays rare: ABIDE-I had 7 PDD-NOS subjects in 995, and 300 synthetic
        ABIDE-I subjects hold 3, too few for 5 folds. Such a cohort is drawn larger
        (:func:`synthetic_cohort_size`: 632 subjects there), so that every class of every
        task of that cohort (:data:`TASKS`) has at least ``cv`` subjects and a regression
        task ``2 * cv``; the printed size says so.
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
            grown = ""
        else:
            n = (n_subjects if cv is None
                 else synthetic_cohort_size(name, n_subjects, cv=cv, random_state=seed))
            cohorts[name] = make_synthetic_brains(n, shape=shape, cohort=name,
                                                  random_state=seed)
            grown = (f" ({n_subjects} asked for, grown so that every {name} task has at "
                     f"least {cv} subjects per class for {cv}-fold CV)" if n > n_subjects
                     else "")
        if verbose:
            print(f"{name} ({kinds[name]}): {len(cohorts[name].images)} subjects{grown}")
    return Bunch(pretrain=pretrain, cohorts=cohorts, kinds=kinds, real=real, label=label)


def synthetic_cohort_size(
    cohort: str, n_subjects: int, *, cv: int = 5, random_state: int | None = None
) -> int:
    """A synthetic cohort's size, from ``n_subjects`` up, at which every task fills ``cv`` folds.

    :func:`~anatcl_sklearn.datasets.make_synthetic_brains` keeps the group proportions of
    the paper's cohorts, so a rare group can hold fewer subjects than there are folds
    (ABIDE-I's PDD-NOS: 7 of 995 subjects in the paper, 3 of 300 synthetic ones). Labels
    are drawn without images (milliseconds) at growing sizes until every task of the
    cohort in :data:`TASKS` -- its diagnoses and phenotypes -- has at least ``cv`` subjects
    in each class (a regression task: ``2 * cv`` labelled subjects), then bisected between
    the last size that fell short and the first that did not. The same ``random_state``
    with images gives the same labels.

    Parameters
    ----------
    cohort : str
        A ``cohort`` of :func:`~anatcl_sklearn.datasets.make_synthetic_brains`.
    n_subjects : int
        The size wanted; returned when it is enough.
    cv : int, default=5
        Outer folds of the probes.
    random_state : int or None, default=None
        The seed the cohort will be drawn with (an int: the labels depend on it).

    Returns
    -------
    n_subjects : int
        The size to draw the cohort at.

    Raises
    ------
    ValueError
        If no size up to 100 times ``n_subjects`` (at least 10,000) fills the folds.

    Examples
    --------
    >>> from anatcl_sklearn.evaluation._gallery import synthetic_cohort_size
    >>> synthetic_cohort_size("adni", 300, cv=5, random_state=2)
    300
    >>> synthetic_cohort_size("abide", 300, cv=5, random_state=3)  # PDD-NOS is 0.7 %
    632
    """
    from ..datasets import make_synthetic_brains
    from ._probe import _check_task_size
    from ._tasks import TASKS

    tasks = [task for task in TASKS.values() if task.cohort == cohort]

    def fills(n: int) -> bool:
        participants = make_synthetic_brains(n, cohort=cohort, random_state=random_state,
                                             return_images=False).participants
        try:
            for task in tasks:
                _check_task_size(task, task.labels(participants), cv)
        except ValueError:
            return False
        return True

    if fills(n_subjects):
        return n_subjects
    limit = max(100 * n_subjects, 10_000)
    low, high = n_subjects, n_subjects
    while not fills(high):
        low, high = high, int(high * 1.25) + 1
        if high > limit:
            raise ValueError(
                f"No synthetic {cohort!r} cohort of {n_subjects} to {limit} subjects has "
                f"enough subjects in every class of its tasks for cv={cv} folds."
            )
    while high - low > 1:  # the smallest size that fills them, between a miss and a hit
        middle = (low + high) // 2
        low, high = (low, middle) if fills(middle) else (middle, high)
    return high
