"""Tests of anatcl_sklearn.losses against straightforward float64 loop implementations."""

import math

import numpy as np
import pytest
import torch

from anatcl_sklearn.losses import (
    AgeRegressionHead,
    AnatCLLoss,
    ExpWLoss,
    L1AgeLoss,
    SimCLRLoss,
    YAwareLoss,
    age_kernel,
    anatcl_loss,
    anatomy_kernel,
    cauchy_kernel,
    expw_loss,
    gaussian_kernel,
    global_anatomy_kernel,
    l1_age_loss,
    local_anatomy_kernel,
    rbf_kernel,
    simclr_loss,
    yaware_loss,
)
from anatcl_sklearn.losses._contrastive import _contrastive_rows, _weighted_infonce

SIZES = [(2, 1), (2, 2), (5, 1), (5, 3), (7, 2)]  # (n_subjects, n_views)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _data(n, n_views, d=6, n_regions=5, n_measures=3, seed=0):
    rng = _rng(seed)
    z = rng.normal(size=(n, n_views, d)) * rng.uniform(0.5, 3.0, size=(n, n_views, 1))
    age = rng.uniform(20, 80, size=n)
    anatomy = rng.uniform(0, 1, size=(n, n_regions, n_measures))
    return z, age, anatomy


# ---------------------------------------------------------------------------------------------
# Reference implementations: one anchor, one pair, one region at a time, in float64 NumPy.
# Rows are laid out view-major here (the reference code's torch.cat(torch.unbind(z, 1))), the
# opposite of the package's subject-major layout; the mean over anchors must not care.
# ---------------------------------------------------------------------------------------------


def ref_rows(z):
    n, n_views, _ = z.shape
    rows, subject = [], []
    for v in range(n_views):
        for i in range(n):
            rows.append(z[i, v] / np.linalg.norm(z[i, v]))
            subject.append(i)
    return rows, subject


