"""Inflating a gzip file: :class:`GzipStream`, the one gzip reader of :mod:`._files`.

:class:`gzip.GzipFile` feeds zlib 8 KiB at a time through several Python layers (about 360
calls per 8.5 MB volume); this stream feeds one ``zlib.decompressobj(wbits=31)`` per gzip
member with 1 MiB compressed chunks and asks it for no more than the bytes requested
(``max_length``), so a gzip bomb never inflates past what the caller asks for. It keeps
GzipFile's checks and exceptions: zlib checks every member's header, CRC32 and length (ISIZE)
(``zlib.error``), a new member may follow the end of one (multi-member gzip), zero bytes
between and after members are skipped, anything else after a member is refused
(:class:`gzip.BadGzipFile`) and a stream that ends inside a member is an :class:`EOFError`.
Unlike GzipFile, a header CRC (FHCRC, which no common tool writes) is checked, not skipped.

:class:`InflatedProxy` is a nibabel array proxy over voxels already inflated in memory: it
hands them on without the copy that reading them through a file object would make, and
nibabel's own scaling (``scl_slope`` / ``scl_inter``) and dtype rules apply unchanged.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any, BinaryIO

import numpy as np
from nibabel.arrayproxy import ArrayProxy

__all__ = ["GZIP_CHUNK", "GzipStream", "InflatedProxy"]

#: Bytes per piece: compressed bytes fed to zlib at once, and most bytes one inflate returns.
GZIP_CHUNK = 1 << 20
_MAGIC = b"\x1f\x8b"
_TRUNCATED = "Compressed file ended before the end-of-stream marker was reached"


class GzipStream:
    """The inflated bytes of a gzip file object, read in bounded pieces.

    Parameters
    ----------
    fileobj : binary file object
        Open for reading at the start of the gzip data; left open.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._fileobj = fileobj
        self._member: Any = None  # the current member's decompressor; None between members
        self._input = b""  # compressed bytes read but not yet inflated
        self._members = 0
        self._at_end = False

    def _fill(self) -> bool:
        """Read compressed input when none is pending; False at the end of the file."""
        if not self._input:
            self._input = self._fileobj.read(GZIP_CHUNK)
        return bool(self._input)

    def _next_member(self) -> bool:
        """Start the next gzip member; False at the end of the file (as GzipFile)."""
        if self._members:  # zero padding after a member is skipped, as GzipFile does
            while self._fill():
                self._input = self._input.lstrip(b"\0")
                if self._input:
                    break
        if not self._fill():
            return False
        while len(self._input) < 2:
            more = self._fileobj.read(GZIP_CHUNK)
            if not more:
                break
            self._input += more
        if self._input[:2] != _MAGIC:
            raise gzip.BadGzipFile(f"Not a gzipped file ({self._input[:2]!r})")
        self._member = zlib.decompressobj(wbits=31)  # gzip only; checks CRC32 and ISIZE
        self._members += 1
        return True

    def _inflate(self, n: int) -> bytes:
        """Between 1 and ``n`` inflated bytes; empty only at the end of the stream."""
        while not self._at_end:
            if self._member is None and not self._next_member():
                self._at_end = True
                break
            if not self._fill():
                raise EOFError(_TRUNCATED)
            member = self._member
            out = member.decompress(self._input, n)
            if member.eof:  # its trailer read and checked: what follows is the next member
                self._input, self._member = member.unused_data, None
            else:
                self._input = member.unconsumed_tail
            if out:
                return out
        return b""

    def read(self, n: int) -> bytes:
        """Up to ``n`` inflated bytes (fewer only at the end of the stream).

        Parameters
        ----------
        n : int
            Most bytes to return (and to inflate); non-negative.

        Returns
        -------
        data : bytes
        """
        parts = []
        while n > 0:
            out = self._inflate(min(n, GZIP_CHUNK))
            if not out:
                break
            parts.append(out)
            n -= len(out)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: memoryview | bytearray) -> int:
        """Fill ``buffer`` with inflated bytes; the count written (less only at the end).

        Parameters
        ----------
        buffer : writable bytes-like object

        Returns
        -------
        n_bytes : int
        """
        view = memoryview(buffer).cast("B")
        got = 0
        while got < len(view):
            out = self._inflate(min(len(view) - got, GZIP_CHUNK))
            if not out:
                break
            view[got:got + len(out)] = out
            got += len(out)
        return got

    def skip(self, n: int) -> int:
        """Inflate and drop up to ``n`` bytes (constant memory); the count inflated."""
        got = 0
        while got < n:
            out = self._inflate(min(n - got, GZIP_CHUNK))
            if not out:
                break
            got += len(out)
        return got


class InflatedProxy(ArrayProxy):
    """A nibabel array proxy over a NIfTI's voxels held in memory (no file behind it).

    Reading it scales as nibabel's ArrayProxy does (same slope, intercept and dtype rules).
    With ``hand_over=True`` the first whole read returns the voxels themselves (no copy), and
    the proxy keeps none; otherwise every read returns a new array, as a file-backed proxy
    does.

    Parameters
    ----------
    voxels : ndarray
        The stored voxels, of the header's shape and dtype, in the header's (Fortran) order.
    header : nibabel header
        The image's header (its slope and intercept scale the voxels).
    hand_over : bool, default=False
        Whether the first whole read takes the voxels (read once, then gone).
    """

    def __init__(self, voxels: np.ndarray, header: Any, hand_over: bool = False) -> None:
        super().__init__(None, header, mmap=False)
        self._voxels: np.ndarray | None = voxels
        self._hand_over = bool(hand_over)

    def _get_unscaled(self, slicer: Any) -> np.ndarray:
        voxels = self._voxels
        if voxels is None:
            raise ValueError("these voxels were read once and handed over; read the file again.")
        if self._hand_over and slicer == ():
            self._voxels = None
            return voxels
        return np.array(voxels[slicer], order="K")
