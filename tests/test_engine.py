"""One training engine: AnatCLEmbedder.fit under torchrun equals a single-process fit, resumes
exactly, and its runs never hand back the wrong weights or fail late.

The torchrun tests launch ``tests/data/ddp_fit.py`` with 2 CPU processes (gloo) on 32
subjects of 16^3 voxels. BatchNorm under DDP normalises each process's shard, so the single-process reference
forwards the same shards separately (``ShardedForward``): same global batches, same
statistics. The optimizer there is SGD: Adam divides by the gradient's running magnitude, so a
float32 rounding difference in a gradient entry close to zero could flip that entry's update
sign; SGD keeps rounding differences at rounding size.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from anatcl_sklearn import AnatCLEmbedder, NonFiniteLossError, make_synthetic_brains
from anatcl_sklearn.models import AnatCLModel

SCRIPT = Path(__file__).parent / "data" / "ddp_fit.py"
SHAPE = (16, 16, 16)


def _torchrun(tmp_path, *args, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(SCRIPT), "--out", str(tmp_path), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """Two torchrun runs: uninterrupted, and crashed after epoch 1 then resumed."""
    base = tmp_path_factory.mktemp("ddp")
    full = base / "full"
    full.mkdir()
    out = _torchrun(full)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    resumed = base / "resumed"
    resumed.mkdir()
    crash = _torchrun(resumed, "--checkpoint-dir", str(base / "ckpt"), "--crash-at", "2")
    assert crash.returncode != 0 and "crash requested at epoch 2" in crash.stdout + crash.stderr
    (epoch1,) = (base / "ckpt").glob("anatcl-run-*.pt")  # rank 0 saved after epoch 1
    first_epoch = torch.load(epoch1, weights_only=True)
    again = _torchrun(resumed, "--checkpoint-dir", str(base / "ckpt"))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    return full, resumed, first_epoch


def _load(folder, rank=0):
    info = json.loads((folder / f"rank{rank}.json").read_text())
    return info, torch.load(folder / f"rank{rank}.pt", weights_only=True)


@pytest.mark.slow
def test_torchrun_fit_equals_a_single_process_fit_on_the_same_global_batches(ddp_runs):
    """Epoch 1 (2 steps) of the torchrun run, from the checkpoint rank 0 wrote, against a
    single-process fit of 1 epoch: float32, losses to 1e-5 and weight changes to 1e-2 of
    their size (measured: 1e-6 and 7e-4)."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import ddp_fit
    finally:
        sys.path.pop(0)
    full, _, first_epoch = ddp_runs
    reference = ddp_fit.fit(world_for_reference=2, epochs=1)
    ref_losses = [b["train_loss"] for epoch in reference.history_ for b in epoch["batches"]]
    ddp_losses = [b["train_loss"] for b in first_epoch["history"][0]["batches"]]
    assert len(ddp_losses) == len(ref_losses) == 2  # 32 subjects, global batches of 16
    np.testing.assert_allclose(ddp_losses, ref_losses, rtol=1e-5)
    initial = ddp_fit.initial_model().state_dict()
    ref_state = reference.net_.module_.state_dict()
    for key, value in first_epoch["model"].items():
        if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # each process tracks its own shards; rank 0's are kept
        change = ref_state[key] - initial[key]
        assert change.norm() > 0, key  # it trained
        assert (value - initial[key] - change).norm() <= 1e-2 * change.norm(), key
    info, _ = _load(full)
    assert info["world"] == 2 and info["n_features_out"] == 512


@pytest.mark.slow
def test_every_rank_ends_with_the_same_fitted_estimator(ddp_runs):
    full, _, _ = ddp_runs
    info0, state0 = _load(full, 0)
    info1, state1 = _load(full, 1)
    assert info0["step_losses"] == info1["step_losses"]
    for key in state0:
        torch.testing.assert_close(state0[key], state1[key], rtol=0, atol=0, msg=key)
    np.testing.assert_array_equal(info0["embeddings"], info1["embeddings"])


@pytest.mark.slow
def test_a_resumed_torchrun_fit_equals_an_uninterrupted_one(ddp_runs):
    full, resumed, _ = ddp_runs
    info_a, state_a = _load(full)
    info_b, state_b = _load(resumed)
    np.testing.assert_allclose(info_b["step_losses"], info_a["step_losses"], rtol=1e-6)
    for key in state_a:
        torch.testing.assert_close(state_b[key], state_a[key], rtol=1e-6, atol=1e-7, msg=key)


