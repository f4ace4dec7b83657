"""Red-team pass over ``embed --bids`` (a derivative folder out) and ``load_bids``: tampered
or half-written output folders, participants / sessions tables as users write them."""

import json
import os

import pytest
from _embed_helpers import PREFIX, SHAPE, error_line, run_embed
from _embed_helpers import write_weights as _weights

from anatcl_sklearn.datasets import load_bids, write_synthetic_bids


def run(*argv):
    return run_embed(*argv, quiet=True)


@pytest.fixture
def study(tmp_path):
    return write_synthetic_bids(tmp_path / "study" / "derivatives" / "cat12", n_subjects=2,
                                shape=SHAPE)




@pytest.mark.usefixtures("narrow_resnet")
def test_update_over_an_empty_table_is_one_line(study, tmp_path, capsys):
    w = _weights(tmp_path / "w.pth", 0)
    out = tmp_path / "out"
    assert run("--bids", study.root, "--weights", w, "--output", out) == 0
    (out / "embeddings.tsv").write_text("")
    assert run("--bids", study.root, "--weights", w, "--output", out, "--update") == 2
    assert "is empty" in error_line(capsys)


@pytest.mark.usefixtures("narrow_resnet")
@pytest.mark.parametrize("kind", ["dangling", "fifo"])
def test_update_over_a_table_that_is_not_a_file_is_refused(study, tmp_path, capsys, kind):
    w = _weights(tmp_path / "w.pth", 0)
    out = tmp_path / "out"
    assert run("--bids", study.root, "--weights", w, "--output", out) == 0
    table = out / "embeddings.tsv"
    table.unlink()
    if kind == "dangling":
        table.symlink_to(tmp_path / "elsewhere.tsv")
    else:
        os.mkfifo(table)
    assert run("--bids", study.root, "--weights", w, "--output", out, "--update") == 2
    assert "not a regular file" in error_line(capsys)
    assert os.path.islink(table) if kind == "dangling" else not table.is_file()


@pytest.mark.usefixtures("narrow_resnet")
def test_force_whose_table_write_fails_leaves_no_description_over_the_old_table(
        study, tmp_path, capsys, monkeypatch):
    """--force with other weights, the table's write failing (a full disk): the folder must
    not describe the new weights over the old table, or --update trusts the mixture."""
    import anatcl_sklearn._atomic as atomic

    w0, w1 = _weights(tmp_path / "w0.pth", 0), _weights(tmp_path / "w1.pth", 1)
    out = tmp_path / "out"
    assert run("--bids", study.root, "--weights", w0, "--output", out) == 0
    old_table = (out / "embeddings.tsv").read_text()
    real = atomic.atomic_write_text

    def full_disk(target, text):
        if str(target).endswith("embeddings.tsv"):
            raise OSError(28, "No space left on device")
        return real(target, text)

    monkeypatch.setattr(atomic, "atomic_write_text", full_disk)
    assert run("--bids", study.root, "--weights", w1, "--output", out, "--force") == 2
    capsys.readouterr()
    monkeypatch.setattr(atomic, "atomic_write_text", real)
    assert (out / "embeddings.tsv").read_text() == old_table
    description = out / "dataset_description.json"
    if description.exists():  # then it must still be the old run's
        recorded = json.loads(description.read_text())["GeneratedBy"][0]["Weights"]["Given"]
        assert recorded == w0
    # --update with the new weights must not take the old table as theirs
    assert run("--bids", study.root, "--weights", w1, "--output", out, "--update") == 2
    capsys.readouterr()


# ------------------------------------------------------------------ load_bids
def _participants(study):
    return os.path.join(study.root, "participants.tsv")


def test_participants_cells_with_spaces_still_join(study):
    path = _participants(study)
    lines = open(path, encoding="utf-8").read().splitlines()
    spaced = [lines[0].replace("\t", " \t")] + [line.replace("\t", " \t") + " "
                                                for line in lines[1:]]
    open(path, "w", encoding="utf-8").write("\n".join(spaced) + "\n")
    with_spaces = load_bids(study.root, participants=True).frame
    open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    clean = load_bids(study.root, participants=True).frame
    for column in ("participant_id", "sex", "diagnosis", "age"):
        assert with_spaces[column].tolist() == clean[column].tolist(), column


