"""Tests of the FreeSurfer readers and AnatomyScaler (anatcl_sklearn.anatomy)."""

import csv
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from anatcl_sklearn.anatomy import (
    ANATOMY_MEASURES,
    DESIKAN_REGIONS,
    N_MEASURES,
    N_REGIONS,
    AnatomyScaler,
    read_aparc_stats,
    read_aparcstats2table,
)

DATA = Path(__file__).resolve().parent / "data"
AOMIC_SUBJECT = DATA / "freesurfer" / "aomic-piop2-sub-0001"
TABLES = DATA / "aparcstats2table"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ABIDE = SHARED_DATA / "abide-freesurfer6"

CT, GMV, SA = (ANATOMY_MEASURES.index(m) for m in ("CT", "GMV", "SA"))

needs_shared = pytest.mark.skipif(
    not ABIDE.is_dir(),
    reason=f"real FreeSurfer data not found at {SHARED_DATA} (it lives beside the checkout, "
    "not in the repository)",
)


def region(name):
    return DESIKAN_REGIONS.index(name)


def stats_row(path, structure):
    """Return {column: text} of one region of a stats file, parsed by hand."""
    headers = None
    for line in Path(path).read_text().splitlines():
        if line.startswith("# ColHeaders"):
            headers = line.split()[2:]
        elif line.strip() and not line.startswith("#") and line.split()[0] == structure:
            return dict(zip(headers, line.split()))
    raise AssertionError(f"{structure} not in {path}")


def read_tsv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


# --------------------------------------------------------------------------- aparc.stats


def test_read_aparc_stats_values_typed_by_hand():
    anatomy = read_aparc_stats(AOMIC_SUBJECT / "stats")
    assert anatomy.shape == (N_REGIONS, N_MEASURES) == (68, 3)
    assert anatomy.dtype == np.float64
    # Read off lh.aparc.stats by eye: bankssts SurfArea 1584, GrayVol 3811, ThickAvg 2.451.
    np.testing.assert_array_equal(anatomy[region("lh-bankssts")], [2.451, 3811.0, 1584.0])
    # rh.aparc.stats: insula SurfArea 2401 GrayVol 8310 ThickAvg 3.454 (last row of the file).
    np.testing.assert_array_equal(anatomy[region("rh-insula")], [3.454, 8310.0, 2401.0])
    # rh.aparc.stats: bankssts 1013 2400 2.435.
    np.testing.assert_array_equal(anatomy[region("rh-bankssts")], [2.435, 2400.0, 1013.0])


def test_read_aparc_stats_every_region_matches_the_file():
    anatomy = read_aparc_stats(AOMIC_SUBJECT / "stats")
    for index, name in enumerate(DESIKAN_REGIONS):
        hemi, structure = name.split("-", 1)
        row = stats_row(AOMIC_SUBJECT / "stats" / f"{hemi}.aparc.stats", structure)
        expected = [float(row["ThickAvg"]), float(row["GrayVol"]), float(row["SurfArea"])]
        np.testing.assert_array_equal(anatomy[index], expected, err_msg=name)


def test_read_aparc_stats_accepts_subject_dir_and_str():
    from_stats = read_aparc_stats(AOMIC_SUBJECT / "stats")
    from_subject = read_aparc_stats(str(AOMIC_SUBJECT))
    np.testing.assert_array_equal(from_subject, from_stats)


def test_read_aparc_stats_finds_columns_and_regions_by_name():
    # Same numbers, FreeSurfer 7 header, permuted columns and reversed region order.
    reordered = read_aparc_stats(DATA / "freesurfer" / "fs7-reordered")
    np.testing.assert_array_equal(reordered, read_aparc_stats(AOMIC_SUBJECT))


def test_read_aparc_stats_missing_region_names_file_and_region():
    with pytest.raises(ValueError, match=r"rh\.aparc\.stats.*insula"):
        read_aparc_stats(DATA / "freesurfer" / "missing-region")