@pytest.mark.slow
def test_bad_input_raises_on_every_rank_instead_of_hanging(tmp_path):
    out = _torchrun(tmp_path, "--bad-rank", "1", timeout=300)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "age has values that are not finite" in text  # rank 1's own error
    assert "rank 1 of 2 failed" in text  # what rank 0 says instead of waiting


@pytest.mark.slow
@pytest.mark.parametrize("differ, says", [
    ("images", "rank 1 holds other images than rank 0"),
    ("count", "rank 1 holds 30 images, rank 0 holds 32"),
    ("sigma", "rank 1 has sigma=3.0, rank 0 has sigma=2.0"),
])
def test_ranks_that_disagree_all_raise_naming_what_differs(tmp_path, differ, says):
    """Issue #19 item 1: rank 1 holding other images, another number of subjects (which hung
    in a collective) or another sigma used to train silently; every rank now raises before
    the first step, naming the difference, and nothing is written."""
    ckpt = tmp_path / "ckpt"
    out = _torchrun(tmp_path, "--differ", differ, "--checkpoint-dir", str(ckpt), timeout=300)
    assert out.returncode != 0, out.stdout[-2000:] + out.stderr[-2000:]
    for rank in (0, 1):  # each rank raised the same error, none waited for the other
        error = (tmp_path / f"error{rank}.txt").read_text()
        assert "disagree on what to train" in error and says in error, error
    assert not list(ckpt.glob("anatcl-run-*.pt")) and not list(tmp_path.glob("rank*.pt"))


@pytest.mark.slow
def test_a_global_batch_too_small_to_share_is_refused(tmp_path):
    out = _torchrun(tmp_path, "--batch-size", "3", timeout=300)
    assert out.returncode != 0
    assert "batch_size=3 is the global batch, split among 2 processes" in out.stdout + out.stderr


# -- runs never share what they should not ---------------------------------------------------


@pytest.fixture(scope="module")
def brains():
    return make_synthetic_brains(8, shape=SHAPE, random_state=0)


def _fit(X, **params):
    params = dict(dict(method="simclr", max_epochs=1, batch_size=4, verbose=0, random_state=0),
                  **params)
    return AnatCLEmbedder(**params).fit(X)


def _files(folder):
    return sorted(p.name for p in Path(folder).glob("anatcl-run-*.pt"))


@pytest.mark.usefixtures("narrow_resnet")
def test_pretrained_weights_and_their_fold_are_part_of_the_run_key(brains, tmp_path, monkeypatch):
    X, ckpt = brains.images, tmp_path / "ckpt"
    scratch = _fit(X, checkpoint_dir=ckpt)
    torch.manual_seed(5)
    weights = tmp_path / "w.pt"
    torch.save({"model": AnatCLModel().state_dict()}, weights)
    tuned = _fit(X, checkpoint_dir=ckpt, pretrained=str(weights), finetune=True)
    assert len(_files(ckpt)) == 2  # not the scratch run's file
    assert not np.allclose(tuned.transform(X[:2]), scratch.transform(X[:2]))
    # the same path with other content is another run
    torch.manual_seed(6)
    torch.save({"model": AnatCLModel().state_dict()}, weights)
    _fit(X, checkpoint_dir=ckpt, pretrained=str(weights), finetune=True)
    assert len(_files(ckpt)) == 3
    # official names: anatcl-local after anatcl-global, and another fold, never share a file
    src = tmp_path / "release_{name}_{fold}.pth"
    for name in ("anatcl-global", "anatcl-local"):
        for fold in (0, 1):
            torch.manual_seed(hash((name, fold)) % 1000)
            torch.save({"model": AnatCLModel().state_dict()},
                       str(src).format(name=name, fold=fold))
    monkeypatch.setenv("ANATCL_SKLEARN_WEIGHTS_URL", str(src))
    monkeypatch.setenv("ANATCL_SKLEARN_CACHE", str(tmp_path / "cache"))
    g = _fit(X, checkpoint_dir=ckpt, pretrained="anatcl-global", finetune=True)
    loc = _fit(X, checkpoint_dir=ckpt, pretrained="anatcl-local", finetune=True)
    _fit(X, checkpoint_dir=ckpt, pretrained="anatcl-local", finetune=True, fold=1)
    assert len(_files(ckpt)) == 6
    assert not np.allclose(g.transform(X[:2]), loc.transform(X[:2]))


