"""AnatCLEmbedder: the scikit-learn face of the project, on small synthetic brains."""

import pickle

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from skorch.callbacks import Callback

from anatcl_sklearn import AnatCLEmbedder
from anatcl_sklearn.embedder import NonFiniteLossError

FAST = dict(max_epochs=1, batch_size=8, verbose=0, random_state=0)

# The estimator's behaviour, not the network's size, is under test here: quarter-width ResNets
# (conftest.narrow_resnet) except where a test says full_width.
pytestmark = pytest.mark.usefixtures("narrow_resnet")


def _meta(brains, idx=slice(None)):
    return dict(age=brains.age[idx], anatomy=brains.anatomy[idx])


def _weights(est):
    return {k: v.detach().clone() for k, v in est.net_.module_.state_dict().items()}


def _same_weights(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- basic API
@pytest.mark.full_width
def test_fit_transform_shapes_and_feature_names(small_brains):
    X = small_brains.images[:16]
    est = AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(16)))
    Z = est.transform(X)
    assert Z.shape == (16, 512) and Z.dtype == np.float32 and np.isfinite(Z).all()
    names = est.get_feature_names_out()
    assert len(names) == 512 and names[0] == "anatclembedder0"
    assert est.input_shape_ == X.shape[1:]
    assert len(est.history_) == 1 and np.isfinite(est.history_[-1, "train_loss"])

    proj = clone(est).set_params(output="projection").fit(X, **_meta(small_brains, slice(16)))
    P = proj.transform(X)
    assert P.shape == (16, 128)
    np.testing.assert_allclose(np.linalg.norm(P, axis=1), 1.0, rtol=1e-5)

    df = clone(est).set_output(transform="pandas").fit(X, **_meta(small_brains, slice(16))).transform(X)
    assert list(df.columns) == list(names) and df.shape == (16, 512)


def test_five_dimensional_input_gives_the_same_embeddings(small_brains):
    X = small_brains.images[:10]
    est = AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(10)))
    np.testing.assert_array_equal(est.transform(X), est.transform(X[:, None]))


def test_user_arrays_are_not_modified(small_brains):
    X = small_brains.images[:10].copy()
    age, anat = small_brains.age[:10].copy(), small_brains.anatomy[:10].copy()
    AnatCLEmbedder(descriptor="local", **FAST).fit(X, age=age, anatomy=anat).transform(X)
    np.testing.assert_array_equal(X, small_brains.images[:10])
    np.testing.assert_array_equal(age, small_brains.age[:10])
    np.testing.assert_array_equal(anat, small_brains.anatomy[:10])


@pytest.mark.parametrize("method", ["anatcl", "yaware", "expw", "simclr", "l1"])
def test_every_method_trains(small_brains, method):
    X = small_brains.images[:12]
    est = AnatCLEmbedder(method=method, max_epochs=2, batch_size=6, lr=1e-3, verbose=0,
                         random_state=0).fit(X, **_meta(small_brains, slice(12)))
    losses = [row["train_loss"] for row in est.history_]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    assert est.transform(X).shape == (12, est._n_features_out)


def test_learning_rate_follows_step_schedule(small_brains):
    est = AnatCLEmbedder(max_epochs=5, lr=1e-3, lr_step=2, lr_gamma=0.5, batch_size=8, verbose=0,
                         random_state=0).fit(small_brains.images[:8], **_meta(small_brains, slice(8)))
    np.testing.assert_allclose(est.history_[:, "lr"], [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])



def test_cpu_training_uses_fused_adam_with_the_same_update(small_brains):
    # fused Adam is the same update as torch's default step, only cheaper; a user can opt out
    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    fused = AnatCLEmbedder(**{**FAST, "lr": 1e-3}).fit(X, **meta)
    plain = AnatCLEmbedder(**{**FAST, "lr": 1e-3}, net_params={"optimizer__fused": None}).fit(X, **meta)
    assert fused.net_.optimizer_.param_groups[0]["fused"] is True
    assert not plain.net_.optimizer_.param_groups[0]["fused"]
    a, b = _weights(fused), _weights(plain)
    assert not _same_weights(a, _weights(AnatCLEmbedder(**{**FAST, "max_epochs": 0}).fit(X, **meta)))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)

# ---------------------------------------------------------------- reproducibility and pickling
def test_random_state_reproducible_and_global_rng_untouched(small_brains):
    X = small_brains.images[:12]
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = AnatCLEmbedder(max_epochs=2, batch_size=6, verbose=0, random_state=3).fit(X, **_meta(small_brains, slice(12)))
    assert torch.equal(torch.random.get_rng_state(), before)
    b = AnatCLEmbedder(max_epochs=2, batch_size=6, verbose=0, random_state=3).fit(X, **_meta(small_brains, slice(12)))
    c = AnatCLEmbedder(max_epochs=2, batch_size=6, verbose=0, random_state=4).fit(X, **_meta(small_brains, slice(12)))
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert not np.allclose(a.transform(X), c.transform(X))


def test_pickle_round_trip_gives_identical_embeddings(small_brains):
    X = small_brains.images[:10]
    est = AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(10)))
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est.transform(X), again.transform(X))
    assert clone(est).get_params() == est.get_params()


