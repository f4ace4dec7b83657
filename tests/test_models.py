"""Tests for anatcl_sklearn.models: encoders, AnatCL model, checkpoints, weights."""

import argparse
import math
import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anatcl_sklearn.models import (
    ARCHITECTURES,
    OFFICIAL_WEIGHTS,
    AnatCLModel,
    ResNet3D,
    build_encoder,
    fetch_official_weights,
    load_checkpoint,
    resolve_pretrained,
)
from anatcl_sklearn.models._checkpoint import _safe_torch_load

SMALL = (24, 28, 24)
FULL = (121, 145, 121)
N_FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


@pytest.fixture(autouse=True)
def _no_user_environment(monkeypatch):
    # A developer's own cache or mirror must not leak into the tests, and no
    # test may fall through to the real (network) URLs.
    monkeypatch.delenv("ANATCL_SKLEARN_CACHE", raising=False)
    monkeypatch.delenv("ANATCL_SKLEARN_WEIGHTS_URL", raising=False)
    torch.manual_seed(0)


def _expected_resnet18_shapes(out_dim=128):
    """The released AnatCL resnet18 keys and shapes, written out by hand."""
    shapes = {}

    def bn(prefix, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["encoder.conv1.weight"] = (64, 1, 7, 7, 7)
    bn("encoder.bn1", 64)
    in_channels = 64
    for layer, width in zip((1, 2, 3, 4), (64, 128, 256, 512)):
        for block in (0, 1):
            prefix = f"encoder.layer{layer}.{block}"
            block_in = in_channels if block == 0 else width
            shapes[f"{prefix}.conv1.weight"] = (width, block_in, 3, 3, 3)
            bn(f"{prefix}.bn1", width)
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3, 3)
            bn(f"{prefix}.bn2", width)
        if layer > 1:
            prefix = f"encoder.layer{layer}.0.downsample"
            shapes[f"{prefix}.0.weight"] = (width, in_channels, 1, 1, 1)
            bn(f"{prefix}.1", width)
        in_channels = width
    shapes["head.0.weight"] = (512, 512)
    shapes["head.0.bias"] = (512,)
    shapes["head.2.weight"] = (out_dim, 512)
    shapes["head.2.bias"] = (out_dim,)
    return shapes


@pytest.fixture(scope="module")
def trained_state():
    """A resnet18 state dict that differs from any fresh initialisation."""
    torch.manual_seed(1)
    state = AnatCLModel("resnet18").state_dict()
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            value.fill_(123)
        elif key.endswith("running_var"):
            value.uniform_(0.5, 2.0)
        else:
            value.normal_()
    return state


def _assert_same_weights(model, state):
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def _released_checkpoint(state, prefix=""):
    return {
        "opts": argparse.Namespace(
            model="resnet18", lr=1e-4, lr_decay_epochs=[10, 20], kernel="rbf",
            amp=True, biased_features=None,
        ),
        "model": {prefix + k: v for k, v in state.items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
        "epoch": 300,
        "run_id": "abc123",
    }


# --------------------------------------------------------------------------
# Encoders
# --------------------------------------------------------------------------


def test_state_dict_matches_released_resnet18_layout():
    state = AnatCLModel("resnet18").state_dict()
    expected = _expected_resnet18_shapes()
    assert sorted(state) == sorted(expected)
    assert len(state) == 124
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_build_encoder_features_and_depth(arch):
    encoder = build_encoder(arch)
    assert isinstance(encoder, ResNet3D)
    assert encoder.n_features == N_FEATURES[arch]
    assert encoder.arch == arch
    depths = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3), "resnet50": (3, 4, 6, 3)}
    assert tuple(len(getattr(encoder, f"layer{i}")) for i in (1, 2, 3, 4)) == depths[arch]
    assert not any(isinstance(m, torch.nn.Linear) for m in encoder.modules())
    bottleneck = hasattr(encoder.layer1[0], "conv3")
    assert bottleneck == (arch == "resnet50")


