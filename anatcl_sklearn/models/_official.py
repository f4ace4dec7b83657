"""Registry and verified download cache of the official AnatCL weights.

Turning ``pretrained=...`` (an official name among its five forms) into a model is
:mod:`anatcl_sklearn.models._pretrained`'s.
"""

from __future__ import annotations

import errno
import numbers
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import MappingProxyType

from .._atomic import new_file_mode
from ._digest import file_sha256, read_digest, write_digest
from ._transfer import (
    URL_ENV_VAR,
    FetchFailed,
    archive_damage,
    check_not_html,
    fetch_error,
    fetch_with_retries,
)

__all__ = ["OFFICIAL_WEIGHTS", "fetch_official_weights"]

CACHE_ENV_VAR = "ANATCL_SKLEARN_CACHE"

_N_FOLDS = 5
# Partial downloads left by a killed process are removed after this long.
_STALE_PART_S = 24 * 3600

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

# The SHA-256 of each fold's file, once someone has checked the released
# files (e.g. against the reference package): a filled value is checked on
# every use of the cached file and after every download, whatever url= says
# (a mirror must serve the same bytes). None: not known yet; the cache then
# relies on the digest it recorded itself when it downloaded the file.
_SHA256 = {
    "global": (None,) * _N_FOLDS,
    "local": (None,) * _N_FOLDS,
}


def _entry(descriptor, description):
    urls = tuple(
        _URL_PATTERN.format(descriptor=descriptor, fold=fold) for fold in range(_N_FOLDS)
    )
    return MappingProxyType(
        {
            "arch": "resnet18",
            "out_dim": 128,
            "description": description,
            "urls": urls,
            "sha256": tuple(_SHA256[descriptor]),
        }
    )


#: The released weights by name (``anatcl-global``, ``anatcl-local``), read-only: each a
#: dict of ``arch``, ``out_dim``, ``description``, ``urls`` (one per fold) and ``sha256`` (one
#: per fold: 64 hex digits, or None when not known).
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
        or not 0 <= int(fold) < n_folds
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


def _expected_sha256(name, fold):
    digest = OFFICIAL_WEIGHTS[name].get("sha256", (None,) * (fold + 1))[fold]
    return digest.lower() if isinstance(digest, str) else None


