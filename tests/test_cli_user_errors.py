"""The training command and the demo end a user error in one line and exit status 2 (#19)."""

import numpy as np
import pytest

from anatcl_sklearn.cli import main


def _table(tmp_path, n=4, missing=False):
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(tmp_path / f"s{i}.npy", rng.uniform(size=(16, 16, 16)).astype(np.float32))
    rows = [f"s{i}.npy,{20 + i}" for i in range(n)] + (["gone.npy,30"] if missing else [])
    (tmp_path / "t.csv").write_text("path,age\n" + "\n".join(rows) + "\n")
    return str(tmp_path / "t.csv")


def _one_line(capsys, prog, *words):
    err = capsys.readouterr().err
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and all(w in err for w in words), err
    return err


def test_train_data_errors_are_one_line_exit_2(tmp_path, capsys):
    common = ["--epochs", "1", "--batch-size", "2", "--num-workers", "0", "--verbose", "0",
              "--method", "yaware", "--output", str(tmp_path / "out")]
    table = _table(tmp_path, missing=True)
    assert main(["train", "--images", table, *common]) == 2
    _one_line(capsys, "anatcl-sklearn train", "gone.npy")
    np.save(tmp_path / "anat.npy", np.ones((4, 10, 3)))
    table = _table(tmp_path)
    assert main(["train", "--images", table, "--anatomy", str(tmp_path / "anat.npy"),
                 *common]) == 2
    _one_line(capsys, "anatcl-sklearn train", "anatomy")
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_train_refuses_outputs_under_a_file_or_a_dangling_link(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for output, words in ((afile / "sub" / "run", ("is a file, not a folder", str(afile))),
                          (tmp_path / "dangling", ("dangling symbolic link", "nowhere"))):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--synthetic", "4", "--output", str(output)])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and all(w in err for w in words), err
        assert "Traceback" not in err


@pytest.mark.parametrize("command", [["train", "--synthetic", "4"], ["demo"]])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_lr_refuses_non_finite_values_on_both_commands(command, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, f"--lr={value}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "argument --lr:" in err and value in err, err


def test_demo_library_refusals_are_one_line(capsys, monkeypatch):
    from anatcl_sklearn.cli import _demo

    def refuse(args):
        raise ValueError("batch_size=2 is smaller than the 4 processes")
    monkeypatch.setattr(_demo, "_load", refuse)
    assert main(["demo"]) == 2
    _one_line(capsys, "anatcl-sklearn demo", "--batch-size 2 is smaller")
    monkeypatch.setattr(_demo, "_load", lambda args: 1 / 0)  # a real bug stays a traceback
    with pytest.raises(ZeroDivisionError):
        main(["demo"])


def test_train_batch_too_small_for_the_processes_is_one_line(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    from anatcl_sklearn import AnatCLEmbedder
    from anatcl_sklearn.embedder._distributed import check_batch

    def fit_on_four_ranks(self, *args, **kwargs):  # what fit refuses under torchrun, 4 ranks
        check_batch(SimpleNamespace(world=4), self.batch_size)
    monkeypatch.setattr(AnatCLEmbedder, "fit", fit_on_four_ranks)
    assert main(["train", "--synthetic", "4", "--shape", "16", "16", "16", "--batch-size", "4",
                 "--output", str(tmp_path / "out")]) == 2
    _one_line(capsys, "anatcl-sklearn train", "--batch-size 4 is the global batch",
              "split among 4 processes", ">= 8")
