"""The weights cache refuses, by name and before any download, a layout it cannot use (issue #19
item 11): a folder where the cached file or its SHA-256 record belongs, a cache that is a file
or lies under one. Each used to end in a raw IsADirectoryError / NotADirectoryError (or an
OSError saying only "File exists") after the download."""

import pytest
import torch

from anatcl_sklearn.models import AnatCLModel, fetch_official_weights


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "release.pth"
    torch.save({"model": AnatCLModel().state_dict()}, path)
    return path


def _fetch(cache, source):
    return fetch_official_weights("anatcl-global", 0, cache_dir=cache, url=str(source),
                                  progress=False)


@pytest.mark.parametrize("name, what", [
    ("anatcl-global_fold0.pth", "where the weights file belongs"),
    ("anatcl-global_fold0.pth.sha256", "where the weights' SHA-256 record belongs"),
])
def test_a_folder_where_a_cache_file_belongs_is_named(tmp_path, source, name, what):
    cache = tmp_path / "cache"
    (cache / name).mkdir(parents=True)
    with pytest.raises(ValueError, match=rf"has a folder at '.*{name}', {what}.*Remove or "
                                         r"rename it, or choose another cache with cache_dir="):
        _fetch(cache, source)
    assert not list(cache.glob(".*.part"))  # refused before the download


@pytest.mark.parametrize("under", ["", "sub/deeper"])
def test_a_cache_that_is_a_file_or_under_one_is_named(tmp_path, source, under):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    cache = blocker / under if under else blocker
    with pytest.raises(ValueError, match=rf"cannot be a folder: '{blocker}' is a file. Move that "
                                         r"file away, or choose another cache"):
        _fetch(cache, source)
    assert blocker.read_text() == "mine"


def test_the_same_cache_laid_out_well_still_downloads(tmp_path, source):
    path = _fetch(tmp_path / "cache", source)
    assert path.is_file() and path.with_name(path.name + ".sha256").is_file()
