"""The README's main command, ``python -m anatcl_sklearn``, on a tiny synthetic run."""

import re
import subprocess
import sys

import pytest

from anatcl_sklearn.__main__ import main


def test_demo_pretrains_embeds_and_prints_both_probes(capsys):
    assert main(["--n-subjects", "20", "--shape", "16", "20", "16", "--epochs", "2",
                 "--batch-size", "10", "--verbose", "0"]) == 0
    out = capsys.readouterr().out
    assert "synthetic brains (20 subjects, grid (16, 20, 16); not real data)" in out
    assert re.search(r"Pretrained anatcl \(global\) for 2 epochs in [\d.]+ s; final train loss [\d.]+", out)
    rows = re.findall(r"^(untrained encoder|anatcl pretrained)\s+([\d.]+) ± ([\d.]+)\s+([\d.]+) ± ([\d.]+)$",
                      out, flags=re.M)
    assert [r[0] for r in rows] == ["untrained encoder", "anatcl pretrained"]
    for _, mae, _, bacc, _ in rows:
        assert 0 < float(mae) < 60 and 0 <= float(bacc) <= 1
    ratio = float(re.search(r"Age MAE ratio pretrained / untrained: ([\d.]+)", out).group(1))
    assert ratio == pytest.approx(float(rows[1][1]) / float(rows[0][1]), abs=0.02)


@pytest.mark.parametrize("args, message", [
    (["--descriptor", "regional"], "invalid choice: 'regional'"),
    (["--n-subjects", "6"], "--n-subjects must be at least 20"),
    (["--openbhb", "/nonexistent/openbhb"], "--openbhb /nonexistent/openbhb: no such folder"),
    (["--shape", "8", "8", "8"], "shape must have every dimension >= 16"),
    (["--batch-size", "1"], "argument --batch-size: must be >= 2; got 1"),
    (["--lr", "-1"], "argument --lr: must be > 0; got -1"),
    (["--verbose", "-1"], "argument --verbose: must be >= 0 and <= 2; got -1"),
    (["--epochs", "-2"], "argument --epochs: must be >= 0; got -2"),
])
def test_module_entry_point_reports_bad_options_without_a_traceback(args, message):
    out = subprocess.run([sys.executable, "-m", "anatcl_sklearn", *args],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and message in out.stderr
    assert "Traceback" not in out.stderr
