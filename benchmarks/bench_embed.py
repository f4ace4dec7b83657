"""Inference throughput and peak memory of ``AnatCLEmbedder.transform``.

For each size (small 32x38x32 and the full 121x145x121 grid) and batch size (1, 8, 32) a fresh
process builds an embedder (``max_epochs=0``: randomly initialised weights, which cost the same
as trained ones), runs one untimed ``transform`` of one volume, then times ``transform`` of N
in-memory volumes (best and median of the repeats). N is at least the batch size.

Peak memory is what ``transform`` needs above what the process already held (the model and the
input array): on the CPU the peak resident set size sampled every 2 ms (it sees torch's
allocations) and the ``tracemalloc`` peak (Python and numpy allocations only: the volumes read
per batch and the output); on CUDA ``torch.cuda.max_memory_allocated``. A fresh process per
configuration keeps memory freed by an earlier one from hiding a later peak.

Usage::

    python benchmarks/bench_embed.py                  # CPU: small N=64, full N=max(8, batch)
    python benchmarks/bench_embed.py --quick          # 24x28x24 only, about 30 s
    python benchmarks/bench_embed.py --device cuda --precision bf16 [--channels-last]

Results go to ``benchmarks/output/bench_embed_<device>_<precision>[_<T>threads][...].{csv,md}``.
"""

import argparse
import multiprocessing
import sys
import time
import tracemalloc
import warnings
from concurrent.futures import ProcessPoolExecutor

import _common
import torch

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn.datasets import make_synthetic_brains

# small benchmark grids are deliberate; the warning about the released weights' grid is noise here
warnings.filterwarnings("ignore", category=GridWarning)

SIZES = {"small": (32, 38, 32), "full": (121, 145, 121)}


def measure(shape, batch, n, repeats, device, precision, channels_last, threads, num_workers):
    """Run in a fresh process: (best s, median s, rss extra bytes, tracemalloc peak, gpu peak)."""
    if threads:
        torch.set_num_threads(threads)
    data = make_synthetic_brains(n, shape=shape, random_state=0)
    est = AnatCLEmbedder(max_epochs=0, batch_size=2, device=device, precision=precision,
                         channels_last=channels_last, verbose=0, random_state=0)
    est.fit(data.images[:2], age=data.age[:2], anatomy=data.anatomy[:2])
    # fit refuses training batches below 2 (nothing to contrast); transform reads batch_size anew
    est.set_params(batch_size=batch, num_workers=num_workers)
    gpu = device.startswith("cuda")
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        gpu_base = torch.cuda.memory_allocated(device)
    tracemalloc.start()
    times = []
    with _common.PeakRSS() as rss:
        est.transform(data.images[:1])  # warm-up: one volume, so a full-size batch is not paid twice
        for _ in range(repeats):
            _common.sync(device)
            start = time.perf_counter()
            out = est.transform(data.images)
            _common.sync(device)
            times.append(time.perf_counter() - start)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert out.shape == (n, est.n_features_out_)
    gpu_peak = (torch.cuda.max_memory_allocated(device) - gpu_base) if gpu else float("nan")
    return (*_common.summarize(times), rss.extra_bytes, traced_peak, gpu_peak)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="24x28x24 only, N=16, 1 repeat")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), help="default: small full")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--n-small", type=int, help="volumes at the small size (default 64, quick 32)")
    parser.add_argument("--n-full", type=int, help="volumes at full size, at least the batch size "
                        "(CPU default 8, GPU 256)")
    parser.add_argument("--repeats", type=int, help="timed passes (default: small 3, full 1 on CPU / 3 on GPU)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="the embedder's DataLoader workers (host-side reading and batching)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load to drop below --max-load")
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _common.resolve_device(args.device)
    gpu = device.startswith("cuda")
    sizes = args.sizes or (["small"] if args.quick else ["small", "full"])
    n_small = args.n_small or (16 if args.quick else 64)
    n_full = args.n_full or (256 if gpu else 8)
    if min(args.batch_size) < 1 or min(n_small, n_full) < 2:
        parser.error("need --batch-size >= 1 and at least 2 volumes")
    if args.wait_quiet:
        _common.wait_for_quiet(args.max_load, args.wait_quiet)
    info = _common.machine_header(device)
    info.update(precision=args.precision, channels_last=args.channels_last,
                num_workers=args.num_workers)
    _common.print_header(info)

    header = ["size", "shape", "batch", "n", "vol_per_s", "median_vol_per_s", "gflops_per_s",
              "frac_peak", "rss_extra_mb", "tracemalloc_peak_mb", "gpu_peak_mb", "load_avg"]
    rows = []
    _common.print_table_header(header)
    spawn = multiprocessing.get_context("spawn")
    peak = _common.gpu_peak_tflops(device, args.precision) if gpu else None
    for size in sizes:
        shape = (24, 28, 24) if args.quick else SIZES[size]
        flops_fwd, _ = _common.count_flops(shape)
        for batch in args.batch_size:
            n = max(batch, n_small if size == "small" else n_full)
            repeats = args.repeats or (1 if args.quick or (size == "full" and not gpu) else 3)
            load_before = _common.load_average()
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                best, median, rss, traced, gpu_peak = pool.submit(
                    measure, shape, batch, n, repeats, device, args.precision,
                    args.channels_last, args.threads or torch.get_num_threads(),
                    args.num_workers).result()
            load = (load_before + _common.load_average()) / 2
            vps = n / best
            row = [size, "x".join(map(str, shape)), batch, n, vps, n / median,
                   flops_fwd * vps / 1e9,
                   flops_fwd * vps / (peak * 1e12) if peak else float("nan"),
                   rss / 2**20, traced / 2**20, gpu_peak / 2**20, load]
            rows.append(row)
            _common.print_row(header, row)

    notes = ["vol_per_s: N / best transform time (in-memory float32 input read and batched on "
             "the host, then the encoder; output the encoder features)",
             "rss_extra_mb: peak RSS during transform minus RSS before it (model and input "
             "already resident); tracemalloc sees numpy/Python allocations only"]
    stem = f"bench_embed_{device.split(':')[0]}_{args.precision}"
    stem += "" if gpu else f"_{args.threads or torch.get_num_threads()}threads"
    stem += "_cl" * args.channels_last + "_quick" * args.quick
    _common.write_table(stem, header, rows, info, notes)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
