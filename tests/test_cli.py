"""The command line's top level and the demo, ``python -m anatcl_sklearn`` (README's main command)."""

import argparse
import re
import subprocess
import sys

import pytest

import anatcl_sklearn
from anatcl_sklearn.__main__ import main
from anatcl_sklearn.cli import COMMANDS, command_parser
from anatcl_sklearn.cli._errors import flag_words


def _status(argv):
    """main() in-process; argparse's SystemExit becomes its status."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def test_demo_pretrains_embeds_and_prints_both_probes(capsys):
    # options with no command run the demo (backwards compatible)
    assert main(["--n-subjects", "20", "--shape", "16", "20", "16", "--epochs", "2",
                 "--batch-size", "10", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "synthetic brains (20 subjects, grid (16, 20, 16); not real data)" in out
    assert re.search(r"Pretrained anatcl \(global\) for 2 epochs in [\d.]+ s; final train loss [\d.]+", out)
    rows = re.findall(r"^(untrained encoder|anatcl pretrained)\s+([\d.]+) ± ([\d.]+)\s+([\d.]+) ± ([\d.]+)$",
                      out, flags=re.MULTILINE)
    assert [r[0] for r in rows] == ["untrained encoder", "anatcl pretrained"]
    for _, mae, _, bacc, _ in rows:
        assert 0 < float(mae) < 60 and 0 <= float(bacc) <= 1
    ratio = float(re.search(r"Age MAE ratio pretrained / untrained: ([\d.]+)", out).group(1))
    assert ratio == pytest.approx(float(rows[1][1]) / float(rows[0][1]), abs=0.02)


def test_demo_prints_plain_epoch_lines_when_not_on_a_terminal(capsys):
    # capsys' stdout is no terminal: skorch's table must come without ANSI colour codes
    assert main(["demo", "--n-subjects", "20", "--shape", "16", "20", "16", "--epochs", "2",
                 "--batch-size", "10"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+1\s+0\.0010\s+[\d.]+\s+[\d.]+$", out, flags=re.MULTILINE), out
    assert re.search(r"^\s+2\s+0\.0010\s+[\d.]+\s+[\d.]+$", out, flags=re.MULTILINE), out
    assert "\x1b[" not in out


def test_the_embedder_colours_its_table_only_on_a_terminal(capsys, monkeypatch):
    from anatcl_sklearn import AnatCLEmbedder
    from anatcl_sklearn.datasets import make_synthetic_brains

    data = make_synthetic_brains(8, shape=(16, 20, 16), random_state=0)
    for tty in (False, True):
        monkeypatch.setattr(sys.stdout, "isatty", lambda tty=tty: tty, raising=False)
        AnatCLEmbedder(max_epochs=2, batch_size=4, verbose=1, random_state=0).fit(
            data.images, age=data.age, anatomy=data.anatomy)
        out = capsys.readouterr().out
        assert "train_loss" in out and ("\x1b[" in out) is tty, out
    monkeypatch.setenv("NO_COLOR", "1")  # https://no-color.org: plain even on a terminal
    AnatCLEmbedder(max_epochs=1, batch_size=4, verbose=1).fit(
        data.images, age=data.age, anatomy=data.anatomy)
    assert "\x1b[" not in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--descriptor", "regional"], "invalid choice: 'regional'"),
    (["--n-subjects", "6"], "--n-subjects must be at least 20"),
    (["--openbhb", "/nonexistent/openbhb"], "--openbhb /nonexistent/openbhb: no such folder"),
    (["--shape", "8", "8", "8"], "shape must have every dimension >= 16"),
    (["--batch-size", "1"], "argument --batch-size: must be >= 2; got 1"),
    (["--lr", "-1"], "argument --lr: must be > 0; got -1"),
    (["--verbose", "-1"], "argument --verbose: must be >= 0 and <= 2; got -1"),
    (["--epochs", "-2"], "argument --epochs: must be >= 0; got -2"),
    (["--epochs", "0"], "--epochs must be at least 1: the demo compares the pretrained encoder"),
])
@pytest.mark.parametrize("command", [[], ["demo"]])
def test_demo_reports_bad_options_as_usage_errors(command, args, message, capsys):
    assert _status([*command, *args]) == 2
    err = capsys.readouterr().err
    # option checks print the usage line; the library's refusals (the grid) one line
    assert err.startswith(("usage: anatcl-sklearn demo", "anatcl-sklearn demo: error: "))
    assert message in err and "Traceback" not in err, err


def test_help_names_the_commands_in_its_usage_line(capsys):
    assert _status(["--help"]) == 0
    out = capsys.readouterr().out
    usage = " ".join(out.split())  # argparse wraps a long usage line
    assert usage.startswith("usage: anatcl-sklearn [-h] [--version] {" + ",".join(COMMANDS) + "} ...")
    for name in ("demo", "embed", "convert", "synthetic"):
        assert re.search(rf"^\s+{name}\s+\w", out, flags=re.MULTILINE), name
    assert _status(["demo", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: anatcl-sklearn demo [-h]")
    assert _status(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"anatcl-sklearn {anatcl_sklearn.__version__}"


def test_an_unknown_command_is_a_usage_error_naming_the_commands(capsys):
    assert _status(["embedd", "x.nii"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'embedd'" in err and "'synthetic'" in err


def _distributed_parser():
    from anatcl_sklearn.distributed._cli import build_parser

    return build_parser()


@pytest.mark.parametrize("name", [*COMMANDS, "distributed"])
def test_every_option_of_every_command_has_help_text(name):
    parser = _distributed_parser() if name == "distributed" else command_parser(name)
    missing = [a.option_strings or a.dest for a in parser._actions
               if a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert missing == []
    assert parser.description


def test_flag_words_turn_parameters_into_flags():
    assert flag_words("Pass conform=True to AnatCLEmbedder (or use anatcl_sklearn.conform_image) "
                      "to resample them") == "Pass --conform to resample them"
    assert flag_words("no grid; set conform=False and pass images") == \
        "no grid; leave out --conform and pass images"
    assert flag_words("Download the file by hand and pass its path as url= (or in the "
                      "ANATCL_WEIGHTS_URL environment variable): it is then") == (
        "Download the file by hand and pass its path in the ANATCL_WEIGHTS_URL environment "
        "variable (or as --weights): it is then")
    assert flag_words("pretrained='/x' is a folder\nwithout a saved model") == \
        "--weights '/x' is a folder without a saved model"
    assert flag_words("non-finite voxels, or pass check_finite=False to skip this check.") == \
        "non-finite voxels."
    assert flag_words("'a.nii' exists; pass overwrite=True to replace it") == \
        "'a.nii' exists; pass --force to replace it"
    assert all(flag_words(p) != p for p in ("conform=True", "url=", "pretrained='w'", "fold=3"))


@pytest.mark.slow
def test_module_entry_point_help_and_errors_without_a_traceback():
    out = subprocess.run([sys.executable, "-m", "anatcl_sklearn", "--help"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0 and "{" + ",".join(COMMANDS) + "}" in out.stdout
    out = subprocess.run([sys.executable, "-m", "anatcl_sklearn", "--epochs", "0"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2 and "--epochs must be at least 1" in out.stderr
    assert "Traceback" not in out.stderr