# ---------------------------------------------------------------- forward-once
def test_forward_once_matches_two_forward_passes(small_brains):
    """With identical views, duplicating one forward gives the loss and gradients of two."""
    from anatcl_sklearn.losses import anatcl_loss
    from anatcl_sklearn.models import AnatCLModel

    torch.manual_seed(0)
    model = AnatCLModel("resnet18").double().train()  # float64: compare maths, not rounding
    x = torch.from_numpy(small_brains.images[:6]).double().unsqueeze(1)
    age = torch.from_numpy(small_brains.age[:6]).double()
    anat = torch.from_numpy(small_brains.anatomy[:6]).double()

    z_once = model(x).unsqueeze(1).expand(-1, 2, -1)
    loss_once = anatcl_loss(z_once, age, anat)
    g_once = torch.autograd.grad(loss_once, list(model.parameters()))

    z_two = model(torch.cat([x, x])).view(2, 6, -1).transpose(0, 1)  # the reference layout
    loss_two = anatcl_loss(z_two, age, anat)
    g_two = torch.autograd.grad(loss_two, list(model.parameters()))

    torch.testing.assert_close(loss_once, loss_two, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_once, g_two):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)


def test_augmented_views_differ_and_train(small_brains):
    X = small_brains.images[:8]
    est = AnatCLEmbedder(augment="all", **FAST).fit(X, **_meta(small_brains, slice(8)))
    assert np.isfinite(est.history_[-1, "train_loss"])
    from anatcl_sklearn.embedder._augment import make_views

    gen = torch.Generator().manual_seed(0)
    views = make_views(torch.from_numpy(X[:2]).unsqueeze(1), ("crop", "cutout", "noise"), gen)
    assert views.shape == (2, 2, 1, *X.shape[1:])
    assert not torch.equal(views[:, 0], views[:, 1])


# ---------------------------------------------------------------- scikit-learn integration
def test_pipeline_cross_val_score_without_routing(small_brains):
    X, sex = small_brains.images[:24], small_brains.sex[:24]
    pipe = make_pipeline(AnatCLEmbedder(**FAST), LogisticRegression(max_iter=500))
    scores = cross_val_score(pipe, X, sex, cv=KFold(2, shuffle=True, random_state=0),
                             params={"anatclembedder__age": small_brains.age[:24],
                                     "anatclembedder__anatomy": small_brains.anatomy[:24]})
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_grid_search_over_sigma_and_lambda_with_routed_metadata(small_brains):
    X, y = small_brains.images[:24], small_brains.sex[:24]
    seen = []

    class Spy(AnatCLEmbedder):
        def fit(self, X, y=None, *, age=None, anatomy=None):
            seen.append((len(X), None if age is None else len(age), None if anatomy is None else anatomy.shape))
            return super().fit(X, y, age=age, anatomy=anatomy)

    with sklearn.config_context(enable_metadata_routing=True):
        emb = Spy(**FAST).set_fit_request(age=True, anatomy=True)
        pipe = make_pipeline(emb, LogisticRegression(max_iter=500))
        grid = GridSearchCV(pipe, {"spy__sigma": [1.0, 5.0], "spy__lambda_anat": [0.0, 1.0]},
                            cv=2, refit=False)
        grid.fit(X, y, age=small_brains.age[:24], anatomy=small_brains.anatomy[:24])
    assert len(grid.cv_results_["params"]) == 4
    # every fit saw age and anatomy sliced to its training fold (12 of 24)
    assert len(seen) == 8 and all(s == (12, 12, (12, 68, 3)) for s in seen)


def test_grid_search_without_routing_uses_prefixed_fit_params(small_brains):
    X, y = small_brains.images[:16], small_brains.sex[:16]
    pipe = make_pipeline(AnatCLEmbedder(**FAST), LogisticRegression(max_iter=500))
    grid = GridSearchCV(pipe, {"anatclembedder__sigma": [1.0, 3.0]}, cv=2)
    grid.fit(X, y, anatclembedder__age=small_brains.age[:16],
             anatclembedder__anatomy=small_brains.anatomy[:16])
    assert grid.best_estimator_[0].sigma in (1.0, 3.0)


def test_y_as_age(small_brains):
    X, age = small_brains.images[:8], small_brains.age[:8]
    with pytest.raises(ValueError, match="needs age.*use_y_as_age"):
        AnatCLEmbedder(method="yaware", **FAST).fit(X, age)
    est = AnatCLEmbedder(method="yaware", use_y_as_age=True, **FAST).fit(X, age)
    assert np.isfinite(est.history_[-1, "train_loss"])
    with pytest.raises(ValueError, match="differ"):
        AnatCLEmbedder(method="yaware", use_y_as_age=True, **FAST).fit(X, age, age=age + 1)


# ---------------------------------------------------------------- pretrained weights
def _released_checkpoint(path, seed=7):
    import argparse

    from anatcl_sklearn.models import AnatCLModel

    torch.manual_seed(seed)
    sd = AnatCLModel("resnet18").state_dict()
    torch.save({"opts": argparse.Namespace(method="anatcl"), "model": sd, "epoch": 299,
                "optimizer": {}, "run_id": "x"}, path)
    return sd