def test_sessions_ids_with_spaces_keep_the_sessions_age(study):
    clean = load_bids(study.root, participants=True).frame["age"].tolist()
    sfile = os.path.join(study.root, "sub-0001", "sub-0001_sessions.tsv")
    text = open(sfile, encoding="utf-8").read()
    open(sfile, "w", encoding="utf-8").write(text.replace("ses-02", " ses-02 "))
    assert load_bids(study.root, participants=True).frame["age"].tolist() == clean


@pytest.mark.parametrize("content", [b"", b"participant_id\tage\nsub-0001\t\xe9\n"])
def test_unreadable_participants_table_is_a_valueerror_naming_it(study, content):
    open(_participants(study), "wb").write(content)
    with pytest.raises(ValueError, match="participants.tsv"):
        load_bids(study.root, participants=True)


def test_sessions_table_with_repeated_session_is_refused_by_name(study):
    sfile = os.path.join(study.root, "sub-0001", "sub-0001_sessions.tsv")
    text = open(sfile, encoding="utf-8").read()
    open(sfile, "w", encoding="utf-8").write(text + text.splitlines()[1] + "\n")
    with pytest.raises(ValueError, match="sub-0001_sessions.tsv repeats session_id"):
        load_bids(study.root, participants=True)


@pytest.mark.parametrize("kind", ["fifo", "no-session-column"])
def test_a_sessions_table_that_cannot_be_used_is_not_silently_skipped(study, kind):
    """Skipped, every session would get the participant's (baseline) age without a word."""
    sfile = os.path.join(study.root, "sub-0001", "sub-0001_sessions.tsv")
    os.unlink(sfile)
    if kind == "fifo":
        os.mkfifo(sfile)
    else:
        open(sfile, "w", encoding="utf-8").write("ses\tage\nses-01\t13\nses-02\t15\n")
    with pytest.raises(ValueError, match="sub-0001_sessions.tsv"):
        load_bids(study.root, participants=True)


def test_subject_folders_that_are_symlinks_are_found_and_loops_end(study, tmp_path):
    root = study.root
    moved = tmp_path / "elsewhere" / "sub-0002"
    moved.parent.mkdir()
    os.rename(os.path.join(root, "sub-0002"), moved)
    os.symlink(moved, os.path.join(root, "sub-0002"))
    os.symlink(root, os.path.join(root, "sub-0001", "loop"))
    frame = load_bids(root).frame
    assert frame["participant_id"].tolist() == ["sub-0001"] * 2 + ["sub-0002"] * 2


@pytest.mark.usefixtures("narrow_resnet")
@pytest.mark.parametrize("update", [False, True])
def test_a_folder_written_by_another_run_meanwhile_is_not_overwritten(
        study, tmp_path, capsys, monkeypatch, update):
    """Two ``embed --bids --output same`` at once: the one that ends second must not replace
    (or half-replace: its description over the other's table) what the first wrote."""
    from anatcl_sklearn import AnatCLEmbedder

    w = _weights(tmp_path / "w.pth", 0)
    out = tmp_path / "out"
    out.mkdir()
    other = "participant_id\timage\nsub-9\tx.nii\n"
    real = AnatCLEmbedder.transform

    def meanwhile(self, X):
        if not (out / "embeddings.tsv").exists():
            (out / "embeddings.tsv").write_text(other)
            (out / "dataset_description.json").write_text("{}")
        return real(self, X)

    monkeypatch.setattr(AnatCLEmbedder, "transform", meanwhile)
    flags = ["--update"] if update else []
    assert run("--bids", study.root, "--weights", w, "--output", out, *flags) == 2
    assert "appeared while embedding" in error_line(capsys)
    assert (out / "embeddings.tsv").read_text() == other
    assert (out / "dataset_description.json").read_text() == "{}"


_FULL_DISK_CHILD = """
import resource, sys
from anatcl_sklearn.models import _resnet3d
_resnet3d._STAGE_WIDTHS = (16, 32, 64, 128)
from anatcl_sklearn.__main__ import main
resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))
sys.exit(main(["embed", "-q", *sys.argv[1:]]))
"""


