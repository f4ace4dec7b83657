"""Registry, download cache and resolution of the official AnatCL weights."""

import numbers
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from ._anatcl_model import AnatCLModel
from ._checkpoint import load_checkpoint

__all__ = ["OFFICIAL_WEIGHTS", "fetch_official_weights", "resolve_pretrained"]

CACHE_ENV_VAR = "ANATCL_SKLEARN_CACHE"
URL_ENV_VAR = "ANATCL_SKLEARN_WEIGHTS_URL"

_N_FOLDS = 5
_TIMEOUT_S = 60
_CHUNK_BYTES = 1 << 20

# The URLs listed by the reference package (carloalbertobarbano/AnatCL,
# anatcl/anatcl.py, WEIGHTS_URLS["anatcl-g3"]["resnet18"]). They differ only
# by descriptor and fold, and every one ends in ".../weights.pth".
_URL_PATTERN = (
    "https://gitlab.di.unito.it/barbano/anatcl-pretrained/-/raw/main/"
    "0_obhn64_resnet18_amp_yaware_adam_tf_none_lr0.0001_step_step10_rate0.9_"
    "wd5e-05_bsz32_trainall_False_temp0.1_views2_kernel_rbf_sigma2.0_alpha1.0_"
    "anat_desikan_normTrue_subsetTrue_{descriptor}_lambd1.0_fold{fold}_splits5_"
    "trial0/weights.pth"
)


def _entry(descriptor, description):
    urls = tuple(
        _URL_PATTERN.format(descriptor=descriptor, fold=fold) for fold in range(_N_FOLDS)
    )
    return MappingProxyType(
        {"arch": "resnet18", "out_dim": 128, "description": description, "urls": urls}
    )


# Read-only: name -> {"arch", "out_dim", "description", "urls" (one per fold)}.
OFFICIAL_WEIGHTS = MappingProxyType(
    {
        "anatcl-global": _entry(
            "global",
            "ResNet-18 pretrained on OpenBHB with the AnatCL global descriptor: "
            "positiveness from the similarity of each measure (CT, GMV, SA) "
            "across all 68 Desikan regions.",
        ),
        "anatcl-local": _entry(
            "local",
            "ResNet-18 pretrained on OpenBHB with the AnatCL local descriptor: "
            "positiveness from the similarity of the (CT, GMV, SA) triplet of "
            "each Desikan region, averaged over the 68 regions.",
        ),
    }
)


def _check_name_fold(name, fold):
    if not isinstance(name, str) or name not in OFFICIAL_WEIGHTS:
        raise ValueError(
            f"Unknown official weights {name!r}; valid names are "
            f"{', '.join(OFFICIAL_WEIGHTS)}."
        )
    n_folds = len(OFFICIAL_WEIGHTS[name]["urls"])
    if (
        isinstance(fold, bool)
        or not isinstance(fold, numbers.Integral)
        or not 0 <= fold < n_folds
    ):
        raise ValueError(
            f"fold must be an integer in 0..{n_folds - 1} for {name!r} "
            f"(valid folds: {list(range(n_folds))}); got {fold!r}."
        )
    return int(fold)


def _resolve_cache_dir(cache_dir):
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV_VAR) or (
            Path.home() / ".cache" / "anatcl_sklearn"
        )
    elif not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(
            f"cache_dir must be a path or None, got {type(cache_dir).__name__}."
        )
    return Path(cache_dir).expanduser()


def _resolve_url(name, fold, url):
    if url is None:
        url = os.environ.get(URL_ENV_VAR) or OFFICIAL_WEIGHTS[name]["urls"][fold]
    elif not isinstance(url, (str, os.PathLike)):
        raise TypeError(f"url must be a string or None, got {type(url).__name__}.")
    url = os.fspath(url).replace("{name}", name).replace("{fold}", str(fold))
    if len(urllib.parse.urlparse(url).scheme) <= 1:
        # A bare path (a one-letter "scheme" is a Windows drive) is a file.
        url = Path(url).expanduser().resolve().as_uri()
    return url


def fetch_official_weights(name, fold=0, *, cache_dir=None, url=None, progress=True):
    """Download official AnatCL weights once and return the cached file.

    Each (name, fold) is cached under its own file name,
    ``<cache_dir>/<name>_fold<fold>.pth``: the official URLs all end in the
    same ``weights.pth``, so a cache keyed on the URL's file name would serve
    fold 0 for every fold. A file already in the cache is returned without any
    network access. Downloads go to a temporary file in the cache directory
    that is renamed into place only when complete.

    Parameters
    ----------
    name : {"anatcl-global", "anatcl-local"}
        Which pretrained model (see :data:`OFFICIAL_WEIGHTS`).
    fold : int, default=0
        Cross-validation fold of the release, 0 to 4.
    cache_dir : str or os.PathLike, default=None
        Cache directory. Defaults to the ``ANATCL_SKLEARN_CACHE`` environment
        variable, else ``~/.cache/anatcl_sklearn``.
    url : str, default=None
        Where to download from instead of the official URL, for a mirror or
        a local copy (``file://`` URL or plain path). ``{name}`` and
        ``{fold}`` in it are replaced. Defaults to the
        ``ANATCL_SKLEARN_WEIGHTS_URL`` environment variable (same template
        syntax), else the official URL.
    progress : bool, default=True
        Whether to print a progress line on standard error while downloading.

    Returns
    -------
    path : pathlib.Path
        Path of the cached checkpoint file.

    Raises
    ------
    ValueError
        If ``name`` or ``fold`` is not valid.
    OSError
        If the download fails; the message says where to put the file by
        hand.

    Examples
    --------
    >>> from anatcl_sklearn.models import fetch_official_weights
    >>> path = fetch_official_weights("anatcl-global", fold=0)  # doctest: +SKIP
    """
    fold = _check_name_fold(name, fold)
    cache = _resolve_cache_dir(cache_dir)
    source = _resolve_url(name, fold, url)
    target = cache / f"{name}_fold{fold}.pth"
    if target.is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(
            f"Cannot create the weights cache directory '{cache}': {exc}. Choose "
            f"another one with cache_dir= or the {CACHE_ENV_VAR} environment "
            "variable."
        ) from exc
    _download(source, target, progress, label=f"{name} fold {fold}")
    return target


