"""embed reads each file once: the up-front check keeps the volumes it decoded (bounded) for the
forward's first reads (issue #21: the command's time approaching the bare forward's)."""

import pickle

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from anatcl_sklearn import check_images
from anatcl_sklearn.images import _reading

SHAPE = (24, 28, 24)


def _affine():
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (90.0, -126.0, -72.0)
    return affine


@pytest.fixture
def paths(tmp_path):
    out = []
    for i in range(4):
        data = np.random.default_rng(i).random(SHAPE, dtype=np.float32)
        suffix = ".nii.gz" if i % 2 else ".nii"
        nib.save(nib.Nifti1Image(data, _affine()), str(tmp_path / f"s{i}{suffix}"))
        out.append(str(tmp_path / f"s{i}{suffix}"))
    return out


@pytest.fixture
def count_reads(monkeypatch):
    reads = []
    original = _reading.load_nifti

    def counted(path, *args, **kwargs):
        reads.append(path)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(_reading, "load_nifti", counted)
    return reads


def test_read_ahead_checks_every_file_and_serves_each_volume_once(paths, count_reads):
    fresh = check_images(paths, check_finite=False).load_batch(slice(None))
    count_reads.clear()
    images = check_images(paths, check_finite="auto")
    images._read_ahead(1 << 30)
    assert sorted(count_reads) == sorted(paths)  # every file read (checked) once
    np.testing.assert_array_equal(images.subset([1, 2]).load_batch(slice(None)), fresh[1:3])
    np.testing.assert_array_equal(images.load(0), fresh[0])
    np.testing.assert_array_equal(images.load(3), fresh[3])
    assert sorted(count_reads) == sorted(paths)  # served from the read-ahead: no second read
    np.testing.assert_array_equal(images.load(0), fresh[0])  # one use each: read again
    assert count_reads.count(paths[0]) == 2


def test_read_ahead_keeps_no_more_than_its_budget(paths, count_reads):
    images = check_images(paths, check_finite="auto")
    images._read_ahead(np.prod(SHAPE) * 4)  # one volume's bytes
    assert len(images._warm) == 1
    count_reads.clear()
    images.load_batch(slice(None))
    assert len(count_reads) == 3


def test_read_ahead_refuses_a_non_finite_file_by_name(paths):
    data = np.ones(SHAPE, dtype=np.float32)
    data[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(data, _affine()), paths[2])
    images = check_images(paths, check_finite="auto")
    with pytest.raises(ValueError, match=r"s2\.nii"):
        images._read_ahead(1 << 30)


def test_a_pickled_collection_carries_no_read_ahead(paths):
    images = check_images(paths, check_finite="auto")
    images._read_ahead(1 << 30)
    assert len(images._warm) == 4
    assert pickle.loads(pickle.dumps(images))._warm is None
    assert len(pickle.dumps(images)) < np.prod(SHAPE) * 4  # no voxels in the pickle


def test_embed_reads_each_file_once(paths, count_reads, tmp_path, narrow_resnet):
    """Before: the up-front check decoded every file, then the forward decoded it again."""
    import torch

    from anatcl_sklearn.__main__ import main
    from anatcl_sklearn.models import AnatCLModel

    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save({"opts": {"input_shape": list(SHAPE)},
                "model": AnatCLModel("resnet18").state_dict()}, weights)
    out = tmp_path / "emb.csv"
    assert main(["embed", *paths, "--weights", str(weights), "--output", str(out), "-q"]) == 0
    assert sorted(count_reads) == sorted(paths)
    assert len(pd.read_csv(out)) == 4


