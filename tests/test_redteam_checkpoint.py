"""Red-team pass: a plain pickle as --weights is one line, with no torch warning before it."""

import pickle

from anatcl_sklearn.__main__ import main


def test_plain_pickle_weights_is_one_line_without_torch_warning(tmp_path, capsys):
    weights = tmp_path / "w.pth"
    with open(weights, "wb") as fh:
        pickle.dump({"model": {"a": 1}}, fh, protocol=4)
    image = tmp_path / "a.npy"
    import numpy as np

    np.save(image, np.zeros((24, 28, 24), dtype=np.float32))
    try:
        rc = main(["embed", str(image), "-o", str(tmp_path / "o.csv"), "--weights", str(weights)])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and "plain Python pickle (protocol 4)" in err[0], err
