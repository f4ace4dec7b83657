"""Inference backends side by side: eager, torch.compile, ONNX Runtime, OpenVINO (issue #21).

For each thread count (1, 2) and batch size (1, 4), one fresh process builds every available
backend of ``anatcl_sklearn/embedder/_inference.py`` for the project's encoder (AnatCLModel
ResNet-18, ``output="encoder"``, randomly initialised weights, which cost the same as trained
ones) on the full 121x145x121 grid, then times them in interleaved repetitions (rep 1: eager,
compile, onnx, openvino; rep 2: the same ...), so a burst of load from other processes hits
them all alike. Per backend and configuration:

- ``s/vol``: median time of one batch over the repetitions, divided by the batch size;
- ``ratio``: that median over eager's (< 1 is faster);
- ``first_s``: the first call's cost (build + first run; eager: its first run), the
  conversion included: the inference cache on disk is off here
  (``ANATCL_SKLEARN_INFERENCE_CACHE=off``; ``bench_embed_command.py`` times a run that reads it);
- ``build_n``: from how many images on the build pays for itself,
  ``first_s / (eager s/vol - backend s/vol)``;
- ``rss_MiB``: peak resident memory above the process's before the backend's first call
  (sampled every 2 ms; approximate in a process that ran other backends first);
- ``rel_err``: ``max_i ||z_i - e_i|| / ||e_i||`` against eager on the same batch;
- ``GFLOP/s`` and ``%peak``: forward FLOPs (FlopCounterMode) per second, and as a fraction of
  the CPU's fp32 peak (cores used x GHz x FLOP/cycle: 64 with AVX-512's two FMA units,
  32 with AVX2, at the GHz lscpu reports, which turbo clocks exceed), and ``%sgemm``: as a
  fraction of the sgemm rate measured in the same run.

The machine's sgemm GFLOP/s (torch.mm, 2048x2048 float32) is measured in the same run at each
thread count (best of 5, in a process of its own: the note) and inside every repetition round,
interleaved with the backends (the median: the ``sgemm`` column, the reference of ``%sgemm``,
under the same load as the backends); ``lscpu``'s model and flags
head the output. Every row records the load average it ran under (other processes compete for
the cores: compare ratios, which interleaving protects, rather than absolute times).

Usage::

    python benchmarks/bench_embed.py                     # full size, about 15 min on 2 cores
    python benchmarks/bench_embed.py --quick             # 64x76x64, batch 1, 1 thread
    python benchmarks/bench_embed.py --backends eager openvino --threads 2 --batch-size 4

Results: ``benchmarks/output/bench_embed_backends.{csv,md}``.
"""

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import _common
import torch

# every build converts (first_s is the conversion's cost), and ~/.cache is left alone; the
# worker processes inherit this
os.environ.setdefault("ANATCL_SKLEARN_INFERENCE_CACHE", "off")

FULL = (121, 145, 121)


def cpu_flags():
    """lscpu's full flags line, and its fp32 FLOP/cycle/core and GHz (None when unknown)."""
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "", None, None
    fields = {k.strip().lower(): v.strip() for k, _, v in
              (line.partition(":") for line in out.splitlines())}
    flags = fields.get("flags", "")
    flop_cycle = 64 if "avx512f" in flags.split() else 32 if "fma" in flags.split() else 16
    ghz = None
    for key in ("cpu max mhz", "cpu mhz"):
        if fields.get(key):
            ghz = float(fields[key]) / 1000
            break
    if ghz is None:
        try:
            with open("/proc/cpuinfo") as fh:
                mhz = [float(line.split(":")[1]) for line in fh if line.startswith("cpu MHz")]
            ghz = max(mhz) / 1000 if mhz else None
        except OSError:
            pass
    return flags, flop_cycle, ghz


