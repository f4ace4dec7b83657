"""Synthetic brains written as NIfTI files (write_synthetic_brains, ``anatcl-sklearn synthetic``)."""

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from anatcl_sklearn.__main__ import main
from anatcl_sklearn.datasets import make_synthetic_brains, write_synthetic_brains
from anatcl_sklearn.images import OPENBHB_AFFINE

SHAPE = (24, 28, 24)


def test_files_hold_the_images_with_their_affine_and_a_participants_table(tmp_path):
    data = write_synthetic_brains(tmp_path / "new" / "brains", 3, shape=SHAPE, random_state=0)
    folder = tmp_path / "new" / "brains"
    assert sorted(os.listdir(folder)) == ["participants.tsv", "sub-0001_mwp1.nii.gz",
                                          "sub-0002_mwp1.nii.gz", "sub-0003_mwp1.nii.gz"]
    ref = make_synthetic_brains(3, shape=SHAPE, random_state=0)
    assert data.paths == [str(folder / f"sub-000{i}_mwp1.nii.gz") for i in (1, 2, 3)]
    for path, volume in zip(data.paths, ref.images):
        img = nib.load(path)
        assert img.shape == SHAPE and img.get_data_dtype() == np.float32
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(img.dataobj), volume)
    table = pd.read_csv(data.participants_path, sep="\t")
    assert list(table.columns) == ["participant_id", "age", "sex", "site", "diagnosis", "path"]
    assert list(table["path"]) == [os.path.basename(p) for p in data.paths]
    np.testing.assert_allclose(table["age"], ref.age, rtol=1e-5)
    np.testing.assert_array_equal(table["sex"], ref.sex)


def test_the_default_grid_is_the_released_weights_grid(tmp_path):
    data = write_synthetic_brains(tmp_path, 1, random_state=0)
    img = nib.load(data.paths[0])
    assert img.shape == (121, 145, 121)
    np.testing.assert_allclose(img.affine, OPENBHB_AFFINE, atol=1e-5)


def test_same_seed_same_bytes(tmp_path):
    a = write_synthetic_brains(tmp_path / "a", 2, shape=SHAPE, random_state=3)
    b = write_synthetic_brains(tmp_path / "b", 2, shape=SHAPE, random_state=3)
    for pa, pb in zip([*a.paths, a.participants_path], [*b.paths, b.participants_path]):
        assert Path(pa).read_bytes() == Path(pb).read_bytes()


def test_existing_files_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    (tmp_path / "sub-0002_mwp1.nii.gz").write_bytes(b"mine")

    def no_drawing(*args, **kwargs):
        raise AssertionError("refused after drawing")

    monkeypatch.setattr("anatcl_sklearn.datasets._synthetic.make_synthetic_brains", no_drawing)
    with pytest.raises(ValueError, match=r"sub-0002_mwp1\.nii\.gz' already exists; pass "
                                         r"overwrite=True"):
        write_synthetic_brains(tmp_path, 3, shape=SHAPE)
    assert os.listdir(tmp_path) == ["sub-0002_mwp1.nii.gz"]
    assert (tmp_path / "sub-0002_mwp1.nii.gz").read_bytes() == b"mine"
    monkeypatch.undo()
    write_synthetic_brains(tmp_path, 3, shape=SHAPE, overwrite=True)
    assert nib.load(tmp_path / "sub-0002_mwp1.nii.gz").shape == SHAPE


def test_a_symlink_at_a_target_is_replaced_never_written_through(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep")
    (tmp_path / "out").mkdir()
    os.symlink(target, tmp_path / "out" / "participants.tsv")
    write_synthetic_brains(tmp_path / "out", 1, shape=SHAPE, overwrite=True)
    assert target.read_text() == "keep"
    assert not os.path.islink(tmp_path / "out" / "participants.tsv")


def test_a_failure_part_way_leaves_no_file_behind(tmp_path, monkeypatch):
    from anatcl_sklearn.datasets import _nifti_writer

    calls = []
    real = _nifti_writer._nifti_bytes

    def fail_on_third(volume, affine):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(volume, affine)

    monkeypatch.setattr(_nifti_writer, "_nifti_bytes", fail_on_third)
    with pytest.raises(OSError, match="disk full"):
        write_synthetic_brains(tmp_path, 4, shape=SHAPE)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n_subjects": 0}, ValueError, "n_subjects must be an int >= 1"),
    ({"n_subjects": 2.5}, TypeError, "n_subjects must be an int"),
    ({"shape": (8, 8, 8)}, ValueError, "every dimension >= 16"),
    ({"overwrite": "yes"}, TypeError, "overwrite must be a bool"),
])
def test_bad_arguments(tmp_path, kwargs, error, message):
    with pytest.raises(error, match=message):
        write_synthetic_brains(tmp_path, **{"n_subjects": 2, "shape": SHAPE, **kwargs})
    assert os.listdir(tmp_path) == []


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        write_synthetic_brains(tmp_path / "f", 1, shape=SHAPE)


def test_the_command_writes_files_that_embed_reads(tmp_path, capsys):
    import torch

    from anatcl_sklearn.models import AnatCLModel

    folder = tmp_path / "brains"
    assert main(["synthetic", str(folder), "--n-subjects", "3", "--shape", *map(str, SHAPE),
                 "--random-state", "1"]) == 0
    assert "wrote 3 synthetic brains" in capsys.readouterr().out
    assert main(["synthetic", str(folder), "--n-subjects", "3", "--shape", *map(str, SHAPE)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("anatcl-sklearn synthetic: error: ") and "pass --force" in err
    assert "overwrite=True" not in err

    torch.manual_seed(0)  # random weights that record the synthetic grid (no download)
    ckpt = tmp_path / "w.pth"
    torch.save({"opts": {"input_shape": list(SHAPE)},
                "model": AnatCLModel("resnet18").state_dict()}, ckpt)
    out = tmp_path / "emb.csv"
    assert main(["embed", str(folder / "participants.tsv"), "--weights", str(ckpt),
                 "--output", str(out), "--quiet"]) == 0
    table = pd.read_csv(out)
    assert table.shape == (3, 513)
    assert [os.path.basename(p) for p in table["image"]] == [
        f"sub-000{i}_mwp1.nii.gz" for i in (1, 2, 3)]