def ref_age_kernel(age, sigma, kind):
    n = len(age)
    w = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            diff = age[i] - age[j]
            if kind == "rbf":
                w[i, j] = math.exp(-(diff**2) / (2 * sigma**2))
            elif kind == "gaussian":
                w[i, j] = math.exp(-(diff**2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)
            else:
                w[i, j] = 1.0 / (sigma * diff**2 + 1.0)
    return w


def ref_cosine(u, v):
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 0.0
    return float(np.dot(u, v) / (nu * nv))


def ref_local_kernel(anatomy):
    n, n_regions, _ = anatomy.shape
    w = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            w[i, j] = sum(ref_cosine(anatomy[i, r, :], anatomy[j, r, :]) for r in range(n_regions)) / n_regions
    return w


def ref_global_kernel(anatomy):
    n, _, n_measures = anatomy.shape
    w = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            w[i, j] = sum(ref_cosine(anatomy[i, :, m], anatomy[j, :, m]) for m in range(n_measures)) / n_measures
    return w


def ref_logsumexp(values):
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def ref_yaware(z, weights, temperature):
    rows, subject = ref_rows(z)
    losses = []
    for a in range(len(rows)):
        others = [t for t in range(len(rows)) if t != a]
        s = {t: float(rows[a] @ rows[t]) / temperature for t in others}
        log_denominator = ref_logsumexp([s[t] for t in others])
        w = {i: weights[subject[a], subject[i]] for i in others}
        total = sum(w.values())
        if total == 0:
            losses.append(0.0)
            continue
        losses.append(-sum(w[i] / total * (s[i] - log_denominator) for i in others))
    return float(np.mean(losses))


def ref_expw(z, weights, temperature):
    rows, subject = ref_rows(z)
    shift = 1.0 / temperature
    losses = []
    for a in range(len(rows)):
        others = [t for t in range(len(rows)) if t != a]
        s = {t: float(rows[a] @ rows[t]) / temperature for t in others}
        w = {t: weights[subject[a], subject[t]] for t in others}
        log_denominator = ref_logsumexp([(s[k] - shift) * (1 - w[k]) for k in others])
        total = sum(w.values())
        losses.append(-sum(w[i] / total * ((s[i] - shift) - log_denominator) for i in others))
    return float(np.mean(losses))


def ref_simclr(z, temperature):
    rows, subject = ref_rows(z)
    losses = []
    for a in range(len(rows)):
        others = [t for t in range(len(rows)) if t != a]
        s = {t: float(rows[a] @ rows[t]) / temperature for t in others}
        log_denominator = ref_logsumexp([s[t] for t in others])
        positives = [t for t in others if subject[t] == subject[a]]
        losses.append(-np.mean([s[p] - log_denominator for p in positives]))
    return float(np.mean(losses))


def t64(x):
    return torch.tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rbf", "gaussian", "cauchy"])
@pytest.mark.parametrize("sigma", [0.3, 2.0, 7.5])
def test_age_kernels_match_formulas(kind, sigma):
    age = _rng(1).uniform(20, 80, size=9)
    expected = ref_age_kernel(age, sigma, kind)
    named = {"rbf": rbf_kernel, "gaussian": gaussian_kernel, "cauchy": cauchy_kernel}[kind]
    np.testing.assert_allclose(named(age, sigma=sigma).numpy(), expected, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(age_kernel(t64(age), sigma=sigma, kind=kind).numpy(), expected, rtol=1e-12)


def test_age_kernel_accepts_column_lists_and_integers():
    age = [20, 25, 31]
    expected = ref_age_kernel(np.array(age, float), 2.0, "rbf")
    for variant in (age, np.array(age)[:, None], torch.tensor(age), torch.tensor(age, dtype=torch.bfloat16)):
        out = rbf_kernel(variant, sigma=2.0)
        assert out.shape == (3, 3) and out.is_floating_point()
        np.testing.assert_allclose(out.double().numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("shape", [(4, 5, 3), (6, 68, 3), (3, 2, 1)])
def test_anatomy_kernels_match_eq2_and_eq3(shape):
    anatomy = _rng(2).uniform(0, 1, size=shape)
    np.testing.assert_allclose(local_anatomy_kernel(anatomy).numpy(), ref_local_kernel(anatomy), rtol=1e-12)
    np.testing.assert_allclose(global_anatomy_kernel(anatomy).numpy(), ref_global_kernel(anatomy), rtol=1e-12)
    np.testing.assert_allclose(anatomy_kernel(anatomy, "local").numpy(), ref_local_kernel(anatomy), rtol=1e-12)
    np.testing.assert_allclose(anatomy_kernel(anatomy, "global").numpy(), ref_global_kernel(anatomy), rtol=1e-12)


def test_anatomy_kernels_invariances_tell_the_descriptors_apart():
    anatomy = _rng(3).uniform(0.1, 1, size=(5, 7, 3))
    per_measure = anatomy * np.array([1.0, 1000.0, 0.01])  # units of each measure
    per_region = anatomy * _rng(4).uniform(0.5, 2, size=(1, 7, 1))  # rescale each region vector
    global_w, local_w = global_anatomy_kernel(anatomy), local_anatomy_kernel(anatomy)
    torch.testing.assert_close(global_anatomy_kernel(per_measure), global_w)
    torch.testing.assert_close(local_anatomy_kernel(per_region), local_w)
    assert not torch.allclose(local_anatomy_kernel(per_measure), local_w, atol=1e-3)
    assert not torch.allclose(global_anatomy_kernel(per_region), global_w, atol=1e-4)
    torch.testing.assert_close(torch.diagonal(global_w), torch.ones(5, dtype=torch.float64))


def test_anatomy_kernel_zero_region_gives_zero_cosine_not_nan():
    anatomy = _rng(5).uniform(0, 1, size=(3, 4, 3))
    anatomy[0, 2, :] = 0.0
    w = local_anatomy_kernel(anatomy)
    assert torch.isfinite(w).all()
    np.testing.assert_allclose(w.numpy(), ref_local_kernel(anatomy), rtol=1e-12)
    assert w[0, 0] == pytest.approx(3 / 4)


def test_kernels_do_not_modify_inputs():
    age = np.array([30.0, 40.0, 50.0])
    anatomy = _rng(6).uniform(0, 1, size=(3, 4, 3))
    anatomy_t = torch.tensor(anatomy)
    before_age, before_anatomy = age.copy(), anatomy.copy()
    rbf_kernel(age)
    local_anatomy_kernel(anatomy)
    global_anatomy_kernel(anatomy_t)
    np.testing.assert_array_equal(age, before_age)
    np.testing.assert_array_equal(anatomy, before_anatomy)
    np.testing.assert_array_equal(anatomy_t.numpy(), before_anatomy)


# ---------------------------------------------------------------------------------------------
# Losses against the loops
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, n_views", SIZES)
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_yaware_matches_reference(n, n_views, temperature):
    z, _, _ = _data(n, n_views, seed=n * 10 + n_views)
    # Asymmetric weights with different row sums and some zeros: row normalisation matters.
    weights = _rng(n).uniform(0, 1, size=(n, n)) * (_rng(n + 1).uniform(size=(n, n)) > 0.3)
    weights[np.arange(n), np.arange(n)] = 1.0
    expected = ref_yaware(z, weights, temperature)
    got = yaware_loss(t64(z), weights, temperature=temperature)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)
    got32 = yaware_loss(torch.tensor(z, dtype=torch.float32), torch.tensor(weights), temperature=temperature)
    assert got32.dtype == torch.float32
    assert got32.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_yaware_normalises_rows_not_columns():
    z, _, _ = _data(4, 1, seed=9)
    weights = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0.1], [0, 1, 0.1, 1.0]])
    rows, _ = ref_rows(z)
    s = np.array([[rows[a] @ rows[t] / 0.1 for t in range(4)] for a in range(4)])
    off = ~np.eye(4, dtype=bool)
    log_softmax = s - np.array([ref_logsumexp(list(s[a][off[a]])) for a in range(4)])[:, None]
    w = weights * off
    by_columns = -np.mean(np.sum(w / w.sum(0, keepdims=True) * np.where(off, log_softmax, 0), 1))
    got = yaware_loss(t64(z), weights).item()
    assert got == pytest.approx(ref_yaware(z, weights, 0.1), rel=1e-10)
    assert abs(got - by_columns) > 1e-3