def test_pretrained_fit_trains_nothing_and_clone_behaves_the_same(small_brains, tmp_path):
    ckpt = tmp_path / "anatcl.pth"
    sd = _released_checkpoint(ckpt)
    X = small_brains.images[:6]
    est = AnatCLEmbedder(pretrained=str(ckpt), verbose=0).fit(X)  # no age/anatomy needed
    assert len(est.history_) == 0
    assert _same_weights(sd, {k: v.cpu() for k, v in est.net_.module_.state_dict().items()})
    np.testing.assert_array_equal(est.transform(X), clone(est).fit(X).transform(X))

    tuned = AnatCLEmbedder(pretrained=str(ckpt), finetune=True, **FAST).fit(X, **_meta(small_brains, slice(6)))
    assert len(tuned.history_) == 1 and not _same_weights(sd, _weights(tuned))


def test_frozen_estimator_in_pipeline_is_not_refitted(small_brains):
    X, sex = small_brains.images[:20], small_brains.sex[:20]
    emb = AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(20)))
    before = _weights(emb)
    pipe = make_pipeline(FrozenEstimator(emb), LogisticRegression(max_iter=500))
    scores = cross_val_score(pipe, X, sex, cv=2)
    assert scores.shape == (2,)
    assert _same_weights(before, _weights(emb))


# ---------------------------------------------------------------- faults
class _InterruptAt(Callback):
    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_epoch_end(self, net, **kw):
        if len(net.history) == self.epoch - 1:
            net._saved_for_test = {k: v.detach().clone() for k, v in net.module_.state_dict().items()}

    def on_batch_begin(self, net, **kw):
        if len(net.history) == self.epoch and len(net.history[-1]["batches"]) == self.batch:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_last_finished_epoch(small_brains):
    X = small_brains.images[:16]
    est = AnatCLEmbedder(max_epochs=5, batch_size=4, lr=1e-3, verbose=0, random_state=0,
                         callbacks=[_InterruptAt(epoch=3, batch=2)])
    with pytest.warns(RuntimeWarning, match="interrupted during epoch 3"):
        est.fit(X, **_meta(small_brains, slice(16)))
    assert len(est.history_) == 2
    assert _same_weights(est.net_._saved_for_test, _weights(est))
    assert est.transform(X).shape == (16, est._n_features_out)


class _CrashAt(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, net, **kw):
        if len(net.history) == self.epoch:
            raise RuntimeError("simulated crash")


def test_checkpoint_resume_reproduces_uninterrupted_run(small_brains, tmp_path):
    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    params = dict(max_epochs=3, batch_size=4, lr=1e-3, verbose=0, random_state=1, augment="flip+noise")
    reference = AnatCLEmbedder(**params).fit(X, **meta)

    crashing = AnatCLEmbedder(checkpoint_dir=tmp_path, callbacks=[_CrashAt(2)], **params)
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit(X, **meta)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1

    epochs_run = []

    class Count(Callback):
        def on_epoch_begin(self, net, **kw):
            epochs_run.append(len(net.history))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checkpoint that cannot be read must fail this test
        resumed = AnatCLEmbedder(checkpoint_dir=tmp_path, callbacks=[Count()], **params).fit(X, **meta)
    assert epochs_run == [2, 3]  # epoch 1 came from the checkpoint; the crash hit epoch 2
    assert len(resumed.history_) == 3
    np.testing.assert_allclose(resumed.history_[:, "train_loss"], reference.history_[:, "train_loss"],
                               rtol=1e-5)
    np.testing.assert_allclose(resumed.transform(X), reference.transform(X), rtol=1e-4, atol=1e-5)

    other = AnatCLEmbedder(checkpoint_dir=tmp_path, **{**params, "sigma": 3.0}).fit(X, **meta)
    assert len(list(tmp_path.glob("*.pt"))) == 2 and len(other.history_) == 3


def test_checkpoint_from_another_kind_of_device_resumes_with_a_warning(small_brains, tmp_path):
    # a GPU run's CUDA generator state does not fit a CPU generator (and the reverse)
    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    params = dict(max_epochs=2, batch_size=4, lr=1e-3, verbose=0, random_state=1, augment="flip")
    with pytest.raises(RuntimeError, match="simulated crash"):
        AnatCLEmbedder(checkpoint_dir=tmp_path, callbacks=[_CrashAt(2)], **params).fit(X, **meta)
    path = next(tmp_path.glob("*.pt"))
    state = torch.load(path, weights_only=True)
    state["generators"]["augment"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's size
    torch.save(state, path)
    with pytest.warns(UserWarning, match="augment generator's state was saved on another kind"):
        resumed = AnatCLEmbedder(checkpoint_dir=tmp_path, **params).fit(X, **meta)
    assert len(resumed.history_) == 2 and np.isfinite(resumed.history_[-1, "train_loss"])


@pytest.mark.slow
def test_fitted_estimator_keeps_no_training_generators(small_brains, tmp_path):
    # a CUDA generator in a pickle cannot be rebuilt on a machine without CUDA
    import subprocess
    import sys

    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    est = AnatCLEmbedder(**FAST, augment="flip+noise", checkpoint_dir=tmp_path).fit(X, **meta)
    assert est.net_.augment_generator is None
    assert all(not getattr(cb, "generators", None) for _, cb in est.net_.callbacks_)
    path = tmp_path / "est.pkl"
    path.write_bytes(pickle.dumps(est))
    np.save(tmp_path / "X.npy", X[:2])
    code = ("import pickle, sys, numpy as np; est = pickle.load(open(sys.argv[1], 'rb')); "
            "print(est.transform(np.load(sys.argv[2])).shape)")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "X.npy")],
                         env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"(2, {est._n_features_out})"


