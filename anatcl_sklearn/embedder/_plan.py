"""The first stage of ``fit``: every decision and check, taken once, before any work.

:func:`plan_fit` validates the parameters, checks the launch options (:mod:`._launch`), loads
the pretrained weights (:func:`~anatcl_sklearn.models._pretrained.resolve_weights`: the model,
its identity and its recorded grid), decides the target grid from them
(:func:`~anatcl_sklearn.images._grid.target_grid`) so the image headers are read once, checks
images, age and anatomy, fits the anatomy scaler, checks the checkpoint folder and computes the
run key (:func:`._runs.run_key`), all inside one agreement of the processes: under torchrun
every rank does it, a failure anywhere fails every rank, and the ranks' subject counts, data,
age, anatomy, weights and parameters must agree, or every rank raises naming what differs.
The result, a frozen :class:`FitPlan`, is what the second stage (``_training.run_plan``)
runs; running never decides again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ..anatomy._training import check_desikan_shape, resolve_scaling
from ..images._checking import _check_images
from ..images._grid import affine_or_openbhb, target_grid, warn_pretrained_grid
from ..losses._validation import check_anatomy
from ._launch import OneProcess, resolve_launch
from ._params import needs_age, needs_anatomy
from ._runs import check_checkpoint_dir, run_key

__all__ = ["FitPlan", "check_X", "plan_fit"]

# Parameters the processes of one run may hold differently: they do not change the weights
# (the device is each process's own GPU; the seed is rank 0's, broadcast).
_NOT_AGREED = ("verbose", "callbacks", "checkpoint_dir", "num_workers", "distributed",
               "device", "pretrained", "random_state")


@dataclass(frozen=True)
class FitPlan:
    """Everything a fit decided before any work; running it never decides again.

    Attributes
    ----------
    train : bool
        False for a frozen pretrained encoder (no optimizer, no loss, no epoch).
    launcher : OneProcess
        How it runs (:func:`._launch.resolve_launch`); ``launcher.device`` is the device.
    seed : int
        The fit's seed (rank 0's under torchrun).
    images : ImageCollection
        The checked images, conformed to ``target`` as they are read.
    target : tuple or None
        The grid images are conformed to (``conform=True``), or None.
    age, anatomy : ndarray or None
        The checked age and the (scaled) anatomy the loss receives.
    anatomy_scaler : AnatomyScaler or None
        The fitted scaler (or the one frozen weights were saved with).
    weights : ResolvedWeights or None
        The loaded pretrained weights, their identity and recorded grid.
    checkpoint_path : str or None
        ``checkpoint_dir/anatcl-run-<run_key>.pt``.
    run_key : str or None
        The run's key, the same on every rank.
    """

    train: bool
    launcher: OneProcess
    seed: int
    images: Any
    target: Any
    age: np.ndarray | None
    anatomy: np.ndarray | None
    anatomy_scaler: Any
    weights: Any
    checkpoint_path: str | None
    run_key: str | None


def plan_fit(est: Any, X: Any, y: Any, age: Any, anatomy: Any,
             launcher: OneProcess | None = None) -> FitPlan:
    """Take every decision of ``est.fit(X, y, age=age, anatomy=anatomy)`` once, before any work.

    Parameters
    ----------
    est : AnatCLEmbedder
    X, y, age, anatomy
        As :meth:`AnatCLEmbedder.fit`.
    launcher : OneProcess, default=None
        The launch (default: :func:`._launch.resolve_launch`'s).

    Returns
    -------
    plan : FitPlan
    """
    train = est.pretrained is None or bool(est.finetune)
    if launcher is None:
        launcher = resolve_launch(est, train)
    decided, facts = launcher.agree_facts(
        lambda: _decide(est, X, y, age, anatomy, launcher, train))
    problem = disagreement(facts)
    if problem is not None:
        raise ValueError(problem)
    key, folder = facts[0].get("key"), decided.pop("folder")
    path = None if folder is None else os.fspath(folder / f"anatcl-run-{key}.pt")
    return FitPlan(train=train, launcher=launcher, seed=int(facts[0]["seed"]),
                   checkpoint_path=path, run_key=key, **decided)


def _decide(est, X, y, age, anatomy, launcher, train):
    """This process's decisions and the facts the processes must agree on."""
    from ..models._pretrained import resolve_weights

    est._validate_params()
    launcher.check(est, train)
    weights = None
    if est.pretrained is not None:  # the weights first: the grid they record is the target
        _stat_paths(X)  # but a missing or wrong file is named before any download or load
        weights = resolve_weights(est.pretrained, fold=int(est.fold), arch=est.arch,
                                  identify=train)
    target = target_grid(est.conform, *((weights.shape, weights.affine) if weights else ()),
                         recorded_by="weights")
    # Training reads every volume many times, so one up-front pass that finds NaN/inf voxels
    # and damaged files (and names them) before any training costs little; inference checks
    # lazily.
    images = est._check_X(X, check_finite=True if train else "auto", target=target)
    n = len(images)
    if n < 2 and train:
        raise ValueError(
            f"fit needs at least 2 images to contrast when it trains; got {n}. (A frozen "
            "pretrained encoder, pretrained=... with finetune=False, embeds any number.)")
    anatomy_scaler = None
    if train:
        launcher.check_batch(int(est.batch_size))
        age, anatomy = _resolve_age(est, y, age, n), _resolve_anatomy(est, anatomy, n)
        anatomy_scaler, anatomy = _scale_anatomy(est, anatomy)
    else:  # a frozen encoder: fit only loads weights (and the scaler they were saved with)
        age = anatomy = None
        assert weights is not None  # a frozen fit has pretrained weights (checked above)
        saved = getattr(weights.model, "pretrained_config", None)
        if saved:
            from ._sharing import scaler_from_config

            anatomy_scaler = scaler_from_config(saved.get("anatomy_scaler"))
    if weights is not None:
        warn_pretrained_grid(images, *_recorded_grid(weights))
    folder = None
    if est.checkpoint_dir is not None and train:
        need = 3 * _parameter_bytes(est, weights) + (8 << 20)
        folder = check_checkpoint_dir(est.checkpoint_dir, 2 * need, writer=launcher.is_writer)
    facts = {"seed": int(check_random_state(est.random_state).randint(0, 2**31 - 1))}
    if train and (folder is not None or launcher.world > 1):
        facts.update(n=n, params=_parameter_facts(est))
        run_key(est, images, age, anatomy, world=launcher.world,
                weights=None if weights is None else weights.identity, parts=facts)
    decided = dict(images=images, target=target, age=age, anatomy=anatomy,
                   anatomy_scaler=anatomy_scaler, weights=weights, folder=folder)
    return decided, facts


def disagreement(facts: list[dict]) -> str | None:
    """What the processes' ``facts`` disagree on (a message naming it), or None."""
    first, differences = facts[0], []
    for rank, mine in enumerate(facts[1:], start=1):
        if mine.get("n") != first.get("n"):
            differences.append(f"rank {rank} holds {mine.get('n')} images, rank 0 holds "
                               f"{first.get('n')}")
        elif mine.get("data") != first.get("data"):
            differences.append(f"rank {rank} holds other images than rank 0 (their identity "
                               "differs: other files, contents or grid)")
        for what in ("age", "anatomy"):
            if mine.get("n") == first.get("n") and mine.get(what) != first.get(what):
                differences.append(f"rank {rank}'s {what} differs from rank 0's")
        if mine.get("weights") != first.get("weights"):
            differences.append(f"rank {rank} has other pretrained weights than rank 0 "
                               f"({mine.get('weights')} vs {first.get('weights')})")
        params, others = first.get("params", {}), mine.get("params", {})
        for name in sorted(set(params) | set(others)):
            if params.get(name) != others.get(name):
                differences.append(f"rank {rank} has {name}={others.get(name)}, rank 0 has "
                                   f"{name}={params.get(name)}")
    if not differences:
        return None
    return ("The processes of this torchrun run disagree on what to train: "
            + "; ".join(differences) + ". Every rank must be given the same images, age, "
            "anatomy and parameters (each trains on its shard of the same global batches); "
            "nothing was trained.")


def check_X(est: Any, X: Any, check_finite: Any = "auto", target: Any = None) -> Any:
    """``X`` checked for :class:`AnatCLEmbedder` (``fit`` and ``transform``): a collection."""
    import scipy.sparse

    if scipy.sparse.issparse(X):
        raise TypeError(
            "Sparse input is not supported: AnatCLEmbedder needs dense images, an array "
            "(n_images, D, H, W) or a list of image paths or nibabel images."
        )
    # The grid matters for pretrained weights only; fit compares it with theirs. Warnings
    # point at the user's line (fit, or transform behind set_output): exceptions.warn.
    return _check_images(X, "X", check_finite, warn_grid=False, nonfinite_advice="",
                         target=target)


def _recorded_grid(weights):
    if weights.shape is None:
        return None, None
    return weights.shape, affine_or_openbhb(weights.shape, weights.affine)


def _parameter_facts(est):
    """Each agreed parameter as text (an object's address stands for its type only)."""
    out = {}
    for name, value in est.get_params(deep=False).items():
        if name in _NOT_AGREED:
            continue
        text = repr(value.item() if isinstance(value, np.generic) else value)
        out[name] = type(value).__name__ if " at 0x" in text else text
    return out


def _parameter_bytes(est, weights):
    """The bytes of the model's parameters (a scratch model is built on the meta device)."""
    import torch

    if weights is not None:
        model = weights.model
    else:
        from ..models import AnatCLModel

        head: dict[str, Any] = {"out_dim": 1, "normalize": False} if est.method == "l1" else {}
        with torch.device("meta"):
            model = AnatCLModel(est.arch, **head)
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _scale_anatomy(est, anatomy):
    scaler = None
    if anatomy is not None and resolve_scaling(est.anatomy_scaling, est.descriptor) == "minmax":
        from ..anatomy import AnatomyScaler

        scaler = AnatomyScaler().fit(anatomy)
        anatomy = scaler.transform(anatomy)
    if anatomy is not None and needs_anatomy(est):  # now, not at the first batch
        check_anatomy(anatomy, non_negative=True)
    return scaler, anatomy


def _resolve_age(est, y, age, n):
    if age is None and est.use_y_as_age and y is not None:
        age = y
    elif age is not None and est.use_y_as_age and y is not None:
        a = np.asarray(age, dtype=float)
        yy = np.asarray(y)
        if yy.shape != a.shape or not np.allclose(yy.astype(float), a):
            raise ValueError(
                "use_y_as_age=True but both y and age were given and they differ; pass only "
                "one of them so it is clear which is age."
            )
    if age is None:
        if needs_age(est):
            hint = " (y was given but is not used as age unless use_y_as_age=True)" \
                if y is not None else ""
            raise ValueError(
                f"method={est.method!r} needs age: pass fit(X, age=...) (routed with "
                f"set_fit_request(age=True) in a pipeline){hint}."
            )
        return None
    try:
        age = np.asarray(age, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"age must be numeric (years); got values like "
                        f"{np.asarray(age).ravel()[:3]}.") from exc
    if age.ndim == 2 and age.shape[1] == 1:
        age = age[:, 0]
    if age.ndim != 1 or age.shape[0] != n:
        raise ValueError(f"age must have shape ({n},), one value per image; got shape {age.shape}.")
    # checked in the dtype training uses: 1e300 is finite in float64, inf in float32
    with np.errstate(over="ignore"):
        finite = np.isfinite(age.astype(np.float32))
    if not finite.all():
        bad = np.flatnonzero(~finite)[:5].tolist()
        raise ValueError(f"age has values that are not finite in float32 (NaN, inf, or beyond "
                         f"+-3.4e38) at indices {bad}: {age[bad].tolist()}.")
    return age


def _resolve_anatomy(est, anatomy, n):
    if anatomy is None:
        if needs_anatomy(est):
            raise ValueError(
                f"method='anatcl' with lambda_anat={est.lambda_anat} needs anatomy: pass "
                "fit(X, anatomy=...) with an array (n_subjects, 68, 3) of Desikan (CT, GMV, "
                "SA) measures (see anatcl_sklearn.anatomy), or set lambda_anat=0."
            )
        return None
    anatomy = np.asarray(anatomy)
    if not np.issubdtype(anatomy.dtype, np.number) or np.iscomplexobj(anatomy):
        raise TypeError(f"anatomy must be a real numeric array; got dtype {anatomy.dtype}.")
    anatomy = anatomy.astype(np.float64)
    check_desikan_shape(anatomy, n)
    with np.errstate(over="ignore"):
        finite = np.isfinite(anatomy.astype(np.float32))
    if not finite.all():
        subj = np.flatnonzero(~finite.all(axis=(1, 2)))[:5].tolist()
        raise ValueError(f"anatomy has values that are not finite in float32 (NaN, inf, or "
                         f"beyond +-3.4e38) for subjects {subj}.")
    return anatomy


def _stat_paths(X):
    """Name a missing, mistyped or non-regular image file from the file system's metadata alone
    (:func:`anatcl_sklearn.images._checking.check_image_path`), so that a wrong path fails before
    pretrained weights are downloaded or loaded; the headers are still read once, after."""
    from ..images._checking import check_image_path

    if isinstance(X, (str, bytes, os.PathLike)) or not isinstance(X, (list, tuple)):
        return  # one path, an array, a tensor: check_images says what it needs
    for i, element in enumerate(X):
        if isinstance(element, (str, os.PathLike)):
            check_image_path(element, i)
