"""The command line's words in messages from shared code.

The library's errors and warnings name Python parameters (``conform=True``, ``url=``,
``pretrained=...``); under the command line the user should read the flags instead. Every
command passes such a message through :func:`flag_words` (one table, :data:`FLAG_WORDS`) before
printing it, and :func:`error` prints the one-line ``PROG: error: ...`` of a failed run.
"""

from __future__ import annotations

import re
import sys

__all__ = ["FLAG_WORDS", "error", "flag_words"]

#: (regular expression, replacement) in order: longer phrases before the bare parameter.
FLAG_WORDS = (
    (r"conform=True to AnatCLEmbedder \(or use anatcl_sklearn\.conform_image\)", "--conform"),
    (r"conform=True \(AnatCLEmbedder or check_images\)", "--conform"),
    (r"\b(?:set|pass) conform=False", "leave out --conform"),
    (r"\bconform=True\b", "--conform"),
    (r"\bconform=False\b", "no --conform"),
    (r"\bpass (its|their) path as url= \(or in the (\w+) environment variable\)",
     r"pass \1 path in the \2 environment variable (or as --weights)"),
    (r"\(url= or the (\w+) environment variable\)", r"(the \1 environment variable)"),
    (r"\burl=", "--weights"),
    (r"\bpretrained=", "--weights "),
    (r"\bfold=(\d+)", r"--fold \1"),
    (r"\bbatch_size=", "--batch-size "),
    (r"\boverwrite=True\b", "--force"),
    (r"\binference='(\w+)'", r"--inference \1"),
    # advice with no command-line counterpart: the commands choose these settings themselves
    (r",? or pass check_finite=False to skip this check", ""),
    (r"\s*Or pass warn_grid=False if this is intended\.", ""),
    (r"\s*Silence this with warnings\.filterwarnings\(.*?\) if it is intended\.", ""),
)
_COMPILED = tuple((re.compile(pattern), repl) for pattern, repl in FLAG_WORDS)


def flag_words(message: str | BaseException) -> str:
    """``message`` with the library's parameter spellings replaced by the command line's.

    Parameters
    ----------
    message : str or Exception

    Returns
    -------
    text : str
        On one line (runs of whitespace, newlines included, become one space).

    Examples
    --------
    >>> flag_words("shapes differ. Pass conform=True (AnatCLEmbedder or check_images) to fix.")
    'shapes differ. Pass --conform to fix.'
    >>> flag_words("pretrained='w.pt' is neither an existing checkpoint file")
    "--weights 'w.pt' is neither an existing checkpoint file"
    """
    text = str(message)
    for pattern, repl in _COMPILED:
        text = pattern.sub(repl, text)
    return " ".join(text.split())


def error(prog: str, message: str | BaseException) -> int:
    """Print ``PROG: error: MESSAGE`` (in the command line's words, one line) on stderr.

    Returns
    -------
    status : int
        2, the exit status of a user error.
    """
    sys.stderr.write(f"{prog}: error: {flag_words(message)}\n")
    return 2