def test_negative_anatomy_is_refused_before_training_unless_min_max_scaled(small_brains):
    X, age, anat = small_brains.images[:8], small_brains.age[:8], small_brains.anatomy[:8]
    z = (anat - anat.mean(0)) / anat.std(0)
    started = []

    class Started(Callback):
        def on_train_begin(self, net, **kw):
            started.append(True)

    with pytest.raises(ValueError, match="non-negative.*anatomy_scaling='minmax'"):
        AnatCLEmbedder(**FAST, callbacks=[Started()]).fit(X, age=age, anatomy=z)
    assert not started
    for params in ({"anatomy_scaling": "minmax"}, {"descriptor": "local"}):
        est = AnatCLEmbedder(**FAST, **params).fit(X, age=age, anatomy=z)
        assert np.isfinite(est.history_[-1, "train_loss"])


def test_compile_with_data_parallel_is_refused_before_reading_images(monkeypatch):
    from anatcl_sklearn.embedder import (
        _launch as _embedder,  # the launcher decides the wrapping
    )

    monkeypatch.setattr(_embedder, "_use_data_parallel", lambda setting, device: True)
    est = AnatCLEmbedder(compile=True, verbose=0)
    with pytest.raises(ValueError, match="compile=True cannot train under DataParallel"):
        est.fit(["/nonexistent/sub-01.nii.gz", "/nonexistent/sub-02.nii.gz"], age=[20, 30])

def test_non_finite_loss_stops_with_epoch_and_batch(small_brains):
    from anatcl_sklearn.losses import AnatCLLoss

    class NaNOnThirdCall(AnatCLLoss):
        calls = 0

        def forward(self, *args):
            NaNOnThirdCall.calls += 1
            loss = super().forward(*args)
            return loss * float("nan") if NaNOnThirdCall.calls == 3 else loss

    snapshots = []

    class Snap(Callback):
        def on_batch_end(self, net, **kw):
            snapshots.append({k: v.detach().clone() for k, v in net.module_.state_dict().items()})

    X = small_brains.images[:8]
    est = AnatCLEmbedder(max_epochs=3, batch_size=4, lr=1e-3, verbose=0, random_state=0,
                         callbacks=[Snap()], net_params={"criterion": NaNOnThirdCall})
    with pytest.raises(NonFiniteLossError, match="epoch 2, batch 1") as failed:
        est.fit(X, **_meta(small_brains, slice(8)))
    assert not hasattr(est, "net_")  # the estimator is left as it was: unfitted
    last_good = {k: v.detach().clone() for k, v in failed.value.net.module_.state_dict().items()}
    assert _same_weights(snapshots[-1], last_good)
    assert all(torch.isfinite(v.float()).all() for v in last_good.values())


def test_bf16_training_needs_cuda_and_bf16_transform_runs_on_cpu(small_brains):
    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="bf16.*CUDA only"):
            AnatCLEmbedder(precision="bf16", device="cpu", **FAST).fit(X, **meta)
    est = AnatCLEmbedder(**FAST).fit(X, **meta)
    fp32 = est.transform(X)
    bf16 = est.set_params(precision="bf16").transform(X)
    assert np.isfinite(bf16).all()
    np.testing.assert_allclose(bf16, fp32, rtol=0.1, atol=0.05 * np.abs(fp32).max())


def test_non_finite_gradients_skip_the_step(small_brains):
    from anatcl_sklearn.losses import AnatCLLoss

    class NaNGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            return g * float("nan")

    class NaNGradOnSecondCall(AnatCLLoss):
        calls = 0

        def forward(self, z, *args):
            NaNGradOnSecondCall.calls += 1
            if NaNGradOnSecondCall.calls == 2:
                z = NaNGrad.apply(z)
            return super().forward(z, *args)

    snapshots = []

    class Snap(Callback):
        def on_batch_end(self, net, **kw):
            snapshots.append({k: v.detach().clone() for k, v in net.module_.state_dict().items()})

    X = small_brains.images[:8]
    est = AnatCLEmbedder(max_epochs=2, batch_size=4, lr=1e-3, verbose=0, random_state=0,
                         callbacks=[Snap()], net_params={"criterion": NaNGradOnSecondCall})
    with pytest.raises(NonFiniteLossError,
                       match="Gradients became non-finite at epoch 1, batch 2") as failed:
        est.fit(X, **_meta(small_brains, slice(8)))
    last_good = {k: v.detach().clone() for k, v in failed.value.net.module_.state_dict().items()}
    assert len(snapshots) == 1 and _same_weights(snapshots[0], last_good)
    assert not hasattr(est, "net_")



