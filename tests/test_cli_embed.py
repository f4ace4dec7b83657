"""``anatcl-sklearn embed``: image files in, a table of embeddings out (exit 2 on user errors)."""

import io
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from _embed_helpers import PREFIX, SHAPE, error_line
from _embed_helpers import run_embed as run

import anatcl_sklearn
from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.__main__ import main


def _affine():
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (90.0, -126.0, -72.0)
    return affine


def _write(path, seed, shape=SHAPE):
    data = np.random.default_rng(seed).random(shape, dtype=np.float32)
    nib.save(nib.Nifti1Image(data, _affine()), str(path))
    return str(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """Random ResNet-18 weights that record the test grid (so no grid warning)."""
    from anatcl_sklearn.models import AnatCLModel

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "anatcl.pth"
    torch.save({"opts": {"input_shape": list(SHAPE)}, "model": AnatCLModel("resnet18").state_dict()},
               path)
    return str(path)


@pytest.fixture(scope="module")
def brains(tmp_path_factory):
    folder = tmp_path_factory.mktemp("brains")
    (folder / "sub").mkdir()
    paths = [_write(folder / f"s{i}.nii.gz", i) for i in range(3)]
    paths.append(_write(folder / "sub" / "s3.nii", 3))
    return folder, paths


@pytest.fixture(scope="module")
def expected(ckpt, brains):
    paths = brains[1]
    return AnatCLEmbedder(pretrained=ckpt, verbose=0).fit(paths).transform(paths)


def test_csv_has_image_column_then_features_equal_to_the_embedder(ckpt, brains, expected,
                                                                  tmp_path, capsys):
    out = tmp_path / "emb.csv"
    assert run(*brains[1], "--weights", ckpt, "--output", out) == 0
    table = pd.read_csv(out)
    names = AnatCLEmbedder(pretrained=ckpt, verbose=0).fit(brains[1]).get_feature_names_out()
    assert list(table.columns) == ["image", *names] and len(names) == 512
    assert table["image"].tolist() == brains[1]
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), expected, rtol=1e-5, atol=1e-7)
    err = capsys.readouterr().err  # not a terminal: one summary line, no progress
    assert err.startswith(f"wrote 4 embeddings of 512 features to {out} in ") and err.count("\n") == 1
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o666 & ~_umask())
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_glob_patterns_and_a_progress_line_on_a_terminal(ckpt, brains, expected, tmp_path,
                                                         monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    folder = brains[0]
    out = tmp_path / "emb.csv"
    assert run(folder / "s*.nii.gz", folder / "**" / "s3.nii", "--weights", ckpt,
               "--batch-size", "1", "--output", out) == 0
    assert pd.read_csv(out)["image"].tolist() == brains[1]
    # batches of 1 take other convolution kernels than the embedder's default of 32
    np.testing.assert_allclose(pd.read_csv(out).iloc[:, 1:].to_numpy(), expected, rtol=1e-5,
                               atol=2e-6)
    err = sys.stderr.getvalue()
    assert err == "\rembedding 0/4 images\rembedding 4/4 images\n"  # 8 batches of 1 per update
    assert run(folder / "nothing*.nii", "--weights", ckpt, "--output", tmp_path / "x.csv") == 2
    assert "INPUT pattern" in sys.stderr.getvalue() and "nothing*.nii" in sys.stderr.getvalue()


@pytest.mark.parametrize("kind", ["txt", "csv", "tsv"])
def test_list_files_read_relative_paths_from_their_folder(ckpt, brains, expected, tmp_path,
                                                          kind, monkeypatch):
    folder, paths = brains
    rel = [os.path.relpath(p, folder) for p in paths]
    lst = folder / f"list.{kind}"
    if kind == "txt":
        lst.write_text("# subjects\n\n" + "\n".join(rel) + "\n\n")
    else:
        sep = "," if kind == "csv" else "\t"
        lst.write_text(sep.join(["subject", "filename"]) + "\n"
                       + "".join(f"s{i}{sep}{p}\n" for i, p in enumerate(rel)))
    monkeypatch.chdir(tmp_path)  # relative to the list file, not to the working directory
    out = tmp_path / "emb.csv"
    assert run(lst, "--weights", ckpt, "--quiet", "--output", out) == 0
    table = pd.read_csv(out)
    assert table["image"].tolist() == paths
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), expected, rtol=1e-5, atol=1e-7)


def test_a_list_without_a_path_column_names_its_columns(ckpt, tmp_path, capsys):
    lst = tmp_path / "list.csv"
    lst.write_text("subject,file\ns0,a.nii\n")
    assert run(lst, "--weights", ckpt, "--output", tmp_path / "e.csv") == 2
    assert "'subject', 'file'" in error_line(capsys)


