"""Tampered saved-model folders (#19 item 9): every one is one ValueError naming the file,
a folder without a digest warns that its weights are unverified, and weights that would
embed to NaN (negative BatchNorm variances) are refused when loaded."""

import json
import os
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.models import AnatCLModel, load_model_dir, save_model_dir
from anatcl_sklearn.models._digest import file_sha256

pytestmark = pytest.mark.usefixtures("narrow_resnet")

SCALER = dict(feature_range=[0, 1], clip=False, data_min=[[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]],
              data_max=[[1.0, 2.0], [4.0, 1.0], [3.0, 2.0]], n_samples_seen=8)


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    model = AnatCLModel("resnet18")
    model.input_shape = (16, 16, 16)
    out = tmp_path / "model"
    save_model_dir(out, model, dict(output="encoder", anatomy_scaler=dict(SCALER)), "card")
    return out


def _edit_config(folder, edit):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


def _edit_state(folder, edit):
    path = folder / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))
    _edit_config(folder, lambda c: c.update(weights_sha256=file_sha256(path)))


def _refused(folder, match):
    with pytest.raises(ValueError, match=match) as info:
        load_model_dir(folder)
    assert str(folder) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=match):
        AnatCLEmbedder(pretrained=str(folder), verbose=0).fit(np.zeros((1, 16, 16, 16)))


def test_the_untampered_folder_loads_with_its_scaler(folder):
    est = AnatCLEmbedder(pretrained=str(folder), verbose=0).fit(np.zeros((1, 16, 16, 16)))
    np.testing.assert_array_equal(est.anatomy_scaler_.data_max_, SCALER["data_max"])


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.uint8])
def test_integer_or_bool_tensors_are_refused(folder, dtype):
    _edit_state(folder, lambda s: s.update({"encoder.conv1.weight":
                                            s["encoder.conv1.weight"].to(dtype)}))
    _refused(folder, rf"model\.safetensors'.*encoder\.conv1\.weight.*{str(dtype)[6:]}")


def test_a_float_step_counter_is_refused(folder):
    key = "encoder.bn1.num_batches_tracked"
    _edit_state(folder, lambda s: s.update({key: s[key].double()}))
    _refused(folder, rf"{key}.*float64")


def test_a_config_nested_100000_deep_is_refused(folder):
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"config\.json' is nested too deeply"):
        load_model_dir(folder)


@pytest.mark.parametrize("section, match", [
    ({k: v for k, v in SCALER.items() if k != "data_max"}, r"anatomy_scaler\.data_max is None"),
    (dict(SCALER, data_max=[[1.0, 2.0]]), r"anatomy_scaler\.data_max has shape \(1, 2\); "
                                          r"expected \(3, 2\), the shape of data_min"),
    (dict(SCALER, data_min="abc"), r"anatomy_scaler\.data_min is 'abc'"),
    (dict(SCALER, data_min=[[0, None], [1, 1], [2, 2]]), r"anatomy_scaler\.data_min is "
                                                         r"\[\[0, None\]"),
    (dict(SCALER, data_min=[[0, 1], [2]]), r"anatomy_scaler\.data_min is \[\[0, 1\], \[2\]\]"),
    (dict(SCALER, data_min=[]), r"anatomy_scaler\.data_min is \[\]"),
    (dict(SCALER, feature_range=[0, 1, 2]), r"anatomy_scaler\.feature_range is \[0, 1, 2\]"),
    (dict(SCALER, feature_range=[1, 0]), r"anatomy_scaler\.feature_range is \[1, 0\]"),
    (dict(SCALER, clip="yes"), r"anatomy_scaler\.clip is 'yes'"),
    (dict(SCALER, n_samples_seen=-3), r"anatomy_scaler\.n_samples_seen is -3"),
    (dict(SCALER, data_max=[[1.0, 0.5], [4.0, 1.0], [3.0, 2.0]]),
     r"anatomy_scaler\.data_max is below data_min at 1 place"),
    ([1, 2], r"anatomy_scaler is \[1, 2\]"),
])
def test_a_bad_anatomy_scaler_section_is_refused_with_the_config(folder, section, match):
    _edit_config(folder, lambda c: c.update(anatomy_scaler=section))
    _refused(folder, match)