class _LookAtModule(Callback):
    """Record the module's type during training and whether the optimizer holds its parameters."""

    def __init__(self):
        self.seen = []

    def on_batch_end(self, net, **kw):
        optimized = {id(p) for g in net.optimizer_.param_groups for p in g["params"]}
        self.seen.append((type(net.module_), optimized == {id(p) for p in net.module_.parameters()}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="DataParallel is a pass-through only without CUDA")
def test_data_parallel_wiring_trains_saves_and_unwraps(small_brains, tmp_path, monkeypatch):
    # Several GPUs cannot be had here; without CUDA, DataParallel forwards to its module, so the
    # wrapping, the optimizer, the checkpoint keys and the unwrapping can still be checked.
    from anatcl_sklearn.embedder import (
        _launch as _embedder,  # the launcher decides the wrapping
    )

    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    params = dict(max_epochs=2, batch_size=4, lr=1e-3, verbose=0, random_state=0)
    plain = AnatCLEmbedder(**params).fit(X, **meta)

    look = _LookAtModule()
    monkeypatch.setattr(_embedder, "_use_data_parallel", lambda setting, device: True)
    monkeypatch.setattr(_embedder, "_cuda_index", lambda device: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    wrapped = AnatCLEmbedder(**params, checkpoint_dir=tmp_path, callbacks=[look]).fit(X, **meta)
    assert look.seen and all(issubclass(t, torch.nn.DataParallel) and same for t, same in look.seen)
    assert not isinstance(wrapped.net_.module_, torch.nn.DataParallel)
    saved = torch.load(next(tmp_path.glob("*.pt")), weights_only=True)
    assert not any(k.startswith("module.") for k in saved["model"])
    assert not any(k.startswith("module.") for k in wrapped.net_.module_.state_dict())
    np.testing.assert_allclose(wrapped.transform(X), plain.transform(X), rtol=1e-5, atol=1e-6)
    again = pickle.loads(pickle.dumps(wrapped))
    np.testing.assert_array_equal(again.transform(X), wrapped.transform(X))


def test_data_parallel_on_the_cpu_says_it_does_nothing(small_brains):
    X, meta = small_brains.images[:4], _meta(small_brains, slice(4))
    with pytest.warns(UserWarning, match="data_parallel=True has no effect on device 'cpu'"):
        AnatCLEmbedder(**FAST, device="cpu", data_parallel=True).fit(X, **meta)


def test_data_parallel_only_on_cuda():
    from anatcl_sklearn.embedder._launch import _use_data_parallel

    assert not _use_data_parallel(True, "cpu")
    assert not _use_data_parallel("auto", "cpu")
    assert not _use_data_parallel(False, "cuda:0")

# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("params, match", [
    ({"method": "byol"}, r"The 'method' parameter of AnatCLEmbedder must be a str among .*Got 'byol'"),
    ({"descriptor": "regional"}, r"'descriptor' parameter of AnatCLEmbedder .*Got 'regional'"),
    ({"sigma": 0.0}, r"^The 'sigma' parameter of AnatCLEmbedder must be a float in the range \(0\.0, inf\)\. Got 0\.0 instead\.$"),
    ({"sigma": -1}, r"'sigma' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
    ({"temperature": 0}, r"'temperature' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
    ({"augment": "rotate"}, "rotate"),
    ({"lambda_age": 0, "lambda_anat": 0}, "both 0"),
    ({"batch_size": 1}, "batch_size"),
])
def test_bad_parameters_are_refused_in_fit(small_brains, params, match):
    est = AnatCLEmbedder(**{**FAST, **params})
    with pytest.raises(ValueError, match=match):
        est.fit(small_brains.images[:4], **_meta(small_brains, slice(4)))


def test_bad_metadata_is_refused_before_training(small_brains):
    X = small_brains.images[:6]
    with pytest.raises(ValueError, match=r"needs anatomy.*\(n_subjects, 68, 3\)"):
        AnatCLEmbedder(**FAST).fit(X, age=small_brains.age[:6])
    with pytest.raises(ValueError, match=r"anatomy must have shape \(6, 68, 3\).*got shape \(6, 68\)"):
        AnatCLEmbedder(**FAST).fit(X, age=small_brains.age[:6], anatomy=small_brains.anatomy[:6, :, 0])
    with pytest.raises(ValueError, match=r"age must have shape \(6,\).*\(5,\)"):
        AnatCLEmbedder(**FAST).fit(X, age=small_brains.age[:5], anatomy=small_brains.anatomy[:6])
    bad_age = small_brains.age[:6].copy()
    bad_age[2] = np.nan
    with pytest.raises(ValueError, match=r"age has values that are not finite in float32.*\[2\]"):
        AnatCLEmbedder(**FAST).fit(X, age=bad_age, anatomy=small_brains.anatomy[:6])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_voxels_are_refused(small_brains, bad):
    X = small_brains.images[:6].copy()
    X[4, 3, 3, 3] = bad
    with pytest.raises(ValueError, match=r"<array index 4> has 1 non-finite voxel") as err:
        AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(6)))
    assert "check_finite" not in str(err.value)  # not a parameter of the embedder


