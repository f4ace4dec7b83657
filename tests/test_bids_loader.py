"""Grey-matter maps found in a BIDS derivatives folder by their names (load_bids, issue #20)."""

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from anatcl_sklearn.datasets import load_bids, write_synthetic_bids

SHAPE = (24, 28, 24)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study with two sessions, .nii and .nii.gz, CAT12 maps in derivatives/cat12."""
    root = tmp_path_factory.mktemp("study")
    data = write_synthetic_bids(root / "derivatives" / "cat12", n_subjects=3, shape=SHAPE,
                                compress="mixed", cohort="adni", random_state=1)
    shutil.copy(data.participants_path, root / "participants.tsv")
    for pid in data.participants["participant_id"]:
        (root / pid).mkdir()
        shutil.copy(root / "derivatives" / "cat12" / pid / f"{pid}_sessions.tsv", root / pid)
        (root / pid / "ses-01" / "anat").mkdir(parents=True)  # the raw T1w beside
        (root / pid / "ses-01" / "anat" / f"{pid}_ses-01_T1w.nii.gz").write_bytes(b"")
    return root, data


def test_one_row_per_map_with_its_entities_and_participants(study):
    root, data = study
    for where in (root / "derivatives" / "cat12", root, root / "derivatives"):
        found = load_bids(where, participants=True)
        frame = found.frame
        assert list(frame.columns[:4]) == ["participant_id", "session_id", "path", "pipeline"]
        assert found.images == data.paths and found.pipeline == "cat12"
        assert found.entities == ["participant_id", "session_id"]
        assert frame["session_id"].tolist() == ["ses-01", "ses-02"] * 3
        np.testing.assert_allclose(frame["age"], data.age, rtol=1e-5)  # the session's age
        assert frame["diagnosis"].tolist() == data.scans["diagnosis"].tolist()
        assert found.participants_path == str(
            (where if where.name == "cat12" else root) / "participants.tsv")
        assert found.smoothed == []
    assert "age" not in load_bids(root).frame


def test_nothing_found_names_what_is_there(study, tmp_path):
    root, _ = study
    raw = tmp_path / "raw"
    shutil.copytree(root, raw, ignore=shutil.ignore_patterns("derivatives"))
    with pytest.raises(ValueError, match=r"no grey-matter maps found .* It holds 3 other NIfTI "
                                         r"file\(s\) \(e.g. sub-0001/ses-01/anat/sub-0001_ses-01"
                                         r"_T1w.nii.gz\); raw T1w images must first be "
                                         r"preprocessed by CAT12 or deepmriprep"):
        load_bids(raw)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no grey-matter maps found"):
        load_bids(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="BIDS folder not found"):
        load_bids(tmp_path / "absent")


def test_two_pipelines_are_refused_naming_them_until_one_is_chosen(tmp_path):
    write_synthetic_bids(tmp_path / "derivatives" / "cat12", n_subjects=2, shape=SHAPE)
    fmriprep = tmp_path / "derivatives" / "fmriprep"
    write_synthetic_bids(fmriprep, n_subjects=1, sessions=None, shape=SHAPE,
                         pipeline="fmriprep")
    with pytest.raises(ValueError, match=r"mixes the grey-matter maps of 2 pipelines.*"
                                         r"cat12: 4 maps \(e.g. cat12/sub-0001/ses-01/anat/"
                                         r"mwp1sub-0001_ses-01_T1w.nii.gz\); fmriprep: 1 map "
                                         r"\(e.g. fmriprep/sub-0001/anat/sub-0001_space-"
                                         r".*--pipeline cat12"):
        load_bids(tmp_path / "derivatives")
    assert len(load_bids(tmp_path / "derivatives", pipeline="CAT12").images) == 4
    with pytest.warns(UserWarning, match="tissue probabilities, not modulated"):
        found = load_bids(tmp_path / "derivatives", pipeline="fmriprep")
    assert found.space == "MNI152NLin2009cAsym" and "session_id" not in found.frame
    with pytest.raises(ValueError, match=r"pipeline 'spm': no map of it .* found cat12: 4"):
        load_bids(tmp_path, pipeline="spm")


def test_pipeline_names_from_folders_and_descriptions(tmp_path):
    # deepmriprep's BIDS mode writes no description: the folder's name tells.
    deep = write_synthetic_bids(tmp_path / "derivatives" / "deepmriprep", n_subjects=1,
                                sessions=None, pipeline="deepmriprep", shape=SHAPE)
    (tmp_path / "derivatives" / "deepmriprep" / "dataset_description.json").unlink()
    assert load_bids(tmp_path).pipeline == "deepmriprep"
    other = tmp_path / "other"
    write_synthetic_bids(other, n_subjects=1, sessions=None, shape=SHAPE)
    (other / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "PipelineDescription": {"Name": "CAT12.9 (r2577)"}}))
    assert load_bids(other).pipeline == "cat12"
    (other / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "GeneratedBy": [{"Name": "MyVBM"}]}))
    assert load_bids(other).pipeline == "myvbm"
    assert deep.paths[0].endswith("anat/mri/mwp1sub-0001_T1w.nii.gz")


def test_spaces_native_maps_and_runs(tmp_path):
    a = write_synthetic_bids(tmp_path / "fmriprep", n_subjects=2, sessions=None,
                             runs=("1", "2"), pipeline="fmriprep", shape=SHAPE)
    with pytest.warns(UserWarning, match="tissue probabilities"):
        found = load_bids(tmp_path / "fmriprep")
    assert found.frame["run"].tolist() == [1, 2, 1, 2]
    assert str(found.frame["run"].dtype) == "Int64"
    assert found.entities == ["participant_id", "run"]
    for path in a.paths:  # the same maps in a second space
        shutil.copy(path, path.replace("MNI152NLin2009cAsym", "MNI152NLin6Asym"))
    with pytest.raises(ValueError, match=r"in 2 spaces \(MNI152NLin2009cAsym, "
                                         r"MNI152NLin6Asym\); choose one .*--space"):
        load_bids(tmp_path / "fmriprep")
    with pytest.warns(UserWarning):
        assert len(load_bids(tmp_path / "fmriprep", space="MNI152NLin6Asym").images) == 4
    with pytest.raises(ValueError, match=r"space='T1w': no map in that space"):
        load_bids(tmp_path / "fmriprep", space="T1w")
    native = tmp_path / "native" / "sub-01" / "anat"
    native.mkdir(parents=True)
    shutil.copy(a.paths[0], native / "sub-01_label-GM_probseg.nii.gz")
    with pytest.raises(ValueError, match="have no space- entity: they are in each subject's "
                                         "native space"):
        load_bids(tmp_path / "native")
    cat = write_synthetic_bids(tmp_path / "cat", n_subjects=1, sessions=None, shape=SHAPE)
    with pytest.raises(ValueError, match="space='MNI' selects among label-GM_probseg maps"):
        load_bids(cat.root, space="MNI")


def test_smoothed_maps_warn_and_unsmoothed_ones_are_preferred(tmp_path):
    smooth = write_synthetic_bids(tmp_path / "s", n_subjects=2, sessions=None, shape=SHAPE,
                                  smoothing_fwhm=6)
    with pytest.warns(UserWarning, match=r"2 of 2 grey-matter maps .* are smoothed \(e.g. "
                                         r"sub-0001/anat/s6mwp1sub-0001_T1w.nii.gz: s6mwp1\)"
                                         r".*saw unsmoothed CAT12 mwp1"):
        found = load_bids(smooth.root)
    assert found.smoothed == smooth.paths
    # Beside the unsmoothed maps (CAT12 writes both), the smoothed ones are left out.
    plain = write_synthetic_bids(tmp_path / "s", n_subjects=2, sessions=None, shape=SHAPE,
                                 overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = load_bids(smooth.root)
    assert found.images == plain.paths and found.smoothed == []
    # A sidecar that records smoothing counts as well.
    sidecar = plain.paths[1].replace(".nii.gz", ".json")
    with open(sidecar, "w") as fh:
        json.dump({"SmoothingFWHM": 8}, fh)
    with pytest.warns(UserWarning, match=r"1 of 2 .* sidecar SmoothingFWHM: 8"):
        assert load_bids(smooth.root).smoothed == [plain.paths[1]]
    with open(sidecar, "w") as fh:
        json.dump({"SmoothingFWHM": 0, "SkullStripped": True}, fh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_bids(smooth.root)


def test_two_maps_with_the_same_entities_are_refused(tmp_path):
    data = write_synthetic_bids(tmp_path, n_subjects=1, sessions=None, shape=SHAPE)
    copy = tmp_path / "sub-0001" / "anat" / "mri"
    copy.mkdir()
    shutil.copy(data.paths[0], copy / "mwp1sub-0001_T1w.nii")
    with pytest.raises(ValueError, match=r"2 grey-matter maps .* have the same BIDS entities "
                                         r"\(participant_id=sub-0001\): sub-0001/anat/mri/"):
        load_bids(tmp_path)


def test_participants_without_prefixes_a_session_column_and_unknown_subjects(tmp_path):
    data = write_synthetic_bids(tmp_path, n_subjects=3, shape=SHAPE)
    table = pd.DataFrame({"participant_id": ["0001", "0001", "0002", "0002"],
                          "session_id": ["01", "02", "01", "02"], "score": [1, 2, 3, 4]})
    table.to_csv(data.participants_path, sep="\t", index=False)
    with pytest.warns(UserWarning, match=r"1 participant\(s\) .* \(e.g. sub-0003\)"):
        frame = load_bids(tmp_path, participants=True).frame
    assert frame["score"].tolist()[:4] == [1, 2, 3, 4] and frame["score"].isna().sum() == 2
    (tmp_path / "participants.tsv").unlink()
    with pytest.raises(ValueError, match="participants=True: no participants.tsv"):
        load_bids(tmp_path, participants=True)


@pytest.mark.parametrize("kwargs, error", [
    ({"root": 3}, TypeError), ({"pipeline": ""}, TypeError), ({"space": 1}, TypeError),
    ({"participants": "yes"}, TypeError)])
def test_bad_arguments(tmp_path, kwargs, error):
    with pytest.raises(error):
        load_bids(**{"root": tmp_path, **kwargs})


def test_cat12_longitudinal_names(tmp_path):
    data = write_synthetic_bids(tmp_path, n_subjects=1, shape=SHAPE)
    for path in data.paths:  # CAT12's longitudinal pipeline: mwp1r<source> (realigned)
        shutil.move(path, path.replace("/mwp1sub-", "/mwp1rsub-"))
    found = load_bids(tmp_path)
    assert found.frame["session_id"].tolist() == ["ses-01", "ses-02"]
    assert all("/mwp1rsub-0001_ses-0" in p for p in found.images)
