"""Red-team pass over the synthetic writers: a root that is a dangling or looping link."""

import os

import pytest

from anatcl_sklearn.datasets import write_synthetic_bids


@pytest.mark.parametrize("kind", ["dangling", "loop"])
def test_write_synthetic_bids_into_a_broken_link_is_a_valueerror_naming_it(tmp_path, kind):
    root = tmp_path / "study"
    root.symlink_to(tmp_path / "nowhere" if kind == "dangling" else root)
    with pytest.raises(ValueError, match="exists and is not a folder"):
        write_synthetic_bids(root, n_subjects=1, shape=(24, 28, 24))
    assert os.path.islink(root)
