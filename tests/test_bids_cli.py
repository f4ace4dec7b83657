"""``anatcl-sklearn embed --bids``: BIDS maps in, a BIDS derivative out (issue #20 items 3-4).

main() runs in-process on 24x28x24 maps with quarter-width ResNets (conftest.narrow_resnet):
the subject is the plumbing, not the network.
"""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _embed_helpers import SHAPE, error_line
from _embed_helpers import run_embed as run
from _embed_helpers import write_weights as _weights

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.datasets import write_synthetic_bids

pytestmark = pytest.mark.usefixtures("narrow_resnet")


@pytest.fixture
def weights(tmp_path):
    return _weights(tmp_path / "anatcl.pth", 0)


@pytest.fixture
def study(tmp_path):
    """Two sessions, .nii and .nii.gz mixed, CAT12 names, in study/derivatives/cat12."""
    root = tmp_path / "study" / "derivatives" / "cat12"
    return write_synthetic_bids(root, n_subjects=3, shape=SHAPE, compress="mixed")




def test_embed_bids_writes_one_row_per_map_and_a_valid_derivative(study, weights, tmp_path,
                                                                    capsys):
    out = tmp_path / "study" / "derivatives" / "anatcl"
    assert run("--bids", study.root, "--weights", weights, "--output", out) == 0
    assert "wrote 6 embeddings of 128 features" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["dataset_description.json", "embeddings.json",
                                       "embeddings.tsv"]
    table = pd.read_csv(out / "embeddings.tsv", sep="\t")
    assert list(table.columns[:3]) == ["participant_id", "session_id", "image"]
    assert table.shape == (6, 3 + 128)  # quarter-width ResNet-18: 128 features
    assert table["participant_id"].tolist() == ["sub-0001", "sub-0001", "sub-0002",
                                                "sub-0002", "sub-0003", "sub-0003"]
    assert table["session_id"].tolist() == ["ses-01", "ses-02"] * 3
    assert [os.path.join(study.root, p) for p in table["image"]] == study.paths
    assert {p[-3:] for p in table["image"]} == {"nii", ".gz"}
    expected = AnatCLEmbedder(pretrained=weights, verbose=0).fit(study.paths[:1]).transform(
        study.paths)
    np.testing.assert_allclose(table.iloc[:, 3:].to_numpy(), expected, rtol=1e-5, atol=1e-7)

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"]
    generated = description["GeneratedBy"][0]
    assert generated["Name"] == "anatcl-sklearn" and generated["Version"]
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    assert generated["Weights"]["SHA256"] == digest
    assert generated["Weights"]["Identity"] == f"file:{digest}"
    assert generated["Settings"] == {"Output": "encoder", "Conform": False,
                                     "Precision": "fp32", "Pipeline": "cat12", "Space": None}
    assert description["SourceDatasets"] == [{"URL": "../cat12"}]
    sidecar = json.loads((out / "embeddings.json").read_text())
    assert list(sidecar) == list(table.columns)
    assert all(entry["Description"] for entry in sidecar.values())


def test_runs_and_a_table_output_carry_the_entities(tmp_path, weights):
    data = write_synthetic_bids(tmp_path / "bids", n_subjects=1, sessions=None,
                                runs=("1", "2"), shape=SHAPE)
    out = tmp_path / "emb.csv"
    assert run("--bids", data.root, "--weights", weights, "--output", out, "--quiet") == 0
    table = pd.read_csv(out)
    assert list(table.columns[:3]) == ["participant_id", "run", "image"]
    assert table["run"].tolist() == [1, 2] and table["image"].tolist() == data.paths


def test_update_adds_only_the_new_maps_and_leaves_the_rows_it_has(tmp_path, weights, capsys):
    root = tmp_path / "cat12"
    write_synthetic_bids(root, n_subjects=2, sessions=("01",), shape=SHAPE)
    out = tmp_path / "anatcl"
    # --update on a folder that does not exist yet writes it (a scheduled job's first run).
    assert run("--bids", root, "--weights", weights, "--output", out, "--update", "-q") == 0
    before = (out / "embeddings.tsv").read_bytes()
    # The study grows: a second session for everyone (the first session's maps unchanged).
    grown = write_synthetic_bids(root, n_subjects=2, sessions=("01", "02"), shape=SHAPE,
                                 overwrite=True)
    assert run("--bids", root, "--weights", weights, "--output", out, "--update") == 0
    assert "wrote 2 embeddings" in capsys.readouterr().err
    after = (out / "embeddings.tsv").read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 5
    table = pd.read_csv(out / "embeddings.tsv", sep="\t")
    assert table["session_id"].tolist() == ["ses-01", "ses-01", "ses-02", "ses-02"]
    new = [p for p in grown.paths if "ses-02" in p]
    expected = AnatCLEmbedder(pretrained=weights, verbose=0).fit(new[:1]).transform(new)
    np.testing.assert_allclose(table.iloc[2:, 3:].to_numpy(), expected, rtol=1e-5, atol=1e-7)
    # Nothing new: nothing written.
    assert run("--bids", root, "--weights", weights, "--output", out, "--update") == 0
    assert "nothing new" in capsys.readouterr().err
    assert (out / "embeddings.tsv").read_bytes() == after