# ---------------------------------------------------------------- decoded into batch blocks
def test_read_ahead_decodes_into_batches_that_load_batch_hands_over(paths, count_reads):
    fresh = check_images(paths, check_finite=False).load_batch(slice(None))
    count_reads.clear()
    images = check_images(paths)
    images._read_ahead(1 << 30, batch_size=3)  # blocks (0, 1, 2) and (3,)
    blocks = dict(images._warm._blocks)
    assert sorted(blocks) == [(0, 1, 2), (3,)]
    first = images.load_batch(slice(0, 3))
    assert first is blocks[0, 1, 2]  # the block itself: no copy
    assert first.flags.c_contiguous and first.dtype == np.float32
    np.testing.assert_array_equal(first, fresh[:3])
    last = images.subset([3]).load_batch(slice(None))  # a subset shares the read-ahead
    assert last is blocks[3,]
    np.testing.assert_array_equal(last, fresh[3:])
    assert sorted(count_reads) == sorted(paths) and len(images._warm) == 0
    again = images.load_batch(slice(0, 3))  # one use: read again, a new array
    assert again is not first and sorted(count_reads) == sorted(paths + paths[:3])
    np.testing.assert_array_equal(again, fresh[:3])


def test_a_volume_taken_alone_is_never_handed_over_again_in_its_block(paths):
    """load(1) hands out a row of the block (0, 1): the block is not handed over after, so the
    caller's edits to that volume reach no later load."""
    fresh = check_images(paths, check_finite=False).load_batch(slice(None))
    images = check_images(paths)
    images._read_ahead(1 << 30, batch_size=2)
    mine = images.load(1)
    mine[...] = -1.0
    batch = images.load_batch(slice(0, 2))
    np.testing.assert_array_equal(batch, fresh[:2])  # row 1 read again from its file
    assert not np.shares_memory(batch, mine)
    np.testing.assert_array_equal(images.load_batch(slice(2, 4)), fresh[2:])


def test_other_batches_than_the_blocks_still_get_the_checked_volumes(paths, count_reads):
    fresh = check_images(paths, check_finite=False).load_batch(slice(None))
    count_reads.clear()
    images = check_images(paths)
    images._read_ahead(1 << 30, batch_size=2)
    np.testing.assert_array_equal(images.load_batch([1, 2]), fresh[1:3])  # across blocks
    np.testing.assert_array_equal(images.load_batch([3, 0]), fresh[[3, 0]])
    assert sorted(count_reads) == sorted(paths)


def test_blocks_keep_to_the_byte_budget(paths):
    images = check_images(paths)
    volume = int(np.prod(SHAPE)) * 4
    images._read_ahead(3 * volume, batch_size=2)  # one block of two, then one volume alone
    assert sorted(images._warm._blocks) == [(0, 1)]
    assert sorted(images._warm) == [0, 1, 2]


def test_a_bad_file_in_a_block_is_still_named_and_nothing_is_kept(paths):
    with open(paths[2], "r+b") as fh:  # an .nii: its voxels end in NaN
        fh.seek(-4, 2)
        fh.write(np.float32(np.nan).tobytes())
    images = check_images(paths)
    with pytest.raises(ValueError, match="s2.nii"):
        images._read_ahead(1 << 30, batch_size=2)
    assert images.load_batch([0]).shape == (1, *SHAPE)


def test_the_read_ahead_asks_numpy_for_no_huge_pages_and_restores_the_setting(paths,
                                                                              monkeypatch):
    from anatcl_sklearn.images import _warm

    core = getattr(np, "_core", None) or np.core
    real = core.multiarray._set_madvise_hugepage
    calls, seen = [], []

    def switch(value):
        calls.append(value)
        return real(value)

    monkeypatch.setattr(core.multiarray, "_set_madvise_hugepage", switch)
    before = real(True)
    real(before)
    original = _reading._ItemImages._read

    def read(self, pos, conform=True, out=None):
        seen.append(real(False))  # the setting while the files are decoded
        real(seen[-1])
        return original(self, pos, conform, out)

    monkeypatch.setattr(_reading._ItemImages, "_read", read)
    check_images(paths)._read_ahead(1 << 30, batch_size=2)
    assert calls == [False, before] and set(seen) == {False}
    assert real(before) == before  # restored
    with pytest.raises(RuntimeError, match="boom"), _warm.no_hugepages():
        raise RuntimeError("boom")
    assert real(before) == before and calls[-2:] == [False, before]