@pytest.mark.parametrize("kind", ["csv", "tsv"])
def test_a_header_less_one_column_list_keeps_its_first_path(ckpt, brains, tmp_path, kind):
    folder, paths = brains
    rel = [os.path.relpath(p, folder) for p in paths]
    lst = folder / f"bare.{kind}"
    lst.write_text("".join(f"{p}\n" for p in rel))  # no header: every line is a path
    out = tmp_path / "emb.csv"
    assert run(lst, "--weights", ckpt, "--quiet", "--output", out) == 0
    assert pd.read_csv(out)["image"].tolist() == paths
    lst.write_text("path\n" + "".join(f"{p}\n" for p in rel))  # a header is still a header
    assert run(lst, "--weights", ckpt, "--quiet", "--force", "--output", out) == 0
    assert pd.read_csv(out)["image"].tolist() == paths


def test_a_non_utf8_file_name_is_refused_before_any_work(ckpt, brains, tmp_path, capsys,
                                                         monkeypatch):
    raw = os.fsencode(tmp_path) + b"/s\xff.nii.gz"
    with open(brains[1][0], "rb") as src, open(raw, "wb") as dst:
        dst.write(src.read())
    name = os.fsdecode(raw)
    monkeypatch.setattr(anatcl_sklearn, "check_images",
                        lambda *a, **k: pytest.fail("images read before the refusal"))
    out = tmp_path / "emb.csv"
    assert run(name, "--weights", ckpt, "--output", out) == 2
    line = error_line(capsys)
    assert "s\\udcff.nii.gz" in line and "not valid UTF-8" in line
    assert not out.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need POSIX")