@pytest.mark.parametrize("n, n_views", SIZES)
@pytest.mark.parametrize("kind", ["rbf", "gaussian"])
def test_expw_matches_reference(n, n_views, kind):
    z, age, _ = _data(n, n_views, seed=n + n_views)
    weights = ref_age_kernel(age, 10.0, kind)
    if n_views == 1:
        weights = weights + 0.05  # every anchor needs a positive for the plain reference
    expected = ref_expw(z, weights, 0.1)
    got = expw_loss(t64(z), t64(weights), temperature=0.1)
    assert got.item() == pytest.approx(expected, rel=1e-10)
    assert expw_loss(torch.tensor(z, dtype=torch.float32), weights).item() == pytest.approx(expected, rel=1e-4)


def test_expw_shift_changes_the_objective():
    # The reference code's shift by 1/tau does not cancel: the result differs from the formula
    # with exp(s (1 - w)) in the denominator, computed here by hand.
    z, age, _ = _data(5, 2, seed=11)
    weights = ref_age_kernel(age, 10.0, "rbf")
    rows, subject = ref_rows(z)
    losses = []
    for a in range(len(rows)):
        others = [t for t in range(len(rows)) if t != a]
        s = {t: float(rows[a] @ rows[t]) / 0.1 for t in others}
        w = {t: weights[subject[a], subject[t]] for t in others}
        lse = ref_logsumexp([s[k] * (1 - w[k]) for k in others])
        losses.append(-sum(w[i] / sum(w.values()) * (s[i] - lse) for i in others))
    unshifted = float(np.mean(losses))
    got = expw_loss(t64(z), weights).item()
    assert got == pytest.approx(ref_expw(z, weights, 0.1), rel=1e-10)
    assert abs(got - unshifted) > 1e-2


@pytest.mark.parametrize("n, n_views", [(2, 2), (5, 2), (4, 3), (7, 3)])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_simclr_matches_reference(n, n_views, temperature):
    z, _, _ = _data(n, n_views, seed=3 * n + n_views)
    got = simclr_loss(t64(z), temperature=temperature)
    assert got.item() == pytest.approx(ref_simclr(z, temperature), rel=1e-10)


