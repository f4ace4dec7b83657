"""SHA-256 digests of files and their ``sha256sum``-style sidecars.

A sidecar ``<file>.sha256`` holds one line, ``<hex>  <basename>``, the format
written by ``sha256sum`` (and ``shasum -a 256``), so ``sha256sum -c`` run in
the file's folder checks it too. The weights cache records one beside every
file it downloads and checks it before each use; converted model folders use
:func:`file_sha256` for the digest they store.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from .._atomic import atomic_write_bytes
from .._typing import PathLike

__all__ = ["check_digest", "file_sha256", "read_digest", "write_digest"]

_CHUNK_BYTES = 1 << 20
_SUFFIX = ".sha256"
_HEX = re.compile(r"[0-9a-fA-F]{64}")
# "<hex>  <name>" (text mode) or "<hex> *<name>" (binary mode).
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](\S.*)")


def file_sha256(path: PathLike) -> str:
    """Return the SHA-256 of a file's content, read in 1 MiB chunks.

    Parameters
    ----------
    path : str or os.PathLike
        The file to hash.

    Returns
    -------
    hexdigest : str
        64 lower-case hexadecimal digits.

    Raises
    ------
    OSError
        If the file cannot be read (for instance FileNotFoundError).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "empty.bin"
    >>> _ = path.write_bytes(b"")
    >>> file_sha256(path)[:16]
    'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: PathLike) -> Path:
    return Path(os.fspath(path) + _SUFFIX)


def _normalise(hexdigest: object, what: str) -> str:
    if not isinstance(hexdigest, str) or not _HEX.fullmatch(hexdigest):
        raise ValueError(
            f"{what} must be a SHA-256 digest of 64 hexadecimal digits; got "
            f"{hexdigest!r}."
        )
    return hexdigest.lower()


def write_digest(path: PathLike, *, hexdigest: str | None = None) -> str:
    """Record the SHA-256 of a file in ``<path>.sha256`` and return it.

    The sidecar is written atomically (a temporary file in the same folder,
    renamed into place), replaces any earlier sidecar (or a symlink of that
    name, which is never written through) and gets the usual permissions of a
    new file (``0o666`` less the umask).

    Parameters
    ----------
    path : str or os.PathLike
        The file whose digest to record.
    hexdigest : str, default=None
        The digest, when the caller has just computed it; by default the file
        is read and hashed.

    Returns
    -------
    hexdigest : str
        The recorded digest, 64 lower-case hexadecimal digits.

    Raises
    ------
    OSError
        If the file cannot be read or the sidecar cannot be written.
    ValueError
        If ``hexdigest`` is given but is not 64 hexadecimal digits.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "weights.pth"
    >>> _ = path.write_bytes(b"abc")
    >>> digest = write_digest(path)
    >>> path.with_name("weights.pth.sha256").read_text() == f"{digest}  weights.pth\\n"
    True
    """
    if hexdigest is None:
        hexdigest = file_sha256(path)
    else:
        hexdigest = _normalise(hexdigest, "hexdigest")
    line = f"{hexdigest}  {Path(path).name}\n".encode()
    atomic_write_bytes(_sidecar(path), line)
    return hexdigest


def read_digest(path: PathLike) -> str | None:
    """Return the digest recorded in ``<path>.sha256``, or None.

    Parameters
    ----------
    path : str or os.PathLike
        The file whose sidecar to read (not the sidecar itself).

    Returns
    -------
    hexdigest : str or None
        64 lower-case hexadecimal digits, or None when the sidecar is missing,
        unreadable or malformed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> read_digest(pathlib.Path(tempfile.mkdtemp()) / "no-sidecar.pth") is None
    True
    """
    try:
        with open(_sidecar(path), "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    try:
        first = head.decode("utf-8").splitlines()[0].strip()
    except (UnicodeDecodeError, IndexError):
        return None
    match = _LINE.fullmatch(first)
    return match.group(1).lower() if match else None


def check_digest(path: PathLike, expected: str | None = None) -> bool:
    """Whether a file's SHA-256 is the expected one.

    Parameters
    ----------
    path : str or os.PathLike
        The file to check.
    expected : str, default=None
        The digest it must have (64 hexadecimal digits, any case). By default
        the one recorded in its sidecar ``<path>.sha256``.

    Returns
    -------
    ok : bool
        True when the file's digest equals ``expected`` (if given) or else
        its sidecar's. False when it does not, when the file does not exist,
        or when there is neither ``expected`` nor a readable sidecar.

    Raises
    ------
    ValueError
        If ``expected`` is given but is not 64 hexadecimal digits.
    OSError
        If the file exists but cannot be read.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "weights.pth"
    >>> _ = path.write_bytes(b"abc")
    >>> check_digest(path)  # no sidecar yet
    False
    >>> _ = write_digest(path)
    >>> check_digest(path)
    True
    """
    if expected is not None:
        expected = _normalise(expected, "expected")
    else:
        expected = read_digest(path)
        if expected is None:
            return False
    try:
        return file_sha256(path) == expected
    except FileNotFoundError:
        return False
