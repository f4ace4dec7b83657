"""What a command shows on stderr while it works: a progress line on a terminal, each distinct
warning once (in the command line's words), nothing with ``--quiet``."""

from __future__ import annotations

import sys

from ._errors import flag_words

__all__ = ["Reporter"]


class Reporter:
    """Progress line, summary and warnings on stderr; each distinct warning shown once."""

    def __init__(self, quiet: bool, prog: str = "anatcl-sklearn embed") -> None:
        self.prog = prog
        self.quiet = quiet
        self.seen: set[tuple[type, str]] = set()
        self.open_line = False

    @property
    def tty(self):
        try:
            return sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False

    def _write(self, text):
        sys.stderr.write(text)
        sys.stderr.flush()

    def warn(self, message, category=UserWarning, *args, **kwargs):
        key = (category, str(message))
        if key in self.seen:
            return
        self.seen.add(key)
        self.end_line()
        self._write(f"{self.prog}: warning: {flag_words(message)}\n")

    def progress(self, done, total):
        if not self.quiet and self.tty:
            self._write(f"\rembedding {done}/{total} images")
            self.open_line = True

    def end_line(self):
        if self.open_line:
            self._write("\n")
            self.open_line = False