def sgemm_gflops(threads, n=2048, repeats=5):
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(shape, batch, threads, backends, repeats):
    """In a fresh process: one dict per backend."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    from anatcl_sklearn.embedder import _inference
    from anatcl_sklearn.models import AnatCLModel

    torch.manual_seed(0)
    module = AnatCLModel("resnet18").eval()
    forward = _inference.Forward(module, "encoder").eval()
    x = torch.rand(batch, 1, *shape)
    rows, runs = {}, {}
    with torch.inference_mode():
        for name in backends:
            with _common.PeakRSS() as rss:
                t0 = time.perf_counter()
                try:
                    runs[name] = (forward if name == "eager"
                                  else _inference.BUILDERS[name](forward, x))
                    z = runs[name](x)
                except Exception as exc:  # noqa: BLE001 - reported, the others go on
                    print(f"  {name}: failed to build: {type(exc).__name__}: {exc}"[:300],
                          flush=True)
                    runs.pop(name, None)
                    continue
                first = time.perf_counter() - t0
                for _ in range(1):  # warm-up, inside the memory window
                    runs[name](x)
            rows[name] = {"first_s": first, "rss_MiB": rss.extra_bytes / 2**20, "times": [],
                          "load": [], "z": z}
        eager_z = forward(x)
        a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
        sgemm = []
        for _ in range(repeats):
            sgemm.append(2 * 2048**3 / _timed(lambda: torch.mm(a, b)) / 1e9)
            for name, run in runs.items():
                rows[name]["load"].append(_common.load_average())
                rows[name]["times"].append(_timed(lambda run=run: run(x)))
    for name, row in rows.items():
        row["sgemm"] = statistics.median(sgemm)
        row["s_vol"] = statistics.median(row["times"]) / batch
        row["rel_err"] = _inference.relative_error(row.pop("z"), eager_z)
        row["load"] = max(row["load"])
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", type=int, nargs=3, default=FULL)
    p.add_argument("--batch-size", type=int, nargs="+", default=[1, 4])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backends", nargs="+", default=["eager", "compile", "onnx", "openvino"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="64x76x64, batch 1, 1 thread, 3 reps")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS")
    p.add_argument("--max-load", type=float, default=1.5)
    args = p.parse_args(argv)
    if args.quick:
        args.shape, args.batch_size, args.threads, args.repeats = (64, 76, 64), [1], [1], 3
    from anatcl_sklearn.embedder._inference import backend_available

    backends = [b for b in args.backends if backend_available(b)]
    missing = sorted(set(args.backends) - set(backends))
    if args.wait_quiet:
        _common.wait_for_quiet(args.max_load, args.wait_quiet)
    info = _common.machine_header()
    flags, flop_cycle, ghz = cpu_flags()
    _common.print_header(info)
    print(f"lscpu flags: {flags}", flush=True)
    notes = [f"lscpu flags: {flags}",
             f"shape {tuple(args.shape)}, {args.repeats} interleaved repetitions, medians; "
             f"backends {backends}" + (f"; not installed: {missing}" if missing else "")]
    forward_flops, _ = _common.count_flops(tuple(args.shape))
    header = ["threads", "batch", "backend", "s/vol", "ratio", "first_s", "build_n", "rss_MiB",
              "rel_err", "GFLOP/s", "%peak", "%sgemm", "sgemm", "load"]
    _common.print_table_header(header, width=8)
    rows = []
    ctx = multiprocessing.get_context("spawn")
    for threads in args.threads:
        with ProcessPoolExecutor(1, mp_context=ctx) as pool:
            sgemm = pool.submit(sgemm_gflops, threads).result()
        peak = flop_cycle * ghz * threads if (flop_cycle and ghz) else float("nan")
        note = (f"{threads} thread(s): sgemm {sgemm:.1f} GFLOP/s = {100 * sgemm / peak:.0f}% "
                f"of the fp32 peak {peak:.0f} GFLOP/s ({threads} core(s) x {ghz} GHz x "
                f"{flop_cycle} FLOP/cycle)")
        print(note, flush=True)
        notes.append(note)
        for batch in args.batch_size:
            with ProcessPoolExecutor(1, mp_context=ctx) as pool:
                result = pool.submit(measure, tuple(args.shape), batch, threads, backends,
                                     args.repeats).result()
            eager = result.get("eager", {}).get("s_vol", float("nan"))
            for name, r in result.items():
                saved = eager - r["s_vol"]
                build_n = (r["first_s"] / saved if name != "eager" and saved > 0
                           else float("nan"))
                gflops = forward_flops / r["s_vol"] / 1e9
                row = [threads, batch, name, r["s_vol"], r["s_vol"] / eager, r["first_s"],
                       build_n, r["rss_MiB"], r["rel_err"], gflops, 100 * gflops / peak,
                       100 * gflops / r["sgemm"], r["sgemm"], r["load"]]
                _common.print_row(header, row, width=8)
                rows.append(row)
    _common.write_table("bench_embed_backends", header, rows, info, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
