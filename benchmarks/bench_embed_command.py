"""``anatcl-sklearn embed`` on a folder against the bare forward on the same files (issue #21).

Writes N full-size (121x145x121) grey-matter-like ``.nii.gz`` files on OpenBHB's grid and a
random ResNet-18 checkpoint that records that grid, then, per backend, in one process:

- ``bare``: the backend's forward alone over the N volumes already in memory, in batches of the
  command's ``--batch-size`` (the backend built beforehand: its build is not counted);
- ``command``: ``anatcl-sklearn embed FILES --inference BACKEND`` in-process (``cli.main``):
  argument checks, every file's header and voxels checked while another thread loads the
  weights and builds the backend (its conversion read from the inference cache), the volumes
  embedded with the background reader, the CSV written;
- ``command-cold``: the same, once, before the repetitions, into an empty inference cache (the
  backend converted, then kept for the repetitions);
- ``sequential`` (``--sequential``): the command with the background reader replaced by
  reading each batch just before its forward, as before issue #21.

The variants run in interleaved repetitions (rep 1: bare, command, sequential; rep 2: ...);
reported are medians. Reported: seconds per volume, the command's ratio to the bare forward
(total, and without the backend's one-off build, which the bare forward does not pay either),
and the read cost of one file (``ImageCollection.load``, median of 5) to compare with the
forward's.

Usage::

    python benchmarks/bench_embed_command.py --sequential        # N=64, openvino, 3 reps
    python benchmarks/bench_embed_command.py --n 16 --backends eager openvino
    python benchmarks/bench_embed_command.py --format .nii   # CAT12 writes uncompressed maps

Results: ``benchmarks/output/bench_embed_command.{csv,md}`` (``_nii`` for ``--format .nii``).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _common
import numpy as np
import torch

FULL = (121, 145, 121)


def write_files(folder, n, shape, seed=0, suffix=".nii.gz"):
    """N smooth, brain-like volumes in [0, 1] (an ellipsoid of smooth noise), as ``suffix``
    (.nii.gz, or .nii as CAT12 writes its mwp1 maps)."""
    import nibabel as nib
    from scipy.ndimage import zoom

    from anatcl_sklearn.images import OPENBHB_AFFINE

    rng = np.random.default_rng(seed)
    grid = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    mask = sum(g**2 for g in grid) < 0.8
    paths = []
    for i in range(n):
        coarse = rng.random(tuple(max(2, s // 8) for s in shape), dtype=np.float32)
        volume = zoom(coarse, [s / c for s, c in zip(shape, coarse.shape)], order=1)
        volume = (np.clip(volume, 0, 1) * mask).astype(np.float32)
        paths.append(folder / f"sub-{i:03d}_gm{suffix}")
        nib.save(nib.Nifti1Image(volume, OPENBHB_AFFINE), str(paths[-1]))
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--shape", type=int, nargs=3, default=FULL)
    p.add_argument("--format", choices=(".nii.gz", ".nii"), default=".nii.gz",
                   help="the files' format: .nii.gz (fMRIPrep, deepmriprep) or .nii (CAT12's "
                        "mwp1 maps, uncompressed)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backends", nargs="+", default=["openvino"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sequential", action="store_true",
                   help="also run the command without the background reader")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    import anatcl_sklearn
    from anatcl_sklearn.cli import main as cli_main
    from anatcl_sklearn.embedder import _inference, _prefetch
    from anatcl_sklearn.models import AnatCLModel

    backends = [b for b in args.backends if _inference.backend_available(b)]
    info = _common.machine_header()
    _common.print_header(info)
    shape = tuple(args.shape)
    rows = []
    header = ["backend", "run", "n", "total_s", "s/vol", "build_s", "ratio", "ratio_no_build",
              "load"]
    with tempfile.TemporaryDirectory(prefix="bench-embed-command-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        paths = write_files(tmp, args.n, shape, suffix=args.format)
        print(f"wrote {args.n} files in {time.perf_counter() - t0:.1f} s "
              f"({sum(p.stat().st_size for p in paths) / 2**20:.0f} MiB)", flush=True)
        torch.manual_seed(0)
        module = AnatCLModel("resnet18").eval()
        weights = tmp / "weights.pth"
        torch.save({"opts": {"input_shape": list(shape)}, "model": module.state_dict()}, weights)
        images = anatcl_sklearn.check_images([str(p) for p in paths])
        reads = []
        for i in range(min(5, args.n)):
            t = time.perf_counter()
            images.load(i)
            reads.append(time.perf_counter() - t)
        read_s = statistics.median(reads)
        X = torch.from_numpy(np.stack([images.load(i) for i in range(args.n)]))[:, None]
        note_read = f"reading one file (ImageCollection.load, median of 5): {read_s:.3f} s"
        print(note_read, flush=True)

        builds = []
        original_build = _inference.Inference._build

        def timed_build(self, *args, **kwargs):
            t = time.perf_counter()
            try:
                return original_build(self, *args, **kwargs)
            finally:
                builds.append(time.perf_counter() - t)

        _inference.Inference._build = timed_build

        def sequential_batches(images, batch_size, num_workers, pin_memory):
            import contextlib

            return contextlib.nullcontext(
                torch.from_numpy(np.stack([images.load(i) for i in
                                           range(s, min(s + batch_size, len(images)))]))[:, None]
                for s in range(0, len(images), batch_size))

        # untimed: the command's first run imports pandas & co.
        cli_main(["embed", str(paths[0]), "--weights", str(weights), "--inference", "eager",
                  "-o", str(tmp / "warm.csv"), "-q", "--force"])
        # converted models go to a cache of this run; the first command of each backend
        # converts (timed once, reported as "cold"), the repetitions read the conversion
        from anatcl_sklearn.embedder._converted import CACHE_ENV_VAR

        os.environ[CACHE_ENV_VAR] = str(tmp / "inference-cache")
        cold = {}
        for backend in backends:
            builds.clear()
            t = time.perf_counter()
            status = cli_main(["embed", *map(str, paths), "--weights", str(weights),
                               "--inference", backend, "--batch-size", str(args.batch_size),
                               "-o", str(tmp / "cold.csv"), "-q", "--force"])
            if status != 0:
                raise SystemExit(f"the command failed with status {status}")
            cold[backend] = (time.perf_counter() - t, sum(builds), _common.load_average())
            print(f"  cold {backend} command (conversion into an empty cache): "
                  f"{cold[backend][0]:.2f} s (build {cold[backend][1]:.2f} s)", flush=True)
        _common.print_table_header(header, width=9)
        runs = {}
        for backend in backends:  # the bare forwards, built once (not timed)
            forward = _inference.Forward(module, "encoder").eval()
            with torch.inference_mode():
                runs[backend] = (forward if backend == "eager" else
                                 _inference.BUILDERS[backend](forward, X[:args.batch_size]))
                runs[backend](X[:args.batch_size])  # warm
        variants = ["bare", "command"] + (["sequential"] if args.sequential else [])
        results = {(b, v): [] for b in backends for v in variants}
        for rep in range(args.repeats):  # interleaved: a burst of load hits every variant
            for backend in backends:
                for variant in variants:
                    load = _common.load_average()
                    builds.clear()
                    t = time.perf_counter()
                    if variant == "bare":
                        with torch.inference_mode():
                            for s in range(0, args.n, args.batch_size):
                                runs[backend](X[s:s + args.batch_size])
                    else:
                        saved = _prefetch.batches
                        if variant == "sequential":
                            _prefetch.batches = sequential_batches
                        try:
                            status = cli_main([
                                "embed", *map(str, paths), "--weights", str(weights),
                                "--inference", backend, "--batch-size", str(args.batch_size),
                                "-o", str(tmp / "out.csv"), "-q", "--force"])
                        finally:
                            _prefetch.batches = saved
                        if status != 0:
                            raise SystemExit(f"the command failed with status {status}")
                    results[backend, variant].append(
                        (time.perf_counter() - t, sum(builds), load))
                    total, build, _ = results[backend, variant][-1]
                    print(f"  rep {rep + 1} {backend} {variant}: {total:.2f} s "
                          f"(build {build:.2f} s), load {load:.2f}", flush=True)
        _common.print_table_header(header, width=9)
        for backend in backends:
            bare = statistics.median(t for t, _, _ in results[backend, "bare"])
            if backend != "eager":  # the first command, converting into an empty cache
                total, build, load = cold[backend]
                rows.append([backend, "command-cold", args.n, total, total / args.n, build,
                             total / bare, (total - build) / bare, load])
                _common.print_row(header, rows[-1], width=9)
            for variant in variants:
                total = statistics.median(t for t, _, _ in results[backend, variant])
                build = statistics.median(b for _, b, _ in results[backend, variant])
                no_build = statistics.median(t - b for t, b, _ in results[backend, variant])
                load = max(x for _, _, x in results[backend, variant])
                rows.append([backend, variant, args.n, total, total / args.n, build,
                             total / bare, no_build / bare, load])
                _common.print_row(header, rows[-1], width=9)
    notes = [f"{args.format} files, shape {shape}, batch {args.batch_size}, {args.threads} thread(s), medians of "
             f"{args.repeats} interleaved repetitions", note_read,
             ("ratio: the command's total over the bare forward's; ratio_no_build: without "
              "build_s, the backend's first call (conversion, compilation, the first batch's "
              "forward and the one-image eager check)")]
    stem = "bench_embed_command" + ("_nii" if args.format == ".nii" else "")
    _common.write_table(stem, header, rows, info, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