def test_a_fifo_input_or_list_is_refused_by_name(ckpt, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.nii.gz")
    os.mkfifo(tmp_path / "list.txt")
    out = tmp_path / "emb.csv"
    assert run(tmp_path / "pipe.nii.gz", "--weights", ckpt, "--output", out) == 2
    assert "pipe.nii.gz' is a FIFO" in error_line(capsys)
    assert run(tmp_path / "list.txt", "--weights", ckpt, "--output", out) == 2
    assert "list.txt' is not a regular file" in error_line(capsys)
    assert not out.exists()


def test_an_image_off_the_grid_is_refused_by_name_before_embedding(ckpt, brains, tmp_path,
                                                                   capsys, monkeypatch):
    native = np.diag([1.0, 1.0, 1.0, 1.0])
    native[:3, 3] = (500.0, 500.0, 500.0)  # a native-space scan: would conform to zeros
    off = tmp_path / "native.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.float32), native), str(off))
    monkeypatch.setattr(AnatCLEmbedder, "transform",
                        lambda *a, **k: pytest.fail("embedding started before the refusal"))
    out = tmp_path / "emb.csv"
    assert run(brains[1][0], off, "--conform", "--weights", ckpt, "--output", out) == 2
    line = error_line(capsys)
    assert "native.nii.gz" in line and "0.0% of its non-zero voxels" in line
    assert not out.exists()


def test_duplicates_keep_one_row_each_and_warn_once(ckpt, brains, tmp_path, capsys):
    p = brains[1][0]
    out = tmp_path / "emb.csv"
    assert run(p, p, p, "--weights", ckpt, "--quiet", "--output", out) == 0
    assert pd.read_csv(out)["image"].tolist() == [p, p, p]
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "more than once" in err


def test_an_existing_output_needs_force(ckpt, brains, tmp_path, capsys):
    out = tmp_path / "emb.csv"
    out.write_text("precious\n")
    assert run(*brains[1][:2], "--weights", ckpt, "--output", out) == 2
    assert "--force" in error_line(capsys)
    assert out.read_text() == "precious\n"
    assert run(*brains[1][:2], "--weights", ckpt, "--quiet", "--force", "--output", out) == 0
    assert len(pd.read_csv(out)) == 2


def test_a_symlink_at_the_output_is_replaced_and_its_target_kept(ckpt, brains, tmp_path):
    target = tmp_path / "target.csv"
    target.write_text("keep\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert run(*brains[1][:2], "--weights", ckpt, "--quiet", "--force", "--output", link) == 0
    assert not link.is_symlink() and len(pd.read_csv(link)) == 2
    assert target.read_text() == "keep\n"


def test_bad_files_end_the_run_in_one_line_naming_them(ckpt, brains, tmp_path, capsys):
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"not a nifti file at all" * 20)
    out = tmp_path / "emb.csv"
    assert run(brains[1][0], bad, "--weights", ckpt, "--output", out) == 2
    assert str(bad) in error_line(capsys)
    nan = np.full(SHAPE, np.nan, dtype=np.float32)
    nib.save(nib.Nifti1Image(nan, _affine()), str(tmp_path / "nan.nii"))
    assert run(brains[1][0], tmp_path / "nan.nii", "--weights", ckpt, "--output", out) == 2
    assert "nan.nii" in error_line(capsys)
    lst = tmp_path / "list.txt"
    lst.write_text(f"{brains[1][0]}\nmissing.nii.gz\n")
    assert run(lst, "--weights", ckpt, "--output", out) == 2
    assert str(tmp_path / "missing.nii.gz") in error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["bad.nii", "list.txt", "nan.nii"]


def test_a_file_changed_after_the_check_leaves_no_output(ckpt, brains, tmp_path, capsys,
                                                         monkeypatch):
    paths = [_write(tmp_path / f"c{i}.nii", i) for i in range(2)]
    check = anatcl_sklearn.check_images

    def check_then_damage(*args, **kwargs):
        images = check(*args, **kwargs)
        with open(paths[1], "r+b") as f:  # truncated: the header promises more voxels
            f.truncate(400)
        return images

    monkeypatch.setattr(anatcl_sklearn, "check_images", check_then_damage)
    assert run(*paths, "--weights", ckpt, "--output", tmp_path / "emb.csv") == 2
    assert paths[1] in error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["c0.nii", "c1.nii"]


def test_an_interrupted_write_leaves_no_temporary_file(ckpt, brains, tmp_path, monkeypatch,
                                                       capsys):
    def interrupt(self, path, **kwargs):
        with open(path, "w") as f:
            f.write("image,partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", interrupt)
    assert run(brains[1][0], "--weights", ckpt, "--output", tmp_path / "emb.csv") == 130
    assert "interrupted" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_output_folder_must_exist_and_be_writable(ckpt, brains, tmp_path, capsys, monkeypatch):
    assert run(brains[1][0], "--weights", ckpt, "--output", tmp_path / "no" / "e.csv") == 2
    assert "does not exist" in error_line(capsys)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: pretend the permission bits bind
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **kw: (os.fspath(p) != str(locked)
                                                              and access(p, m, **kw)))
    try:
        assert run(brains[1][0], "--weights", ckpt, "--output", locked / "e.csv") == 2
        assert "not writable" in error_line(capsys)
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "0"], "--batch-size: must be >= 1; got 0"),
    (["--fold", "7"], "--fold: must be >= 0 and <= 4; got 7"),
    (["--fold", "x"], "--fold: invalid int: 'x'"),
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
    (["--device", "gpu0"], "invalid device"),
])
def test_bad_numbers_and_choices_are_usage_errors(args, message, ckpt, brains, tmp_path, capsys):
    assert run(brains[1][0], "--weights", ckpt, "--output", tmp_path / "e.csv", *args) == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err


def test_output_types(ckpt, brains, tmp_path, capsys, monkeypatch):
    assert run(brains[1][0], "--weights", ckpt, "--output", tmp_path / "e.json") == 2
    assert ".csv, .parquet" in error_line(capsys)
    for engine in ("pyarrow", "fastparquet"):  # neither importable
        monkeypatch.setitem(sys.modules, engine, None)

    def no_embedding(*args, **kwargs):
        raise AssertionError("the parquet check must come before any embedding work")

    monkeypatch.setattr(anatcl_sklearn, "check_images", no_embedding)
    assert run(brains[1][0], "--weights", ckpt, "--output", tmp_path / "e.parquet") == 2
    assert 'pip install "anatcl-sklearn[parquet]"' in error_line(capsys)
    monkeypatch.undo()
    assert run(brains[1][0], "--weights", tmp_path / "none.pth", "--output", tmp_path / "e.csv") == 2
    assert "none.pth" in error_line(capsys)
    assert os.listdir(tmp_path) == []


def test_parquet(ckpt, brains, expected, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "emb.parquet"
    assert run(*brains[1], "--weights", ckpt, "--quiet", "--output", out) == 0
    np.testing.assert_allclose(pd.read_parquet(out).iloc[:, 1:].to_numpy(), expected, rtol=1e-5)


def test_projection_has_128_columns_and_one_image_is_enough(ckpt, brains, tmp_path):
    out = tmp_path / "emb.csv"
    assert run(brains[1][0], "--weights", ckpt, "--quiet", "--output-kind", "projection",
               "--output", out) == 0
    table = pd.read_csv(out)
    assert table.shape == (1, 129)
    want = AnatCLEmbedder(pretrained=ckpt, output="projection", verbose=0).fit(
        brains[1][:2]).transform(brains[1][:1])
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), want, rtol=1e-5, atol=1e-7)