def test_transform_before_fit_and_wrong_grid(small_brains):
    with pytest.raises(NotFittedError):
        AnatCLEmbedder().transform(small_brains.images[:2])
    est = AnatCLEmbedder(**FAST).fit(small_brains.images[:6], **_meta(small_brains, slice(6)))
    with pytest.raises(ValueError, match=r"fitted on \(24, 28, 24\)"):
        est.transform(np.zeros((2, 20, 20, 20), dtype=np.float32))


# ---------------------------------------------------------------- does pretraining help?
@pytest.mark.slow
@pytest.mark.slow
def test_pretraining_improves_age_probe_over_untrained_encoder():
    from anatcl_sklearn.datasets import make_synthetic_brains

    data = make_synthetic_brains(80, shape=(24, 28, 24), random_state=1)
    train, test = slice(0, 60), slice(60, 80)
    common = dict(batch_size=16, lr=1e-3, random_state=0, verbose=0)

    def probe_mae(est):
        Z = est.transform(data.images)
        ridge = Ridge(alpha=1.0).fit(Z[train], data.age[train])
        return np.abs(ridge.predict(Z[test]) - data.age[test]).mean()

    meta = dict(age=data.age[train], anatomy=data.anatomy[train])
    untrained = AnatCLEmbedder(max_epochs=0, **common).fit(data.images[train], **meta)
    trained = AnatCLEmbedder(max_epochs=15, **common).fit(data.images[train], **meta)
    mae_untrained, mae_trained = probe_mae(untrained), probe_mae(trained)
    print(f"held-out ridge age MAE: untrained {mae_untrained:.2f}, pretrained {mae_trained:.2f}, "
          f"ratio {mae_trained / mae_untrained:.2f}")
    assert mae_trained < 0.9 * mae_untrained


# ---------------------------------------------------------------- image inputs (files, nibabel)
def test_every_input_kind_gives_the_same_embeddings(small_brains, tmp_path):
    import nibabel as nib
    import pandas as pd

    X = small_brains.images[:6]
    affine = np.diag([-1.5, 1.5, 1.5, 1.0])
    npy, nii, niigz, imgs = [], [], [], []
    for i, vol in enumerate(X):
        np.save(tmp_path / f"s{i}.npy", vol[None, None])  # OpenBHB's (1, 1, D, H, W) layout
        npy.append(str(tmp_path / f"s{i}.npy"))
        img = nib.Nifti1Image(vol, affine)
        nib.save(img, tmp_path / f"s{i}.nii")
        nib.save(img, tmp_path / f"s{i}.nii.gz")
        nii.append(tmp_path / f"s{i}.nii")
        niigz.append(str(tmp_path / f"s{i}.nii.gz"))
        imgs.append(img)

    est = AnatCLEmbedder(**FAST).fit(npy, **_meta(small_brains, slice(6)))
    reference = est.transform(X)
    for kind in (npy, nii, niigz, imgs, pd.Series(nii), tuple(npy)):
        np.testing.assert_array_equal(est.transform(kind), reference)
    from_array = AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(6)))
    np.testing.assert_array_equal(from_array.transform(X), reference)  # same training either way


def test_bad_files_are_named_before_training(small_brains, tmp_path):
    X = small_brains.images[:4].copy()
    paths = []
    for i, vol in enumerate(X):
        if i == 2:
            vol = vol.copy()
            vol[1, 1, 1] = np.nan
        np.save(tmp_path / f"s{i}.npy", vol)
        paths.append(str(tmp_path / f"s{i}.npy"))
    trained = []

    class Spy(Callback):
        def on_train_begin(self, net, **kw):
            trained.append(True)

    with pytest.raises(ValueError, match="s2.npy"):
        AnatCLEmbedder(callbacks=[Spy()], **FAST).fit(paths, **_meta(small_brains, slice(4)))
    assert not trained
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        AnatCLEmbedder(**FAST).fit(paths[:3] + [str(tmp_path / "missing.npy")], **_meta(small_brains, slice(4)))
    with pytest.raises(TypeError, match="list"):
        AnatCLEmbedder(**FAST).fit(paths[0], **_meta(small_brains, slice(4)))


# ---------------------------------------------------------------- speed options
@pytest.mark.parametrize("dtype, tol", [("float16", 1e-3), ("uint8", 1 / 255)])
def test_volume_cache_round_trip(small_brains, dtype, tol):
    from anatcl_sklearn import check_images
    from anatcl_sklearn.embedder._cache import VolumeCache

    X = small_brains.images[:5]
    cache = VolumeCache(check_images(X), dtype, "cpu")
    assert cache.nbytes == X.size * (2 if dtype == "float16" else 1)
    decoded = cache.batch(torch.tensor([3, 0]), "cpu").numpy()
    assert decoded.shape == (2, 1, *X.shape[1:])
    ranges = np.ptp(X[[3, 0]].reshape(2, -1), axis=1)
    err = np.abs(decoded[:, 0] - X[[3, 0]]).reshape(2, -1).max(axis=1)
    assert np.all(err <= tol * np.maximum(ranges, 1) + 1e-6)


def test_cached_training_matches_uncached_and_keeps_no_data(small_brains):
    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    plain = AnatCLEmbedder(**FAST).fit(X, **meta)
    cached = AnatCLEmbedder(cache="memory", **FAST).fit(X, **meta)
    assert cached.net_.volume_cache is None
    np.testing.assert_allclose(cached.history_[:, "train_loss"], plain.history_[:, "train_loss"], rtol=1e-2)
    assert len(pickle.dumps(cached)) < len(pickle.dumps(plain)) + 10_000