def test_read_aparc_stats_missing_file(tmp_path):
    shutil.copy(AOMIC_SUBJECT / "stats" / "lh.aparc.stats", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"rh\.aparc\.stats"):
        read_aparc_stats(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_aparc_stats(tmp_path / "nowhere")


def test_read_aparc_stats_missing_column(tmp_path):
    for hemi in ("lh", "rh"):
        text = (AOMIC_SUBJECT / "stats" / f"{hemi}.aparc.stats").read_text()
        (tmp_path / f"{hemi}.aparc.stats").write_text(text.replace(" GrayVol ", " GreyVol "))
    with pytest.raises(ValueError, match=r"lh\.aparc\.stats.*GrayVol"):
        read_aparc_stats(tmp_path)


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-inf", "oops"])
def test_read_aparc_stats_refuses_non_finite_cells_like_the_table_reader(tmp_path, bad):
    # Before: 'nan' and 'inf' parsed as floats and came back silently in the (68, 3) array.
    for hemi in ("lh", "rh"):
        lines = (AOMIC_SUBJECT / "stats" / f"{hemi}.aparc.stats").read_text().splitlines()
        if hemi == "rh":
            i = next(k for k, line in enumerate(lines) if line.startswith("precuneus "))
            fields = lines[i].split()
            fields[4] = bad  # ThickAvg (StructName NumVert SurfArea GrayVol ThickAvg ...)
            lines[i] = " ".join(fields)
        (tmp_path / f"{hemi}.aparc.stats").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"rh\.aparc\.stats: region 'precuneus', column "
                                         rf"'ThickAvg' holds '{bad}', which is not a finite number"):
        read_aparc_stats(tmp_path)


def test_read_aparc_stats_without_colheaders(tmp_path):
    for hemi in ("lh", "rh"):
        lines = (AOMIC_SUBJECT / "stats" / f"{hemi}.aparc.stats").read_text().splitlines()
        kept = [line for line in lines if not line.startswith("# ColHeaders")]
        (tmp_path / f"{hemi}.aparc.stats").write_text("\n".join(kept))
    with pytest.raises(ValueError, match="ColHeaders"):
        read_aparc_stats(tmp_path)


def test_read_aparc_stats_rejects_non_path():
    with pytest.raises(TypeError, match="stats_dir"):
        read_aparc_stats(42)


# ---------------------------------------------------------------------- aparcstats2table


def test_read_aparcstats2table_fixture_values():
    ids, anatomy = read_aparcstats2table(TABLES)
    rows = read_tsv(TABLES / "lh.aparc_table_thickness.tsv")
    assert ids == [row["lh.aparc.thickness"] for row in rows]
    assert anatomy.shape == (3, 68, 3)
    for hemi in ("lh", "rh"):
        for measure, index in (("thickness", CT), ("volume", GMV), ("area", SA)):
            table = read_tsv(TABLES / f"{hemi}.aparc_table_{measure}.tsv")
            by_id = {row[f"{hemi}.aparc.{measure}"]: row for row in table}
            for s, subject in enumerate(ids):
                for name in DESIKAN_REGIONS:
                    if not name.startswith(hemi):
                        continue
                    column = f"{hemi}_{name[3:]}_{measure}"
                    assert anatomy[s, region(name), index] == float(by_id[subject][column])


def test_read_aparcstats2table_first_subject_equals_stats_reader():
    # The first fixture subject carries the AOMIC values unscaled; make_fixtures.py adds
    # 0.001 on rh, which survives only in thickness (areas and volumes keep 1 decimal).
    _, anatomy = read_aparcstats2table(TABLES)
    stats = read_aparc_stats(AOMIC_SUBJECT)
    np.testing.assert_allclose(anatomy[0, :34], stats[:34], atol=1e-9)
    np.testing.assert_allclose(anatomy[0, 34:, CT], stats[34:, CT] + 0.001, atol=1e-9)
    np.testing.assert_array_equal(anatomy[0][34:, [GMV, SA]], stats[34:, [GMV, SA]])