@pytest.mark.usefixtures("narrow_resnet")
def test_different_memmaps_and_changed_files_of_one_shape_are_different_runs(brains, tmp_path):
    ckpt = tmp_path / "ckpt"
    a = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.float32,
                                  shape=brains.images.shape)
    a[:] = brains.images
    a.flush()
    b = np.lib.format.open_memmap(tmp_path / "b.npy", mode="w+", dtype=np.float32,
                                  shape=brains.images.shape)
    b[:] = brains.images[::-1]
    b.flush()
    _fit(np.load(tmp_path / "a.npy", mmap_mode="r"), checkpoint_dir=ckpt)
    _fit(np.load(tmp_path / "b.npy", mmap_mode="r"), checkpoint_dir=ckpt)
    assert len(_files(ckpt)) == 2
    # files: the same path rewritten (new size or modification time) is another run
    paths = []
    for i, vol in enumerate(brains.images):
        np.save(tmp_path / f"s{i}.npy", vol)
        paths.append(str(tmp_path / f"s{i}.npy"))
    _fit(paths, checkpoint_dir=ckpt)
    _fit(paths, checkpoint_dir=ckpt)  # unchanged: resumes, no new file
    assert len(_files(ckpt)) == 3
    np.save(paths[0], brains.images[1])
    os.utime(paths[0], ns=(1, 1))
    _fit(paths, checkpoint_dir=ckpt)
    assert len(_files(ckpt)) == 4
    # in-memory arrays by content
    _fit(brains.images + 1, checkpoint_dir=ckpt)
    assert len(_files(ckpt)) == 5


# -- fail before work ------------------------------------------------------------------------


class _CountEpochs:
    def __init__(self):
        self.epochs = 0


def _counting_callback(counter):
    from skorch.callbacks import Callback

    class Count(Callback):
        def on_epoch_begin(self, net, **kwargs):
            counter.epochs += 1

    return Count()


@pytest.mark.parametrize("bad, error, match", [
    (123, TypeError, r"checkpoint_dir must be a folder path .* got 123 \(int\)"),
    ("FILE", ValueError, r"checkpoint_dir '.*afile' is a file, not a folder"),
])
def test_bad_checkpoint_dirs_fail_before_the_first_epoch(brains, tmp_path, bad, error, match):
    if bad == "FILE":
        bad = tmp_path / "afile"
        bad.write_text("mine")
    counter = _CountEpochs()
    with pytest.raises(error, match=match):
        _fit(brains.images, checkpoint_dir=bad, callbacks=[_counting_callback(counter)])
    assert counter.epochs == 0


def test_full_or_read_only_checkpoint_dir_fails_before_the_first_epoch(brains, tmp_path,
                                                                        monkeypatch):
    import shutil
    import tempfile

    counter = _CountEpochs()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=10 << 20))
    with pytest.raises(OSError, match=r"has 10 MiB free, but a checkpoint of this model needs "
                                      r"about \d+ MiB"):
        _fit(brains.images, checkpoint_dir=tmp_path / "c", callbacks=[_counting_callback(counter)])
    monkeypatch.undo()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OSError, match=r"checkpoint_dir '.*ro' cannot be created or written: "
                                      r"Permission denied"):
        _fit(brains.images, checkpoint_dir=tmp_path / "ro", callbacks=[_counting_callback(counter)])
    assert counter.epochs == 0


@pytest.mark.usefixtures("narrow_resnet")
def test_a_wrong_checkpoint_file_is_named_and_ignored_never_half_used(brains, tmp_path):
    ckpt = tmp_path / "ckpt"
    first = _fit(brains.images, checkpoint_dir=ckpt, max_epochs=2)
    (path,) = Path(ckpt).glob("anatcl-run-*.pt")
    torch.save({"weights": {"x": torch.zeros(1)}}, path)  # a valid torch file, another layout
    with pytest.warns(UserWarning, match=rf"Checkpoint '{path}' was ignored: it lacks "
                                         r"\['model', 'optimizer', 'history'\]"):
        again = _fit(brains.images, checkpoint_dir=ckpt, max_epochs=2)
    np.testing.assert_allclose(again.transform(brains.images), first.transform(brains.images),
                               rtol=1e-5, atol=1e-6)
    assert len(again.history_) == 2
    # a symlink planted at the checkpoint's path is replaced, its target untouched
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    path.unlink()
    path.symlink_to(victim)
    with pytest.warns(UserWarning, match="was ignored"):
        _fit(brains.images, checkpoint_dir=ckpt, max_epochs=2)
    assert victim.read_text() == "precious" and not path.is_symlink()
    assert not list(Path(ckpt).glob(".*.tmp"))


