"""One reader for tables of image paths (issue #18 item 3): ``embed`` list files, ``train
--images`` and ``load_cohort`` accept the same columns and say the same things."""

import os

import numpy as np
import pytest

from anatcl_sklearn.cli._embed import UserError, _read_list
from anatcl_sklearn.cli._train import build_parser, load_data
from anatcl_sklearn.evaluation import load_cohort
from anatcl_sklearn.images._tables import PATH_COLUMNS, read_image_table


@pytest.fixture
def folder(tmp_path):
    for i in range(3):
        np.save(tmp_path / f"s{i}.npy", np.zeros((4, 4, 4), np.float32))
    return tmp_path


def _three_readers(table):
    """The paths each consumer reads from ``table`` (a participants.tsv in its folder)."""
    embed = _read_list(str(table))
    train, _, _, _ = load_data(build_parser().parse_args(["--images", str(table)]))
    cohort = load_cohort(table.parent, table=table.name).images
    return embed, train, cohort


@pytest.mark.parametrize("column", [*PATH_COLUMNS, "Image", "PATH"])
def test_every_consumer_accepts_the_same_path_columns(folder, column):
    table = folder / "participants.tsv"
    table.write_text(f"participant_id\t{column}\tage\n"
                     + "".join(f"00{i}\ts{i}.npy\t{20 + i}\n" for i in range(3)))
    expected = [str(folder / f"s{i}.npy") for i in range(3)]
    embed, train, cohort = _three_readers(table)
    assert embed == train == cohort == expected


def test_path_is_preferred_to_image_and_filename_everywhere(folder):
    table = folder / "participants.csv"
    table.write_text("image,path,filename\nx.npy,s0.npy,y.npy\n")
    embed, train, cohort = _three_readers(table)
    assert embed == train == cohort == [str(folder / "s0.npy")]


def test_a_table_without_a_path_column_is_refused_in_the_same_words(folder):
    table = folder / "participants.csv"
    table.write_text("participant_id,file\ns0,s0.npy\n")
    words = "has no 'path' column (nor 'image' or 'filename'"
    with pytest.raises(UserError, match=r"list file .* has no 'path' column") as embed:
        _read_list(str(table))
    with pytest.raises(ValueError, match=r"--images table .* has no 'path' column") as train:
        load_data(build_parser().parse_args(["--images", str(table)]))
    with pytest.raises(ValueError, match=r"participants table .* pattern=") as cohort:
        load_cohort(folder, table=table.name)
    for exc in (embed, train, cohort):
        assert words in str(exc.value) and "['participant_id', 'file']" in str(exc.value)


def test_a_single_id_column_is_not_a_path_column(folder):
    (folder / "ids.csv").write_text("participant_id\n001\n")
    with pytest.raises(ValueError, match="no 'path' column"):
        read_image_table(folder / "ids.csv")
    (folder / "one.csv").write_text("scan\ns1.npy\n")  # any other single column holds paths
    assert read_image_table(folder / "one.csv").paths == [str(folder / "s1.npy")]


@pytest.mark.parametrize("ext, sep", [(".csv", ","), (".tsv", "\t"), (".tab", "\t")])
def test_a_header_less_one_column_table_keeps_its_first_path(folder, ext, sep):
    table = folder / f"bare{ext}"
    table.write_text("s0.npy\ns1.npy\n")
    read = read_image_table(table)
    assert read.paths == [str(folder / "s0.npy"), str(folder / "s1.npy")]
    assert read.lines == [1, 2] and read.path_column == "path"
    table.write_text(f"path\ns0.npy\n\n{sep.join(['', ''])}\ns1.npy\n")  # blank rows skipped
    assert read_image_table(table).lines == [2, 5]


def test_txt_lists_skip_comments_and_read_relative_to_their_folder(folder, monkeypatch):
    (folder / "sub").mkdir()
    (folder / "sub" / "list.txt").write_text("# subjects\n\n../s0.npy\n  ~/x.nii  \n")
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.chdir(folder.parent)
    read = read_image_table(folder / "sub" / "list.txt")
    assert read.paths == [str(folder / "s0.npy"), str(folder / "x.nii")]
    assert read.lines == [3, 4] and list(read.frame.columns) == ["path"]


def test_ids_stay_text_other_columns_are_typed_and_age_is_read(folder):
    table = folder / "t.tsv"
    table.write_text("participant_id\tsession_id\tpath\tage\tsex\n"
                     "001\t01\ts0.npy\t20.5\t1\n002\t02\ts1.npy\tNA\t0\n")
    read = read_image_table(table)
    assert read.frame["participant_id"].tolist() == ["001", "002"]
    assert read.frame["session_id"].tolist() == ["01", "02"]
    assert read.frame["sex"].dtype.kind == "i"
    age = read.age()
    assert age[0] == 20.5 and np.isnan(age[1])
    table.write_text("path\tage\ns0.npy\tyoung\n")
    with pytest.raises(ValueError, match="'age' column holds 'young', not a number"):
        read_image_table(table).age()


def test_empty_path_cells_are_refused_by_line_or_kept(folder):
    table = folder / "t.csv"
    table.write_text("participant_id,path\ns0,s0.npy\ns1,\n")
    with pytest.raises(ValueError, match=r"t\.csv', line 3: no path in column 'path'"):
        read_image_table(table)
    assert read_image_table(table, empty="keep").paths == [str(folder / "s0.npy"), None]


def test_a_named_column_a_pattern_and_a_base_folder(folder):
    (folder / "sub").mkdir()
    table = folder / "sub" / "t.csv"
    table.write_text("participant_id,scan\ns0,s0.npy\ns2,s2.npy\n")
    assert read_image_table(table, path_column="SCAN", base=folder).paths == [
        str(folder / "s0.npy"), str(folder / "s2.npy")]
    read = read_image_table(table, pattern="{participant_id}.npy", base=folder)
    assert read.paths == [str(folder / "s0.npy"), str(folder / "s2.npy")]
    assert read.path_column is None
    with pytest.raises(ValueError, match="has no column 'image'; its columns are"):
        read_image_table(table, path_column="image")
    with pytest.raises(ValueError, match=r"names column\(s\) \['subject'\]"):
        read_image_table(table, pattern="{subject}.npy")


def test_missing_empty_and_non_regular_tables(folder):
    with pytest.raises(FileNotFoundError, match="list file not found: .*absent.csv"):
        read_image_table(folder / "absent.csv")
    (folder / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match="names no images"):
        read_image_table(folder / "empty.csv")
    (folder / "header.csv").write_text("path,age\n")
    with pytest.raises(ValueError, match="names no images"):
        read_image_table(folder / "header.csv")
    (folder / "bad.csv").write_bytes(b"path\n\xff\xfe.npy\n")
    with pytest.raises(ValueError, match="cannot read list file"):
        read_image_table(folder / "bad.csv")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "pipe.csv")
        with pytest.raises(ValueError, match="pipe.csv' is not a regular file"):
            read_image_table(folder / "pipe.csv")