def test_resnet50_bottleneck_strides_in_3x3_and_projects_first_stage():
    encoder = build_encoder("resnet50")
    block = encoder.layer2[0]
    assert block.conv1.stride == (1, 1, 1)
    assert block.conv2.stride == (2, 2, 2)
    assert block.conv3.out_channels == 512
    # Stage 1 keeps the resolution but widens 64 -> 256, so it needs a projection.
    assert encoder.layer1[0].downsample[0].weight.shape == (256, 64, 1, 1, 1)
    assert encoder.layer1[0].downsample[0].stride == (1, 1, 1)


def test_unknown_arch_lists_valid_ones():
    with pytest.raises(ValueError, match="resnet18, resnet34, resnet50") as info:
        build_encoder("resnet101")
    assert "resnet101" in str(info.value)
    with pytest.raises(ValueError, match="resnet18"):
        AnatCLModel(arch="densenet")
    with pytest.raises(ValueError, match="layers"):
        ResNet3D("basic", (2, 2, 2))
    with pytest.raises(ValueError, match="block"):
        ResNet3D("wide", (2, 2, 2, 2))


def test_stem_and_stage_resolutions():
    encoder = build_encoder("resnet18").eval()
    shapes = {}
    for name in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"):
        module = getattr(encoder, name)
        module.register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    with torch.no_grad():
        out = encoder(torch.randn(1, 1, 24, 28, 24))
    # 7x7x7 stride 2 padding 3, then 3x3x3 stride 2 padding 1 max-pool.
    assert shapes["conv1"] == (64, 12, 14, 12)
    assert shapes["maxpool"] == (64, 6, 7, 6)
    assert shapes["layer1"] == (64, 6, 7, 6)
    assert shapes["layer2"] == (128, 3, 4, 3)
    assert shapes["layer3"] == (256, 2, 2, 2)
    assert shapes["layer4"] == (512, 1, 1, 1)
    assert shapes["avgpool"] == (512, 1, 1, 1)
    assert out.shape == (1, 512)


def test_kaiming_fan_out_init_and_batchnorm_init():
    encoder = build_encoder("resnet18")
    weight = encoder.layer4[1].conv2.weight.detach()
    expected_std = math.sqrt(2.0 / (512 * 27))
    assert weight.mean().abs() < 0.05 * expected_std
    assert weight.std().item() == pytest.approx(expected_std, rel=0.02)
    stem_std = math.sqrt(2.0 / (64 * 343))
    assert encoder.conv1.weight.std().item() == pytest.approx(stem_std, rel=0.05)
    for module in encoder.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0)
    assert not any(
        m.bias is not None for m in encoder.modules() if isinstance(m, torch.nn.Conv3d)
    )


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_shapes_small_volumes(arch):
    model = AnatCLModel(arch).eval()
    x = torch.randn(2, 1, *SMALL)
    with torch.no_grad():
        z = model(x)
        h = model.encode(x)
    assert z.shape == (2, 128)
    assert h.shape == (2, N_FEATURES[arch])
    assert torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_full_size_volume(arch):
    model = AnatCLModel(arch).eval()
    with torch.no_grad():
        h = model.encode(torch.randn(1, 1, *FULL))
    assert h.shape == (1, N_FEATURES[arch])
    assert torch.isfinite(h).all()


def test_forward_rejects_wrong_input_shape():
    model = AnatCLModel("resnet18")
    with pytest.raises(ValueError, match=r"got shape \(1, 24, 28, 24\)"):
        model(torch.zeros(1, 24, 28, 24))
    with pytest.raises(ValueError, match=r"\(n_samples, 1, D, H, W\)"):
        model.encode(torch.zeros(1, 2, 24, 28, 24))


def test_normalize_is_l2_normalisation_of_the_head_output():
    normalised = AnatCLModel("resnet18", normalize=True).eval()
    raw = AnatCLModel("resnet18", normalize=False).eval()
    raw.load_state_dict(normalised.state_dict())
    x = torch.randn(3, 1, *SMALL)
    with torch.no_grad():
        expected = raw(x) / raw(x).norm(dim=1, keepdim=True)
        assert torch.allclose(normalised(x), expected, atol=1e-6)
        assert not torch.allclose(raw(x).norm(dim=1), torch.ones(3))
        assert torch.equal(normalised.encode(x), normalised.encoder(x))