def test_ages_are_checked_in_the_dtype_training_uses(brains):
    age = brains.age.copy()
    age[3] = 1e300  # finite in float64, inf in float32
    with pytest.raises(ValueError, match=r"age has values that are not finite in float32 .* "
                                         r"at indices \[3\]"):
        AnatCLEmbedder(method="yaware", max_epochs=1, batch_size=4, verbose=0).fit(
            brains.images, age=age)


# -- a failed fit leaves the estimator as it was ----------------------------------------------


@pytest.mark.usefixtures("narrow_resnet")
def test_a_failed_refit_leaves_the_previous_fitted_state_intact(brains):
    est = AnatCLEmbedder(method="simclr", max_epochs=1, batch_size=4, verbose=0, random_state=0)
    est.fit(brains.images)
    net, history, before = est.net_, est.history_, est.transform(brains.images)

    from skorch.callbacks import Callback

    class Poison(Callback):
        def on_batch_begin(self, net, batch=None, training=False, **kwargs):
            if training:
                with torch.no_grad():
                    next(net.module_.parameters()).fill_(float("nan"))

    est.set_params(callbacks=[Poison()], max_epochs=2)
    with pytest.raises(NonFiniteLossError):
        est.fit(brains.images)
    assert est.net_ is net and est.history_ is history
    np.testing.assert_array_equal(est.transform(brains.images), before)
    # and an estimator that never fitted stays unfitted
    fresh = AnatCLEmbedder(method="simclr", max_epochs=1, batch_size=4, verbose=0,
                           callbacks=[Poison()])
    with pytest.raises(NonFiniteLossError):
        fresh.fit(brains.images)
    assert not hasattr(fresh, "net_") and not hasattr(fresh, "history_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted

        with pytest.raises(NotFittedError):
            check_is_fitted(fresh)


def test_run_key_is_the_one_of_before_the_collection_stated_its_identity():
    # ImageCollection.update_identity and models._identity.weights_identity moved out of
    # embedder/_runs.py: the key (and so every checkpoint file name) must not change.
    import hashlib

    from anatcl_sklearn import check_images
    from anatcl_sklearn.embedder._runs import run_key

    X = np.random.default_rng(0).random((3, 6, 7, 6)).astype(np.float32)
    images = check_images(X, check_finite=False, warn_grid=False)
    assert run_key(AnatCLEmbedder(max_epochs=1), images, np.arange(3.0), None) == "d8e95c1783ffc729"
    h1, h2 = hashlib.sha256(), hashlib.sha256()
    images.update_identity(h1)
    images.subset([0, 1, 2]).update_identity(h2)
    assert h1.hexdigest() == h2.hexdigest()
    h3 = hashlib.sha256()
    images.subset([0, 1]).update_identity(h3)
    assert h3.hexdigest() != h1.hexdigest()


def test_what_ranks_disagree_on_is_named_rank_by_rank():
    # the comparison behind test_ranks_that_disagree_all_raise_naming_what_differs, without
    # torchrun: every rank computes it from the same gathered facts, so every rank raises it
    from anatcl_sklearn.embedder._plan import disagreement

    base = dict(seed=1, n=10, data="d", age="a", anatomy="m", weights="none", key="k",
                params={"sigma": "2.0", "lr": "0.0001"})
    assert disagreement([base, dict(base, seed=2, key="other")]) is None  # rank 0's are taken
    message = disagreement([base, dict(base, n=12, data="e", age="b"),
                            dict(base, data="f", params={"sigma": "3.0", "lr": "0.0001"})])
    assert "rank 1 holds 12 images, rank 0 holds 10" in message
    assert "rank 1 holds other images" not in message  # the count says it
    assert "rank 2 holds other images than rank 0" in message
    assert "rank 2 has sigma=3.0, rank 0 has sigma=2.0" in message
    assert "rank 1's age" not in message and "nothing was trained" in message


def test_only_the_launcher_asks_which_launch_it_is_in():
    import inspect

    from anatcl_sklearn.embedder import _embedder, _launch, _plan, _training

    for module in (_training, _plan, _embedder):
        source = inspect.getsource(module)
        for word in ("ctx", "DistContext", "DataParallel(", "resolve_distributed", "wrap_ddp",
                     "is_initialized", "WORLD_SIZE"):
            assert word not in source, (module.__name__, word)
    est = AnatCLEmbedder(device="cpu")
    assert type(_launch.resolve_launch(est, train=True)) is _launch.OneProcess
    assert type(_launch.resolve_launch(est, train=False)) is _launch.OneProcess