@pytest.mark.parametrize("n, n_views", SIZES)
@pytest.mark.parametrize("descriptor", ["global", "local"])
@pytest.mark.parametrize("lambdas", [(1.0, 1.0), (0.5, 2.0)])
def test_anatcl_matches_reference(n, n_views, descriptor, lambdas):
    z, age, anatomy = _data(n, n_views, seed=n * n_views)
    lambda_age, lambda_anat = lambdas
    anat_w = ref_local_kernel(anatomy) if descriptor == "local" else ref_global_kernel(anatomy)
    expected = lambda_age * ref_yaware(z, ref_age_kernel(age, 5.0, "rbf"), 0.2) + lambda_anat * ref_yaware(
        z, anat_w, 0.2
    )
    got = anatcl_loss(
        t64(z), age, anatomy, descriptor=descriptor, sigma=5.0, lambda_age=lambda_age,
        lambda_anat=lambda_anat, temperature=0.2,
    )
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_anatcl_lambda_zero_reduces_to_single_terms():
    z, age, anatomy = _data(6, 2, seed=21)
    z = t64(z)
    yaware = yaware_loss(z, rbf_kernel(age, sigma=3.0))
    anat_only = yaware_loss(z, local_anatomy_kernel(anatomy))
    assert anatcl_loss(z, age, None, lambda_anat=0.0, sigma=3.0).item() == pytest.approx(yaware.item(), rel=1e-12)
    assert anatcl_loss(z, age, anatomy, lambda_anat=0.0, sigma=3.0).item() == pytest.approx(yaware.item(), rel=1e-12)
    got = anatcl_loss(z, None, anatomy, lambda_age=0.0, descriptor="local")
    assert got.item() == pytest.approx(anat_only.item(), rel=1e-12)
    cauchy = anatcl_loss(z, age, anatomy, lambda_anat=0.0, sigma=0.1, kernel="cauchy")
    assert cauchy.item() == pytest.approx(ref_yaware(z.numpy(), ref_age_kernel(age, 0.1, "cauchy"), 0.1), rel=1e-10)


def test_losses_are_invariant_to_feature_scale_and_subject_order():
    z, age, anatomy = _data(6, 2, seed=31)
    base = anatcl_loss(t64(z), age, anatomy).item()
    scaled = t64(z) * t64(_rng(7).uniform(0.01, 100, size=(6, 2, 1)))
    assert anatcl_loss(scaled, age, anatomy).item() == pytest.approx(base, rel=1e-12)
    normalized = torch.nn.functional.normalize(t64(z), dim=-1)
    assert anatcl_loss(normalized, age, anatomy).item() == pytest.approx(base, rel=1e-12)
    perm = _rng(8).permutation(6)
    assert anatcl_loss(t64(z[perm]), age[perm], anatomy[perm]).item() == pytest.approx(base, rel=1e-12)


def test_gradients_match_finite_differences():
    z, age, anatomy = _data(4, 2, d=5, seed=41)
    z = t64(z).requires_grad_(True)
    weights = t64(ref_age_kernel(age, 10.0, "rbf"))
    assert torch.autograd.gradcheck(lambda x: anatcl_loss(x, age, anatomy, descriptor="local"), (z,))
    assert torch.autograd.gradcheck(lambda x: expw_loss(x, weights), (z,))
    assert torch.autograd.gradcheck(lambda x: simclr_loss(x), (z,))


# ---------------------------------------------------------------------------------------------
# Anchors without positives, stability, precision
# ---------------------------------------------------------------------------------------------


def test_rows_without_positives_contribute_zero_and_count_in_the_mean():
    rng = _rng(51)
    z = t64(rng.normal(size=(4, 1, 6))).requires_grad_(True)
    age = np.array([20.0, 20.5, 21.0, 90.0])  # the 90-year-old's weights underflow to 0
    weights = rbf_kernel(age, sigma=0.5)
    assert weights[3, :3].max() == 0
    loss = yaware_loss(z, weights)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # ref_yaware adds 0 for the anchor without positives and averages over all 4 anchors
    assert loss.item() == pytest.approx(ref_yaware(z.detach().numpy(), weights.numpy(), 0.1), rel=1e-10)
    assert z.grad[3].abs().max() > 0  # still a negative for the others


def test_all_rows_without_positives_give_zero_loss_and_gradient():
    z = torch.randn(3, 1, 8, requires_grad=True)
    for loss in (
        yaware_loss(z, torch.eye(3)),
        expw_loss(z, torch.eye(3)),
        anatcl_loss(z, [10.0, 50.0, 90.0], None, lambda_anat=0.0, sigma=0.5),
    ):
        (grad,) = torch.autograd.grad(loss, z)
        assert loss.item() == 0.0
        assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [1e4, 1e30])
