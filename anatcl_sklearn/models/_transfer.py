"""One file over HTTP(S) or ``file://``: retried, resumed with a Range request, with a progress
line on a terminal only.

urllib from the standard library on purpose: pooch cannot resume a partial download and
huggingface_hub only talks to the Hub, and neither is worth a dependency for one GET with a
Range header. The caller (:mod:`._official`) owns the temporary file, its checks and rename.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from typing import IO, Any

from .._typing import PathLike
from ..exceptions import FetchFailed

__all__ = ["URL_ENV_VAR", "FetchFailed", "archive_damage", "check_not_html", "fetch_error",
           "fetch_with_retries"]

#: The environment variable naming a mirror or a local copy of the official weights.
URL_ENV_VAR = "ANATCL_SKLEARN_WEIGHTS_URL"

_TIMEOUT_S = 60
_CHUNK_BYTES = 1 << 20

# Downloads are tried _ATTEMPTS times; before attempt k+2 the code sleeps
# _BACKOFF_S[k] seconds (the last value is reused). Tests set them to 0.
_ATTEMPTS = 3
_BACKOFF_S = (1.0, 2.0)
# A progress line (on a terminal only) is redrawn at most this often.
_PROGRESS_INTERVAL_S = 0.5


def fetch_with_retries(source: str, out: IO[bytes], progress: bool, label: str) -> None:
    """Copy ``source`` into the open binary file ``out``; FetchFailed after the last try."""
    resumable = urllib.parse.urlparse(source).scheme.lower() in ("http", "https")
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _fetch_once(source, out, resumable, progress, label)
            return
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if attempt >= _ATTEMPTS or not (resumable and _is_transient(exc)):
                raise FetchFailed(exc, attempt) from exc
            if _BACKOFF_S:
                time.sleep(_BACKOFF_S[min(attempt - 1, len(_BACKOFF_S) - 1)])


class _Incomplete(OSError):
    """The transfer stopped early; worth another (resumed) attempt."""


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in (408, 425, 429) or exc.code >= 500
    if isinstance(exc, urllib.error.URLError):
        return not isinstance(exc.reason, ssl.SSLCertVerificationError)
    return isinstance(exc, (OSError, http.client.HTTPException))


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _fetch_once(source: str, out: IO[bytes], resumable: bool, progress: bool, label: str) -> None:
    done = out.seek(0, os.SEEK_END)
    request = urllib.request.Request(source)
    if resumable and done:
        request.add_header("Range", f"bytes={done}-")
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:  # Range not satisfiable: start over.
            out.seek(0)
            out.truncate()
            raise _Incomplete(f"the server cannot resume at byte {done}") from exc
        raise
    with response:
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.strip().isdigit() else None
        match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
        if resumable and getattr(response, "status", None) == 206:
            if match is None or int(match.group(1)) != done:
                out.seek(0)
                out.truncate()
                raise _Incomplete(
                    f"the server resumed at the wrong place (Content-Range "
                    f"{response.headers.get('Content-Range')!r}, {done} bytes held)"
                )
            total = done + length if length is not None else None
            if total is None and match.group(3).isdigit():
                total = int(match.group(3))
            size = total
        else:
            # A fresh start, or a server that ignores Range (200): from zero.
            # A file:// copy's length is shown but not checked: the digest
            # check after the download is what protects it.
            done = 0
            out.seek(0)
            out.truncate()
            size = length
            total = length if resumable else None
        bar = _Progress(label, progress)
        try:
            while chunk := response.read(_CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                bar.update(done, size)
        finally:
            bar.close(done, size)
    if total is not None and done != total:
        raise _Incomplete(f"incomplete download ({done} of {total} bytes)")


def _isatty(stream: Any) -> bool:
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _Progress:
    """One line redrawn in place on a terminal, at most every 0.5 s; silent otherwise."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label = label
        self.enabled = bool(enabled) and _isatty(sys.stderr)
        self.last: float | None = None

    def update(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.last is not None and now - self.last < _PROGRESS_INTERVAL_S:
            return
        self.last = now
        self._draw(done, total)

    def close(self, done: int, total: int | None) -> None:
        if self.enabled and self.last is not None:
            self._draw(done, total)
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _draw(self, done: int, total: int | None) -> None:
        size = f"{done / 1e6:.1f} MB"
        if total:
            size += f" / {total / 1e6:.1f} MB ({100 * done / total:.0f}%)"
        sys.stderr.write(f"\rDownloading AnatCL weights {self.label}: {size}")
        sys.stderr.flush()


def archive_damage(path: PathLike) -> str | None:
    """Why a downloaded torch zip archive is damaged (truncated, a bad CRC), or None.

    ``torch.save`` writes a zip archive (the released weights are one): its central
    directory and every member's CRC-32 are checked, so a damaged download is refused
    before it enters the cache, even when the registry lists no digest. Files in another
    format are not judged here.
    """
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError,
            NotImplementedError, zlib.error) as exc:
        return f"not a complete zip archive: {exc}"
    except OSError as exc:
        return f"unreadable zip archive: {exc}"
    if bad is not None:
        return f"member {bad!r} fails its CRC check"
    return None


def fetch_error(exc: FetchFailed, source: str, label: str, target: PathLike, stale: str) -> OSError:
    tries = f" after {exc.attempts} attempts" if exc.attempts > 1 else ""
    return OSError(
        f"Could not download the AnatCL weights {label} from {source}"
        f"{tries}: {exc.reason}. Download the file by hand (e.g. with a "
        "browser) and pass its path as url= (or in the "
        f"{URL_ENV_VAR} environment variable): it is then copied to "
        f"'{target}' with its SHA-256 recorded.{stale}"
    )


def check_not_html(path: PathLike, source: str, target: PathLike) -> None:
    # A login wall or error page can come back with status 200; caching it
    # would only defer the failure to an obscure unpickling error.
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if not head:
        raise OSError(f"The download from {source} is empty; nothing was cached in '{target}'.")
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head")):
        raise OSError(
            f"The download from {source} is a web page, not a checkpoint; "
            f"nothing was cached in '{target}'. Download the weights by hand "
            "(e.g. with a browser, after signing in if the page asks) and pass "
            f"their path as url= (or in the {URL_ENV_VAR} environment variable)."
        )
