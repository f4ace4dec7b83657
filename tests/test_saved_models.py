"""Models in and out: the saved-model folder (safetensors + config.json + model card),
conversion of torch checkpoints, the official weights read from safetensors, the Hub."""

import argparse
import errno
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from anatcl_sklearn import AnatCLEmbedder, make_synthetic_brains
from anatcl_sklearn.cli import main as cli
from anatcl_sklearn.models import (
    AnatCLModel,
    _hub,
    _saved,
    convert_checkpoint,
    load_checkpoint,
    load_model_dir,
    resolve_pretrained,
    save_model_dir,
)
from anatcl_sklearn.models._digest import file_sha256, write_digest


@pytest.fixture(scope="module")
def brains():
    return make_synthetic_brains(12, shape=(24, 28, 24), random_state=0)


@pytest.fixture(scope="module")
def fitted(brains):
    return AnatCLEmbedder(max_epochs=2, batch_size=6, verbose=0, random_state=0,
                          descriptor="local").fit(brains.images, age=brains.age,
                                                  anatomy=brains.anatomy)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "my-model"
    fitted.save_pretrained(folder)
    return folder


def test_folder_holds_weights_config_and_card(saved, fitted):
    assert sorted(p.name for p in saved.iterdir()) == ["README.md", "config.json",
                                                       "model.safetensors"]
    config = json.loads((saved / "config.json").read_text())
    assert config["format"] == "anatcl-sklearn/saved-model" and config["format_version"] == 1
    assert config["model"] == dict(arch="resnet18", out_dim=128, normalize=True, n_features=512,
                                   n_parameters=config["model"]["n_parameters"])
    assert config["input"]["shape"] == [24, 28, 24]
    assert fitted.input_affine_ is None and config["input"]["affine"] is None  # arrays: none
    training = config["training"]
    assert training["method"] == "anatcl" and training["descriptor"] == "local"
    assert training["epochs_run"] == 2 and training["n_subjects"] == 12
    assert training["sigma"] == 2.0 and training["augment"] == "none"
    scaler = config["anatomy_scaler"]
    np.testing.assert_allclose(scaler["data_min"], fitted.anatomy_scaler_.data_min_)
    assert set(config["versions"]) == {"anatcl_sklearn", "torch", "python"}
    card = (saved / "README.md").read_text()
    for text in ("library_name: anatcl-sklearn", "AnatCL (age and anatomy", "local descriptor",
                 "Epochs run | 2", "Pattern Recognition Letters", "@article{barbano2026anatcl",
                 "Intended use and limits", "AnatCLEmbedder(pretrained=", config["weights_sha256"]):
        assert text in card, text
    # group-readable, like any new file (the test process's umask applies)
    mask = os.umask(0)
    os.umask(mask)
    assert (saved / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.slow
def test_round_trip_in_a_fresh_process_embeds_bit_for_bit(saved, fitted, brains, tmp_path):
    np.save(tmp_path / "X.npy", brains.images)
    script = textwrap.dedent(f"""
        import numpy as np
        from anatcl_sklearn import AnatCLEmbedder
        X = np.load({str(tmp_path / 'X.npy')!r})
        est = AnatCLEmbedder(pretrained={str(saved)!r}, verbose=0).fit(X)
        np.save({str(tmp_path / 'Z.npy')!r}, est.transform(X))
        print(est.input_shape_, est.anatomy_scaler_.data_min_.shape)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "(24, 28, 24) (68, 3)" in out.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "Z.npy"), fitted.transform(brains.images))


def test_loading_a_saved_model_never_unpickles(saved, brains, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a saved model must load without pickle or torch.load")

    for target in ("pickle.load", "pickle.loads", "pickle.Unpickler", "torch.load",
                   "torch.serialization.load"):
        monkeypatch.setattr(target, forbidden)
    est = AnatCLEmbedder(pretrained=str(saved), verbose=0).fit(brains.images[:1])
    assert est.transform(brains.images[:2]).shape == (2, 512)


def _tamper(saved, tmp_path, edit):
    folder = tmp_path / "tampered"
    folder.mkdir()
    # The edits touch config.json only: the 130 MB weights are linked, not copied (disk, time).
    os.link(saved / "model.safetensors", folder / "model.safetensors")
    (folder / "config.json").write_bytes((saved / "config.json").read_bytes())
    config = json.loads((folder / "config.json").read_text())
    edit(folder, config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("edit, match", [
    (lambda f, c: c["model"].update(arch="resnet99"), r"model\.arch is 'resnet99'; expected one of"),
    (lambda f, c: c["model"].update(out_dim=64), r"does not hold the weights its config describes"
                                                  r".*shapes differ: head\.2\.weight \(128, 512\) in the file vs \(64, 512\)"),
    (lambda f, c: c["model"].update(out_dim=0), r"model\.out_dim is 0; expected a positive"),
    (lambda f, c: c.update(format="pickle"), r"format is 'pickle'"),
    (lambda f, c: c.update(format_version=99), r"format_version is 99.*upgrade anatcl-sklearn"),
    (lambda f, c: c["input"].update(shape=[24, 28]), r"input\.shape is \[24, 28\]"),
    (lambda f, c: c["input"].update(affine=[[1, 0], [0, 1]]), r"input\.affine must have shape"),
    (lambda f, c: c.update(weights_sha256="0" * 64), r"does not match its config: SHA-256"),
    (lambda f, c: c.update(model="resnet18"), r"model is 'resnet18'; expected an object"),
])
def test_config_tampering_is_refused_with_a_named_error(saved, tmp_path, edit, match):
    folder = _tamper(saved, tmp_path, edit)
    with pytest.raises(ValueError, match=match):
        load_model_dir(folder)
    with pytest.raises(ValueError, match=match):
        AnatCLEmbedder(pretrained=str(folder), verbose=0).fit(np.zeros((1, 8, 8, 8)))


def test_damaged_weights_and_config_files_are_refused(saved, tmp_path):
    bad_json = _tamper(saved, tmp_path, lambda f, c: None)
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json' is not valid JSON"):
        load_model_dir(bad_json)
    from safetensors.torch import load_file, save_file

    nan = tmp_path / "nan"
    nan.mkdir()
    state = load_file(str(saved / "model.safetensors"))
    state["head.0.bias"][3] = float("nan")
    save_file(state, str(nan / "model.safetensors"))
    config = json.loads((saved / "config.json").read_text())
    config["weights_sha256"] = None  # an unverified folder still gets the NaN check
    (nan / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"NaN or inf values in 1 tensor\(s\): \['head\.0\.bias'\]"), \
            pytest.warns(UserWarning, match="not verified"):
        load_model_dir(nan)
    (nan / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json' not found"):
        load_model_dir(nan)
    with pytest.raises(FileNotFoundError, match="folder without a saved model"):
        resolve_pretrained(str(nan))


def test_save_pretrained_refusals_and_atomic_replacement(fitted, tmp_path):
    with pytest.raises(NotFittedError):
        AnatCLEmbedder().save_pretrained(tmp_path / "x")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        fitted.save_pretrained(afile)
    assert afile.read_text() == "mine"
    # a symlink planted at a file's path is replaced, its target untouched
    folder = tmp_path / "out"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (folder / "model.safetensors").symlink_to(victim)
    fitted.save_pretrained(folder)
    assert victim.read_text() == "precious"
    assert not (folder / "model.safetensors").is_symlink()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary left
    load_model_dir(folder)


def test_a_frozen_embedder_saves_the_weights_story_it_loaded(saved, brains, tmp_path):
    frozen = AnatCLEmbedder(pretrained=str(saved), verbose=0).fit(brains.images[:1])
    again = tmp_path / "again"
    frozen.save_pretrained(again)
    a = json.loads((saved / "config.json").read_text())
    b = json.loads((again / "config.json").read_text())
    assert b["weights_sha256"] == a["weights_sha256"]
    assert b["training"]["epochs_run"] == 2 and b["training"]["method"] == "anatcl"
    assert b["anatomy_scaler"] == a["anatomy_scaler"]


# -- conversion --------------------------------------------------------------------------


def _released_checkpoint(path, model):
    """The released AnatCL layout: opts Namespace, DataParallel 'module.' prefixes."""
    opts = argparse.Namespace(method="anatcl", descriptor="global", lr=1e-4, batch_size=32,
                              epochs=300, trial=0)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"opts": opts, "model": state, "optimizer": {}, "epoch": 300, "run_id": "x"}, path)
    return path


@pytest.mark.usefixtures("narrow_resnet")
def test_convert_a_released_format_checkpoint_gives_equal_outputs(tmp_path):
    torch.manual_seed(0)
    model = AnatCLModel().eval()
    ckpt = _released_checkpoint(tmp_path / "weights.pth", model)
    config = convert_checkpoint(ckpt, tmp_path / "converted")
    assert config["training"]["source_opts"]["lr"] == 1e-4
    assert config["training"]["converted_from"] == "weights.pth"
    loaded, _ = load_model_dir(tmp_path / "converted")
    x = torch.randn(2, 1, 24, 28, 24)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(loaded.encode(x), model.encode(x), rtol=0, atol=0)


@pytest.mark.usefixtures("narrow_resnet")
def test_convert_command_line(tmp_path, capsys):
    torch.manual_seed(1)
    ckpt = _released_checkpoint(tmp_path / "weights.pth", AnatCLModel())
    out = tmp_path / "anatcl-converted"
    assert cli(["convert", str(ckpt), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    load_model_dir(out)
    assert cli(["convert", str(ckpt), str(out)]) == 2  # exists: --force needed
    assert "already holds a saved model" in capsys.readouterr().err
    assert cli(["convert", str(ckpt), str(out), "--force"]) == 0
    html = tmp_path / "page.pth"
    html.write_text("<!DOCTYPE html><html><body>Sign in</body></html>")
    assert cli(["convert", str(html), str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "page.pth" in err
    with pytest.raises(SystemExit) as exit_info:
        cli(["convert", str(ckpt), str(out), "--out-dim", "0"])
    assert exit_info.value.code == 2


def test_official_weights_are_converted_once_then_read_from_safetensors(tmp_path, monkeypatch):
    torch.manual_seed(2)
    model = AnatCLModel().eval()
    source = _released_checkpoint(tmp_path / "release.pth", model)
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ANATCL_SKLEARN_WEIGHTS_URL", source.as_uri())
    first = resolve_pretrained("anatcl-global", fold=1)
    folder = tmp_path / "cache" / "anatcl-global_fold1"
    assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["training"]["official_name"] == "anatcl-global"
    assert config["training"]["fold"] == 1
    # afterwards: no torch.load, no pickle
    monkeypatch.setattr("torch.load", lambda *a, **k: pytest.fail("torch.load called"))
    second = resolve_pretrained("anatcl-global", fold=1)
    x = torch.randn(1, 1, 16, 20, 16)
    with torch.no_grad():
        torch.testing.assert_close(second.encode(x), model.encode(x), rtol=0, atol=0)
        torch.testing.assert_close(first.encode(x), model.encode(x), rtol=0, atol=0)
    # a damaged converted folder is converted again from the checked download
    monkeypatch.undo()
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ANATCL_SKLEARN_WEIGHTS_URL", source.as_uri())
    raw = bytearray((folder / "model.safetensors").read_bytes())
    raw[-10] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(raw))
    third = resolve_pretrained("anatcl-global", fold=1)
    with torch.no_grad():
        torch.testing.assert_close(third.encode(x), model.encode(x), rtol=0, atol=0)


def test_a_read_only_cache_without_the_conversion_gives_the_read_only_advice(
    tmp_path, monkeypatch
):
    import shutil

    from anatcl_sklearn.models import _saved

    source = _released_checkpoint(tmp_path / "release.pth", AnatCLModel())
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(cache))
    monkeypatch.setenv("ANATCL_SKLEARN_WEIGHTS_URL", source.as_uri())
    resolve_pretrained("anatcl-global", fold=0)
    shutil.rmtree(cache / "anatcl-global_fold0")  # the verified .pth stays, not its conversion
    if os.geteuid() == 0:
        # Permissions do not bind root: what mkdir would raise for a user.
        def refuse(directory, *args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(directory))

        monkeypatch.setattr(_saved, "_prepare_dir", refuse)
    os.chmod(cache, 0o500)
    try:
        with pytest.raises(OSError) as info:
            resolve_pretrained("anatcl-global", fold=0)
    finally:
        os.chmod(cache, 0o700)
    assert str(info.value).startswith(
        f"The weights cache directory '{cache}' is not writable or cannot be created "
        "(Permission denied). Choose another one with cache_dir= or the ANATCL_SKLEARN_CACHE "
        "environment variable."
    )
    assert f"its conversion '{cache / 'anatcl-global_fold0'}' cannot be written" in str(info.value)
    assert sorted(p.name for p in cache.iterdir()) == [
        "anatcl-global_fold0.pth", "anatcl-global_fold0.pth.sha256"]


@pytest.mark.usefixtures("narrow_resnet")
def test_official_conversion_is_tied_to_the_verified_download(tmp_path, monkeypatch):
    torch.manual_seed(3)
    first_model, second_model = AnatCLModel().eval(), AnatCLModel().eval()
    first = _released_checkpoint(tmp_path / "first.pth", first_model)
    second = _released_checkpoint(tmp_path / "second.pth", second_model)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(cache))
    monkeypatch.setenv("ANATCL_SKLEARN_WEIGHTS_URL", first.as_uri())
    x = torch.randn(1, 1, 16, 20, 16)
    resolve_pretrained("anatcl-global", fold=0)
    folder = cache / "anatcl-global_fold0"
    recorded = json.loads((folder / "config.json").read_text())["training"]["source_sha256"]
    assert recorded == file_sha256(cache / "anatcl-global_fold0.pth")
    # the cached .pth replaced by another verified file: converted again from it
    (cache / "anatcl-global_fold0.pth").write_bytes(second.read_bytes())
    write_digest(cache / "anatcl-global_fold0.pth")
    loaded = resolve_pretrained("anatcl-global", fold=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), second_model.encode(x), rtol=0, atol=0)
    # a saved model planted in the folder is not used
    save_model_dir(folder, first_model, {"training": {}}, "planted")
    loaded = resolve_pretrained("anatcl-global", fold=0)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), second_model.encode(x), rtol=0, atol=0)
    assert (folder / "README.md").read_text() != "planted"


@pytest.mark.usefixtures("narrow_resnet")
@pytest.mark.parametrize("bad", [float("nan"), 0.0])
def test_a_checkpoint_with_a_broken_recorded_affine_is_refused_by_convert(tmp_path, capsys, bad):
    affine = np.eye(4).tolist()
    affine[0][0] = bad
    opts = argparse.Namespace(method="anatcl", input_shape=[24, 28, 24], input_affine=affine)
    ckpt = tmp_path / "grid.pth"
    torch.save({"opts": opts, "model": AnatCLModel().state_dict()}, ckpt)
    with pytest.raises(ValueError, match=r"input_affine recorded in checkpoint file '.*grid\.pth'"):
        load_checkpoint(ckpt)
    out = tmp_path / "converted"
    assert cli(["convert", str(ckpt), str(out)]) == 2
    assert "grid.pth" in capsys.readouterr().err
    assert not out.exists()  # refused before anything is written


@pytest.mark.usefixtures("narrow_resnet")
@pytest.mark.parametrize("present", ["README.md", "config.json", "model.safetensors"])
def test_convert_needs_force_for_any_of_the_three_files(tmp_path, capsys, present):
    ckpt = _released_checkpoint(tmp_path / "weights.pth", AnatCLModel())
    out = tmp_path / "mine"
    out.mkdir()
    (out / present).write_text("the user's own file\n")
    assert cli(["convert", str(ckpt), str(out)]) == 2
    err = capsys.readouterr().err
    assert present in err and "--force" in err
    assert (out / present).read_text() == "the user's own file\n"
    assert sorted(p.name for p in out.iterdir()) == [present]  # nothing else written
    assert cli(["convert", str(ckpt), str(out), "--force"]) == 0
    load_model_dir(out)


# -- the Hub ---------------------------------------------------------------------------------


def test_hub_without_the_extra_says_how_to_install_it(saved, fitted, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    hint = r'pip install "anatcl-sklearn\[hub\]"'
    with pytest.raises(ImportError, match=hint):
        resolve_pretrained("hf://someone/anatcl-model")
    with pytest.raises(ImportError, match=hint):
        fitted.push_to_hub("someone/anatcl-model")
    with pytest.raises(ImportError, match=hint):
        fitted.save_pretrained(saved.parent / "never", push_to_hub="someone/anatcl-model")
    assert not (saved.parent / "never").exists()  # refused before writing anything


@pytest.mark.parametrize("spec", ["hf://", "hf://noslash", "hf://a/b@", "hf://a/b/c"])
def test_malformed_hub_references_are_refused(spec):
    with pytest.raises(ValueError, match="is not a Hub reference"):
        resolve_pretrained(spec)


def _hub_cache(cache, repo, saved, commit):
    """A Hugging Face Hub cache holding ``repo`` at ``commit`` (refs/main points to it)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for name in ("model.safetensors", "config.json", "README.md"):
        (snap / name).write_bytes((saved / name).read_bytes())
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snap


def test_hub_reference_loads_offline_from_a_prepared_cache(saved, fitted, brains, tmp_path,
                                                         monkeypatch):
    pytest.importorskip("huggingface_hub")
    cache = tmp_path / "hf"
    commit = "a" * 40
    _hub_cache(cache, "lab/anatcl-test", saved, commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing may leave this machine
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    real = _hub.download_from_hub
    monkeypatch.setattr(_hub, "download_from_hub",
                        lambda spec, cache_dir=None: real(spec, cache_dir=str(cache)))
    for spec in ("hf://lab/anatcl-test", f"hf://lab/anatcl-test@{commit}"):
        est = AnatCLEmbedder(pretrained=spec, verbose=0).fit(brains.images[:1])
        np.testing.assert_array_equal(est.transform(brains.images),
                                      fitted.transform(brains.images))
    with pytest.raises(OSError, match="Could not get hf://lab/other from the Hugging Face Hub"):
        resolve_pretrained("hf://lab/other")


def test_push_to_hub_uploads_the_saved_folder(fitted, tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))

        def upload_folder(self, repo_id, folder_path, allow_patterns, revision, commit_message):
            names = sorted(os.listdir(folder_path))
            calls.append(("upload", repo_id, names, sorted(allow_patterns)))
            return type("Info", (), {"commit_url": f"https://hub.example/{repo_id}/commit/1"})()

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    url = fitted.push_to_hub("lab/anatcl-test", private=True, token="t0k")
    assert url == "https://hub.example/lab/anatcl-test/commit/1"
    assert ("create", "lab/anatcl-test", True, True) in calls
    upload = [c for c in calls if c[0] == "upload"][0]
    assert upload[2] == ["README.md", "config.json", "model.safetensors"]
    calls.clear()
    fitted.save_pretrained(tmp_path / "local", push_to_hub="lab/anatcl-test")
    assert (tmp_path / "local" / "config.json").is_file()
    assert [c[0] for c in calls] == ["token", "create", "upload"]
    with pytest.raises(ValueError, match="is not a Hub repository id"):
        fitted.push_to_hub("not a repo")


def test_saved_module_file_is_not_a_pickle(saved):
    head = (saved / "model.safetensors").read_bytes()[:16]
    assert not head.startswith((b"PK", b"\x80"))
    with pytest.raises(Exception):
        pickle.loads((saved / "model.safetensors").read_bytes())
    assert _saved.is_model_dir(saved) and not _saved.is_model_dir(saved / "config.json")
    assert Path(saved / "config.json").read_text().endswith("\n")
