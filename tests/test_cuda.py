"""The GPU paths, checked where CUDA is available (skipped on CPU-only machines, CI included).

Run them on a GPU machine with ``python -m pytest tests/test_cuda.py -v``. They cover what the
CPU suite cannot: a CUDA-trained estimator read back on a machine without CUDA, the GPU-resident
cache, bfloat16 training, channels_last, torch.compile, DataParallel (one GPU, and every visible
GPU when there are several), augmentation drawn on the GPU, the user's GPU RNG and cuDNN setting
left alone, and the distributed trainer on CUDA.
"""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from anatcl_sklearn import AnatCLEmbedder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs CUDA: the GPU code paths")

GPU = dict(max_epochs=2, batch_size=8, lr=1e-4, verbose=0, random_state=0, device="cuda",
           data_parallel=False)


def _meta(brains, n):
    return dict(age=brains.age[:n], anatomy=brains.anatomy[:n])


def _corr(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


def test_cuda_fit_uses_fused_adam_and_its_pickle_transforms_on_a_machine_without_cuda(
        small_brains, tmp_path):
    X = small_brains.images[:16]
    est = AnatCLEmbedder(**GPU, augment="all", checkpoint_dir=tmp_path).fit(X, **_meta(small_brains, 16))
    assert est.net_.optimizer_.param_groups[0]["fused"] is True
    assert np.isfinite(est.history_[:, "train_loss"]).all()
    z_gpu = est.transform(X)
    (tmp_path / "est.pkl").write_bytes(pickle.dumps(est))
    np.save(tmp_path / "X.npy", X)
    code = ("import pickle, sys, numpy as np; est = pickle.load(open(sys.argv[1], 'rb')); "
            "np.save(sys.argv[3], est.transform(np.load(sys.argv[2])))")
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "est.pkl"), str(tmp_path / "X.npy"),
         str(tmp_path / "z.npy")],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    z_cpu = np.load(tmp_path / "z.npy")
    assert np.linalg.norm(z_cpu - z_gpu) < 2e-2 * np.linalg.norm(z_gpu)  # TF32 on the GPU


@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_gpu_resident_cache_trains_like_the_uncached_loader(small_brains, dtype):
    X, meta = small_brains.images[:16], _meta(small_brains, 16)
    plain = AnatCLEmbedder(**GPU).fit(X, **meta)
    cached = AnatCLEmbedder(**GPU, cache="device", cache_dtype=dtype).fit(X, **meta)
    assert cached.net_.volume_cache is None  # no copy of the data is kept
    np.testing.assert_allclose(cached.history_[:, "train_loss"], plain.history_[:, "train_loss"],
                               rtol=1e-2)
    assert _corr(cached.transform(X), plain.transform(X)) > 0.99


def test_bf16_training_stays_finite_and_close_to_fp32(small_brains):
    # on the CPU, torch 2.13's bf16 conv3d backward gave non-finite gradients in 15 of 43 fits
    X, meta = small_brains.images[:16], _meta(small_brains, 16)
    fp32 = AnatCLEmbedder(**GPU).fit(X, **meta)
    for seed in range(8):
        bf16 = AnatCLEmbedder(**{**GPU, "random_state": seed}, precision="bf16").fit(X, **meta)
        assert np.isfinite(bf16.history_[:, "train_loss"]).all()
    bf16 = AnatCLEmbedder(**GPU, precision="bf16").fit(X, **meta)
    np.testing.assert_allclose(bf16.history_[:, "train_loss"], fp32.history_[:, "train_loss"],
                               rtol=5e-2)
    assert _corr(bf16.transform(X), fp32.transform(X)) > 0.98