def test_a_huge_out_dim_is_refused_before_building_anything(folder):
    _edit_config(folder, lambda c: c["model"].update(out_dim=10 ** 12))
    _refused(folder, r"model\.out_dim is 1000000000000; expected a positive integer <= 65536")


def test_a_config_without_a_digest_warns_that_the_weights_are_unverified(folder):
    _edit_config(folder, lambda c: c.pop("weights_sha256"))
    with pytest.warns(UserWarning, match=r"config\.json' records no weights_sha256.*"
                                         r"not verified"):
        load_model_dir(folder)
    _edit_config(folder, lambda c: c.update(weights_sha256=None))
    with pytest.warns(UserWarning, match="not verified"):
        load_model_dir(folder)


def test_the_digested_folder_loads_without_a_warning(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model_dir(folder)


def test_negative_batchnorm_variances_are_refused_as_nan_embeddings(folder):
    key = "encoder.layer1.0.bn1.running_var"
    _edit_state(folder, lambda s: s[key].__setitem__(0, -1.0))
    _refused(folder, rf"negative values in 1 BatchNorm running variance.*{key}.*NaN")


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_config_that_is_not_a_regular_file_is_refused_by_name(folder, kind):
    import os

    path = folder / "config.json"
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)  # reading it would hang
    elif kind == "device":
        path.symlink_to("/dev/zero")  # reading it would never end
    else:
        path.mkdir()
    with pytest.raises(ValueError, match=r"config\.json' is not a regular file"):
        load_model_dir(folder)


def test_an_oversized_config_is_refused_before_parsing(folder, monkeypatch):
    from anatcl_sklearn.models import _saved

    monkeypatch.setattr(_saved, "MAX_CONFIG_BYTES", 1000)
    with pytest.raises(ValueError, match=r"config\.json' has \d+ bytes, more than the 1000"):
        load_model_dir(folder)


def test_a_full_disk_while_saving_names_the_file_and_leaves_nothing(folder, tmp_path,
                                                                     monkeypatch):
    """safetensors reports a full disk as its own SafetensorError, text files as a bare
    OSError: both become one OSError naming the file."""
    import errno

    from safetensors import SafetensorError

    from anatcl_sklearn.models import _saved

    model = load_model_dir(folder)[0]

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: File too large (os error 27)")
    monkeypatch.setattr("safetensors.torch.save_file", full)
    out = tmp_path / "out"
    with pytest.raises(OSError, match=r"Could not write '.*out/model\.safetensors'.*too large"):
        save_model_dir(out, model, {}, "card")
    assert list(out.iterdir()) == []
    monkeypatch.undo()

    def no_space(target, text):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(_saved, "atomic_write_text", no_space)
    with pytest.raises(OSError, match=r"Could not write '.*out/config\.json' \(No space left"):
        save_model_dir(out, model, {}, "card")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_checkpoint_that_is_not_a_regular_file_is_named_as_such(tmp_path, kind):
    import os

    from anatcl_sklearn.models import load_checkpoint

    path = tmp_path / "w.pth"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(ValueError, match=rf"Checkpoint '.*w\.pth' is a "
                                         rf"{'FIFO' if kind == 'fifo' else 'device'}.*not a "
                                         r"regular file; expected a torch checkpoint file"):
        load_checkpoint(str(path))


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_pretrained_that_is_not_a_regular_file_is_named_as_such(tmp_path, kind):
    """A FIFO or a link to a device given as weights is named for what it is (it was reported as
    'neither an existing checkpoint file ...'), and never opened (a FIFO would block)."""
    from anatcl_sklearn.models import resolve_pretrained

    path = tmp_path / "weights.pth"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    expected = "a FIFO" if kind == "fifo" else "a device"
    with pytest.raises(ValueError, match=rf"pretrained='.*weights.pth' is {expected}"):
        resolve_pretrained(str(path))
