"""Tests of load_openbhb on a tiny OpenBHB tree built in tmp_path."""

import csv
from pathlib import Path

import numpy as np
import pytest

from anatcl_sklearn.anatomy import ANATOMY_MEASURES, DESIKAN_REGIONS
from anatcl_sklearn.datasets import load_openbhb

# participant_id, split, age, sex, site: rows in participants.tsv order.
PARTICIPANTS = [
    ("1001", "train", 21.5, "female", 3),
    ("1002", "internal_test", 34.0, "male", 3),
    ("1003", "train", 8.25, "male", 7),
    ("1004", "external_test", 70.0, "female", 11),
    ("1005", "train", 45.0, "female", 7),
    ("1006", "internal_test", 19.0, "male", 7),
]
FOLDER = {"train": "train", "internal_test": "val", "external_test": "val"}
CHANNELS = [  # rows of the (7, 68) block, in the distribution's order
    "surface_area_mm^2",
    "gray_matter_volume_mm^3",
    "average_thickness_mm",
    "thickness_stddev_mm",
    "integrated_rectified_mean_curvature_mm^-1",
    "integrated_rectified_gaussian_curvature_mm^-2",
    "intrinsic_curvature_index",
]


def feature_value(pid, channel, region):
    """A value that encodes who, which channel and which region it belongs to."""
    return int(pid) * 10 + channel + region / 100


def expected_anatomy(pid):
    sa, gmv, ct = 0, 1, 2  # channel rows of SA, GMV, CT in the file
    rows = {"CT": ct, "GMV": gmv, "SA": sa}
    return np.array(
        [[feature_value(pid, rows[m], r) for m in ANATOMY_MEASURES] for r in range(68)]
    )