def _rewrite(src, dst, delimiter, shuffle_columns=False):
    dst.mkdir()
    for path in src.glob("*.tsv"):
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        if shuffle_columns:
            order = [0] + list(range(len(rows[0]) - 1, 0, -1))
            rows = [[row[i] for i in order] for row in rows]
        if delimiter == " ":
            text = "\n".join("  ".join(row) for row in rows) + "\n"
        else:
            text = "\n".join(delimiter.join(row) for row in rows) + "\n"
        (dst / path.name).write_text(text)


@pytest.mark.parametrize("delimiter", [" ", ",", ";"])
def test_read_aparcstats2table_other_delimiters(tmp_path, delimiter):
    _rewrite(TABLES, tmp_path / "t", delimiter)
    ids, anatomy = read_aparcstats2table(tmp_path / "t")
    expected_ids, expected = read_aparcstats2table(TABLES)
    assert ids == expected_ids
    np.testing.assert_array_equal(anatomy, expected)


def test_read_aparcstats2table_columns_by_name_and_filename_pattern(tmp_path):
    _rewrite(TABLES, tmp_path / "t", "\t", shuffle_columns=True)
    for path in (tmp_path / "t").glob("*.tsv"):
        hemi, _, measure = path.stem.partition(".aparc_table_")
        path.rename(path.with_name(f"{measure}_{hemi}.txt"))
    ids, anatomy = read_aparcstats2table(tmp_path / "t", filename="{measure}_{hemi}.txt")
    np.testing.assert_array_equal(anatomy, read_aparcstats2table(TABLES)[1])
    with pytest.raises(ValueError, match="filename"):
        read_aparcstats2table(tmp_path / "t", filename="{hemi}.tsv")


def test_read_aparcstats2table_subject_order_follows_lh_thickness(tmp_path):
    (tmp_path / "t").mkdir()
    for path in TABLES.glob("*.tsv"):
        lines = path.read_text().splitlines()
        if path.name != "lh.aparc_table_thickness.tsv":
            lines = [lines[0]] + lines[1:][::-1]
        (tmp_path / "t" / path.name).write_text("\n".join(lines) + "\n")
    ids, anatomy = read_aparcstats2table(tmp_path / "t")
    expected_ids, expected = read_aparcstats2table(TABLES)
    assert ids == expected_ids
    np.testing.assert_array_equal(anatomy, expected)


def test_read_aparcstats2table_missing_subject_listed():
    with pytest.raises(ValueError, match=r"rh\.aparc_table_area\.tsv.*SiteA_0050002"):
        read_aparcstats2table(DATA / "aparcstats2table-missing-subject")


def test_read_aparcstats2table_missing_column_named(tmp_path):
    shutil.copytree(TABLES, tmp_path / "t")
    path = tmp_path / "t" / "lh.aparc_table_volume.tsv"
    path.write_text(path.read_text().replace("lh_insula_volume", "lh_insula_vol"))
    with pytest.raises(ValueError, match=r"lh\.aparc_table_volume\.tsv.*lh_insula_volume"):
        read_aparcstats2table(tmp_path / "t")


def test_read_aparcstats2table_missing_file_and_bad_cell(tmp_path):
    shutil.copytree(TABLES, tmp_path / "t")
    (tmp_path / "t" / "rh.aparc_table_volume.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"rh\.aparc_table_volume\.tsv"):
        read_aparcstats2table(tmp_path / "t")
    shutil.copy(TABLES / "rh.aparc_table_volume.tsv", tmp_path / "t")
    path = tmp_path / "t" / "lh.aparc_table_area.tsv"
    lines = path.read_text().splitlines()
    cells = lines[2].split("\t")
    cells[3] = "n/a"
    lines[2] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"lh_caudalmiddlefrontal_area.*SiteA_0050002"):
        read_aparcstats2table(tmp_path / "t")


@needs_shared
def test_read_aparc_stats_shared_copy_matches_fixture():
    shared = read_aparc_stats(SHARED_DATA / "freesurfer" / "aomic-piop2-sub-0001")
    np.testing.assert_array_equal(shared, read_aparc_stats(AOMIC_SUBJECT))
    np.testing.assert_array_equal(shared[region("lh-bankssts")], [2.451, 3811.0, 1584.0])