def test_stable_at_low_temperature_and_large_norms(dtype, scale):
    z, age, anatomy = _data(16, 2, d=32, seed=61)
    z = (torch.tensor(z, dtype=torch.float32) * scale).to(dtype).requires_grad_(True)
    losses = [
        anatcl_loss(z, age, anatomy, temperature=0.01, descriptor="local"),
        yaware_loss(z, rbf_kernel(age, sigma=0.1), temperature=0.01),
        expw_loss(z, rbf_kernel(age, sigma=0.1), temperature=0.01),
        simclr_loss(z, temperature=0.01),
    ]
    for loss in losses:
        assert loss.dtype == torch.float32
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and grad.dtype == dtype and torch.isfinite(grad).all()
    expected = anatcl_loss(z.detach().double(), age, anatomy, temperature=0.01, descriptor="local")
    assert losses[0].item() == pytest.approx(expected.item(), rel=1e-4)


def test_autocast_bfloat16_is_computed_in_float32():
    z, age, anatomy = _data(8, 2, d=16, seed=71)
    z = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    plain = anatcl_loss(z, age, anatomy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = anatcl_loss(z, age, anatomy)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, plain)


# ---------------------------------------------------------------------------------------------
# Data-parallel core and memory
# ---------------------------------------------------------------------------------------------


def test_rows_core_splits_across_ranks():
    z, age, anatomy = _data(8, 2, seed=81)
    z = t64(z)
    weights = [rbf_kernel(age), global_anatomy_kernel(anatomy)]
    full = _contrastive_rows(z, z, weights, 0.1)
    halves = [
        _contrastive_rows(z[start : start + 4], z, [w[start : start + 4] for w in weights], 0.1, self_offset=start)
        for start in (0, 4)
    ]
    assert full.item() == pytest.approx(anatcl_loss(z, age, anatomy).item(), rel=1e-12)
    assert full.item() == pytest.approx(float(sum(halves)) / 2, rel=1e-12)


def test_row_weight_core_matches_subject_weight_path():
    z, age, anatomy = _data(5, 3, seed=83)
    z = t64(z)
    weights = [rbf_kernel(age, sigma=8.0), local_anatomy_kernel(anatomy)]
    rows = torch.nn.functional.normalize(z, dim=-1).reshape(15, -1)
    sim = rows @ rows.T / 0.1
    self_mask = torch.eye(15, dtype=torch.bool)
    tiled = [w.repeat_interleave(3, 0).repeat_interleave(3, 1) for w in weights]
    per_anchor = _weighted_infonce(sim, tiled, self_mask, coefs=(0.5, 2.0))
    expected = anatcl_loss(z, age, anatomy, descriptor="local", sigma=8.0, lambda_age=0.5, lambda_anat=2.0)
    assert per_anchor.mean().item() == pytest.approx(expected.item(), rel=1e-12)


