"""Two-view augmentations: what each one does to a volume, reproducibility, devices."""

import itertools
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anatcl_sklearn.embedder._augment import (
    CROP_FRACTION,
    CUTOUT_FRACTION,
    CUTOUT_MIN_FRACTION,
    NOISE_MAX_STD,
    augment_batch,
    make_views,
)

SHAPE = (10, 12, 10)


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, *SHAPE), generator=g) + 0.5  # no zero voxels: cutout is visible


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_views_have_the_batch_shape_differ_and_repeat_with_the_seed():
    x = _batch()
    names = ("crop", "flip", "blur", "noise", "cutout")
    views = make_views(x, names, _gen(1))
    assert views.shape == (6, 2, 1, *SHAPE) and views.dtype == x.dtype
    assert torch.isfinite(views).all()
    assert not torch.equal(views[:, 0], views[:, 1])
    torch.testing.assert_close(make_views(x, names, _gen(1)), views, rtol=0, atol=0)
    assert not torch.equal(make_views(x, names, _gen(2)), views)


def test_user_batch_is_not_modified():
    x = _batch()
    before = x.clone()
    make_views(x, ("crop", "flip", "blur", "noise", "cutout"), _gen())
    assert torch.equal(x, before)


def test_flip_mirrors_the_left_right_axis_for_about_half_the_volumes():
    x = _batch(64)
    view = augment_batch(x, ("flip",), _gen())
    flipped = [torch.equal(v, xi.flip(-3)) for v, xi in zip(view, x)]
    kept = [torch.equal(v, xi) for v, xi in zip(view, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 <= sum(flipped) <= 48


def test_crop_is_a_resized_box_of_the_crop_fraction():
    x = _batch(4)
    view = augment_batch(x, ("crop",), _gen())
    size = [round(s * CROP_FRACTION) for s in SHAPE]
    for v, xi in zip(view, x):
        candidates = [
            F.interpolate(xi[None, :, a:a + size[0], b:b + size[1], c:c + size[2]], size=SHAPE,
                          mode="trilinear", align_corners=False)[0]
            for a, b, c in itertools.product(*(range(s - k + 1) for s, k in zip(SHAPE, size)))
        ]
        assert any(torch.allclose(v, cand) for cand in candidates)


def test_cutout_zeroes_one_box_of_the_cutout_fractions():
    x = _batch(8)
    view = augment_batch(x, ("cutout",), _gen())
    for v, xi in zip(view, x):
        zero = (v == 0)[0]
        assert torch.equal(v[0][~zero], xi[0][~zero])  # everything else untouched
        idx = zero.nonzero()
        extent = (idx.max(0).values - idx.min(0).values + 1).tolist()
        assert zero.sum().item() == np.prod(extent)  # one box
        for e, s in zip(extent, SHAPE):
            assert max(1, round(s * CUTOUT_MIN_FRACTION)) <= e <= round(s * CUTOUT_FRACTION)


def test_noise_is_zero_or_bounded_by_the_views_spread():
    x = _batch(64)
    view = augment_batch(x, ("noise",), _gen())
    diff = (view - x).flatten(1)
    noisy = diff.abs().amax(1) > 0
    assert 16 <= noisy.sum().item() <= 48
    assert (diff[noisy].std(1) <= 1.05 * NOISE_MAX_STD * x.flatten(1)[noisy].std(1)).all()


def test_blur_keeps_the_mean_and_smooths_about_half_the_volumes():
    x = _batch(64)
    view = augment_batch(x, ("blur",), _gen())

    def roughness(t):
        return (t[..., 1:, :, :] - t[..., :-1, :, :]).abs().mean()

    changed = [not torch.equal(v, xi) for v, xi in zip(view, x)]
    assert 16 <= sum(changed) <= 48
    for v, xi, c in zip(view, x, changed):
        if c:
            assert roughness(v) < roughness(xi)
            assert abs(v.mean() - xi.mean()) < 0.02


def test_a_generator_on_another_device_is_refused():
    x = _batch(2)
    gen = torch.Generator(device="cpu")
    augment_batch(x, ("crop",), gen)  # same device: fine
    with pytest.raises(ValueError, match="generator is on .* but the batch is on meta"):
        augment_batch(torch.empty((2, 1, *SHAPE), device="meta"), ("crop",), gen)


def test_autocast_data_parallel_replicas_get_the_training_dtype():
    # torch's parallel_apply re-enters autocast in each replica thread without the dtype, so a
    # thread falls back to the device's default; the wrapper must set the dtype itself.
    from anatcl_sklearn.embedder._parallel import _AutocastCall

    seen = {}

    def probe(name):
        seen[name] = torch.get_autocast_dtype("cpu")

    def worker(call, name):
        with torch.amp.autocast("cpu", enabled=True):  # what parallel_apply does
            call(name)

    with torch.autocast("cpu", dtype=torch.float16):
        for name, call in (("plain", probe), ("wrapped", _AutocastCall(probe, "cpu", torch.float16))):
            t = threading.Thread(target=worker, args=(call, name))
            t.start()
            t.join()
    assert seen["plain"] != torch.float16  # the failure the wrapper exists for
    assert seen["wrapped"] == torch.float16
