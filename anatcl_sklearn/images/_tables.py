"""Tables of image paths: the one reader behind ``anatcl-sklearn embed`` list files,
``anatcl-sklearn train --images`` and :func:`~anatcl_sklearn.evaluation.load_cohort`.

What a table may be, in one place:

- **Format, by extension.** ``.txt``: one path per line; blank lines and lines starting with
  ``#`` are skipped. ``.tsv`` / ``.tab``: tab-separated; ``.csv`` and anything else:
  comma-separated. The first row of a separated table is its header, except in a table of
  one column whose first cell is an image path (an image file name, a path with a folder
  separator, or an existing file): such a table has no header and every line is a path.
- **The path column** (:data:`PATH_COLUMNS`): the first of ``path``, ``image``,
  ``filename`` present (names compared without case), or the only column of a one-column
  table (unless that column is an id or metadata column, :data:`ID_COLUMNS`); a caller may
  name another column, or give a path template filled from each row's columns instead
  (``"{participant_id}/gm.nii.gz"``). Relative paths are read from the table's folder (or
  from the folder the caller names); ``~`` is expanded.
- **Other columns** travel with the paths, typed as pandas reads them; the id columns
  ``participant_id`` / ``subject`` and ``session_id`` / ``session`` are kept as text
  (``001`` stays ``001``), and ``age`` is what ``train`` reads as each image's age.

Errors name the table (and the line, for an empty path cell): :class:`FileNotFoundError`
for a missing table, :class:`ValueError` for anything else.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import string
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["ID_COLUMNS", "PATH_COLUMNS", "TABLE_EXTENSIONS", "ImageTable", "is_image_path",
           "read_image_table"]

#: The columns that hold image paths, in order of preference (compared without case).
PATH_COLUMNS = ("path", "image", "filename")
#: Id and metadata columns: kept as text, never taken for the path column of a one-column
#: table.
ID_COLUMNS = {"participant_id": ("participant_id", "subject", "subject_id"),
              "session_id": ("session_id", "session")}
#: Extensions that make an argument a table of paths (``embed`` reads anything else as an
#: image) and their separators (None: one path per line).
TABLE_EXTENSIONS = {".txt": None, ".csv": ",", ".tsv": "\t", ".tab": "\t"}
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".npy", ".img", ".hdr", ".mgz")
_TEXT_COLUMNS = {name for names in ID_COLUMNS.values() for name in names}


@dataclass
class ImageTable:
    """A table of image paths as read by :func:`read_image_table`.

    Attributes
    ----------
    source : str
        Absolute path of the table.
    paths : list of str or None
        One absolute path per row, in the table's order (None for an empty cell when the
        reader was told to keep them).
    frame : pandas.DataFrame
        The table's rows and columns (a ``.txt`` list: one ``path`` column), one row per
        path, index 0..n-1.
    path_column : str or None
        The column the paths came from (None when they came from a template).
    lines : list of int
        Each row's line number in the file.
    """

    source: str
    paths: list[str | None]
    frame: pd.DataFrame
    path_column: str | None
    lines: list[int] = field(default_factory=list)

    def column(self, *names: str) -> pd.Series | None:
        """The first of the columns ``names`` present (names compared without case), or None."""
        lower = {str(c).lower(): c for c in self.frame.columns}
        for name in names:
            if name.lower() in lower:
                return self.frame[lower[name.lower()]]
        return None

    def age(self) -> np.ndarray | None:
        """The ``age`` column as float64, or None when the table has none.

        Raises
        ------
        ValueError
            If a value is not a number.
        """
        column = self.column("age")
        if column is None:
            return None
        try:
            return column.to_numpy(dtype=float)
        except (TypeError, ValueError):
            bad = next(v for v in column if not _is_number(v))
            raise ValueError(f"{self.source}: the 'age' column holds {bad!r}, not a number."
                             ) from None


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def is_image_path(cell: str, folder: str | os.PathLike[str]) -> bool:
    """Whether the first cell of a one-column table is an image path rather than a column
    name: not a known column name, and an image file name, a path with a folder separator
    or an existing file relative to ``folder``."""
    if not cell or cell.lower() in PATH_COLUMNS or cell.lower() in _TEXT_COLUMNS:
        return False
    return (cell.lower().endswith(IMAGE_SUFFIXES) or "/" in cell or os.sep in cell
            or os.path.isfile(os.path.join(folder, os.path.expanduser(cell))))


def _check_file(path, what):
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {str(path)!r}.") from None
    if not stat.S_ISREG(mode):  # a FIFO would block the read
        raise ValueError(f"{what} {str(path)!r} is not a regular file.")


def _rows(path, sep, what):
    """(line number, cells) of every non-blank row of a separated table, or of every path
    line of a ``.txt`` list (one cell)."""
    out = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            if sep is None:
                for n, line in enumerate(f, 1):
                    line = line.strip()
                    if line and not line.startswith("#"):
                        out.append((n, [line]))
            else:
                reader = csv.reader(f, delimiter=sep)
                for row in reader:
                    if any(cell.strip() for cell in row):
                        out.append((reader.line_num, [cell.strip() for cell in row]))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read {what} {str(path)!r}: {exc}") from None
    return out


def _path_column(header, requested, source, what, sep, hint):
    lower = [name.lower() for name in header]
    if requested is not None:
        if requested.lower() not in lower:
            raise ValueError(f"{what} {source!r} has no column {requested!r}; its columns are "
                             f"{header[:12]}.")
        return lower.index(requested.lower())
    for wanted in PATH_COLUMNS:
        if wanted in lower:
            return lower.index(wanted)
    if len(header) == 1 and lower[0] not in _TEXT_COLUMNS:
        return 0
    kind = "tab" if sep == "\t" else "comma"
    raise ValueError(f"{what} {source!r} has no 'path' column (nor 'image' or 'filename', and "
                     f"not a single column; read as {kind}-separated by its extension); found "
                     f"{header[:12]}.{hint}")


def _frame(header, rows, sep, path_column):
    """The typed frame of ``rows``: the cells re-read by pandas (its type inference and
    missing values), the id columns and the path column as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep)
    writer.writerow(header)
    writer.writerows(rows)
    buffer.seek(0)
    text = {name: str for i, name in enumerate(header)
            if name.lower() in _TEXT_COLUMNS or i == path_column}
    return pd.read_csv(buffer, sep=sep, dtype=text)


