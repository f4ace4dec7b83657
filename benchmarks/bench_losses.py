"""Forward+backward time and peak memory of ``anatcl_loss`` against a straightforward version.

The straightforward version is what one writes from the paper and the reference code: the local
kernel as a loop over regions (the global one as a loop over measures) of broadcast cosine
similarities, masks tiled to the views with ``repeat``, a diagonal mask built with ``scatter``,
and each of the two loss terms computing its own similarity matrix and log-sum-exp.

Usage::

    python benchmarks/bench_losses.py            # n = 32 ... 2048
    python benchmarks/bench_losses.py --quick    # n = 32, 128, 512, fewer repeats

The table is printed and written to ``benchmarks/output/bench_losses_<T>threads.{csv,md}``.
Times are the best of a few passes (``--threads 1`` is steadier on a busy machine). Peak memory is
the largest amount of CPU memory held by torch allocations during one forward+backward pass,
read from the torch profiler's allocation events (CUDA: ``torch.cuda.max_memory_allocated``).
"""

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anatcl_sklearn.losses import anatcl_loss

OUTPUT = Path(__file__).resolve().parent / "output"


def straightforward_anatcl(
    z, age, anatomy, descriptor="global", sigma=2.0, lambda_age=1.0, lambda_anat=1.0, temperature=0.1
):
    """AnatCL loss written the direct way (loops over regions, tiled masks, two softmaxes)."""
    n, n_views, _ = z.shape
    features = F.normalize(z, dim=-1)
    features = torch.cat(torch.unbind(features, dim=1), dim=0)

    column = age.view(-1, 1)
    age_weights = torch.exp(-((column - column.T) ** 2) / (2 * sigma**2))

    n_regions, n_measures = anatomy.shape[1:]
    anat_weights = torch.zeros(n, n, dtype=z.dtype, device=z.device)
    if descriptor == "local":
        for r in range(n_regions):
            anat_weights += F.cosine_similarity(anatomy[:, None, r, :], anatomy[None, :, r, :], dim=-1)
        anat_weights /= n_regions
    else:
        for m in range(n_measures):
            anat_weights += F.cosine_similarity(anatomy[:, None, :, m], anatomy[None, :, :, m], dim=-1)
        anat_weights /= n_measures

    def yaware(weights):
        mask = weights.repeat(n_views, n_views)
        rows = n * n_views
        not_self = torch.scatter(torch.ones_like(mask), 1, torch.arange(rows, device=z.device).view(-1, 1), 0)
        logits = features @ features.T / temperature
        logits = logits - logits.max(dim=1, keepdim=True).values.detach()
        log_denominator = torch.log((torch.exp(logits) * not_self).sum(dim=1, keepdim=True))
        positives = mask * not_self
        log_prob = (positives * (logits - log_denominator)).sum(dim=1) / positives.sum(dim=1)
        return -log_prob.mean()

    return lambda_age * yaware(age_weights) + lambda_anat * yaware(anat_weights)


def fast_anatcl(z, age, anatomy, descriptor="global"):
    return anatcl_loss(z, age, anatomy, descriptor=descriptor)


def make_inputs(n, n_views=2, dim=128, n_regions=68, n_measures=3, device="cpu", seed=0):
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, n_views, dim, generator=generator).to(device).requires_grad_(True)
    age = (torch.rand(n, generator=generator) * 70 + 10).to(device)
    anatomy = torch.rand(n, n_regions, n_measures, generator=generator).to(device)
    return z, age, anatomy


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_step(fn, z, age, anatomy, descriptor, repeats, device):
    """Best-of-``repeats`` seconds of one forward+backward pass (after one warm-up pass).

    The minimum, not the median: on a shared machine the other processes only ever add time.
    """
    times = []
    for i in range(repeats + 1):
        z.grad = None
        _sync(device)
        start = time.perf_counter()
        fn(z, age, anatomy, descriptor=descriptor).backward()
        _sync(device)
        if i:
            times.append(time.perf_counter() - start)
    return min(times)


def peak_bytes(fn, z, age, anatomy, descriptor, device):
    """Peak bytes held by torch allocations during one forward+backward pass."""
    z.grad = None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(z, age, anatomy, descriptor=descriptor).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn(z, age, anatomy, descriptor=descriptor).backward()
    try:
        tree = prof.profiler.kineto_results.experimental_event_tree()
    except AttributeError:
        return float("nan")
    stack, events = list(tree), []
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if hasattr(node.extra_fields, "alloc_size"):
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 32, 128, 512 and fewer repeats")
    parser.add_argument("--sizes", type=int, nargs="*", help="batch sizes n (overrides the defaults)")
    parser.add_argument("--descriptors", nargs="*", default=["local", "global"], choices=["local", "global"])
    parser.add_argument(
        "--max-straightforward", type=int, default=2048, help="largest n for the straightforward version"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)

    sizes = args.sizes or ([32, 128, 512] if args.quick else [32, 64, 128, 256, 512, 1024, 2048])
    device = args.device
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads; "
          "2 views, d=128, anatomy 68x3, float32, forward+backward", flush=True)

    header = ["descriptor", "n", "fast_ms", "straight_ms", "ratio", "fast_peak_mb", "straight_peak_mb", "max_rel_diff"]
    rows = []
    print(" | ".join(f"{h:>16}" for h in header), flush=True)
    for descriptor in args.descriptors:
        for n in sizes:
            z, age, anatomy = make_inputs(n, device=device)
            repeats = 3 if (args.quick or n >= 1024) else 7
            fast_s = time_step(fast_anatcl, z, age, anatomy, descriptor, repeats, device)
            fast_peak = peak_bytes(fast_anatcl, z, age, anatomy, descriptor, device)
            if n <= args.max_straightforward:
                straight_s = time_step(straightforward_anatcl, z, age, anatomy, descriptor, repeats, device)
                straight_peak = peak_bytes(straightforward_anatcl, z, age, anatomy, descriptor, device)
                with torch.no_grad():
                    a = fast_anatcl(z, age, anatomy, descriptor).item()
                    b = straightforward_anatcl(z, age, anatomy, descriptor).item()
                diff = abs(a - b) / abs(b)
            else:
                straight_s = straight_peak = diff = float("nan")
            row = [descriptor, n, 1e3 * fast_s, 1e3 * straight_s, fast_s / straight_s,
                   fast_peak / 2**20, straight_peak / 2**20, diff]
            rows.append(row)
            print(" | ".join(f"{v:>16.4g}" if isinstance(v, float) else f"{v!s:>16}" for v in row), flush=True)

    OUTPUT.mkdir(parents=True, exist_ok=True)
    csv_lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    stem = f"bench_losses_{torch.get_num_threads()}threads"
    (OUTPUT / f"{stem}.csv").write_text("\n".join(csv_lines) + "\n")
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    (OUTPUT / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"written {OUTPUT / stem}.csv and .md")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