@pytest.mark.slow
@pytest.mark.usefixtures("narrow_resnet")
def test_a_full_disk_leaves_the_previous_derivative_and_no_temporary(study, tmp_path):
    """RLIMIT_FSIZE in a subprocess: --force over a folder fails in one line; the old table is
    intact, no description describes the failed run, no temporary file is left."""
    import subprocess
    import sys

    w0, w1 = _weights(tmp_path / "w0.pth", 0), _weights(tmp_path / "w1.pth", 1)
    out = tmp_path / "out"
    assert run("--bids", study.root, "--weights", w0, "--output", out) == 0
    before = (out / "embeddings.tsv").read_text()
    child = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, "--bids", study.root,
                            "--weights", w1, "--output", str(out), "--force"],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 2, child.stderr
    assert child.stderr.strip().startswith(PREFIX) and "File too large" in child.stderr
    assert (out / "embeddings.tsv").read_text() == before
    assert not any(n.startswith(".anatcl-tmp") for n in os.listdir(out))
    if (out / "dataset_description.json").exists():
        recorded = json.loads((out / "dataset_description.json").read_text())
        assert recorded["GeneratedBy"][0]["Weights"]["Given"] == w0


@pytest.mark.usefixtures("narrow_resnet")
def test_update_from_another_study_is_refused(tmp_path, capsys):
    """Study B's sub-0001 is not study A's: --update must not skip it as 'already there' nor
    append B's other subjects to A's derivative."""
    a = write_synthetic_bids(tmp_path / "A" / "cat12", n_subjects=1, shape=SHAPE)
    b = write_synthetic_bids(tmp_path / "B" / "cat12", n_subjects=2, shape=SHAPE,
                             random_state=1)
    w = _weights(tmp_path / "w.pth", 0)
    out = tmp_path / "A" / "anatcl"
    assert run("--bids", a.root, "--weights", w, "--output", out) == 0
    before = (out / "embeddings.tsv").read_text()
    assert run("--bids", b.root, "--weights", w, "--output", out, "--update") == 2
    assert "--bids" in error_line(capsys)
    assert (out / "embeddings.tsv").read_text() == before
    # the same study reached through a symbolic link is the same study
    (tmp_path / "link").symlink_to(tmp_path / "A")
    assert run("--bids", tmp_path / "link" / "cat12", "--weights", w, "--output", out,
               "--update") == 0


def test_a_session_missing_from_its_sessions_table_warns_that_it_takes_the_baseline_age(study):
    sfile = os.path.join(study.root, "sub-0001", "sub-0001_sessions.tsv")
    lines = open(sfile, encoding="utf-8").read().splitlines()
    open(sfile, "w", encoding="utf-8").write("\n".join(lines[:2]) + "\n")  # ses-02 dropped
    with pytest.warns(UserWarning, match=r"sessions.tsv does not list.*sub-0001 ses-02"):
        load_bids(study.root, participants=True)


def test_complete_sessions_tables_do_not_warn(study, recwarn):
    load_bids(study.root, participants=True)
    assert not [w for w in recwarn if "does not list" in str(w.message)]


@pytest.mark.usefixtures("narrow_resnet")
@pytest.mark.parametrize("flag", ["--force", "--update"])
def test_output_into_the_input_pipeline_folder_never_replaces_its_description(
        study, tmp_path, capsys, flag):
    """--output the CAT12 folder itself (or a study root) with --force replaced the
    pipeline's dataset_description.json, after which load_bids mislabels the maps."""
    w = _weights(tmp_path / "w.pth", 0)
    description = os.path.join(study.root, "dataset_description.json")
    before = open(description, encoding="utf-8").read()
    assert run("--bids", study.root, "--weights", w, "--output", study.root, flag) == 2
    assert "another dataset" in error_line(capsys)
    assert open(description, encoding="utf-8").read() == before
    assert not os.path.exists(os.path.join(study.root, "embeddings.tsv"))


@pytest.mark.usefixtures("narrow_resnet")
def test_update_over_a_cut_short_table_is_refused(study, tmp_path, capsys):
    w = _weights(tmp_path / "w.pth", 0)
    out = tmp_path / "out"
    assert run("--bids", study.root, "--weights", w, "--output", out) == 0
    table = out / "embeddings.tsv"
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:2] + [lines[2][: len(lines[2]) // 2]]) + "\n")
    before = table.read_text()
    assert run("--bids", study.root, "--weights", w, "--output", out, "--update") == 2
    assert "line 3" in error_line(capsys)
    assert table.read_text() == before
