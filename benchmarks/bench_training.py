"""Training throughput of ``AnatCLEmbedder.fit`` against bare PyTorch loops, in one run.

Four loops train the same ResNet-18 (same initial weights, data, batch size, epochs, Adam and
StepLR schedule) with the AnatCL loss (global descriptor, age and anatomy):

- ``fit``: ``AnatCLEmbedder.fit`` as a user calls it (skorch loop, input checks, callbacks).
  The paper's views are identical, so the estimator forwards each volume once.
- ``two_view``: what the reference code does: ``torch.cat([x, x])`` through the network,
  the (2B, 128) embeddings split into (B, 2, 128), ``anatcl_loss``, backward, Adam step.
- ``two_view_fused``: the two-view loop with the estimator's fused Adam step, which separates
  the two savings (forward-once and the cheaper optimizer step) in the table.
- ``forward_once``: the bare loop with one forward per subject and the embedding duplicated,
  with the same optimizer settings as ``fit`` (fused Adam on CPU and CUDA): the floor of what
  the estimator can do, so its overhead is visible.

All use Adam with the released runs' weight decay (5e-5). The reference-like two-view loop takes
torch's default Adam step (multi-tensor); the other three take the fused step
(``anatcl_sklearn._optim.adam_kwargs``), which on 2 CPU cores costs 18 ms against 122 ms per step
of ResNet-18: at small volumes a large part of the saving.

The bare loops index volumes already on the training device, the cheapest data path, while
``fit`` pays its own data loading: the comparison is conservative for ``fit``. Each loop gets an
untimed warm-up run, then the loops run interleaved ``--repeats`` times (best and median).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward+backward of
the model at the benchmarked shape (on the meta device, so it costs nothing). "Useful" GFLOP/s
counts the forward-once work per subject for every loop (the two-view loop executes twice that);
on a GPU it is also given as a fraction of the card's dense peak.

Usage::

    python benchmarks/bench_training.py                 # CPU: 32x38x32, 64 subjects, batch 16
    python benchmarks/bench_training.py --quick         # smoke run, about 30 s on 2 cores
    python benchmarks/bench_training.py --device cuda --shape 121 145 121 \\
        --precision fp32 bf16 --batch-size 32 64 [--channels-last] [--compile]

Results go to
``benchmarks/output/bench_training_<device>_<shape>[_<T>threads][_cl][_compile].{csv,md}``.
"""

import argparse
import contextlib
import statistics
import sys
import time
import warnings

import _common
import torch
from sklearn.utils import check_random_state

from anatcl_sklearn import AnatCLEmbedder, GridWarning
from anatcl_sklearn._optim import adam_kwargs
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.losses import anatcl_loss
from anatcl_sklearn.models import AnatCLModel

# small benchmark grids are deliberate; the warning about the released weights' grid is noise here
warnings.filterwarnings("ignore", category=GridWarning)

LOOPS = ("fit", "two_view", "two_view_fused", "forward_once")
OPENBHB_SUBJECTS = 3984