def test_a_grid_warning_is_shown_once_and_plainly(brains, tmp_path, capsys):
    from anatcl_sklearn.models import AnatCLModel

    ckpt = tmp_path / "released.pth"  # records no grid: taken for OpenBHB's 121x145x121
    torch.save({"model": AnatCLModel("resnet18").state_dict()}, ckpt)
    assert run(*brains[1], "--weights", ckpt, "--quiet", "--batch-size", "1",
               "--output", tmp_path / "e.csv") == 0
    err = capsys.readouterr().err
    assert err.count("anatcl-sklearn embed: warning: ") == 1 and err.count("\n") == 1, err
    assert "Traceback" not in err and "warnings.warn" not in err


def test_4d_niftis_give_one_row_per_volume(ckpt, brains, tmp_path):
    if not hasattr(anatcl_sklearn, "split_4d"):
        pytest.skip("anatcl_sklearn.split_4d is not there yet")
    vols = [np.asarray(nib.load(p).dataobj) for p in brains[1][:3]]
    merged = tmp_path / "merged.nii.gz"
    nib.save(nib.Nifti1Image(np.stack(vols, axis=-1), _affine()), str(merged))
    out = tmp_path / "emb.csv"
    assert run(brains[1][3], merged, "--weights", ckpt, "--quiet", "--output", out) == 0
    table = pd.read_csv(out)
    assert table["image"].tolist() == [brains[1][3]] + [f"{merged}#{t}" for t in range(3)]
    want = AnatCLEmbedder(pretrained=ckpt, verbose=0).fit(brains[1]).transform(
        [brains[1][3], *brains[1][:3]])
    np.testing.assert_allclose(table.iloc[:, 1:].to_numpy(), want, rtol=1e-5, atol=1e-7)


def test_conform_resamples_every_image_to_the_weights_grid(brains, tmp_path, capsys):
    from anatcl_sklearn.models import AnatCLModel

    if "conform" not in AnatCLEmbedder().get_params():
        assert run(*brains[1][:2], "--weights", "anatcl-global", "--conform",
                   "--output", tmp_path / "e.csv") == 2
        assert "--conform" in error_line(capsys)
        pytest.skip("AnatCLEmbedder(conform=...) is not there yet")
    grid = np.diag([-1.8, 1.8, 1.8, 1.0])  # a small recorded grid: fast to resample to
    grid[:3, 3] = (90.0, -126.0, -72.0)
    ckpt = tmp_path / "grid.pth"
    torch.save({"opts": {"input_shape": [20, 24, 20], "input_affine": grid.tolist()},
                "model": AnatCLModel("resnet18").state_dict()}, ckpt)
    paths = [brains[1][0], _write(tmp_path / "other.nii", 9, shape=(26, 30, 22))]
    out = tmp_path / "emb.csv"
    assert run(*paths, "--weights", ckpt, "--conform", "--quiet", "--output", out) == 0
    want = AnatCLEmbedder(pretrained=str(ckpt), conform=True, verbose=0).fit(paths).transform(paths)
    np.testing.assert_allclose(pd.read_csv(out).iloc[:, 1:].to_numpy(), want, rtol=1e-5,
                               atol=1e-7)


def test_module_entry_point_exit_status_and_one_line(ckpt, tmp_path):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"garbage")
    out = tmp_path / "emb.csv"
    res = subprocess.run([sys.executable, "-m", "anatcl_sklearn", "embed", str(bad),
                          "--weights", ckpt, "--output", str(out)],
                         check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX) and str(bad) in lines[0], res.stderr
    assert not out.exists()


def test_library_errors_name_the_flags(ckpt, brains, tmp_path, capsys):
    other = _write(tmp_path / "other.nii.gz", 9, shape=(24, 28, 26))
    out = tmp_path / "e.csv"
    assert run(brains[1][0], other, "--weights", ckpt, "--output", out) == 2
    line = error_line(capsys)
    assert "must share one shape" in line and "Pass --conform to resample" in line
    assert "conform=True" not in line
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    assert run(brains[1][0], "--weights", empty, "--output", out) == 2
    line = error_line(capsys)
    assert f"--weights {str(empty)!r} is a folder without a saved model" in line
    assert "pretrained=" not in line and not out.exists()


def test_demo_help_mentions_embed(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "anatcl-sklearn embed" in capsys.readouterr().out