@needs_shared
def test_read_aparcstats2table_abide():
    ids, anatomy = read_aparcstats2table(ABIDE)
    assert len(ids) == 1035
    assert anatomy.shape == (1035, 68, 3)
    assert np.isfinite(anatomy).all()
    lh_thickness = read_tsv(ABIDE / "lh.aparc_table_thickness.tsv")
    assert ids == [row["lh.aparc.thickness"] for row in lh_thickness]
    assert ids[0] == "Caltech_0051456"
    # A few cells read with csv, not with the code under test.
    rh_area = {r["rh.aparc.area"]: r for r in read_tsv(ABIDE / "rh.aparc_table_area.tsv")}
    lh_volume = {r["lh.aparc.volume"]: r for r in read_tsv(ABIDE / "lh.aparc_table_volume.tsv")}
    for s in (0, 517, 1034):
        subject = ids[s]
        assert anatomy[s, region("lh-bankssts"), CT] == float(
            lh_thickness[s]["lh_bankssts_thickness"]
        )
        assert anatomy[s, region("rh-insula"), SA] == float(rh_area[subject]["rh_insula_area"])
        assert anatomy[s, region("lh-superiorfrontal"), GMV] == float(
            lh_volume[subject]["lh_superiorfrontal_volume"]
        )
    # Hard-coded from the first data line of lh.aparc_table_thickness.tsv.
    assert anatomy[0, region("lh-bankssts"), CT] == 2.296
    # Plausible units per measure catch swapped columns.
    assert 1.0 < anatomy[:, :, CT].mean() < 4.0
    assert anatomy[:, :, GMV].mean() > anatomy[:, :, SA].mean() > 100


# -------------------------------------------------------------------------- AnatomyScaler


@pytest.fixture
def anatomy():
    rng = np.random.default_rng(0)
    scale = np.array([2.5, 8000.0, 2500.0])
    return rng.uniform(0.5, 1.5, size=(20, 6, 3)) * scale


def test_scaler_maps_training_range_per_component(anatomy):
    scaler = AnatomyScaler().fit(anatomy)
    assert scaler.data_min_.shape == scaler.data_max_.shape == (6, 3)
    assert (scaler.n_regions_, scaler.n_measures_, scaler.n_samples_seen_) == (6, 3, 20)
    np.testing.assert_array_equal(scaler.data_min_, anatomy.min(axis=0))
    np.testing.assert_array_equal(scaler.data_max_, anatomy.max(axis=0))
    out = scaler.transform(anatomy)
    np.testing.assert_allclose(out.min(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.max(axis=0), 1.0, atol=1e-12)
    expected = (anatomy - anatomy.min(axis=0)) / (anatomy.max(axis=0) - anatomy.min(axis=0))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_scaler_agrees_with_minmaxscaler_on_flattened(anatomy):
    out = AnatomyScaler(feature_range=(-1, 2)).fit(anatomy[:12]).transform(anatomy[12:])
    flat = MinMaxScaler(feature_range=(-1, 2)).fit(anatomy[:12].reshape(12, -1))
    np.testing.assert_allclose(out.reshape(8, -1), flat.transform(anatomy[12:].reshape(8, -1)))


def test_scaler_inverse_transform_and_fit_transform(anatomy):
    scaler = AnatomyScaler(feature_range=(-1, 1))
    out = scaler.fit_transform(anatomy)
    assert out.min() == pytest.approx(-1) and out.max() == pytest.approx(1)
    np.testing.assert_allclose(scaler.inverse_transform(out), anatomy, rtol=1e-12)


def test_scaler_clip(anatomy):
    test = anatomy[:3] * np.array([0.1, 1.0, 10.0])
    unclipped = AnatomyScaler().fit(anatomy).transform(test)
    assert unclipped.min() < 0 and unclipped.max() > 1
    clipped = AnatomyScaler(clip=True).fit(anatomy).transform(test)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    np.testing.assert_array_equal(clipped, np.clip(unclipped, 0, 1))


def test_scaler_constant_component_maps_to_low_end(anatomy):
    anatomy = anatomy.copy()
    anatomy[:, 2, 1] = 4321.0
    scaler = AnatomyScaler(feature_range=(0.25, 1)).fit(anatomy)
    out = scaler.transform(anatomy)
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, 2, 1], 0.25)
    np.testing.assert_allclose(scaler.inverse_transform(out)[:, 2, 1], 4321.0)


