"""``anatcl-sklearn embed`` loads the weights and builds the backend while it checks the files
(cli/_embedding.py): the same rows, the same error precedence, no wait for a bad file."""

import threading

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.embedder import _inference
from anatcl_sklearn.images import OPENBHB_AFFINE

from _embed_helpers import SHAPE, error_line, run_embed, write_images, write_weights


@pytest.fixture
def files(tmp_path, narrow_resnet):
    return write_weights(tmp_path / "w.pth"), write_images(tmp_path, 5)


def _damage(path):
    data = np.ones(SHAPE, dtype=np.float32)
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, OPENBHB_AFFINE), path)


def test_rows_equal_one_transform_of_them_all(files, tmp_path, monkeypatch):
    """Batches of 2 over 5 files: the backend built ahead on the first file, in the other
    thread, never rebuilt; the rows are bitwise those of one transform with the same batches."""
    weights, paths = files
    builds = []

    def build(forward, x):
        builds.append((threading.current_thread().name, tuple(x.shape)))
        return forward

    monkeypatch.setitem(_inference.BUILDERS, "onnx", build)
    monkeypatch.setattr(_inference, "require_backend", lambda name: None)
    out = tmp_path / "e.csv"
    assert run_embed(*paths, "--weights", weights, "--inference", "onnx", "--batch-size", "2",
                     "-o", out, quiet=True) == 0
    assert builds == [("anatcl-embed-weights", (1, 1, *SHAPE))]
    expected = AnatCLEmbedder(pretrained=weights, batch_size=2, verbose=0,
                              inference="eager").fit(paths).transform(paths)
    rows = pd.read_csv(out).iloc[:, 1:].to_numpy().astype(np.float32)  # float32 as written
    np.testing.assert_array_equal(rows, expected)


def test_a_bad_file_is_told_without_waiting_for_the_weights(files, tmp_path, monkeypatch,
                                                            capsys):
    """The error line is out while the weights still load; only then does the command wait
    for that thread (so no thread of the failed run outlives the call)."""
    from anatcl_sklearn.cli import _embed

    weights, paths = files
    _damage(paths[3])
    release = threading.Event()
    started = threading.Event()
    said_while_loading = []

    def slow_fit(self, *args, **kwargs):  # a download that takes its time
        started.set()
        release.wait(60)
        raise RuntimeError("the weights were still loading")

    def wait_for_stopped():
        said_while_loading.append((started.is_set(), capsys.readouterr().err))
        release.set()
        original()
        assert not [t for t in threading.enumerate() if t.name == "anatcl-embed-weights"]

    original = _embed.wait_for_stopped
    monkeypatch.setattr(_embed, "wait_for_stopped", wait_for_stopped)
    monkeypatch.setattr(AnatCLEmbedder, "fit", slow_fit)
    monkeypatch.setattr(AnatCLEmbedder, "transform",
                        lambda *a, **k: pytest.fail("embedding started before the refusal"))
    out = tmp_path / "e.csv"
    try:
        assert run_embed(*paths, "--weights", weights, "-o", out) == 2
    finally:
        release.set()
    ((loading, err),) = said_while_loading
    assert loading  # the fit had started and was still blocked when the line was out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "s3.nii.gz" in lines[0] and "NaN" in lines[0]
    assert not out.exists()


def test_files_are_told_before_the_weights(files, tmp_path, capsys):
    """A damaged file and damaged weights: the file is named (checked first, as before)."""
    weights, paths = files
    _damage(paths[4])
    with open(weights, "r+b") as fh:
        fh.truncate(1000)
    out = tmp_path / "e.csv"
    assert run_embed(*paths, "--weights", weights, "-o", out) == 2
    assert "s4.nii.gz" in error_line(capsys)
    _damage(paths[4])  # still damaged; with sound files the weights are named
    assert run_embed(*paths[:4], "--weights", weights, "-o", out) == 2
    assert "w.pth" in error_line(capsys)
    assert not out.exists()


def test_an_interrupt_while_checking_leaves_no_output(files, tmp_path, monkeypatch, capsys):
    weights, paths = files
    from anatcl_sklearn.images import _reading

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_reading._ItemImages, "_read_ahead", interrupted)  # files
    out = tmp_path / "e.csv"
    assert run_embed(*paths, "--weights", weights, "-o", out) == 130
    assert "interrupted" in capsys.readouterr().err and not out.exists()
