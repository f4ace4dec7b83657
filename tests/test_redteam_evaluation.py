"""Red-team pass over evaluation.load_cohort: a subject listed twice."""

import shutil

import pytest

from anatcl_sklearn.datasets import write_synthetic_bids
from anatcl_sklearn.evaluation import load_cohort


@pytest.fixture
def cohort(tmp_path):
    maps = write_synthetic_bids(tmp_path / "src", n_subjects=3, shape=(24, 28, 24),
                                sessions=("01", "02"))
    root = tmp_path / "cohort"
    root.mkdir()
    for i, p in enumerate(maps.paths):
        shutil.copy(p, root / f"scan{i}.nii.gz")
    return root, maps


def test_a_subject_with_two_rows_is_warned(cohort):
    """Two sessions of one subject as two rows: the probes' folds would leak the brain."""
    root, maps = cohort
    rows = [f"sub-{i // 2:02d}\tscan{i}.nii.gz\tHC" for i in range(len(maps.paths))]
    (root / "participants.tsv").write_text("participant_id\tpath\tdiagnosis\n"
                                           + "\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match="several rows.*sub-00"):
        load_cohort(root)


def test_one_image_listed_twice_is_warned(cohort):
    root, _ = cohort
    (root / "participants.tsv").write_text("path\tdiagnosis\nscan0.nii.gz\tHC\n"
                                           "scan0.nii.gz\tAD\nscan1.nii.gz\tHC\n")
    with pytest.warns(UserWarning, match="several rows.*scan0"):
        load_cohort(root)


def test_one_row_per_subject_is_quiet(cohort, recwarn):
    root, _ = cohort
    (root / "participants.tsv").write_text("participant_id\tpath\tdiagnosis\n"
                                           "sub-1\tscan0.nii.gz\tHC\nsub-2\tscan2.nii.gz\tAD\n")
    load_cohort(root)
    assert not [w for w in recwarn if "several rows" in str(w.message)]