def test_channels_last_gives_the_same_embeddings(small_brains):
    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    a = AnatCLEmbedder(**FAST).fit(X, **meta).transform(X)
    b = AnatCLEmbedder(channels_last=True, **FAST).fit(X, **meta).transform(X)
    # float32 sums in another memory order: equal up to rounding, by relative norm
    assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(a)


def test_gpu_fitted_pickle_loads_on_a_cpu_only_machine(small_brains, monkeypatch):
    """A net pickled with device 'cuda' (as after GPU training) is mapped to the CPU on load."""
    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    from skorch.exceptions import DeviceWarning

    X = small_brains.images[:6]
    est = AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(6)))
    expected = est.transform(X)
    est.device_, est.net_.device = "cuda", "cuda"  # what a GPU fit leaves behind
    # and weights whose storages say "cuda:0", as they do after GPU training (storages larger
    # than the CPU shuffle generator's 5056-byte state, which stays on the CPU for real)
    tag = torch.serialization.location_tag
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag",
                  lambda storage: "cuda:0" if storage.nbytes() > 8192 else tag(storage))
        blob = pickle.dumps(est)
    with pytest.warns(DeviceWarning):
        loaded = pickle.loads(blob)
    assert loaded.device_ == "cpu" and str(loaded.net_.device) == "cpu"
    np.testing.assert_array_equal(loaded.transform(X), expected)
    assert loaded.net_.module is loaded.net_.module_  # one model, as after fit


def test_pickle_holds_the_weights_once_and_no_optimizer_moments(small_brains):
    est = AnatCLEmbedder(**FAST).fit(small_brains.images[:6], **_meta(small_brains, slice(6)))
    weights = sum(t.numel() * t.element_size() for t in est.net_.module_.state_dict().values())
    assert len(pickle.dumps(est)) < 1.1 * weights
    assert est.net_.optimizer_.param_groups[0]["lr"] == est.lr  # the settings stay readable


def test_a_last_batch_of_one_subject_is_dropped(small_brains):
    est = AnatCLEmbedder(max_epochs=1, batch_size=4, verbose=0, random_state=0)
    est.fit(small_brains.images[:9], **_meta(small_brains, slice(9)))
    assert est.history_[-1, "batches", :, "train_batch_size"] == [4, 4]
    est.fit(small_brains.images[:10], **_meta(small_brains, slice(10)))
    assert est.history_[-1, "batches", :, "train_batch_size"] == [4, 4, 2]


def test_grid_warning_only_for_pretrained_weights_and_at_the_users_line(small_brains, tmp_path):
    import warnings

    from anatcl_sklearn import GridWarning

    X = small_brains.images[:4]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(4)))
    assert not [w for w in caught if issubclass(w.category, GridWarning)]

    ckpt = tmp_path / "w.pth"
    _released_checkpoint(ckpt)
    est = AnatCLEmbedder(pretrained=str(ckpt), verbose=0)
    with pytest.warns(GridWarning, match="121x145x121.*filterwarnings") as fit_warn:
        est.fit(X)
    assert {w.filename for w in fit_warn} == {__file__}
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridWarning)  # fit has said it; transform's grid = fit's
        est.transform(X)


def test_grid_warning_compares_with_the_grid_a_checkpoint_records(small_brains, tmp_path):
    import warnings

    from anatcl_sklearn import GridWarning
    from anatcl_sklearn.models import load_checkpoint

    X, meta = small_brains.images[:6], _meta(small_brains, slice(6))
    trained = AnatCLEmbedder(**FAST).fit(X, **meta)
    assert trained.net_.module_.input_shape == X.shape[1:]
    path = tmp_path / "own.pt"  # a checkpoint that records its grid in opts
    torch.save({"opts": {"input_shape": list(X.shape[1:])},
                "model": trained.net_.module_.state_dict()}, path)
    assert load_checkpoint(path).input_shape == X.shape[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridWarning)  # its own grid: nothing to say
        AnatCLEmbedder(pretrained=str(path), verbose=0).fit(X)
        AnatCLEmbedder(pretrained=trained.net_.module_, verbose=0).fit(X)
    other = np.zeros((2, 20, 24, 20), dtype=np.float32)
    with pytest.warns(GridWarning, match="20x24x20 voxels, but these pretrained weights were "
                                          "trained on 24x28x24"):
        AnatCLEmbedder(pretrained=str(path), verbose=0).fit(other)