def test_scaler_does_not_modify_input_and_keeps_float32(anatomy):
    before = anatomy.copy()
    scaler = AnatomyScaler().fit(anatomy)
    out = scaler.transform(anatomy)
    scaler.inverse_transform(out)
    np.testing.assert_array_equal(anatomy, before)
    assert out is not anatomy
    as32 = scaler.transform(anatomy.astype(np.float32))
    assert as32.dtype == np.float32
    assert scaler.transform(anatomy.astype(int)).dtype == np.float64


def test_scaler_validates_shapes(anatomy):
    scaler = AnatomyScaler().fit(anatomy)
    with pytest.raises(ValueError, match=r"\(20, 5, 3\).*expected \(n_subjects, 6, 3\)"):
        scaler.transform(anatomy[:, :5])
    with pytest.raises(ValueError, match=r"3-D.*\(20, 18\).*MinMaxScaler"):
        AnatomyScaler().fit(anatomy.reshape(20, -1))
    with pytest.raises(ValueError, match="3-D"):
        scaler.transform(anatomy[0, 0])
    with pytest.raises(ValueError, match="at least one subject"):
        AnatomyScaler().fit(anatomy[:0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_scaler_rejects_non_finite(anatomy, bad):
    broken = anatomy.copy()
    broken[3, 4, 2] = bad
    with pytest.raises(ValueError, match="NaN or infinite.*subject 3, region 4, measure 2"):
        AnatomyScaler().fit(broken)
    with pytest.raises(ValueError, match="NaN or infinite"):
        AnatomyScaler().fit(anatomy).transform(broken)


@pytest.mark.parametrize(
    "params",
    [{"feature_range": (1, 0)}, {"feature_range": (0, 0)}, {"feature_range": (0, np.inf)},
     {"feature_range": (0, 1, 2)}, {"feature_range": "01"}],
)
def test_scaler_validates_params_at_fit(anatomy, params):
    scaler = AnatomyScaler(**params)  # __init__ only stores
    assert scaler.get_params()["feature_range"] is params["feature_range"]
    with pytest.raises(ValueError, match="feature_range"):
        scaler.fit(anatomy)


def test_scaler_not_fitted(anatomy):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        AnatomyScaler().transform(anatomy)


def test_scaler_clone_pickle_pipeline(anatomy):
    scaler = AnatomyScaler(feature_range=(-2, 3), clip=True)
    cloned = clone(scaler)
    assert cloned.get_params() == {"feature_range": (-2, 3), "clip": True}
    assert not hasattr(cloned, "data_min_")
    scaler.fit(anatomy)
    restored = pickle.loads(pickle.dumps(scaler))
    np.testing.assert_array_equal(restored.transform(anatomy), scaler.transform(anatomy))
    pipe = make_pipeline(AnatomyScaler()).fit(anatomy)
    np.testing.assert_array_equal(pipe.transform(anatomy), AnatomyScaler().fit_transform(anatomy))
    tags = scaler.__sklearn_tags__()
    assert tags.input_tags.three_d_array and not tags.input_tags.two_d_array


@needs_shared
def test_scaler_on_abide_train_test_split():
    _, anatomy = read_aparcstats2table(ABIDE)
    train, test = anatomy[::2], anatomy[1::2]
    scaler = AnatomyScaler().fit(train)
    out = scaler.transform(test)
    assert out.shape == test.shape
    # Unseen subjects fall mostly, but not all, inside the training range.
    inside = ((out >= 0) & (out <= 1)).mean()
    assert 0.95 < inside < 1.0