def test_tiny_weights_next_to_self_weight_keep_their_proportions():
    # With one view, w[i, i] = 1 is excluded; normalising 1e-10 and 2e-10 must not lose them to
    # rounding against the 1 (float32 has 7 digits).
    z, _, _ = _data(3, 1, seed=85)
    weights = np.array([[1.0, 1e-10, 2e-10], [1e-10, 1.0, 0.5], [2e-10, 0.5, 1.0]])
    expected = ref_yaware(z, weights, 0.1)
    got = yaware_loss(torch.tensor(z, dtype=torch.float32), weights)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def _peak_cpu_bytes(fn):
    """Peak bytes allocated by torch on the CPU while fn runs (None if the profiler can't say)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        tree = prof.profiler.kineto_results.experimental_event_tree()
    except AttributeError:
        return None
    stack, sizes = list(tree), []
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if hasattr(node.extra_fields, "alloc_size"):
            sizes.append((node.start_time_ns, node.extra_fields.alloc_size))
    current = peak = 0
    for _, size in sorted(sizes):
        current += size
        peak = max(peak, current)
    return peak or None


def test_memory_is_quadratic_in_rows_not_cubic():
    n, n_views = 256, 2
    z, age, anatomy = _data(n, n_views, d=128, n_regions=68, seed=91)
    z = torch.tensor(z, dtype=torch.float32, requires_grad=True)

    def step():
        anatcl_loss(z, age, anatomy, descriptor="local").backward()

    peak = _peak_cpu_bytes(step)
    if peak is None:
        pytest.skip("this torch profiler does not report CPU allocations")
    rows_squared = (n * n_views) ** 2 * 4
    # A per-pair region tensor (n, n, 68, 3) alone would be 50 x rows_squared bytes.
    assert peak < 8 * rows_squared, f"peak {peak / 1e6:.1f} MB"


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

Z = torch.randn(4, 2, 8)
AGE = np.array([20.0, 30.0, 40.0, 50.0])
ANAT = _rng(0).uniform(0, 1, size=(4, 5, 3))


def test_negative_anatomy_advice_names_each_remedy_once():
    with pytest.raises(ValueError) as info:
        anatcl_loss(Z, AGE, ANAT - 0.5)
    message = str(info.value)
    assert "anatomy must be non-negative; got a minimum of" in message
    assert ("min-max scale them (AnatomyScaler, or anatomy_scaling='minmax' in AnatCLEmbedder, "
            "with or without torchrun), not z-scores.") in message
    assert message.count("AnatCLEmbedder") == 1


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: anatcl_loss(torch.randn(4, 8), AGE, ANAT), "z must have shape"),
        (lambda: anatcl_loss(torch.randn(1, 1, 8), AGE[:1], ANAT[:1]), "at least 2 rows"),
        (lambda: anatcl_loss(Z, AGE[:3], ANAT), "age has 3 values but z has 4"),
        (lambda: anatcl_loss(Z, AGE[:, None, None], ANAT), "age must have shape"),
        (lambda: anatcl_loss(Z, AGE, ANAT[:3]), "anatomy has 3 subjects but z has 4"),
        (lambda: anatcl_loss(Z, AGE, ANAT[:, :, 0]), "anatomy must have shape"),
        (lambda: anatcl_loss(Z, [20, np.nan, 40, 50], ANAT), "age must be finite"),
        (lambda: anatcl_loss(Z, AGE, np.where(ANAT > 0.9, np.inf, ANAT)), "anatomy must be finite"),
        (lambda: anatcl_loss(Z, AGE, ANAT - 0.5), "anatomy must be non-negative"),
        (lambda: anatcl_loss(Z, AGE, ANAT, descriptor="regional"), "'descriptor' parameter of \\w+ must be a str among"),
        (lambda: anatcl_loss(Z, AGE, ANAT, kernel="laplace"), "'kernel' parameter of \\w+ must be a str among"),
        (lambda: anatcl_loss(Z, AGE, ANAT, sigma=0.0), r"'sigma' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
        (lambda: anatcl_loss(Z, AGE, ANAT, sigma=-1.0), r"'sigma' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
        (lambda: anatcl_loss(Z, AGE, ANAT, temperature=0.0), r"'temperature' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
        (lambda: anatcl_loss(Z, AGE, ANAT, temperature=float("nan")), r"'temperature' parameter of anatcl_loss must be a float in the range \(0\.0, inf\)\. Got nan"),
        (lambda: anatcl_loss(Z, AGE, ANAT, lambda_age=-1.0), r"'lambda_age' parameter of \w+ must be a float in the range \[0\.0, inf\)"),
        (lambda: anatcl_loss(Z, AGE, ANAT, lambda_age=0.0, lambda_anat=0.0), "both 0"),
        (lambda: anatcl_loss(Z, None, ANAT), "age is required"),
        (lambda: anatcl_loss(Z, AGE, None), "anatomy is required"),
        (lambda: anatcl_loss(Z, AGE[:3], ANAT, lambda_age=0.0), "age has 3 values"),
        (lambda: yaware_loss(Z, np.ones((4, 3))), r"weights must have shape \(n_samples, n_samples\) = \(4, 4\)"),
        (lambda: yaware_loss(Z, -np.ones((4, 4))), "weights must be non-negative"),
        (lambda: yaware_loss(Z, np.full((4, 4), np.nan)), "weights must be finite"),
        (lambda: yaware_loss(Z, np.ones((4, 4)), temperature=-0.1), r"'temperature' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
        (lambda: expw_loss(Z, np.ones((5, 5))), "weights must have shape"),
        (lambda: simclr_loss(torch.randn(4, 1, 8)), "at least 2 views"),
        (lambda: rbf_kernel(AGE, sigma=0), r"'sigma' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
        (lambda: age_kernel(AGE, kind="laplace"), "'kind' parameter of \\w+ must be a str among"),
        (lambda: local_anatomy_kernel(np.ones((4, 5))), "anatomy must have shape"),
        (lambda: anatomy_kernel(ANAT, descriptor="both"), "'descriptor' parameter of \\w+ must be a str among"),
        (lambda: AnatCLLoss(descriptor="foo"), "'descriptor' parameter of \\w+ must be a str among"),
        (lambda: AnatCLLoss(temperature=0), r"'temperature' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
        (lambda: YAwareLoss(sigma=-2), r"'sigma' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
        (lambda: ExpWLoss(kernel="box"), "'kernel' parameter of \\w+ must be a str among"),
        (lambda: SimCLRLoss(temperature=-1), r"'temperature' parameter of \w+ must be a float in the range \(0\.0, inf\)"),
        (lambda: YAwareLoss()(Z, AGE[:2]), "age has 2 values but z has 4"),
        (lambda: l1_age_loss(torch.zeros(4), AGE[:3]), "age has 3 values"),
        (lambda: l1_age_loss(torch.zeros(4, 2), AGE), "pred must have shape"),
        (lambda: AgeRegressionHead(8)(torch.zeros(4, 7)), r"features must have shape \(n_samples, 8\)"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: anatcl_loss(Z.numpy(), AGE, ANAT), "z must be a torch.Tensor"),
        (lambda: anatcl_loss(Z.long(), AGE, ANAT), "z must be a floating tensor"),
        (lambda: anatcl_loss(Z, ["a", "b", "c", "d"], ANAT), "age must hold real numbers"),
        (lambda: anatcl_loss(Z, AGE, ANAT, temperature="0.1"), r"'temperature' parameter of anatcl_loss must be a float in the range \(0\.0, inf\)\. Got '0\.1'"),
        (lambda: l1_age_loss(np.zeros(4), AGE), "pred must be a torch.Tensor"),
    ],
)
def test_bad_types_raise_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_losses_do_not_modify_inputs():
    z = torch.randn(5, 2, 8)
    age, anatomy = np.linspace(20, 60, 5), _rng(1).uniform(0, 1, size=(5, 4, 3))
    copies = z.clone(), age.copy(), anatomy.copy()
    anatcl_loss(z, age, anatomy, descriptor="local")
    yaware_loss(z, rbf_kernel(age))
    assert torch.equal(z, copies[0])
    np.testing.assert_array_equal(age, copies[1])
    np.testing.assert_array_equal(anatomy, copies[2])


# ---------------------------------------------------------------------------------------------
# Modules and the L1 baseline
# ---------------------------------------------------------------------------------------------


def test_modules_match_functions():
    z, age, anatomy = _data(6, 2, seed=101)
    z = t64(z)
    module = AnatCLLoss(descriptor="local", sigma=3.0, lambda_age=0.5, lambda_anat=2.0, temperature=0.2)
    expected = anatcl_loss(
        z, age, anatomy, descriptor="local", sigma=3.0, lambda_age=0.5, lambda_anat=2.0, temperature=0.2
    )
    assert module(z, age, anatomy).item() == pytest.approx(expected.item(), rel=1e-12)
    for kind in ("rbf", "gaussian", "cauchy"):
        weights = age_kernel(age, sigma=1.5, kind=kind)
        got = YAwareLoss(sigma=1.5, temperature=0.3, kernel=kind)(z, torch.tensor(age))
        assert got.item() == pytest.approx(ref_yaware(z.numpy(), weights.numpy(), 0.3), rel=1e-10)
        got = ExpWLoss(sigma=1.5, temperature=0.3, kernel=kind)(z, age[:, None])
        assert got.item() == pytest.approx(expw_loss(z, weights, temperature=0.3).item(), rel=1e-12)
    assert SimCLRLoss(0.3)(z).item() == pytest.approx(ref_simclr(z.numpy(), 0.3), rel=1e-10)
    assert "descriptor='local'" in repr(module)


def test_l1_loss_and_head():
    pred = torch.tensor([[30.0], [41.0], [50.0]], requires_grad=True)
    age = np.array([32.0, 40.0, 50.0])
    loss = L1AgeLoss()(pred, age)
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[-1.0], [1.0], [0.0]]) / 3)
    assert l1_age_loss(pred.detach()[:, 0], torch.tensor(age)).item() == pytest.approx(1.0)

    head = AgeRegressionHead(4, init_age=45.0)
    assert head(torch.zeros(2, 4)).tolist() == [45.0, 45.0]
    torch.manual_seed(0)
    features = torch.randn(64, 4)
    target = 45.0 + features @ torch.tensor([5.0, -3.0, 0.0, 2.0])
    optimizer = torch.optim.Adam(head.parameters(), lr=0.1)
    criterion = L1AgeLoss()
    initial = criterion(head(features), target).item()
    for _ in range(200):
        optimizer.zero_grad()
        loss = criterion(head(features), target)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1 * initial