# ---------------------------------------------------------------- fit in two stages (#18 item 1)
def test_a_seeded_small_fit_gives_the_embeddings_of_before_the_plan():
    """tests/data/seeded_fit.py on the code before the fit was split into a plan and a launcher
    wrote seeded_fit_reference.npz: from scratch with a checkpoint folder, fine-tuned, frozen.
    The split gives the same numbers (measured: bit for bit on the same machine); the
    tolerance only absorbs another CPU's rounding."""
    import sys
    from pathlib import Path

    data = Path(__file__).parent / "data"
    sys.path.insert(0, str(data))
    try:
        import seeded_fit
    finally:
        sys.path.pop(0)
    out = seeded_fit.run()
    reference = np.load(data / "seeded_fit_reference.npz")
    assert sorted(out) == sorted(reference.files)
    for key in reference.files:
        np.testing.assert_allclose(out[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_a_frozen_fit_refuses_a_typo_in_net_params(small_brains, tmp_path):
    """A frozen fit builds no optimizer, yet still runs skorch's check of the net's
    arguments: a typo in net_params is refused as it is when training (it passed silently)."""
    X = small_brains.images[:4]
    AnatCLEmbedder(**FAST).fit(X, **_meta(small_brains, slice(4))).save_pretrained(
        tmp_path / "saved")
    with pytest.raises(ValueError, match="iterator_train__shuffle"):
        AnatCLEmbedder(pretrained=tmp_path / "saved", **FAST,
                       net_params={"iterator_train_shuffle": True}).fit(X)


def test_a_frozen_fit_builds_no_optimizer_and_no_loss(small_brains, tmp_path):
    X, meta = small_brains.images[:8], _meta(small_brains, slice(8))
    trained = AnatCLEmbedder(**FAST).fit(X, **meta)
    assert hasattr(trained.net_, "optimizer_") and hasattr(trained.net_, "criterion_")
    trained.save_pretrained(tmp_path / "saved")
    frozen = AnatCLEmbedder(pretrained=tmp_path / "saved", **FAST).fit(X)
    assert not hasattr(frozen.net_, "optimizer_") and not hasattr(frozen.net_, "criterion_")
    assert len(frozen.history_) == 0
    z = frozen.transform(X)
    np.testing.assert_array_equal(z, trained.transform(X))  # the same weights, embedding alike
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(frozen)).transform(X), z)
    np.testing.assert_array_equal(clone(frozen).fit(X).transform(X), z)
    frozen.save_pretrained(tmp_path / "again")
    again = AnatCLEmbedder(pretrained=tmp_path / "again", **FAST).fit(X)
    np.testing.assert_array_equal(again.transform(X), z)


@pytest.mark.parametrize("problem", ["missing", "fifo", "type"])
def test_a_wrong_image_path_fails_before_pretrained_weights_load(small_brains, tmp_path,
                                                                monkeypatch, problem):
    """Check first, then run: the plan loads pretrained weights before it reads the headers
    (their grid is the target), yet a missing, non-regular or mistyped file is named before any
    weights are downloaded or loaded (a stat each), in the words the header reader uses."""
    import os

    import nibabel as nib

    from anatcl_sklearn.models import _pretrained

    good = tmp_path / "good.nii"
    nib.save(nib.Nifti1Image(np.asarray(small_brains.images[0], np.float32), np.eye(4)), good)
    bad = tmp_path / {"missing": "gone.nii.gz", "fifo": "pipe.nii", "type": "scan.mgz"}[problem]
    if problem == "fifo":
        os.mkfifo(bad)
    elif problem == "type":
        bad.write_bytes(b"not an image")

    def loaded(*args, **kwargs):
        raise AssertionError("weights were loaded before the image paths were checked")

    monkeypatch.setattr(_pretrained, "resolve_weights", loaded)
    error = FileNotFoundError if problem == "missing" else ValueError
    with pytest.raises(error, match=r"X\[1\]"):
        AnatCLEmbedder(pretrained="anatcl-global", **FAST).fit([good, bad])


def test_a_pretrained_fit_on_another_grid_reads_each_header_once(small_brains, tmp_path,
                                                                 monkeypatch):
    """Weights recording a grid other than OpenBHB's, conform=True: the grid is decided from
    the loaded weights before the images are checked, so each header is read once per fit
    (it was read twice: against OpenBHB's grid, then against the weights')."""
    import nibabel as nib

    from anatcl_sklearn.images import _checking

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-24.0, -28.0, -24.0)
    paths = []
    for i, volume in enumerate(small_brains.images[:6]):
        paths.append(tmp_path / f"sub-{i}.nii")
        nib.save(nib.Nifti1Image(np.asarray(volume, np.float32), affine), paths[-1])
    meta = _meta(small_brains, slice(6))
    trained = AnatCLEmbedder(**dict(FAST, batch_size=6)).fit(paths, **meta)
    trained.save_pretrained(tmp_path / "saved")
    reads = []
    original = _checking.nifti_header
    monkeypatch.setattr(_checking, "nifti_header",
                        lambda path, *a, **k: reads.append(path) or original(path, *a, **k))
    frozen = AnatCLEmbedder(pretrained=tmp_path / "saved", conform=True, **FAST).fit(paths)
    assert sorted(map(str, reads)) == sorted(map(str, paths))  # once each
    assert frozen.input_shape_ == trained.input_shape_
    np.testing.assert_allclose(frozen.input_affine_, affine)
    reads.clear()
    tuned = AnatCLEmbedder(pretrained=tmp_path / "saved", conform=True, finetune=True,
                           **dict(FAST, batch_size=6)).fit(paths, **meta)
    assert sorted(map(str, reads)) == sorted(map(str, paths))
    assert tuned.input_shape_ == trained.input_shape_
