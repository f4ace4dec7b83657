"""Regenerate the small FreeSurfer fixtures of this folder from the AOMIC stats files.

Run from the repository root: ``python tests/data/make_fixtures.py``. The outputs are
committed; this script only documents how they were made. It parses the AOMIC files with
plain string handling, not with the package under test.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
AOMIC = HERE / "freesurfer" / "aomic-piop2-sub-0001" / "stats"

FS7_HEADER = """\
# Table of FreeSurfer cortical parcellation anatomical statistics
#
# CreationTime 2023/06/01-12:00:00-GMT
# generating_program mris_anatomical_stats
# cvs_version 7.4.1
# mrisurf.c-cvs_version 7.4.1
# cmdline mris_anatomical_stats -th3 -mgz -cortex ../label/{hemi}.cortex.label
# sysname  Linux
# hostname fixture
# machine  x86_64
# user     fixture
#
# SUBJECTS_DIR /subjects
# anatomy_type surface
# subjectname fixture
# hemi {hemi}
# AnnotationFile ../label/{hemi}.aparc.annot
# AnnotationFileTimeStamp 2023/06/01 11:00:00
# Measure Cortex, NumVert, Number of Vertices, 134283, unitless
# Measure Cortex, WhiteSurfArea, White Surface Total Area, 93265, mm^2
# Measure Cortex, MeanThickness, Mean Thickness, 2.56319, mm
# NTableCols 10
"""

# FreeSurfer 7 order is the same as 6; this fixture permutes it on purpose so that a
# reader that indexes columns by position instead of by header fails.
REORDERED = ["StructName", "ThickAvg", "NumVert", "GrayVol", "ThickStd", "SurfArea",
             "MeanCurv", "GausCurv", "FoldInd", "CurvInd"]


def read_rows(path):
    headers, rows = None, []
    for line in path.read_text().splitlines():
        if line.startswith("# ColHeaders"):
            headers = line.split()[2:]
        elif line.strip() and not line.startswith("#"):
            rows.append(dict(zip(headers, line.split())))
    return headers, rows


def write_stats(path, hemi, headers, rows, header_text):
    lines = [header_text.format(hemi=hemi).rstrip("\n")]
    for i, name in enumerate(headers, start=1):
        lines.append(f"# TableCol {i:2d} ColHeader {name}")
    lines.append("# ColHeaders " + " ".join(headers))
    for row in rows:
        lines.append(" ".join(f"{row[h]:>10s}" for h in headers))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def make_stats_fixtures():
    for hemi in ("lh", "rh"):
        _, rows = read_rows(AOMIC / f"{hemi}.aparc.stats")
        # Reversed region order, reordered columns, FreeSurfer 7 style header.
        write_stats(HERE / "freesurfer" / "fs7-reordered" / f"{hemi}.aparc.stats", hemi,
                    REORDERED, rows[::-1], FS7_HEADER)
        # The right hemisphere lacks its insula row.
        kept = [r for r in rows if not (hemi == "rh" and r["StructName"] == "insula")]
        write_stats(HERE / "freesurfer" / "missing-region" / f"{hemi}.aparc.stats", hemi,
                    REORDERED, kept, FS7_HEADER)


SUBJECTS = ["SiteA_0050001", "SiteA_0050002", "SiteB_0050003"]
TABLE_MEASURES = {"thickness": "ThickAvg", "area": "SurfArea", "volume": "GrayVol"}
EXTRA_COLUMNS = {  # whole-hemisphere / whole-brain columns aparcstats2table appends
    "thickness": ["{hemi}_MeanThickness_thickness", "BrainSegVolNotVent", "eTIV"],
    "area": ["{hemi}_WhiteSurfArea_area", "BrainSegVolNotVent", "eTIV"],
    "volume": ["BrainSegVolNotVent", "eTIV"],
}


def make_table_fixtures(folder, drop=None):
    """Six tab-separated aparcstats2table tables of three made-up subjects.

    Values are the AOMIC subject's scaled by (1 + 0.1 * subject index) plus a
    per-table offset, so every cell differs between subjects, hemispheres and measures.
    ``drop=(hemi, measure, subject)`` leaves one subject out of one table.
    """
    for h, hemi in enumerate(("lh", "rh")):
        _, rows = read_rows(AOMIC / f"{hemi}.aparc.stats")
        for measure, column in TABLE_MEASURES.items():
            regions = [r["StructName"] for r in rows]
            extra = [c.format(hemi=hemi) for c in EXTRA_COLUMNS[measure]]
            header = [f"{hemi}.aparc.{measure}"]
            header += [f"{hemi}_{r}_{measure}" for r in regions] + extra
            lines = ["\t".join(header)]
            for s, subject in enumerate(SUBJECTS):
                if drop == (hemi, measure, subject):
                    continue
                factor = 1 + 0.1 * s
                cells = [subject]
                for r in rows:
                    value = float(r[column]) * factor + 0.001 * h
                    cells.append(f"{value:.3f}" if measure == "thickness" else f"{value:.1f}")
                cells += [f"{2.5 + s:.5f}" if "Mean" in c else f"{1.2e6 + s:.1f}" for c in extra]
                lines.append("\t".join(cells))
            path = HERE / folder / f"{hemi}.aparc_table_{measure}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    make_stats_fixtures()
    make_table_fixtures("aparcstats2table")
    make_table_fixtures("aparcstats2table-missing-subject", drop=("rh", "area", SUBJECTS[1]))