def initial_seed(random_state):
    """The seed ``AnatCLEmbedder.fit`` derives from ``random_state`` for its weights."""
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def bare_loop(data, *, two_view, fused, epochs, batch_size, device, precision, channels_last,
              compile, random_state, lr=1e-4, lr_step=10, lr_gamma=0.9, weight_decay=5e-5):
    """Train like the reference code (``fused``: with the estimator's Adam step); return (wall s,
    per-epoch s, process CPU s)."""
    x_all, age_all, anat_all = data
    n = x_all.shape[0]
    _common.sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(initial_seed(random_state))
        model = AnatCLModel("resnet18")
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    # fused=False is the reference code's optimizer; fused=True the estimator's
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay,
                                 **(adam_kwargs(device) if fused else {}))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=lr_step, gamma=lr_gamma)
    forward = torch.compile(model) if compile else model
    autocast = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
                if precision == "bf16" else contextlib.nullcontext())
    generator = torch.Generator().manual_seed(initial_seed(random_state) + 1)
    epoch_times = []
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        order = torch.randperm(n, generator=generator)
        for first in range(0, n, batch_size):
            idx = order[first:first + batch_size]
            if len(idx) < 2:  # a one-subject batch has nothing to contrast (fit drops it too)
                continue
            x = x_all[idx.to(x_all.device)]
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                if two_view:
                    z1, z2 = forward(torch.cat([x, x])).float().split(len(idx))
                    z = torch.stack([z1, z2], dim=1)
                else:
                    z = forward(x).float().unsqueeze(1).expand(-1, 2, -1)
            loss = anatcl_loss(z, age_all[idx.to(age_all.device)],
                               anat_all[idx.to(anat_all.device)], descriptor="global")
            loss.backward()
            optimizer.step()
            loss.item()  # the reference logs the loss every step (and so synchronises)
        scheduler.step()
        _common.sync(device)
        epoch_times.append(time.perf_counter() - epoch_start)
    return time.perf_counter() - start, epoch_times, time.process_time() - cpu_start


