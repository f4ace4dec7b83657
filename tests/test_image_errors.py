"""Errors from damaged or odd image files name the file, on one line (#19 item 11)."""

import gzip

import nibabel as nib
import numpy as np
import pytest

import anatcl_sklearn
from anatcl_sklearn.images import _files
from anatcl_sklearn.images._conform import conform_data


@pytest.fixture
def header_only_gz(tmp_path):
    img = nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4))
    nib.save(img, tmp_path / "full.nii")
    raw = (tmp_path / "full.nii").read_bytes()
    path = tmp_path / "hdr.nii.gz"
    path.write_bytes(gzip.compress(raw[:352]))  # a valid gzip of the header alone
    return str(path)


def test_conform_image_of_a_header_only_file_names_it(header_only_gz):
    with pytest.raises(anatcl_sklearn.ImageReadError) as info:
        anatcl_sklearn.conform_image(header_only_gz)
    message = str(info.value)
    assert header_only_gz in message and "truncated or damaged" in message
    assert "16x16x16 voxels" in message and "\n" not in message


def test_reading_a_header_only_file_names_it_on_one_line(header_only_gz):
    images = anatcl_sklearn.check_images([header_only_gz], warn_grid=False)
    with pytest.raises(ValueError) as info:
        images.load(0)
    message = str(info.value)
    assert header_only_gz in message and "is truncated or damaged" in message
    assert "\n" not in message


def test_a_zero_voxel_size_is_a_value_error_not_a_linalg_error():
    zero = np.diag([0.0, 1, 1, 1])
    for source, target, what in ((zero, np.eye(4), "source_affine"),
                                 (np.eye(4), zero, "affine")):
        with pytest.raises(ValueError, match=rf"^{what} must be a finite 4x4 affine with "
                                             r"non-zero voxel sizes .*\[0\.0, 1\.0, 1\.0\]"):
            conform_data(np.ones((4, 4, 4)), source, (4, 4, 4), target)


def test_an_empty_memory_error_gets_the_file_name(tmp_path, monkeypatch):
    path = str(tmp_path / "big.nii")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)), path)

    def no_memory(*args, **kwargs):
        raise MemoryError()
    images = anatcl_sklearn.check_images([path], warn_grid=False)
    monkeypatch.setattr(_files.nib, "load", no_memory)
    with pytest.raises(MemoryError, match=r"^X: '.*big\.nii': not enough memory to read it;"):
        _files.load_nifti(path)
    with pytest.raises(MemoryError, match=r"^X\[0\] '.*big\.nii': not enough memory"):
        _files.nifti_header(path, 0, "X")
    monkeypatch.setattr(type(images), "_read_raw", lambda self, item, pos: no_memory())
    with pytest.raises(MemoryError, match=r"big\.nii.*not enough memory to read it"):
        images.load(0)


def test_a_file_damaged_in_a_loader_worker_is_one_line_naming_it(header_only_gz, tmp_path,
                                                                   capfd):
    good = str(tmp_path / "good.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 16), np.float32), np.eye(4)), good)
    est = anatcl_sklearn.AnatCLEmbedder(method="simclr", max_epochs=0, batch_size=2,
                                        num_workers=1, verbose=0)
    est.fit([good, good])
    with pytest.raises(ValueError) as info:
        est.transform([good, header_only_gz])
    message = str(info.value)
    assert message.startswith(f"X: '{header_only_gz}' is truncated or damaged"), message
    assert message.endswith("(read in a DataLoader worker)") and "\n" not in message
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err, err