def _download(source, target, progress, label):
    fd, tmp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                _copy_url(source, out, progress, label)
        except (OSError, ValueError) as exc:
            raise OSError(
                f"Could not download the AnatCL weights {label} from {source}: "
                f"{exc}. Download the file by hand (e.g. with a browser) and "
                f"save it as '{target}', or point url= or the {URL_ENV_VAR} "
                "environment variable to a reachable copy."
            ) from exc
        _check_not_html(tmp, source, target)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_url(source, out, progress, label):
    with urllib.request.urlopen(source, timeout=_TIMEOUT_S) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        done = 0
        while chunk := response.read(_CHUNK_BYTES):
            out.write(chunk)
            done += len(chunk)
            if progress:
                _report(label, done, total)
        if progress:
            sys.stderr.write("\n")
            sys.stderr.flush()
    if total is not None and done != total:
        raise OSError(f"incomplete download ({done} of {total} bytes)")


def _report(label, done, total):
    size = f"{done / 1e6:.1f} MB"
    if total:
        size += f" / {total / 1e6:.1f} MB ({100 * done / total:.0f}%)"
    sys.stderr.write(f"\rDownloading AnatCL weights {label}: {size}")
    sys.stderr.flush()


def _check_not_html(path, source, target):
    # A login wall or error page can come back with status 200; caching it
    # would only defer the failure to an obscure unpickling error.
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if not head:
        raise OSError(f"The download from {source} is empty; nothing was cached.")
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head")):
        raise OSError(
            f"The download from {source} is a web page, not a checkpoint. "
            f"Download the weights by hand and save them as '{target}'."
        )


def resolve_pretrained(pretrained, *, fold=0, arch="resnet18"):
    """Turn any accepted description of pretrained weights into a model.

    Parameters
    ----------
    pretrained : str, os.PathLike, Mapping or AnatCLModel
        One of:

        - an official name (``"anatcl-global"`` or ``"anatcl-local"``):
          the weights of fold ``fold`` are fetched (once) with
          :func:`fetch_official_weights` and loaded;
        - a path of a checkpoint file;
        - a checkpoint or state dict in memory;
        - an :class:`AnatCLModel`, returned unchanged (``fold`` and ``arch``
          are not used).
    fold : int, default=0
        Fold of the official weights, 0 to 4. Used only with an official name.
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
        Encoder architecture of a path or dict. The official weights are
        ResNet-18; another ``arch`` with an official name is an error.

    Returns
    -------
    model : AnatCLModel
        The loaded model, in eval mode (unless an AnatCLModel was given).

    Raises
    ------
    TypeError
        If ``pretrained`` is of any other type (including None and bool).
    FileNotFoundError
        If a string is neither an official name nor an existing file.
    ValueError
        If the fold or architecture is invalid, or the weights do not fit.

    Examples
    --------
    >>> from anatcl_sklearn.models import AnatCLModel, resolve_pretrained
    >>> model = resolve_pretrained(AnatCLModel().state_dict())
    >>> model.arch
    'resnet18'
    """
    if isinstance(pretrained, AnatCLModel):
        return pretrained
    if isinstance(pretrained, str) and pretrained in OFFICIAL_WEIGHTS:
        entry = OFFICIAL_WEIGHTS[pretrained]
        if arch != entry["arch"]:
            raise ValueError(
                f"The official {pretrained!r} weights are {entry['arch']!r}; "
                f"got arch={arch!r}."
            )
        path = fetch_official_weights(pretrained, fold)
        return load_checkpoint(path, arch=entry["arch"], out_dim=entry["out_dim"])
    if isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained={os.fspath(pretrained)!r} is neither an existing "
                "checkpoint file nor an official weights name "
                f"({', '.join(OFFICIAL_WEIGHTS)})."
            )
        return load_checkpoint(path, arch=arch)
    if isinstance(pretrained, Mapping):
        return load_checkpoint(pretrained, arch=arch)
    raise TypeError(
        "pretrained must be an official weights name "
        f"({', '.join(OFFICIAL_WEIGHTS)}), a checkpoint path, a checkpoint or "
        f"state dict, or an AnatCLModel; got {type(pretrained).__name__}."
    )