def fetch_official_weights(name: str, fold: int = 0, *, cache_dir: str | os.PathLike | None = None,
                           url: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download official AnatCL weights once and return the cached file.

    Each (name, fold) is cached under its own file name,
    ``<cache_dir>/<name>_fold<fold>.pth``: the official URLs all end in the
    same ``weights.pth``, so a cache keyed on the URL's file name would serve
    fold 0 for every fold. Beside it, ``<name>_fold<fold>.pth.sha256``
    records its SHA-256 (``sha256sum`` format).

    A cached file is checked before every use: its SHA-256 must be the one
    listed in :data:`OFFICIAL_WEIGHTS` (when the registry lists one) or else
    the one recorded when it was downloaded. A file that fails the check
    (truncated, damaged, or without a recorded digest because an older
    version or an interrupted run left it) is downloaded again, once, with a
    one-line note on standard error. A file that passes is returned without
    any network access.

    A download that is a damaged zip archive (``torch.save``'s format:
    truncated, or a member failing its CRC-32) is refused before it enters
    the cache and downloaded again, once; damaged twice, it is an OSError
    and nothing is kept.

    Downloads are tried 3 times with a short pause in between; over HTTP(S)
    a retry resumes where the previous attempt stopped when the server
    supports it. They go to a temporary ``.part`` file in the cache directory
    that is renamed into place only when complete and checked, and that is
    removed on any failure (including an interrupt).

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
        syntax), else the official URL. A digest listed in the registry is
        checked whatever the source.
    progress : bool, default=True
        Whether to show a progress line while downloading. It is shown only
        when standard error is a terminal, never in a log file.

    Returns
    -------
    path : pathlib.Path
        Path of the cached checkpoint file.

    Raises
    ------
    ValueError
        If ``name`` or ``fold`` is not valid.
    OSError
        If the cache directory is not writable, if the download fails (the
        message says how to supply the file by hand), or if the downloaded
        file does not have the SHA-256 listed in the registry.

    Examples
    --------
    >>> from anatcl_sklearn.models import fetch_official_weights
    >>> path = fetch_official_weights("anatcl-global", fold=0)  # doctest: +SKIP
    """
    fold = _check_name_fold(name, fold)
    cache = _resolve_cache_dir(cache_dir)
    source = _resolve_url(name, fold, url)
    target = cache / f"{name}_fold{fold}.pth"
    _check_cache_layout(cache, target)
    expected = _expected_sha256(name, fold)
    problem = None
    if target.is_file():
        problem = _cached_problem(target, expected)
        if problem is None:
            return target
        _note(f"anatcl_sklearn: the cached file '{target}' {problem}; downloading it again.")
    _prepare_cache(cache)
    _remove_stale_parts(cache)
    _download(source, target, expected, progress, f"{name} fold {fold}", problem)
    return target


def _note(line):
    stream = sys.stderr
    if stream is not None:
        stream.write(line + "\n")
        stream.flush()


def _check_cache_layout(cache, target):
    """Refuse, by name, a cache that is a file (or under one) and folders where its files go.

    ``os.replace`` and ``open`` would otherwise end in a raw IsADirectoryError or
    NotADirectoryError after the download.
    """
    where = f"choose another cache with cache_dir= or the {CACHE_ENV_VAR} environment variable"
    above = cache
    while not above.exists() and above != above.parent:
        above = above.parent
    if above.exists() and not above.is_dir():
        raise ValueError(
            f"The weights cache '{cache}' cannot be a folder: '{above}' is a file. Move that "
            f"file away, or {where}.")
    for path, what in ((target, "the weights file"),
                       (target.with_name(target.name + ".sha256"), "the weights' SHA-256 record")):
        if path.is_dir():
            raise ValueError(
                f"The weights cache has a folder at '{path}', where {what} belongs; "
                f"anatcl_sklearn never makes one there. Remove or rename it, or {where}.")


def _cached_problem(target, expected):
    """Why a cached file cannot be used as it is, or None when it is verified."""
    recorded = read_digest(target)
    if expected is None and recorded is None:
        return (
            "has no recorded SHA-256 (left by an older version of anatcl_sklearn "
            "or an interrupted run), so it cannot be verified"
        )
    try:
        actual = file_sha256(target)
    except OSError as exc:
        raise OSError(
            f"Cannot read the cached weights '{target}': {exc}. Check its "
            f"permissions, or choose another cache with cache_dir= or the "
            f"{CACHE_ENV_VAR} environment variable."
        ) from exc
    if expected is not None and actual != expected:
        return (
            f"has SHA-256 {actual}, not the {expected} listed in the registry "
            "(damaged or truncated)"
        )
    if expected is None and actual != recorded:
        return (
            f"has SHA-256 {actual}, not the {recorded} recorded when it was "
            "downloaded (damaged or truncated)"
        )
    return None


def _cache_error(cache, reason):
    return OSError(
        f"The weights cache directory '{cache}' is not writable or cannot be "
        f"created ({reason}). Choose another one with cache_dir= or the "
        f"{CACHE_ENV_VAR} environment variable."
    )


def _prepare_cache(cache):
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cache_error(cache, exc.strerror or type(exc).__name__) from exc
    if not os.access(cache, os.W_OK | os.X_OK):
        raise _cache_error(cache, os.strerror(errno.EACCES))


def _remove_stale_parts(cache):
    """Best effort: delete partial files a killed process left over a day ago.

    They are never resumed: another process may still be writing one, and a
    killed one may have left anything in it.
    """
    cutoff = time.time() - _STALE_PART_S
    try:
        leftovers = [*cache.glob(".*.part"), *cache.glob(".*.sha256.*.tmp")]
    except OSError:
        return
    for path in leftovers:
        try:
            if path.lstat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass


def _download(source, target, expected, progress, label, problem):
    cache = target.parent
    try:
        fd, part_name = tempfile.mkstemp(dir=cache, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
            raise _cache_error(cache, exc.strerror or type(exc).__name__) from exc
        raise
    part = Path(part_name)
    stale = ""
    if problem is not None:
        stale = (
            f" The cached '{target}' was not used: it {problem}."
            if expected is not None or read_digest(target) is not None
            else f" The cached '{target}' was not used: it {problem}; if you "
            f"trust it, record its digest by running `sha256sum {target.name} > "
            f"{target.name}.sha256` in '{cache}'."
        )
    os.close(fd)
    try:
        for attempt in (1, 2):
            with open(part, "r+b") as out:
                out.truncate()  # a second try starts from zero
                try:
                    fetch_with_retries(source, out, progress, label)
                except FetchFailed as exc:
                    raise fetch_error(exc, source, label, target, stale) from (
                        exc.reason if isinstance(exc.reason, BaseException) else exc)
                out.flush()
                os.fsync(out.fileno())
            check_not_html(part, source, target)
            damage = archive_damage(part)
            if damage is None:
                break
            if attempt == 2:
                raise OSError(
                    f"Refused to cache '{target}': the AnatCL weights {label} downloaded "
                    f"from {source} were damaged twice ({damage}). Nothing was kept. Try "
                    "again later, or download the file by hand and pass its path as url= "
                    f"(or in the {URL_ENV_VAR} environment variable).{stale}"
                )
            _note(f"anatcl_sklearn: the download from {source} is damaged ({damage}); "
                  "downloading it again.")
        actual = file_sha256(part)
        if expected is not None and actual != expected:
            damaged = (
                f" Delete the damaged cached copy '{target}' as well."
                if target.exists()
                else ""
            )
            raise OSError(
                f"Refused to cache '{target}': the file downloaded from {source} "
                f"has SHA-256 {actual}, but the registry expects {expected} for "
                f"the AnatCL weights {label}. Nothing was kept. Check that the URL "
                f"(url= or the {URL_ENV_VAR} environment variable) serves the "
                f"official file, byte for byte.{damaged}"
            )
        # mkstemp creates 0600; the cache gets the mode of any new file.
        os.chmod(part, new_file_mode())
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    write_digest(target, hexdigest=actual)
