"""Readers for FreeSurfer's Desikan-Killiany cortical statistics.

Two sources are supported: the per-subject ``?h.aparc.stats`` files written by
``mris_anatomical_stats`` (inside ``recon-all``), and the group tables written by
``aparcstats2table``. Both return measures in :data:`ANATOMY_MEASURES` order (CT, GMV, SA)
and regions in :data:`DESIKAN_REGIONS` order.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from .._typing import NDArray

from ._regions import (
    ANATOMY_MEASURES,
    DESIKAN_HEMISPHERE_REGIONS,
    N_MEASURES,
    N_REGIONS,
)

__all__ = ["read_aparc_stats", "read_aparcstats2table"]

_HEMISPHERES = ("lh", "rh")

# Column of ``?h.aparc.stats`` holding each measure, in ANATOMY_MEASURES order.
_STATS_COLUMNS = {"CT": "ThickAvg", "GMV": "GrayVol", "SA": "SurfArea"}

# ``aparcstats2table --meas`` value holding each measure, in ANATOMY_MEASURES order.
_TABLE_MEASURES = {"CT": "thickness", "GMV": "volume", "SA": "area"}

_DEFAULT_TABLE_FILENAME = "{hemi}.aparc_table_{measure}.tsv"


def _resolve_stats_dir(stats_dir: str | Path) -> Path:
    """Return the folder that holds ``lh.aparc.stats``, accepting a subject folder too."""
    if not isinstance(stats_dir, (str, Path)):
        raise TypeError(
            f"stats_dir must be a str or pathlib.Path, got {type(stats_dir).__name__}."
        )
    stats_dir = Path(stats_dir)
    if not stats_dir.is_dir():
        raise FileNotFoundError(
            f"FreeSurfer stats folder not found: '{stats_dir}'. Expected a folder holding "
            "lh.aparc.stats and rh.aparc.stats, or a FreeSurfer subject folder with a "
            "stats/ sub-folder."
        )
    if not (stats_dir / "lh.aparc.stats").exists() and (stats_dir / "stats").is_dir():
        return stats_dir / "stats"
    return stats_dir


def _parse_aparc_stats(path: Path) -> dict[str, dict[str, str]]:
    """Parse one ``?h.aparc.stats`` file into ``{region: {column: value}}``.

    Columns are located through the ``# ColHeaders`` line, so the column order of the
    FreeSurfer release that wrote the file does not matter.
    """
    headers = None
    rows = {}
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                fields = stripped.lstrip("#").split()
                if fields and fields[0] == "ColHeaders":
                    headers = fields[1:]
                continue
            if headers is None:
                raise ValueError(
                    f"{path}: data line {line_number} comes before any '# ColHeaders' line; "
                    "this does not look like a FreeSurfer aparc.stats file "
                    "(FreeSurfer 5 or later writes that header)."
                )
            fields = stripped.split()
            if len(fields) != len(headers):
                raise ValueError(
                    f"{path}, line {line_number}: {len(fields)} fields, but the "
                    f"'# ColHeaders' line names {len(headers)} columns."
                )
            name = fields[0]
            if name in rows:
                raise ValueError(f"{path}: region '{name}' appears more than once.")
            rows[name] = dict(zip(headers[1:], fields[1:]))
    if headers is None:
        raise ValueError(
            f"{path}: no '# ColHeaders' line found; this does not look like a FreeSurfer "
            "aparc.stats file (FreeSurfer 5 or later writes that header)."
        )
    missing_columns = [c for c in _STATS_COLUMNS.values() if c not in headers]
    if missing_columns:
        raise ValueError(
            f"{path}: column(s) {missing_columns} missing from the '# ColHeaders' line "
            f"{headers}."
        )
    return rows


def read_aparc_stats(stats_dir: str | Path) -> NDArray[np.float64]:
    """Read one subject's Desikan-Killiany measures from FreeSurfer ``aparc.stats`` files.

    Parameters
    ----------
    stats_dir : str or pathlib.Path
        Folder holding ``lh.aparc.stats`` and ``rh.aparc.stats`` (FreeSurfer 5, 6 or 7),
        or a FreeSurfer subject folder that contains them in ``stats/``.

    Returns
    -------
    anatomy : ndarray of shape (68, 3), dtype float64
        Rows in :data:`DESIKAN_REGIONS` order (left hemisphere first); columns are
        cortical thickness (``ThickAvg``, mm), grey-matter volume (``GrayVol``, mm^3) and
        surface area (``SurfArea``, mm^2), the :data:`ANATOMY_MEASURES` order.

    Raises
    ------
    FileNotFoundError
        If the folder or either hemisphere's file is missing.
    ValueError
        If a file lacks a Desikan region, one of the three columns, or a parseable
        ``# ColHeaders`` line, or a cell is not a finite number (NaN and inf included, as
        :func:`read_aparcstats2table` refuses them); the message names the file.

    Notes
    -----
    Columns are found by name through the ``# ColHeaders`` line, never by position.
    Rows of structures that are not among the 34 Desikan regions per hemisphere (for
    example ``unknown`` or ``corpuscallosum`` in some releases) are ignored.

    Examples
    --------
    >>> from anatcl_sklearn.anatomy import read_aparc_stats
    >>> anatomy = read_aparc_stats("subjects/sub-01")  # doctest: +SKIP
    >>> anatomy.shape  # doctest: +SKIP
    (68, 3)
    """
    folder = _resolve_stats_dir(stats_dir)
    paths = {hemi: folder / f"{hemi}.aparc.stats" for hemi in _HEMISPHERES}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(
                f"FreeSurfer stats file not found: '{path}'. Expected lh.aparc.stats and "
                f"rh.aparc.stats in '{folder}'."
            )
    anatomy = np.empty((N_REGIONS, N_MEASURES), dtype=np.float64)
    for h, hemi in enumerate(_HEMISPHERES):
        path = paths[hemi]
        rows = _parse_aparc_stats(path)
        missing = [r for r in DESIKAN_HEMISPHERE_REGIONS if r not in rows]
        if missing:
            raise ValueError(
                f"{path}: Desikan region(s) {missing} missing; AnatCL needs all 34 regions "
                "of each hemisphere."
            )
        for r, region in enumerate(DESIKAN_HEMISPHERE_REGIONS):
            for m, measure in enumerate(ANATOMY_MEASURES):
                column = _STATS_COLUMNS[measure]
                text = rows[region][column]
                try:
                    value = float(text)
                except ValueError:
                    value = None
                if value is None or not np.isfinite(value):  # 'nan', 'inf' parse as floats
                    raise ValueError(
                        f"{path}: region '{region}', column '{column}' holds '{text}', "
                        "which is not a finite number."
                    )
                anatomy[h * len(DESIKAN_HEMISPHERE_REGIONS) + r, m] = value
    return anatomy


def _detect_delimiter(path: Path) -> str:
    """Return the ``sep`` argument for pandas from the header of an aparcstats2table file.

    aparcstats2table writes tab (default), comma, semicolon or space separated tables
    (``--delimiter``); runs of whitespace are accepted for the space flavour.
    """
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline()
    if not header.strip():
        raise ValueError(f"{path}: the file is empty; expected an aparcstats2table table.")
    for sep in ("\t", ",", ";"):
        if sep in header:
            return sep
    return r"\s+"


def _read_table(
    path: Path, hemi: str, measure: str, columns: list[str]
) -> tuple[list[str], NDArray[np.float64]]:
    """Read one aparcstats2table table; return ``(subject_ids, values (n, 34))``."""
    sep = _detect_delimiter(path)
    # dtype=str keeps subject ids such as "0051456" intact; numbers are parsed below so a
    # bad cell can be reported by name.
    frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.shape[1] < 2:
        raise ValueError(
            f"{path}: found {frame.shape[1]} column(s); expected a subject column followed "
            f"by {hemi}_<region>_{measure} columns."
        )
    subject_ids = [s.strip() for s in frame.iloc[:, 0]]
    duplicates = sorted(s for s, count in Counter(subject_ids).items() if count > 1)
    if duplicates:
        raise ValueError(f"{path}: subject(s) listed more than once: {duplicates[:10]}.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: column(s) {missing} missing; expected one '{hemi}_<region>_{measure}' "
            "column for each of the 34 Desikan regions."
        )
    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad_rows, bad_cols = np.nonzero(~np.isfinite(values))
    if bad_rows.size:
        i, j = bad_rows[0], bad_cols[0]
        raise ValueError(
            f"{path}: column '{columns[j]}', subject '{subject_ids[i]}' holds "
            f"'{frame[columns[j]].iloc[i]}', which is not a finite number "
            f"({bad_rows.size} such cell(s) in this table)."
        )
    return subject_ids, values


def read_aparcstats2table(
    directory: str | Path, *, filename: str = _DEFAULT_TABLE_FILENAME
) -> tuple[list[str], NDArray[np.float64]]:
    """Read Desikan-Killiany measures of many subjects from ``aparcstats2table`` tables.

    Parameters
    ----------
    directory : str or pathlib.Path
        Folder holding the six tables that ``aparcstats2table --parc aparc`` writes for
        ``--hemi lh|rh`` and ``--meas thickness|area|volume``.
    filename : str, default="{hemi}.aparc_table_{measure}.tsv"
        Name pattern of the tables; ``{hemi}`` is ``lh`` or ``rh`` and ``{measure}`` is
        ``thickness``, ``area`` or ``volume``.

    Returns
    -------
    subject_ids : list of str
        Subjects in the row order of the left-hemisphere thickness table.
    anatomy : ndarray of shape (n_subjects, 68, 3), dtype float64
        Regions in :data:`DESIKAN_REGIONS` order; measures cortical thickness, grey-matter
        volume and surface area (:data:`ANATOMY_MEASURES` order).

    Raises
    ------
    FileNotFoundError
        If the folder or one of the six tables is missing.
    ValueError
        If a table lacks a region column (the message names the file and the column),
        the tables do not list the same subjects (the message lists them), a subject
        appears twice, or a cell is not a finite number.

    Notes
    -----
    Columns are found by name (``lh_bankssts_thickness`` ...), so whole-hemisphere or
    whole-brain columns that aparcstats2table appends (``lh_MeanThickness_thickness``,
    ``lh_WhiteSurfArea_area``, ``BrainSegVolNotVent``, ``eTIV``) are ignored. Tab, comma,
    semicolon and space (``--delimiter``) separated tables are accepted; the separator is
    detected from the header line of each table.

    Examples
    --------
    >>> from anatcl_sklearn.anatomy import read_aparcstats2table
    >>> ids, anatomy = read_aparcstats2table("group_stats")  # doctest: +SKIP
    >>> anatomy.shape  # doctest: +SKIP
    (1035, 68, 3)
    """
    if not isinstance(directory, (str, Path)):
        raise TypeError(
            f"directory must be a str or pathlib.Path, got {type(directory).__name__}."
        )
    if not isinstance(filename, str) or set(re.findall(r"\{[^{}]*\}", filename)) != {
        "{hemi}",
        "{measure}",
    }:
        raise ValueError(
            "filename must be a str whose only fields are '{hemi}' and '{measure}', "
            f"got {filename!r}."
        )
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"aparcstats2table folder not found: '{directory}'. Expected a folder holding "
            f"{filename.format(hemi='lh', measure='thickness')} and the five other tables."
        )
    paths = {
        (hemi, measure): directory / filename.format(hemi=hemi, measure=_TABLE_MEASURES[measure])
        for hemi in _HEMISPHERES
        for measure in ANATOMY_MEASURES
    }
    absent = [str(p) for p in paths.values() if not p.is_file()]
    if absent:
        raise FileNotFoundError(
            f"aparcstats2table table(s) not found: {absent}. Expected the six tables "
            f"'{filename}' for hemi in (lh, rh) and measure in (thickness, area, volume)."
        )

    # The left thickness table fixes the subject order, whatever order the loop uses.
    order = [("lh", "CT")] + [key for key in paths if key != ("lh", "CT")]
    reference_ids: list[str] = []
    row_of: dict[str, int] = {}
    n_hemi = len(DESIKAN_HEMISPHERE_REGIONS)
    anatomy = np.empty((0, N_REGIONS, N_MEASURES), dtype=np.float64)
    mismatches = []
    for i, (hemi, measure) in enumerate(order):
        path = paths[(hemi, measure)]
        table_measure = _TABLE_MEASURES[measure]
        columns = [f"{hemi}_{region}_{table_measure}" for region in DESIKAN_HEMISPHERE_REGIONS]
        ids, values = _read_table(path, hemi, table_measure, columns)
        if i == 0:
            reference_ids = ids
            anatomy = np.empty((len(ids), N_REGIONS, N_MEASURES), dtype=np.float64)
            row_of = {s: i for i, s in enumerate(ids)}
        if ids != reference_ids:
            ids_set = set(ids)
            absent_here = [s for s in reference_ids if s not in ids_set]
            extra_here = [s for s in ids if s not in row_of]
            if absent_here or extra_here:
                mismatches.append((path, absent_here, extra_here))
                continue
        rows = [row_of[s] for s in ids]
        h = _HEMISPHERES.index(hemi)
        anatomy[rows, h * n_hemi : (h + 1) * n_hemi, ANATOMY_MEASURES.index(measure)] = values
    if mismatches:
        reference = paths[("lh", "CT")]
        details = "; ".join(
            f"{path}: missing {absent[:10]}"
            + (f" (+{len(absent) - 10} more)" if len(absent) > 10 else "")
            + (f", not in {reference.name}: {extra[:10]}" if extra else "")
            for path, absent, extra in mismatches
        )
        raise ValueError(
            f"The aparcstats2table tables do not list the same subjects as '{reference}': "
            f"{details}."
        )
    if len(reference_ids) == 0:
        raise ValueError(f"{paths[('lh', 'CT')]}: the table lists no subjects.")
    return list(reference_ids), anatomy