def build_tree(root, *, participants=PARTICIPANTS, skip_image=(), skip_features=(),
               nan_features=(), shuffle_features=True, channels_file=False):
    """Write a tiny OpenBHB tree: participants.tsv, npy volumes and the features table."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "participants.tsv", "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t")
        writer.writerow(["participant_id", "study", "sex", "age", "site", "diagnosis", "tiv",
                         "split"])
        for pid, split, age, sex, site in participants:
            writer.writerow([pid, "STUDY", sex, age, site, "control", 1500.0, split])
    rows = {"train": [], "val": []}
    for pid, split, *_ in participants:
        folder = FOLDER[split]
        if pid not in skip_image:
            image = (root / folder / "derivatives" / f"sub-{pid}" / "ses-1"
                     / f"sub-{pid}_preproc-cat12vbm_desc-gm_T1w.npy")
            image.parent.mkdir(parents=True, exist_ok=True)
            np.save(image, np.full((1, 1, 8, 9, 8), float(pid), dtype=np.float32))
        if pid not in skip_features:
            values = [feature_value(pid, c, r) for c in range(7) for r in range(68)]
            if pid in nan_features:
                values[2 * 68 + 5] = float("nan")  # a CT cell
            rows[folder].append([pid, "ses-1", *values])
    for folder, folder_rows in rows.items():
        table = root / folder / "derivatives" / "freesurfer_roi" / "desikan_roi_features.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        header = ["participant_id", "session"] + [
            f"{c}_{name}" for c in range(7) for name in DESIKAN_REGIONS
        ]
        if shuffle_features:
            folder_rows = folder_rows[::-1]
        with open(table, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(folder_rows)
    if channels_file:
        (root / "resource").mkdir(exist_ok=True)
        (root / "resource" / "freesurfer_channels.txt").write_text("\n".join(channels_file))
    return root


@pytest.fixture
def tree(tmp_path):
    return build_tree(tmp_path / "openBHB")


def ids_of(split):
    if split == "val":
        return [p[0] for p in PARTICIPANTS if p[1] in ("internal_test", "external_test")]
    return [p[0] for p in PARTICIPANTS if p[1] == split]


@pytest.mark.parametrize("split", ["train", "internal_test", "external_test", "val"])
def test_splits_select_rows_in_participants_order(tree, split):
    data = load_openbhb(tree, split=split)
    expected = ids_of(split)
    assert list(data.participants["participant_id"]) == expected
    by_id = {p[0]: p for p in PARTICIPANTS}
    np.testing.assert_array_equal(data.age, [by_id[i][2] for i in expected])
    assert list(data.sex) == [by_id[i][3] for i in expected]
    assert list(data.site) == [by_id[i][4] for i in expected]
    assert data.age.dtype == np.float64
    assert data.anatomy.shape == (len(expected), 68, 3)
    assert len(data.images) == len(expected)
    assert list(data.participants.index) == list(range(len(expected)))


def test_anatomy_is_ct_gmv_sa_per_region_despite_shuffled_csv(tree):
    data = load_openbhb(tree, split="train")
    for i, pid in enumerate(data.participants["participant_id"]):
        np.testing.assert_array_equal(data.anatomy[i], expected_anatomy(pid))
    # Spot check typed by hand: participant 1003, lh-cuneus (region 3), CT is channel 2.
    assert data.anatomy[1, 3, ANATOMY_MEASURES.index("CT")] == 10030 + 2 + 0.03
    assert data.anatomy[1, 67, ANATOMY_MEASURES.index("SA")] == 10030 + 0 + 0.67
    assert data.regions == list(DESIKAN_REGIONS)
    assert data.measures == ["CT", "GMV", "SA"]
    assert "OpenBHB" in data.DESCR and "licen" in data.DESCR.lower()


def test_images_are_paths_in_documented_layout(tree):
    data = load_openbhb(tree, split="val")
    for path, pid in zip(data.images, data.participants["participant_id"]):
        assert isinstance(path, str)
        assert Path(path) == (tree / "val" / "derivatives" / f"sub-{pid}" / "ses-1"
                              / f"sub-{pid}_preproc-cat12vbm_desc-gm_T1w.npy")
        # The path points at this participant's volume, whatever its (tiny) grid.
        volume = np.load(path)
        assert volume.shape == (1, 1, 8, 9, 8) and volume.flat[0] == float(pid)


def test_no_voxel_is_read(tree, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("load_openbhb must not read image voxels")

    monkeypatch.setattr(np, "load", forbidden)
    monkeypatch.setattr(np, "fromfile", forbidden)
    data = load_openbhb(tree, split="train")
    assert len(data.images) == 3


def test_channel_file_is_honoured(tmp_path):
    # A distribution whose channels file lists thickness first: rows must be looked up.
    reordered = [CHANNELS[2], CHANNELS[0], CHANNELS[1], *CHANNELS[3:]]
    root = build_tree(tmp_path / "o", channels_file=reordered)
    data = load_openbhb(root, split="train")
    pid = data.participants["participant_id"][0]
    # CT now in row 0, SA in row 1, GMV in row 2.
    for measure, row in ((0, 0), (1, 2), (2, 1)):
        expected = [feature_value(pid, row, r) for r in range(68)]
        np.testing.assert_array_equal(data.anatomy[0, :, measure], expected)
    # The distribution's own order gives the default reading.
    with_file = load_openbhb(build_tree(tmp_path / "p", channels_file=CHANNELS))
    without = load_openbhb(build_tree(tmp_path / "q"))
    np.testing.assert_array_equal(with_file.anatomy, without.anatomy)


def test_bad_arguments(tree):
    with pytest.raises(ValueError, match="split must be one of"):
        load_openbhb(tree, split="test")
    with pytest.raises(ValueError, match="on_missing"):
        load_openbhb(tree, on_missing="ignore")
    with pytest.raises(TypeError, match="root"):
        load_openbhb(None)


def test_missing_root_mentions_download_and_licence(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected") as info:
        load_openbhb(tmp_path / "absent")
    message = str(info.value)
    assert "absent" in message
    assert "IEEE DataPort" in message and "Hugging Face" in message
    assert "data-usage terms" in message and "never downloaded" in message


def test_missing_participants_or_features(tree):
    (tree / "val" / "derivatives" / "freesurfer_roi" / "desikan_roi_features.csv").unlink()
    load_openbhb(tree, split="train")  # train is untouched
    with pytest.raises(FileNotFoundError, match=r"val.*desikan_roi_features\.csv.*IEEE"):
        load_openbhb(tree, split="internal_test")
    (tree / "participants.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"participants\.tsv"):
        load_openbhb(tree, split="train")


def test_missing_image_raises_listing_ids(tmp_path):
    root = build_tree(tmp_path / "o", skip_image=("1003", "1005"))
    with pytest.raises(FileNotFoundError, match="2 without an image file.*1003, 1005"):
        load_openbhb(root, split="train")
    load_openbhb(root, split="val")  # other splits are unaffected


def test_missing_features_raise_or_drop(tmp_path):
    root = build_tree(tmp_path / "o", skip_features=("1001",), nan_features=("1005",))
    with pytest.raises(ValueError, match=r"2 without a complete row.*1 of them with NaN.*1001, 1005"):
        load_openbhb(root, split="train")
    with pytest.warns(UserWarning, match="Dropped 2 of 3"):
        data = load_openbhb(root, split="train", on_missing="drop")
    assert list(data.participants["participant_id"]) == ["1003"]
    assert data.images == [str(root / "train" / "derivatives" / "sub-1003" / "ses-1"
                               / "sub-1003_preproc-cat12vbm_desc-gm_T1w.npy")]
    np.testing.assert_array_equal(data.anatomy[0], expected_anatomy("1003"))
    np.testing.assert_array_equal(data.age, [8.25])


def test_drop_everything_is_an_error(tmp_path):
    root = build_tree(tmp_path / "o", skip_image=("1004",))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no participant left"):
        load_openbhb(root, split="external_test", on_missing="drop")


def test_malformed_tables(tree):
    table = tree / "train" / "derivatives" / "freesurfer_roi" / "desikan_roi_features.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n")
    with pytest.raises(ValueError, match=r"475 feature columns.*7 x 68 = 476"):
        load_openbhb(tree, split="train")
    participants = tree / "participants.tsv"
    participants.write_text(participants.read_text().replace("\tsplit", "\tset"))
    with pytest.raises(ValueError, match=r"\['split'\] missing"):
        load_openbhb(tree, split="val")


def test_duplicate_feature_rows(tree):
    table = tree / "val" / "derivatives" / "freesurfer_roi" / "desikan_roi_features.csv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(ValueError, match="more than one row"):
        load_openbhb(tree, split="val")