def test_regression_baseline_out_dim_one_trains():
    model = AnatCLModel("resnet18", out_dim=1, normalize=False)
    x = torch.randn(4, 1, *SMALL)
    y = torch.tensor([[20.0], [30.0], [40.0], [50.0]])
    pred = model(x)
    assert pred.shape == (4, 1)
    F.l1_loss(pred, y).backward()
    assert model.encoder.conv1.weight.grad is not None
    assert model.encoder.conv1.weight.grad.abs().sum() > 0
    assert model.head[2].weight.shape == (1, 512)


@pytest.mark.parametrize("out_dim", [0, -3, 2.5, True, "128"])
def test_invalid_out_dim(out_dim):
    with pytest.raises(ValueError, match="out_dim"):
        AnatCLModel(out_dim=out_dim)


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "module."])
def test_load_released_checkpoint_file(tmp_path, trained_state, prefix):
    path = tmp_path / "weights.pth"
    torch.save(_released_checkpoint(trained_state, prefix), path)
    model = load_checkpoint(path)
    assert isinstance(model, AnatCLModel)
    assert not model.training
    _assert_same_weights(model, trained_state)
    # str paths work as well as Path objects.
    _assert_same_weights(load_checkpoint(str(path)), trained_state)


def test_load_bare_state_dict_file_and_in_memory(tmp_path, trained_state):
    path = tmp_path / "bare.pt"
    torch.save({"module." + k: v for k, v in trained_state.items()}, path)
    _assert_same_weights(load_checkpoint(path), trained_state)
    _assert_same_weights(load_checkpoint(dict(trained_state)), trained_state)
    _assert_same_weights(load_checkpoint(_released_checkpoint(trained_state)), trained_state)


def test_load_does_not_alias_or_modify_the_callers_dict(trained_state):
    original = {k: v.clone() for k, v in trained_state.items()}
    checkpoint = {"model": original}
    model = load_checkpoint(checkpoint)
    with torch.no_grad():
        model.encoder.conv1.weight.add_(1.0)
    assert set(checkpoint) == {"model"}
    assert torch.equal(original["encoder.conv1.weight"], trained_state["encoder.conv1.weight"])