def fit_loop(images, age, anatomy, *, epochs, batch_size, device, precision, channels_last,
             compile, cache, random_state):
    """Time ``AnatCLEmbedder.fit``; return (wall s, per-epoch s, process CPU s)."""
    est = AnatCLEmbedder(
        max_epochs=epochs, batch_size=batch_size, lr=1e-4, device=device, precision=precision,
        data_parallel=False,  # one GPU, like the bare loops
        channels_last=channels_last, compile=compile, cache=cache, verbose=0,
        random_state=random_state,
    )
    _common.sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    est.fit(images, age=age, anatomy=anatomy)
    _common.sync(device)
    return (time.perf_counter() - start, list(est.history_[:, "dur"]),
            time.process_time() - cpu_start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 24x28x24, 32 subjects, 1 repeat")
    parser.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
    parser.add_argument("--shape", type=int, nargs=3, help="volume shape (CPU default 32 38 32, GPU 121 145 121)")
    parser.add_argument("--n-subjects", type=int, help="subjects per epoch (CPU default 64, GPU 256)")
    parser.add_argument("--batch-size", type=int, nargs="+", help="batch sizes (CPU default 16, GPU 32 64)")
    parser.add_argument("--epochs", type=int, help="epochs per timed run (CPU default 2, GPU 3)")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--channels-last", action="store_true", help="channels_last_3d memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (both loops)")
    parser.add_argument("--cache", choices=["none", "memory", "device"],
                        help="fit's volume cache (CPU default none, GPU device)")
    parser.add_argument("--loops", nargs="+", default=list(LOOPS), choices=LOOPS)
    parser.add_argument("--repeats", type=int, help="timed runs per loop (default 3, quick 1)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load to drop below --max-load")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _common.resolve_device(args.device)
    gpu = device.startswith("cuda")
    if args.quick:
        shape, n, batches, epochs, repeats = (24, 28, 24), 32, [16], 1, 1
    else:
        shape = (121, 145, 121) if gpu else (32, 38, 32)
        n, batches, epochs, repeats = (256, [32, 64], 3, 3) if gpu else (64, [16], 2, 3)
    shape = tuple(args.shape or shape)
    n = args.n_subjects or n
    batches = args.batch_size or batches
    epochs = args.epochs or epochs
    repeats = args.repeats or repeats
    cache = args.cache or ("device" if gpu else "none")
    if n < 2 or epochs < 1 or repeats < 1 or min(batches) < 2:
        parser.error("need --n-subjects >= 2, --epochs >= 1, --repeats >= 1, --batch-size >= 2")
    if "bf16" in args.precision and not gpu:
        parser.error("--precision bf16 needs CUDA: AnatCLEmbedder refuses bf16 training on the CPU")
    if gpu:
        torch.backends.cudnn.benchmark = True  # what fit does on CUDA, so the bare loops get it too

    if args.wait_quiet:
        _common.wait_for_quiet(args.max_load, args.wait_quiet)
    info = _common.machine_header(device)
    info.update(shape="x".join(map(str, shape)), n_subjects=n, epochs=epochs, repeats=repeats,
                channels_last=args.channels_last, compile=args.compile, fit_cache=cache)
    _common.print_header(info)

    flops_fwd, flops_train = _common.count_flops(shape)
    print(f"model FLOPs per subject at {shape}: forward {flops_fwd / 1e9:.3f} G, "
          f"forward+backward {flops_train / 1e9:.3f} G (two views execute twice that)", flush=True)

    data = make_synthetic_brains(n, shape=shape, random_state=args.random_state)
    images = data.images  # float32 (n, D, H, W): fit reads it through its own Dataset
    x_all = torch.from_numpy(images).unsqueeze(1).to(device)
    age_t = torch.as_tensor(data.age, dtype=torch.float32, device=device)
    anat_t = torch.as_tensor(data.anatomy, dtype=torch.float32, device=device)

    header = ["loop", "batch", "precision", "samples_per_s", "median_samples_per_s",
              "steady_samples_per_s", "time_vs_two_view", "steady_vs_two_view", "cpu_s",
              "cpu_vs_two_view",
              "useful_gflops_per_s", "useful_gflops_per_cpu_s", "frac_peak",
              "proj_300ep_openbhb_h", "setup_s", "peak_gpu_mb", "load_avg"]
    rows, out_of_memory = [], []
    for precision in args.precision:
        peak = _common.gpu_peak_tflops(device, precision) if gpu else None
        for batch in batches:
            common = dict(epochs=epochs, batch_size=batch, device=device, precision=precision,
                          channels_last=args.channels_last, compile=args.compile,
                          random_state=args.random_state)

            def run(loop, subset=None, n_epochs=None):
                kw = dict(common, epochs=n_epochs or epochs)
                sl = slice(None) if subset is None else slice(0, subset)
                if gpu:  # peak above what is already held (the bare loops' resident data)
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                if loop == "fit":
                    out = fit_loop(images[sl], data.age[sl], data.anatomy[sl], cache=cache, **kw)
                else:
                    out = bare_loop((x_all[sl], age_t[sl], anat_t[sl]),
                                    two_view=loop.startswith("two_view"),
                                    fused=loop != "two_view", **kw)
                mem = ((torch.cuda.max_memory_allocated(device) - base) / 2**20 if gpu
                       else float("nan"))
                return (*out, mem)

            def attempt(loop, **kw):
                # a loop that does not fit in GPU memory (two views of batch 64 at full size in
                # fp32, say) is reported and left out of this configuration, not fatal
                try:
                    return run(loop, **kw)
                except torch.cuda.OutOfMemoryError as exc:
                    print(f"  {loop}: out of GPU memory ({str(exc).splitlines()[0]}); left out",
                          flush=True)
                    out_of_memory.append(f"{loop} at batch {batch}, {precision}")
                    torch.cuda.empty_cache()
                    return None

            print(f"[{precision}, batch {batch}] warm-up ...", flush=True)
            loops = [loop for loop in args.loops
                     if attempt(loop, subset=min(n, 2 * batch), n_epochs=1) is not None]
            results = {loop: [] for loop in loops}
            for r in range(repeats):
                for loop in [loop for loop in loops if loop in results]:
                    load = _common.load_average()
                    out = attempt(loop)
                    if out is None:
                        del results[loop]
                        continue
                    wall, epoch_times, cpu, mem = out
                    results[loop].append((wall, epoch_times, mem, load, cpu))
                    print(f"  repeat {r + 1}/{repeats} {loop:>12}: {wall:7.2f} s "
                          f"(epochs {', '.join(f'{t:.2f}' for t in epoch_times)}), CPU {cpu:.2f} s, "
                          f"load {load:.2f}", flush=True)

            n_steps = n - (n % batch == 1)  # subjects actually trained per epoch
            best_wall = {loop: min(r[0] for r in res) for loop, res in results.items()}
            best_cpu = {loop: min(r[4] for r in res) for loop, res in results.items()}
            best_epoch = {loop: min(statistics.mean(r[1][1:] or r[1]) for r in res)
                          for loop, res in results.items()}
            _common.print_table_header(header)
            for loop, res in results.items():
                walls = [r[0] for r in res]
                best, median = _common.summarize(walls)
                steady = best_epoch[loop]
                sps = n_steps * epochs / best
                steady_sps = n_steps / steady
                useful = flops_train * sps / 1e9
                frac = (flops_train * steady_sps / (peak * 1e12)) if peak else float("nan")
                ratio = best / best_wall["two_view"] if "two_view" in best_wall else float("nan")
                cpu_ratio = (best_cpu[loop] / best_cpu["two_view"] if "two_view" in best_cpu
                             else float("nan"))
                steady_ratio = (steady / best_epoch["two_view"] if "two_view" in best_epoch
                                else float("nan"))
                setup = min(r[0] - sum(r[1]) for r in res)
                per_cpu_s = (float("nan") if gpu  # the host's CPU time says nothing of the GPU's work
                             else flops_train * n_steps * epochs / best_cpu[loop] / 1e9)
                row = [loop, batch, precision, sps, n_steps * epochs / median, steady_sps, ratio,
                       steady_ratio, best_cpu[loop], cpu_ratio, useful, per_cpu_s, frac,
                       OPENBHB_SUBJECTS * 300 / steady_sps / 3600, setup,
                       max(r[2] for r in res), statistics.mean(r[3] for r in res)]
                rows.append(row)
                _common.print_row(header, row)

    notes = [
        f"model FLOPs per subject: forward {flops_fwd / 1e9:.3f} G, forward+backward "
        f"{flops_train / 1e9:.3f} G; useful GFLOP/s = forward+backward FLOPs x samples/s "
        "(the two-view loop executes twice that); per_cpu_s: the same FLOPs per second of "
        "process CPU time (all threads), the efficiency other processes do not blur",
        "samples_per_s: subjects x epochs / best wall time of the whole run (fit: the whole "
        "fit call); steady: epochs after the first (all epochs when there is one)",
        "time_vs_two_view: best wall time / best wall time of the two-view loop (target for "
        "fit <= 0.65); steady_vs_two_view: the same for one epoch after the first (one-time "
        "costs excluded); cpu_s: least process CPU time (user+sys) of a run, cpu_vs_two_view its "
        "ratio: with --threads 1 it is the work done, unaffected by other processes",
        f"proj_300ep_openbhb_h: 300 epochs x {OPENBHB_SUBJECTS} subjects at the steady rate",
    ]
    if out_of_memory:
        notes.append("left out, out of GPU memory: " + "; ".join(out_of_memory))
    if gpu:
        peaks = {p: _common.gpu_peak_tflops(device, p) for p in args.precision}
        notes.append(f"frac_peak: useful FLOP/s at the steady rate / dense peak {peaks} TFLOP/s "
                     "(fp32 against the TF32 tensor-core peak, cuDNN's default for convolutions)")
        for p, pk in peaks.items():
            if pk:
                floor_h = OPENBHB_SUBJECTS * 300 * flops_train / (pk * 1e12) / 3600
                notes.append(f"compute floor at 100% of the {p} peak: {floor_h:.3f} h for 300 epochs")
    stem = f"bench_training_{device.split(':')[0]}_{'x'.join(map(str, shape))}"
    stem += "" if gpu else f"_{torch.get_num_threads()}threads"
    stem += "_cl" * args.channels_last + "_compile" * args.compile + "_quick" * args.quick
    _common.write_table(stem, header, rows, info, notes)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
