"""Atomic file writes, the one way every file of this package is written.

A temporary file is made with :func:`tempfile.mkstemp` in the target's folder (so the rename
cannot cross file systems), written, flushed to disk, given the mode any new file would get
(``0o666`` less the umask: a lab's shared cache stays readable by the group, where mkstemp
alone gives 0600), and renamed onto the target with :func:`os.replace`. The rename replaces
the target path itself: a symbolic link planted there is replaced, never written through.
On any failure, interrupts included, the temporary file is removed and the target is left as
it was.
"""

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "current_umask",
           "new_file_mode"]


def current_umask():
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


def new_file_mode():
    """The mode ``open()`` would give a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


def atomic_write(target, write):
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
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:  # whatever wrote it, its bytes reach the disk first
            os.fsync(fh.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(target, data):
    """:func:`atomic_write` of bytes."""
    return atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(target, text):
    """:func:`atomic_write` of UTF-8 text."""
    return atomic_write(target, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