def test_update_refuses_other_weights_or_settings_naming_them(tmp_path, weights, capsys):
    root = tmp_path / "cat12"
    write_synthetic_bids(root, n_subjects=1, sessions=("01",), shape=SHAPE)
    out = tmp_path / "anatcl"
    assert run("--bids", root, "--weights", weights, "--output", out, "-q") == 0
    kept = (out / "embeddings.tsv").read_bytes()
    write_synthetic_bids(root, n_subjects=1, sessions=("01", "02"), shape=SHAPE,
                         overwrite=True)
    assert run("--bids", root, "--weights", weights, "--output", out, "--update",
               "--output-kind", "projection") == 2
    assert "--output-kind: 'encoder' recorded, 'projection' now" in error_line(capsys)
    other = _weights(tmp_path / "other.pth", 1)
    assert run("--bids", root, "--weights", other, "--output", out, "--update") == 2
    line = error_line(capsys)
    assert "other weights or settings" in line and "--weights (SHA-256)" in line
    # The same file under another name is the same weights.
    shutil.copy(weights, tmp_path / "renamed.pth")
    assert run("--bids", root, "--weights", tmp_path / "renamed.pth", "--output", out,
               "--update", "-q") == 0
    assert (out / "embeddings.tsv").read_bytes().startswith(kept)


def test_an_existing_derivative_needs_update_or_force(study, weights, tmp_path, capsys):
    out = tmp_path / "anatcl"
    assert run("--bids", study.root, "--weights", weights, "--output", out, "-q") == 0
    assert run("--bids", study.root, "--weights", weights, "--output", out) == 2
    assert "already holds embeddings.tsv; pass --update" in error_line(capsys)
    (out / "embeddings.tsv").write_text("mine\n")
    assert run("--bids", study.root, "--weights", weights, "--output", out, "--force",
               "-q") == 0
    assert len(pd.read_csv(out / "embeddings.tsv", sep="\t")) == 6
    assert not [n for n in os.listdir(out) if n.startswith(".anatcl-tmp")]


@pytest.mark.parametrize("extra, message", [
    (["--update", "--force"], "--update adds to an output folder, --force replaces it"),
    (["--update", "--output", "OUT.csv"], "--update adds to a BIDS derivative folder"),
    (["INPUT"], "give INPUT or --bids, not both"),
])
def test_flag_combinations_are_refused_in_one_line(study, weights, tmp_path, capsys, extra,
                                                   message):
    extra = [str(tmp_path / "e.csv") if e == "OUT.csv" else study.paths[0] if e == "INPUT"
             else e for e in extra]
    args = ["--bids", study.root, "--weights", weights, *extra]
    if "--output" not in extra:
        args += ["--output", tmp_path / "anatcl"]
    assert run(*args) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "anatcl").exists()


def test_bids_flags_need_bids_and_inputs_are_needed(weights, tmp_path, capsys):
    assert run("--pipeline", "cat12", "x.nii", "--weights", weights, "--output",
               tmp_path / "e.csv") == 2
    assert "--pipeline goes with --bids" in error_line(capsys)
    assert run("--weights", weights, "--output", tmp_path / "e.csv") == 2
    assert "give INPUT (images, glob patterns or list files) or --bids DIR" in \
        error_line(capsys)
    afile = tmp_path / "afile"
    afile.write_text("")
    assert run("--bids", tmp_path, "--weights", weights, "--output", afile) == 2
    assert "exists and is not a folder" in error_line(capsys)


def test_a_folder_without_maps_or_with_two_pipelines_is_one_line(tmp_path, weights, capsys):
    (tmp_path / "empty").mkdir()
    assert run("--bids", tmp_path / "empty", "--weights", weights, "--output",
               tmp_path / "out") == 2
    assert "--bids: no grey-matter maps found" in error_line(capsys)
    write_synthetic_bids(tmp_path / "d" / "cat12", n_subjects=1, shape=SHAPE)
    write_synthetic_bids(tmp_path / "d" / "fmriprep", n_subjects=1, shape=SHAPE,
                         pipeline="fmriprep")
    assert run("--bids", tmp_path / "d", "--weights", weights, "--output",
               tmp_path / "out") == 2
    line = error_line(capsys)
    assert "mixes the grey-matter maps of 2 pipelines" in line and "--pipeline cat12" in line
    assert not (tmp_path / "out").exists()
    assert run("--bids", tmp_path / "d", "--pipeline", "cat12", "--weights", weights,
               "--output", tmp_path / "out", "-q") == 0
    assert len(pd.read_csv(tmp_path / "out" / "embeddings.tsv", sep="\t")) == 2


def test_smoothed_maps_warn_once_on_stderr(tmp_path, weights, capsys):
    data = write_synthetic_bids(tmp_path / "s", n_subjects=2, sessions=None, shape=SHAPE,
                                smoothing_fwhm=6)
    assert run("--bids", data.root, "--weights", weights, "--output", tmp_path / "e.csv") == 0
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "saw unsmoothed CAT12 mwp1 maps" in err
