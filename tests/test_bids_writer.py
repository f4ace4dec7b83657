"""A synthetic study as a BIDS derivatives folder (write_synthetic_bids, issue #20)."""

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from anatcl_sklearn.datasets import make_synthetic_brains, write_synthetic_bids

SHAPE = (24, 28, 24)


def _relative(data):
    return [os.path.relpath(p, data.root) for p in data.paths]


def test_cat12_layout_two_sessions_mixed_compression(tmp_path):
    data = write_synthetic_bids(tmp_path / "cat12", n_subjects=3, shape=SHAPE,
                                compress="mixed")
    assert _relative(data) == [
        "sub-0001/ses-01/anat/mwp1sub-0001_ses-01_T1w.nii.gz",
        "sub-0001/ses-02/anat/mwp1sub-0001_ses-02_T1w.nii",
        "sub-0002/ses-01/anat/mwp1sub-0002_ses-01_T1w.nii.gz",
        "sub-0002/ses-02/anat/mwp1sub-0002_ses-02_T1w.nii",
        "sub-0003/ses-01/anat/mwp1sub-0003_ses-01_T1w.nii.gz",
        "sub-0003/ses-02/anat/mwp1sub-0003_ses-02_T1w.nii",
    ]
    assert list(data.scans.columns) == ["participant_id", "session_id", "age", "sex", "site",
                                        "diagnosis", "path"]
    assert list(data.scans["session_id"]) == ["ses-01", "ses-02"] * 3
    description = json.loads(Path(data.dataset_description_path).read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "CAT12"
    participants = pd.read_csv(data.participants_path, sep="\t")
    assert list(participants.columns[:5]) == ["participant_id", "age", "sex", "site",
                                              "diagnosis"]
    assert set(participants["sex"]) <= {"F", "M"}
    sessions = pd.read_csv(tmp_path / "cat12" / "sub-0002" / "sub-0002_sessions.tsv", sep="\t")
    assert list(sessions["session_id"]) == ["ses-01", "ses-02"]
    np.testing.assert_allclose(sessions["age"].diff().iloc[1], 2.0, atol=1e-3)


def test_first_session_is_make_synthetic_brains_and_later_ones_are_older(tmp_path):
    data = write_synthetic_bids(tmp_path, n_subjects=4, shape=SHAPE, age_range=(40, 60),
                                years_between_sessions=10.0, random_state=3)
    ref = make_synthetic_brains(4, shape=SHAPE, age_range=(40, 60), random_state=3)
    first = data.scans["session_id"] == "ses-01"
    for path, volume in zip(np.asarray(data.paths)[first], ref.images):
        img = nib.load(path)
        np.testing.assert_array_equal(np.asarray(img.dataobj), volume)
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
    np.testing.assert_allclose(data.age[first], ref.age)
    np.testing.assert_allclose(data.age[~first], ref.age + 10.0)
    # Ten years on, the cortex of adults is thinner and the maps hold less grey matter.
    assert np.all(data.anatomy[~first][..., 0] < data.anatomy[first][..., 0])
    totals = [np.asarray(nib.load(p).dataobj).sum() for p in data.paths]
    assert np.all(np.asarray(totals)[~first] < np.asarray(totals)[first])


def test_no_sessions_runs_and_the_other_pipelines_names(tmp_path):
    data = write_synthetic_bids(tmp_path / "a", n_subjects=1, sessions=None, runs=("1", "2"),
                                shape=SHAPE, compress=False)
    assert _relative(data) == ["sub-0001/anat/mwp1sub-0001_run-1_T1w.nii",
                               "sub-0001/anat/mwp1sub-0001_run-2_T1w.nii"]
    assert list(data.scans["run"]) == [1, 2] and "session_id" not in data.scans
    a, b = (np.asarray(nib.load(p).dataobj) for p in data.paths)
    assert not np.array_equal(a, b) and np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9

    data = write_synthetic_bids(tmp_path / "b", n_subjects=1, sessions=("pre",),
                                pipeline="fmriprep", space="MNI152NLin6Asym", shape=SHAPE)
    assert _relative(data) == [
        "sub-0001/ses-pre/anat/sub-0001_ses-pre_space-MNI152NLin6Asym_label-GM_probseg.nii.gz"]
    data = write_synthetic_bids(tmp_path / "c", n_subjects=1, sessions=None,
                                pipeline="deepmriprep", shape=SHAPE, smoothing_fwhm=6)
    assert _relative(data) == ["sub-0001/anat/mri/s6mwp1sub-0001_T1w.nii.gz"]
    generated = json.loads(Path(data.dataset_description_path).read_text())["GeneratedBy"][0]
    assert generated["Name"] == "deepmriprep" and "6 mm FWHM" in generated["Description"]


def test_same_seed_same_bytes_and_no_overwrite(tmp_path):
    a = write_synthetic_bids(tmp_path / "a", n_subjects=2, shape=SHAPE, random_state=5)
    b = write_synthetic_bids(tmp_path / "b", n_subjects=2, shape=SHAPE, random_state=5)
    for pa, pb in zip(a.paths, b.paths):
        assert Path(pa).read_bytes() == Path(pb).read_bytes()
    with pytest.raises(ValueError, match="already exist; pass overwrite=True"):
        write_synthetic_bids(tmp_path / "a", n_subjects=2, shape=SHAPE, random_state=5)
    write_synthetic_bids(tmp_path / "a", n_subjects=2, shape=SHAPE, random_state=6,
                         overwrite=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"sessions": ("01", "0_2")}, "sessions must hold BIDS labels"),
    ({"sessions": "01"}, "sessions must be None or a sequence"),
    ({"sessions": ()}, "sessions must hold at least one label"),
    ({"runs": ("a",)}, "runs must hold run indices"),
    ({"pipeline": "spm"}, "pipeline must be one of"),
    ({"space": "MNI 152"}, "space must be a BIDS label"),
    ({"compress": "yes"}, "compress must be True, False or 'mixed'"),
    ({"years_between_sessions": -1}, "years_between_sessions must be"),
    ({"smoothing_fwhm": 0}, "smoothing_fwhm must be None or"),
    ({"smoothing_fwhm": 6, "pipeline": "fmriprep"}, "fMRIPrep does not smooth"),
    ({"n_subjects": 0}, "n_subjects must be an int >= 1"),
    ({"cohort": "ukb"}, "cohort must be one of"),
])
def test_bad_arguments_are_refused_before_writing(tmp_path, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        write_synthetic_bids(tmp_path / "x", shape=SHAPE, **kwargs)
    assert not (tmp_path / "x").exists()