@pytest.mark.parametrize("option", [{"channels_last": True}, {"compile": True}])
def test_speed_options_train_the_same_model(small_brains, option):
    X, meta = small_brains.images[:16], _meta(small_brains, 16)
    plain = AnatCLEmbedder(**GPU).fit(X, **meta)
    fast = AnatCLEmbedder(**GPU, **option).fit(X, **meta)
    assert not any(k.startswith(("_orig_mod.", "module.")) for k in fast.net_.module_.state_dict())
    np.testing.assert_allclose(fast.history_[:, "train_loss"], plain.history_[:, "train_loss"],
                               rtol=1e-2)
    assert _corr(fast.transform(X), plain.transform(X)) > 0.99


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_data_parallel_trains_on_every_visible_gpu_and_unwraps(small_brains, precision):
    from anatcl_sklearn.embedder._parallel import AutocastDataParallel

    seen = []

    class Look(Callback):
        def on_batch_end(self, net, **kw):
            seen.append((type(net.module_), list(net.module_.device_ids)))

    X, meta = small_brains.images[:16], _meta(small_brains, 16)
    last = f"cuda:{torch.cuda.device_count() - 1}"  # not GPU 0 where there are several
    est = AnatCLEmbedder(**{**GPU, "device": last, "data_parallel": True}, precision=precision,
                         callbacks=[Look()]).fit(X, **meta)
    ids = seen[0][1]
    assert seen[0][0] is AutocastDataParallel and ids[0] == torch.cuda.device_count() - 1
    assert sorted(ids) == list(range(torch.cuda.device_count()))
    assert not isinstance(est.net_.module_, torch.nn.DataParallel)
    assert np.isfinite(est.history_[:, "train_loss"]).all()
    assert est.transform(X).shape == (16, 512)


def test_data_parallel_replicas_keep_bf16_where_torch_would_use_float16():
    # With one GPU, DataParallel never calls parallel_apply; call it with two replicas on GPU 0.
    from anatcl_sklearn.embedder._parallel import AutocastDataParallel

    lin = torch.nn.Linear(8, 8).cuda()
    x = torch.randn(4, 8, device="cuda")
    dtypes = {}
    for name, dp in (("plain", torch.nn.DataParallel(lin, device_ids=[0])),
                     ("ours", AutocastDataParallel(lin, torch.bfloat16, device_ids=[0]))):
        dp.device_ids = [0, 0]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            dtypes[name] = {o.dtype for o in dp.parallel_apply([lin, lin], [(x,), (x,)], [{}, {}])}
    assert dtypes["ours"] == {torch.bfloat16}
    assert dtypes["plain"] != {torch.bfloat16}  # torch's float16 fallback in replica threads


def test_augmentation_is_drawn_on_the_gpu():
    from anatcl_sklearn.embedder._augment import make_views

    x = torch.rand((4, 1, 16, 18, 16), device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    views = make_views(x, ("crop", "flip", "blur", "noise", "cutout"), gen)
    assert views.device.type == "cuda" and views.shape == (4, 2, 1, 16, 18, 16)
    again = make_views(x, ("crop", "flip", "blur", "noise", "cutout"),
                       torch.Generator(device="cuda").manual_seed(0))
    assert torch.equal(views, again)
    with pytest.raises(ValueError, match="generator is on cpu but the batch is on cuda"):
        make_views(x, ("crop",), torch.Generator())


def test_fit_leaves_the_users_gpu_rng_and_cudnn_setting_alone(small_brains):
    torch.cuda.manual_seed_all(1234)
    states = [torch.cuda.get_rng_state(i) for i in range(torch.cuda.device_count())]
    benchmark = torch.backends.cudnn.benchmark
    AnatCLEmbedder(**GPU, augment="flip").fit(small_brains.images[:8], **_meta(small_brains, 8))
    assert all(torch.equal(s, torch.cuda.get_rng_state(i)) for i, s in enumerate(states))
    assert torch.backends.cudnn.benchmark == benchmark


def test_volume_cache_on_the_gpu_decodes_exactly_to_the_host(small_brains):
    from anatcl_sklearn import check_images
    from anatcl_sklearn.embedder._cache import VolumeCache

    images = check_images(small_brains.images[:8])
    idx = torch.arange(8)
    for dtype in ("float16", "uint8"):
        on_gpu = VolumeCache(images, dtype, "cuda").batch(idx, "cpu")
        on_host = VolumeCache(images, dtype, "cpu").batch(idx, "cpu")
        torch.testing.assert_close(on_gpu, on_host, rtol=0, atol=1e-6)


def test_bf16_fit_with_augmentation_keeps_the_current_cuda_device(small_brains):
    current = torch.cuda.current_device()
    est = AnatCLEmbedder(max_epochs=2, batch_size=8, precision="bf16", augment="flip",
                         device="cuda", verbose=0, random_state=0)
    est.fit(small_brains.images[:16], age=small_brains.age[:16],
            anatomy=small_brains.anatomy[:16])
    assert np.isfinite(est.history_[:, "train_loss"]).all()
    assert torch.cuda.current_device() == current
