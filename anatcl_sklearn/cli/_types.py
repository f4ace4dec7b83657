"""argparse ``type=`` functions shared by the command lines: numbers checked against their range,
so a bad value is a usage error (exit status 2, one line), never a traceback."""

import argparse

__all__ = ["number"]


def number(kind, low=None, high=None, *, low_open=False):
    """A ``type=`` for ``kind`` (int or float) values in range.

    Parameters
    ----------
    kind : type
        ``int`` or ``float``.
    low, high : number, default=None
        Bounds (``None``: unbounded). ``low`` is inclusive unless ``low_open``; ``high`` is
        inclusive.
    low_open : bool, default=False
        Whether ``low`` itself is refused.
    """
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {kind.__name__}: {text!r}") from None
        too_low = low is not None and (value <= low if low_open else value < low)
        if value != value or too_low or (high is not None and value > high):
            parts = []
            if low is not None:
                parts.append(f"> {low}" if low_open else f">= {low}")
            if high is not None:
                parts.append(f"<= {high}")
            raise argparse.ArgumentTypeError(f"must be {' and '.join(parts)}; got {text}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse
