"""A checkpoint_dir file is not trusted for its name and layout (#19 item 14): it records
its run key and is checked against it, its weights pass the NaN check, a foreign optimizer
state or a bogus history is refused, and a refused file is ignored with one named warning
(training starts afresh) instead of crashing fit or returning wrong weights."""

import shutil
import warnings

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from anatcl_sklearn import AnatCLEmbedder

pytestmark = pytest.mark.usefixtures("narrow_resnet")

PARAMS = dict(method="simclr", max_epochs=2, batch_size=4, lr=1e-3, verbose=0, random_state=1)


class _CrashAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kw):
        if len(net.history) == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="module")
def data(small_brains):
    return small_brains.images[:8]


@pytest.fixture(scope="module")
def reference(data):
    """The uninterrupted run, with no checkpoint at all."""
    from anatcl_sklearn.models import _resnet3d

    old = _resnet3d._STAGE_WIDTHS
    _resnet3d._STAGE_WIDTHS = (16, 32, 64, 128)
    try:
        est = AnatCLEmbedder(**PARAMS).fit(data)
        return est.transform(data), est.history_[:, "train_loss"]
    finally:
        _resnet3d._STAGE_WIDTHS = old


def _crashed_checkpoint(data, folder):
    """The file a run that crashed after its first epoch leaves."""
    with pytest.raises(RuntimeError, match="simulated crash"):
        AnatCLEmbedder(checkpoint_dir=folder, callbacks=[_CrashAt(2)], **PARAMS).fit(data)
    (path,) = folder.glob("anatcl-run-*.pt")
    return path


def _fit_ignoring(data, folder, path, why):
    with pytest.warns(UserWarning, match=rf"Checkpoint '{path}' was ignored: {why}") as record:
        est = AnatCLEmbedder(checkpoint_dir=folder, **PARAMS).fit(data)
    ignored = [w for w in record if "was ignored" in str(w.message)]
    assert len(ignored) == 1, [str(w.message) for w in record]
    return est


def _same_as_reference(est, data, reference):
    embeddings, losses = reference
    assert len(est.history_) == PARAMS["max_epochs"]
    np.testing.assert_allclose(est.history_[:, "train_loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(est.transform(data), embeddings, rtol=1e-4, atol=1e-5)


def test_an_intact_checkpoint_still_resumes_silently(data, reference, tmp_path):
    _crashed_checkpoint(data, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = AnatCLEmbedder(checkpoint_dir=tmp_path, **PARAMS).fit(data)
    _same_as_reference(est, data, reference)


def test_another_runs_weights_under_this_runs_name_are_ignored(data, reference, tmp_path):
    other, mine = tmp_path / "other", tmp_path / "mine"
    AnatCLEmbedder(checkpoint_dir=other, **PARAMS).fit(data + 1)  # another run, finished
    AnatCLEmbedder(checkpoint_dir=mine, **PARAMS).fit(data)
    (path,) = mine.glob("anatcl-run-*.pt")
    (foreign,) = other.glob("anatcl-run-*.pt")
    assert foreign.name != path.name
    shutil.copyfile(foreign, path)  # the other run's finished weights, renamed to this run's
    est = _fit_ignoring(data, mine, path, "it was written by another run")
    _same_as_reference(est, data, reference)


def test_a_checkpoint_without_a_run_key_is_ignored(data, reference, tmp_path):
    path = _crashed_checkpoint(data, tmp_path)
    state = torch.load(path, weights_only=True)
    del state["run_key"]
    torch.save(state, path)
    _same_as_reference(_fit_ignoring(data, tmp_path, path, "it records no run key"),
                       data, reference)


def test_nan_weights_are_ignored(data, reference, tmp_path):
    path = _crashed_checkpoint(data, tmp_path)
    state = torch.load(path, weights_only=True)
    state["model"]["encoder.conv1.weight"][0] = float("nan")
    torch.save(state, path)
    est = _fit_ignoring(data, tmp_path, path, r"its weights hold NaN or inf .*encoder\.conv1")
    _same_as_reference(est, data, reference)


@pytest.mark.parametrize("foreign", ["sgd", "shapes", "groups", "settings"])
def test_a_foreign_optimizer_state_is_ignored_and_fit_completes(data, reference, tmp_path,
                                                                foreign):
    path = _crashed_checkpoint(data, tmp_path)
    state = torch.load(path, weights_only=True)
    opt = state["optimizer"]
    if foreign == "sgd":  # another optimizer of another model
        layer = torch.nn.Linear(3, 2)
        sgd = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
        layer(torch.ones(1, 3)).sum().backward()
        sgd.step()
        state["optimizer"] = sgd.state_dict()
    elif foreign == "shapes":  # Adam's moments, shuffled between parameters
        keys = sorted(opt["state"])
        first, last = opt["state"][keys[0]], opt["state"][keys[-1]]
        first["exp_avg"], last["exp_avg"] = last["exp_avg"], first["exp_avg"]
    elif foreign == "groups":
        opt["param_groups"].append(dict(opt["param_groups"][0], params=[]))
    else:  # the same layout, other hyper-parameters
        opt["param_groups"][0]["weight_decay"] = 0.5
    torch.save(state, path)
    est = _fit_ignoring(data, tmp_path, path, "its optimizer state")
    _same_as_reference(est, data, reference)


@pytest.mark.parametrize("history", [
    ["not an epoch"],
    [{"epoch": 1, "batches": []}],  # no train_loss: an unfinished epoch
    [{"epoch": 5, "batches": [], "train_loss": 0.1}],
    [{"epoch": 1, "batches": [], "train_loss": float("nan")}],
    [{"epoch": 1, "batches": "x", "train_loss": 0.1}],
])
def test_a_bogus_history_is_ignored(data, reference, tmp_path, history):
    path = _crashed_checkpoint(data, tmp_path)
    state = torch.load(path, weights_only=True)
    state["history"] = history
    torch.save(state, path)
    est = _fit_ignoring(data, tmp_path, path, "its history")
    _same_as_reference(est, data, reference)


def test_a_checkpoint_that_cannot_be_written_warns_once_and_fit_completes(data, reference,
                                                                         tmp_path, monkeypatch):
    """torch.save on a full disk raises RuntimeError('[enforce fail at inline_container.cc]')."""
    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 2")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.warns(UserWarning, match=r"Checkpoint '.*anatcl-run-.*\.pt' could not be written "
                                         r"at epoch 1 \(RuntimeError") as record:
        est = AnatCLEmbedder(checkpoint_dir=tmp_path, **PARAMS).fit(data)
    assert sum("could not be written" in str(w.message) for w in record) == 1
    _same_as_reference(est, data, reference)
    assert not list(tmp_path.iterdir())
