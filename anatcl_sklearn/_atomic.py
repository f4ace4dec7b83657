"""Atomic file writes, the one way every file of this package is written.

A temporary file is made with :func:`tempfile.mkstemp` in the target's folder (so the rename
cannot cross file systems), written, flushed to disk, given the mode any new file would get
(``0o666`` less the umask: a lab's shared cache stays readable by the group, where mkstemp
alone gives 0600), and renamed onto the target with :func:`os.replace`. The rename replaces
the target path itself: a symbolic link planted there is replaced, never written through.
On any failure, interrupts included, the temporary file is removed and the target is left as
it was.

A process killed outright (``kill -9``, the out-of-memory killer, a lost node) cannot remove
its temporary file, which may be a whole checkpoint. So temporary files carry a recognisable
name, ``.anatcl-tmp.<pid>.<host>.<target>.<random>.tmp``, and each write sweeps the stale ones
of that name from its folder (:func:`sweep_stale_temporaries`): unmodified for
:data:`STALE_AFTER_S` and written by a process of this host that no longer exists (another
host's, whose process cannot be checked from here: unmodified for :data:`STALE_FOREIGN_AFTER_S`).
A write in flight, this run's or a concurrent one's, is never removed, nor any file without
that name (a user's own ``foo.tmp``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._typing import PathLike

__all__ = ["STALE_AFTER_S", "STALE_FOREIGN_AFTER_S", "TEMP_PREFIX", "atomic_folder",
           "atomic_write", "atomic_write_bytes", "atomic_write_text", "current_umask",
           "new_file_mode", "sweep_stale_temporaries"]

#: The name every temporary file of :func:`atomic_write` starts with.
TEMP_PREFIX = ".anatcl-tmp."
#: Seconds a temporary file of a dead process of this host stays before it is swept.
STALE_AFTER_S = 15 * 60
#: Seconds a temporary file written on another host stays before it is swept.
STALE_FOREIGN_AFTER_S = 24 * 60 * 60
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)\.([A-Za-z0-9-]*)\..*\.tmp\Z",
                        re.DOTALL)


def _host() -> str:
    """This host's name as it appears in a temporary file's name: [A-Za-z0-9-], <= 32."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]


def _process_gone(pid: int) -> bool:
    """Whether no process ``pid`` exists on this host (False when it cannot be told)."""
    if os.name != "posix" or pid <= 0:
        return False  # on Windows, os.kill(pid, 0) would signal the process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: another user's live process
        return False
    return False


def sweep_stale_temporaries(folder: PathLike, *, now: float | None = None) -> list[Path]:
    """Remove the stale temporary files (and folders) :func:`atomic_write` (and
    :func:`atomic_folder`) left in ``folder``.

    Only regular files and folders (never a symbolic link) named
    ``.anatcl-tmp.<pid>.<host>.<...>.tmp`` are considered: one is
    removed when unmodified for :data:`STALE_AFTER_S` seconds and process ``pid`` of this host
    is gone, or, written on another host, when unmodified for :data:`STALE_FOREIGN_AFTER_S`.
    Never raises: a file that cannot be examined or removed is left.

    Returns
    -------
    removed : list of pathlib.Path
    """
    now = time.time() if now is None else now
    host = _host()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            is_folder = stat.S_ISDIR(info.st_mode)
            if not (stat.S_ISREG(info.st_mode) or is_folder):
                continue
            age = now - info.st_mtime
            if match.group(2) == host:
                stale = age > STALE_AFTER_S and _process_gone(int(match.group(1)))
            else:
                stale = age > STALE_FOREIGN_AFTER_S
            if stale:
                if is_folder:  # rmtree removes links inside, never what they point to
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
        except (OSError, ValueError):
            continue
    return removed


def current_umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        # Linux >= 4.7: no window in which another thread sees umask 0.
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` would give a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def atomic_write(target: PathLike, write: Callable[[str], Any]) -> Path:
    """Create or replace ``target`` with what ``write(tmp_path)`` writes to a temporary file.

    Parameters
    ----------
    target : str or os.PathLike
        The file to create or replace. Its folder must exist.
    write : callable
        Called with the temporary file's path (a ``str``); it writes the content there.

    Returns
    -------
    target : pathlib.Path
    """
    path = Path(target)
    sweep_stale_temporaries(path.parent)
    # The target's name is only a hint for a reader of the folder: cut, the name stays
    # within the file system's 255 bytes.
    hint = path.name[:100]
    prefix = f"{TEMP_PREFIX}{os.getpid()}.{_host()}.{hint}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:  # whatever wrote it, its bytes reach the disk first
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(target: PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of bytes."""
    return atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(target: PathLike, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_folder(target: PathLike, write: Callable[[str], Any]) -> Path:
    """Create folder ``target`` whole, from what ``write(tmp_folder)`` writes in a temporary one.

    The temporary folder (named as :func:`atomic_write`'s files, swept the same way when its
    process died) is made beside ``target``, filled by ``write``, its files flushed to disk,
    given the mode a new folder would get, and renamed to ``target``: a reader sees no folder
    or the whole of it. An existing ``target`` is never replaced.

    Parameters
    ----------
    target : str or os.PathLike
        The folder to create. Its parent must exist.
    write : callable
        Called with the temporary folder's path (a ``str``); it writes the content there.

    Returns
    -------
    target : pathlib.Path

    Raises
    ------
    FileExistsError
        If ``target`` exists (as anything, a symbolic link included) when the folder is
        complete; the temporary folder is removed.
    """
    path = Path(target)
    sweep_stale_temporaries(path.parent)
    prefix = f"{TEMP_PREFIX}{os.getpid()}.{_host()}.{path.name[:100]}."
    tmp = tempfile.mkdtemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    try:
        write(tmp)
        for name in os.listdir(tmp):
            file = os.path.join(tmp, name)
            if os.path.isfile(file) and not os.path.islink(file):
                with open(file, "rb+") as fh:
                    os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~current_umask())
        if os.path.lexists(path):
            raise FileExistsError(f"{path} exists")
        try:
            os.rename(tmp, path)  # fails (a folder not empty, a file, a link) rather than replace
        except OSError as exc:
            if os.path.lexists(path):
                raise FileExistsError(f"{path} exists") from exc
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path
