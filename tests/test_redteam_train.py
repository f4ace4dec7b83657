"""Red-team pass over ``anatcl-sklearn train --images TABLE``: the table's age in its words."""

import pytest

from anatcl_sklearn.__main__ import main
from anatcl_sklearn.datasets import write_synthetic_bids

PREFIX = "anatcl-sklearn train: error: "


@pytest.fixture
def maps(tmp_path):
    return write_synthetic_bids(tmp_path / "cat12", n_subjects=3, shape=(24, 28, 24),
                                sessions=None)


def _train(tmp_path, table, capsys):
    try:
        rc = main(["train", "--images", str(table), "--output", str(tmp_path / "model"),
                   "--epochs", "1", "--batch-size", "2"])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(PREFIX), err
    return err[0]


def test_a_table_without_age_names_the_table_and_the_column(maps, tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("path\n" + "\n".join(maps.paths) + "\n")
    line = _train(tmp_path, table, capsys)
    assert "t.csv" in line and "'age' column" in line


def test_a_missing_age_names_the_table_and_the_image(maps, tmp_path, capsys):
    table = tmp_path / "t.csv"
    rows = [f"{p},{a}" for p, a in zip(maps.paths, maps.age)]
    rows[1] = f"{maps.paths[1]},n/a"
    table.write_text("path,age\n" + "\n".join(rows) + "\n")
    line = _train(tmp_path, table, capsys)
    assert "t.csv" in line and maps.paths[1] in line