class _Payload:
    """Unpickling this object creates a marker file (via builtins.open)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_and_never_executed(tmp_path, writer):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    payload = {"model": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh, protocol=2)

    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message
    assert "safety" in message and "never executes" in message
    # The refused global is named (open is io.open), and torch's advice to
    # re-run with weights_only=False, which would run the payload, is not given.
    assert "asks to call io.open, which anatcl_sklearn never does" in message
    assert "weights_only" not in message
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()
    with pytest.raises(ValueError, match="safety"):
        resolve_pretrained(str(path))
    assert not marker.exists()

    if writer == "pickle.dump":
        # Control: the payload is live, so the assertions above mean something.
        with open(path, "rb") as fh:
            opened = pickle.load(fh)["model"]
        opened.close()
        assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_plain_pickle_is_refused_as_not_a_checkpoint(tmp_path, protocol):
    path = tmp_path / "features.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"model": [1.0, 2.0]}, fh, protocol=protocol)
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert f"'{path}' is not a torch checkpoint" in message
    assert f"plain Python pickle (protocol {protocol})" in message and "torch.save" in message
    assert "Unsupported operand" not in message and "damaged" not in message
    # A legacy (non-zip) torch.save file is a pickle too, and still loads.
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(_safe_torch_load(legacy, "cpu")["w"], torch.ones(2))


def test_missing_and_unexpected_keys_are_listed(trained_state):
    state = dict(trained_state)
    del state["head.0.weight"]
    del state["encoder.layer1.0.bn1.running_var"]
    state["extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError) as info:
        load_checkpoint(state)
    message = str(info.value)
    assert "2 missing key(s)" in message
    assert "1 unexpected key(s)" in message
    assert "'head.0.weight'" in message
    assert "'encoder.layer1.0.bn1.running_var'" in message
    assert "'extra.weight'" in message


def test_many_missing_keys_are_truncated_with_a_count(trained_state):
    state = {k: v for k, v in trained_state.items() if not k.startswith("encoder.layer4")}
    # BatchNorm recreates num_batches_tracked itself, so those are not counted.
    n_missing = sum(
        not k.endswith("num_batches_tracked") for k in trained_state if k not in state
    )
    assert n_missing == 25
    with pytest.raises(ValueError, match=rf"{n_missing} missing key\(s\).*more\)"):
        load_checkpoint(state)


def test_missing_num_batches_tracked_is_tolerated(trained_state):
    # Checkpoints written before torch 0.4.1 have no num_batches_tracked.
    state = {k: v for k, v in trained_state.items() if not k.endswith("num_batches_tracked")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_checkpoint(state)
    assert torch.equal(model.state_dict()["encoder.conv1.weight"], state["encoder.conv1.weight"])


def test_strict_false_warns_and_loads_the_rest(trained_state):
    state = {k: v for k, v in trained_state.items() if not k.startswith("head.")}
    with pytest.warns(UserWarning, match="4 missing key"):
        model = load_checkpoint(state, strict=False)
    loaded = model.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value)


def test_encoder_only_state_dict_gets_a_hint(trained_state):
    encoder_only = {
        k.removeprefix("encoder."): v for k, v in trained_state.items() if k.startswith("encoder.")
    }
    with pytest.raises(ValueError, match="encoder-only"):
        load_checkpoint(encoder_only)


def test_shape_mismatch_names_key_and_both_shapes(trained_state):
    state = AnatCLModel("resnet18", out_dim=64).state_dict()
    with pytest.raises(ValueError) as info:
        load_checkpoint(state)
    message = str(info.value)
    assert "'head.2.weight'" in message
    assert "(64, 512)" in message and "(128, 512)" in message
    assert "out_dim=64" in message
    model = load_checkpoint(state, out_dim=64)
    assert model.head[2].out_features == 64


def test_resnet50_weights_into_resnet18_are_named(trained_state):
    state = AnatCLModel("resnet50").state_dict()
    with pytest.raises(ValueError) as info:
        load_checkpoint(state, arch="resnet18")
    message = str(info.value)
    assert "'resnet50'" in message and "arch='resnet50'" in message
    assert "'encoder.layer1.0.conv1.weight'" in message
    assert "(64, 64, 1, 1, 1)" in message and "(64, 64, 3, 3, 3)" in message
    # Shape mismatches are refused even when keys may differ.
    with pytest.raises(ValueError, match="resnet50"):
        load_checkpoint(state, arch="resnet18", strict=False)
    _assert_same_weights(load_checkpoint(state, arch="resnet50"), state)


def test_resnet34_weights_into_resnet18_are_refused_even_non_strict():
    state = AnatCLModel("resnet34").state_dict()
    with pytest.raises(ValueError, match="look like a 'resnet34' encoder"):
        load_checkpoint(state, arch="resnet18", strict=False)


def test_bad_checkpoint_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_checkpoint(tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth' is not a torch checkpoint: it is a text"):
        load_checkpoint(garbage)
    with pytest.raises(TypeError, match="int"):
        load_checkpoint(42)
    with pytest.raises(ValueError, match="No state dict found.*'epoch'"):
        load_checkpoint({"epoch": 3, "opts": None})
    with pytest.raises(ValueError, match="resnet152"):
        load_checkpoint({}, arch="resnet152")


# --------------------------------------------------------------------------
# Official weights
# --------------------------------------------------------------------------


def test_official_registry_has_the_reference_urls():
    assert set(OFFICIAL_WEIGHTS) == {"anatcl-global", "anatcl-local"}
    base = "https://gitlab.di.unito.it/barbano/anatcl-pretrained/-/raw/main/"
    run = (
        "0_obhn64_resnet18_amp_yaware_adam_tf_none_lr0.0001_step_step10_rate0.9_"
        "wd5e-05_bsz32_trainall_False_temp0.1_views2_kernel_rbf_sigma2.0_alpha1.0_"
        "anat_desikan_normTrue_subsetTrue_"
    )
    assert OFFICIAL_WEIGHTS["anatcl-global"]["urls"][0] == (
        base + run + "global_lambd1.0_fold0_splits5_trial0/weights.pth"
    )
    assert OFFICIAL_WEIGHTS["anatcl-local"]["urls"][3] == (
        base + run + "local_lambd1.0_fold3_splits5_trial0/weights.pth"
    )
    all_urls = [u for entry in OFFICIAL_WEIGHTS.values() for u in entry["urls"]]
    assert len(all_urls) == 10 and len(set(all_urls)) == 10
    assert all(u.endswith("/weights.pth") for u in all_urls)
    assert all(entry["arch"] == "resnet18" for entry in OFFICIAL_WEIGHTS.values())


def _write_sources(folder):
    folder.mkdir()
    for name in OFFICIAL_WEIGHTS:
        for fold in range(5):
            (folder / f"{name}-{fold}.bin").write_bytes(f"PK{name}/{fold}".encode() * 100)
    return folder.as_uri() + "/{name}-{fold}.bin"


def test_fetch_caches_each_fold_under_its_own_name(tmp_path):
    template = _write_sources(tmp_path / "src")
    cache = tmp_path / "cache"

    def fetch(name, fold):
        return fetch_official_weights(
            name, fold, cache_dir=cache, url=template, progress=False
        )

    fold0 = fetch("anatcl-global", 0)
    fold1 = fetch("anatcl-global", 1)
    local0 = fetch("anatcl-local", 0)
    assert fold0 == cache / "anatcl-global_fold0.pth"
    assert fold1 == cache / "anatcl-global_fold1.pth"
    assert len({fold0, fold1, local0}) == 3
    assert fold0.read_bytes() == b"PKanatcl-global/0" * 100
    assert fold1.read_bytes() == b"PKanatcl-global/1" * 100
    assert local0.read_bytes() == b"PKanatcl-local/0" * 100

    # Second call: served from the cache, the source is gone.
    for source in (tmp_path / "src").iterdir():
        source.unlink()
    again = fetch("anatcl-global", 1)
    assert again == fold1 and again.read_bytes() == b"PKanatcl-global/1" * 100
    names = ["anatcl-global_fold0.pth", "anatcl-global_fold1.pth", "anatcl-local_fold0.pth"]
    # Each file has its SHA-256 recorded beside it, and nothing else is left.
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        names + [n + ".sha256" for n in names]
    )


def test_fetch_accepts_a_plain_path_and_reports_progress(tmp_path, capsys, monkeypatch):
    source = tmp_path / "weights.pth"
    source.write_bytes(b"PK" + b"\0" * 3000)
    # The progress line is drawn on a terminal only.
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    fold = np.int64(4)  # integer-like folds (e.g. from a CV loop) are fine
    path = fetch_official_weights("anatcl-local", fold, cache_dir=tmp_path / "c", url=str(source))
    assert path.name == "anatcl-local_fold4.pth"
    assert path.read_bytes() == source.read_bytes()
    err = capsys.readouterr().err
    assert "\rDownloading AnatCL weights anatcl-local fold 4" in err
    assert err.endswith("(100%)\n")


def test_environment_variables_override_cache_and_url(tmp_path, monkeypatch):
    template = _write_sources(tmp_path / "src")
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(tmp_path / "env_cache"))
    monkeypatch.setenv("ANATCL_SKLEARN_WEIGHTS_URL", template)
    path = fetch_official_weights("anatcl-local", 2, progress=False)
    assert path == tmp_path / "env_cache" / "anatcl-local_fold2.pth"
    assert path.read_bytes() == b"PKanatcl-local/2" * 100
    # Explicit arguments win over the environment.
    other = tmp_path / "other.bin"
    other.write_bytes(b"PKother")
    path = fetch_official_weights(
        "anatcl-local", 2, cache_dir=tmp_path / "arg_cache", url=other.as_uri(), progress=False
    )
    assert path == tmp_path / "arg_cache" / "anatcl-local_fold2.pth"
    assert path.read_bytes() == b"PKother"


def test_default_cache_is_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    template = _write_sources(tmp_path / "src")
    path = fetch_official_weights("anatcl-global", 3, url=template, progress=False)
    assert path == tmp_path / ".cache" / "anatcl_sklearn" / "anatcl-global_fold3.pth"


def test_fetch_failure_says_where_to_put_the_file(tmp_path):
    cache = tmp_path / "cache"
    missing = (tmp_path / "nowhere" / "weights.pth").as_uri()
    with pytest.raises(OSError) as info:
        fetch_official_weights("anatcl-local", 2, cache_dir=cache, url=missing, progress=False)
    message = str(info.value)
    assert missing in message
    assert str(cache / "anatcl-local_fold2.pth") in message
    assert "by hand" in message
    assert list(cache.iterdir()) == []


def test_fetch_refuses_a_web_page(tmp_path):
    page = tmp_path / "login.html"
    page.write_text("\n<!DOCTYPE html><html><body>Sign in</body></html>")
    cache = tmp_path / "cache"
    with pytest.raises(OSError, match="web page"):
        fetch_official_weights(
            "anatcl-global", 0, cache_dir=cache, url=page.as_uri(), progress=False
        )
    assert list(cache.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "fold", "match"),
    [
        ("anatcl-g3", 0, "anatcl-global, anatcl-local"),
        (None, 0, "anatcl-global, anatcl-local"),
        ("anatcl-global", 5, r"0\.\.4"),
        ("anatcl-global", -1, r"0\.\.4"),
        ("anatcl-local", True, r"0\.\.4"),
        ("anatcl-local", "1", r"0\.\.4"),
    ],
)
def test_fetch_rejects_unknown_name_or_fold(tmp_path, name, fold, match):
    with pytest.raises(ValueError, match=match):
        fetch_official_weights(name, fold, cache_dir=tmp_path, url="file:///nowhere")
    assert list(tmp_path.iterdir()) == []


def test_resolve_pretrained_official_name_offline(tmp_path, monkeypatch, trained_state):
    source = tmp_path / "src"
    source.mkdir()
    torch.save(_released_checkpoint(trained_state), source / "anatcl-local-2.pth")
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ANATCL_SKLEARN_WEIGHTS_URL", source.as_uri() + "/{name}-{fold}.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # progress bar only
        model = resolve_pretrained("anatcl-local", fold=2)
    assert not model.training
    _assert_same_weights(model, trained_state)
    assert (tmp_path / "cache" / "anatcl-local_fold2.pth").is_file()
    with pytest.raises(ValueError, match="'resnet18'.*arch='resnet50'"):
        resolve_pretrained("anatcl-local", fold=2, arch="resnet50")


def test_resolve_pretrained_paths_dicts_and_models(tmp_path, trained_state):
    path = tmp_path / "ckpt.pth"
    torch.save(_released_checkpoint(trained_state), path)
    _assert_same_weights(resolve_pretrained(path), trained_state)
    _assert_same_weights(resolve_pretrained(str(path)), trained_state)
    _assert_same_weights(resolve_pretrained(dict(trained_state)), trained_state)
    _assert_same_weights(resolve_pretrained({"model": trained_state}), trained_state)
    model = AnatCLModel("resnet34")
    assert resolve_pretrained(model) is model
    with pytest.raises(FileNotFoundError, match="anatcl-global, anatcl-local"):
        resolve_pretrained(str(tmp_path / "nope.pth"))


@pytest.mark.parametrize("bad", [None, True, 3, 1.5, b"anatcl-global", ["anatcl-global"]])
def test_resolve_pretrained_rejects_other_types(bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        resolve_pretrained(bad)


def test_public_surface():
    import anatcl_sklearn.models as models

    assert sorted(models.__all__) == sorted(
        [
            "ARCHITECTURES", "AnatCLModel", "OFFICIAL_WEIGHTS", "ResNet3D",
            "build_encoder", "convert_checkpoint", "fetch_official_weights", "load_checkpoint",
            "load_model_dir", "save_model_dir",
            "resolve_pretrained",
        ]
    )
    assert ARCHITECTURES == ("resnet18", "resnet34", "resnet50")
    for name in models.__all__:
        obj = getattr(models, name)
        if callable(obj):
            assert obj.__doc__ and "Parameters" in obj.__doc__, name
    assert os.path.basename(models.__file__) == "__init__.py"
    assert Path(models.__file__).parent.name == "models"
