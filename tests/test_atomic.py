"""anatcl_sklearn._atomic: atomic writes and the sweep of temporaries a killed writer left."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from anatcl_sklearn._atomic import (
    STALE_AFTER_S,
    STALE_FOREIGN_AFTER_S,
    TEMP_PREFIX,
    _host,
    atomic_folder,
    atomic_write,
    sweep_stale_temporaries,
    atomic_write_text,
)


def _dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _plant(folder, name, age_s, content=b"half a checkpoint"):
    path = folder / name
    path.write_bytes(content)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_a_write_sweeps_stale_temporaries_of_dead_writers_and_nothing_else(tmp_path):
    host, old = _host(), STALE_AFTER_S + 60
    dead = _plant(tmp_path, f"{TEMP_PREFIX}{_dead_pid()}.{host}.epoch_3.pt.k2j4h1.tmp", old)
    foreign_dead = _plant(tmp_path, f"{TEMP_PREFIX}77.other-node.e.pt.x.tmp",
                          STALE_FOREIGN_AFTER_S + 60)
    keep = [
        # this process is alive: an in-flight write, however old, is never touched
        _plant(tmp_path, f"{TEMP_PREFIX}{os.getpid()}.{host}.epoch_4.pt.a1b2c3.tmp", old),
        _plant(tmp_path, f"{TEMP_PREFIX}{os.getpid()}.{host}.epoch_5.pt.d4e5f6.tmp", 0),
        # a dead writer's file modified recently is left for now
        _plant(tmp_path, f"{TEMP_PREFIX}{_dead_pid()}.{host}.epoch_6.pt.g7h8i9.tmp", 60),
        # another host's process cannot be checked from here: only a day-old file goes
        _plant(tmp_path, f"{TEMP_PREFIX}77.other-node.e.pt.y.tmp", old),
        # the user's own files, however old, without our prefix
        _plant(tmp_path, "foo.tmp", 10 * STALE_FOREIGN_AFTER_S),
        _plant(tmp_path, ".embeddings.csv.abcd1234.tmp", 10 * STALE_FOREIGN_AFTER_S),
        _plant(tmp_path, f"{TEMP_PREFIX}notapid.{host}.x.tmp", 10 * STALE_FOREIGN_AFTER_S),
    ]
    atomic_write_text(tmp_path / "embeddings.csv", "a,b\n")
    assert not dead.exists() and not foreign_dead.exists()
    assert all(path.exists() for path in keep)
    assert (tmp_path / "embeddings.csv").read_text() == "a,b\n"
    assert sorted(tmp_path.iterdir()) == sorted([*keep, tmp_path / "embeddings.csv"])


def test_a_symlink_with_our_name_is_left_and_its_target_untouched(tmp_path):
    victim = _plant(tmp_path, "victim.bin", STALE_AFTER_S + 60, b"precious")
    link = tmp_path / f"{TEMP_PREFIX}{_dead_pid()}.{_host()}.x.tmp"
    link.symlink_to(victim)
    atomic_write_text(tmp_path / "out.txt", "x")
    assert link.is_symlink() and victim.read_bytes() == b"precious"


def test_the_temporary_file_carries_the_swept_name_and_is_removed_on_failure(tmp_path):
    seen = []

    def write(tmp):
        seen.append(Path(tmp))
        assert Path(tmp).parent == tmp_path
        raise RuntimeError("killed mid-write")

    try:
        atomic_write(tmp_path / ("n" * 250), write)
    except RuntimeError:
        pass
    name = seen[0].name
    assert name.startswith(f"{TEMP_PREFIX}{os.getpid()}.{_host()}.") and name.endswith(".tmp")
    assert len(name) <= 255
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- whole folders
def test_atomic_folder_appears_whole(tmp_path):
    seen = []

    def write(tmp):
        seen.append(os.listdir(tmp_path))
        (Path(tmp) / "a.bin").write_bytes(b"x" * 10)
        (Path(tmp) / "b.json").write_text("{}")

    target = atomic_folder(tmp_path / "entry", write)
    (names,) = seen  # while it was written, only the temporary folder was there
    assert len(names) == 1 and names[0].startswith(TEMP_PREFIX)
    assert sorted(os.listdir(target)) == ["a.bin", "b.json"]
    assert os.listdir(tmp_path) == ["entry"]


def test_atomic_folder_never_replaces_what_is_there(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("the user's")
    empty = tmp_path / "empty"
    empty.mkdir()  # os.rename would silently replace an empty folder
    link = tmp_path / "link"
    link.symlink_to(mine, target_is_directory=True)
    for target in (mine, empty, link, tmp_path / "dangling"):
        if target.name == "dangling":
            target.symlink_to(tmp_path / "nowhere")
        with pytest.raises(FileExistsError):
            atomic_folder(target, lambda tmp: (Path(tmp) / "new.txt").write_text("new"))
    assert os.listdir(mine) == ["keep.txt"] and os.listdir(empty) == []
    assert link.is_symlink() and not (tmp_path / "nowhere").exists()
    assert not [n for n in os.listdir(tmp_path) if n.startswith(TEMP_PREFIX)]


def test_atomic_folder_is_removed_on_failure(tmp_path):
    def write(tmp):
        (Path(tmp) / "half.bin").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_folder(tmp_path / "entry", write)
    assert os.listdir(tmp_path) == []


def test_stale_temporary_folders_are_swept_links_never(tmp_path):
    old = STALE_AFTER_S + 60
    dead = tmp_path / f"{TEMP_PREFIX}{_dead_pid()}.{_host()}.entry.abc.tmp"
    dead.mkdir()
    (dead / "model.bin").write_bytes(b"half a model")
    live = tmp_path / f"{TEMP_PREFIX}{os.getpid()}.{_host()}.entry.def.tmp"
    live.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    link = tmp_path / f"{TEMP_PREFIX}{_dead_pid()}.{_host()}.entry.ghi.tmp"
    link.symlink_to(outside, target_is_directory=True)
    then = time.time() - old
    for path in (dead, live):
        os.utime(path, (then, then))
    os.utime(link, (then, then), follow_symlinks=False)
    assert sweep_stale_temporaries(tmp_path) == [dead]
    assert live.is_dir() and link.is_symlink() and (outside / "precious").exists()