def read_image_table(
    path: str | os.PathLike[str],
    *,
    what: str = "list file",
    base: str | os.PathLike[str] | None = None,
    path_column: str | None = None,
    pattern: str | None = None,
    empty: Literal["raise", "keep"] = "raise",
    hint: str = "",
) -> ImageTable:
    """Read a table of image paths (the rules are the module's: :mod:`._tables`).

    Parameters
    ----------
    path : str or os.PathLike
        The table: ``.txt``, ``.csv``, ``.tsv`` or ``.tab`` (anything else: comma-separated).
    what : str, default="list file"
        What the table is called in messages (``"--images table"``, ``"participants
        table"``).
    base : str or os.PathLike or None, default=None
        Folder relative paths are read from; by default the table's own folder.
    path_column : str or None, default=None
        The column of paths, instead of the first of :data:`PATH_COLUMNS`.
    pattern : str or None, default=None
        A path template filled from each row's columns (``"{participant_id}.nii.gz"``),
        instead of a path column.
    empty : {"raise", "keep"}, default="raise"
        An empty path cell: refused, naming its line, or kept as None.
    hint : str, default=""
        Appended to the message of a table without a path column (the caller's other way).

    Returns
    -------
    table : ImageTable

    Raises
    ------
    FileNotFoundError
        If the table does not exist.
    ValueError
        If it is not a regular file, cannot be read, has no path column, names no image, has
        an empty path cell (``empty="raise"``) or ``pattern`` names a column it lacks.
    """
    source = os.path.abspath(os.path.expanduser(os.fspath(path)))
    _check_file(source, what)
    folder = os.path.dirname(source)
    base = folder if base is None else os.path.abspath(os.path.expanduser(os.fspath(base)))
    ext = os.path.splitext(source)[1].lower()
    sep = TABLE_EXTENSIONS.get(ext, ",")
    rows = _rows(source, sep, what)

    column: int | None = 0
    if sep is None:
        header, column = ["path"], 0
        data = rows
    elif not rows:
        raise ValueError(f"{what} {source!r} names no images.")
    else:
        header = rows[0][1]
        data = rows[1:]
        if len(header) == 1 and pattern is None and path_column is None \
                and is_image_path(header[0], base):
            header, data = ["path"], rows  # a header-less one-column list: its first path
        column = None if pattern is not None else _path_column(header, path_column, source,
                                                               what, sep, hint)
    if not data:
        raise ValueError(f"{what} {source!r} names no images.")
    cells = [row + [""] * (len(header) - len(row)) for _, row in data]
    try:
        frame = (pd.DataFrame({"path": [c[0] for c in cells]}) if sep is None
                 else _frame(header, [c[:len(header)] for c in cells], sep, column))
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"cannot read {what} {source!r}: {exc}") from None

    if pattern is not None:
        fields = {f for _, f, _, _ in string.Formatter().parse(pattern) if f}
        absent = sorted(fields - {str(c) for c in frame.columns})
        if absent:
            raise ValueError(f"pattern {pattern!r} names column(s) {absent} that {source} "
                             f"lacks; its columns are {list(frame.columns)[:12]}.")
        values = [pattern.format(**row) for row in frame.to_dict("records")]
    else:
        assert column is not None
        values = [c[column] for c in cells]
    paths: list[str | None] = []
    for (line, _), value in zip(data, values):
        if not value:
            if empty == "keep":
                paths.append(None)
                continue
            raise ValueError(f"{what} {source!r}, line {line}: no path in column "
                             f"{header[column or 0]!r}.")
        paths.append(os.path.abspath(os.path.join(base, os.path.expanduser(value))))
    return ImageTable(source=source, paths=paths, frame=frame,
                      path_column=None if column is None else header[column],
                      lines=[line for line, _ in data])

