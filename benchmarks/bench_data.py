"""Data loading throughput: volumes/s from NIfTI, .npy, a memory-mapped array and the cache.

N synthetic grey-matter maps (default 16 at the full 121x145x121 grid, float32) are written to a
temporary folder as ``.nii``, ``.nii.gz``, one ``.npy`` per subject, and one stacked ``.npy``
opened as a memory map. For each source it measures:

- ``load``: ``ImageCollection.load(i)`` over all volumes, in this process;
- ``loader_w0`` / ``loader_w2``: one epoch of a ``DataLoader`` (0 or 2 worker processes, the
  workers started per epoch as skorch does) over ``SubjectDataset``, batches of ``--batch-size``;

and for the ``VolumeCache`` (float16 and uint8, built from the per-subject ``.npy`` files): the
build time, its size and the batch decode rate (random batches, on the training device).
Each figure is the best (and median) of ``--repeats`` passes after one untimed pass.

Files were just written, so they are read from the page cache: the figures are the CPU cost of
decoding, the ceiling of what a cold disk would give. When ``benchmarks/output`` holds
``bench_training`` results at the same shape, the training rate is printed beside them (data
loading must be faster than training).

Usage::

    python benchmarks/bench_data.py              # 16 volumes of 121x145x121
    python benchmarks/bench_data.py --quick      # 8 volumes of 64x76x64, a few seconds
    python benchmarks/bench_data.py --device cuda   # the cache decode on the GPU

Results go to ``benchmarks/output/bench_data_<device>_<shape>[_<T>threads].{csv,md}``.
"""

import argparse
import csv
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _common
import nibabel as nib
import numpy as np
import torch
from torch.utils.data import DataLoader

from anatcl_sklearn import GridWarning, check_images
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.embedder._cache import VolumeCache
from anatcl_sklearn.embedder._data import SubjectDataset

# small benchmark grids are deliberate; the warning about the released weights' grid is noise here
warnings.filterwarnings("ignore", category=GridWarning)

GPU_TARGET = 700.0  # subjects/s: forward-once bf16 training on one H100 (the 0.5 h goal)


def write_sources(images, affine, folder):
    """Write the volumes in every format; return {source: (X for check_images, write s/vol)}."""
    n = len(images)
    sources = {}
    for suffix in (".nii", ".nii.gz", ".npy"):
        paths = [str(folder / f"sub-{i:04d}{suffix}") for i in range(n)]
        start = time.perf_counter()
        for vol, path in zip(images, paths):
            if suffix == ".npy":
                np.save(path, vol)
            else:
                nib.Nifti1Image(vol, affine).to_filename(path)
        sources[suffix.lstrip(".")] = (paths, (time.perf_counter() - start) / n)
    stacked = folder / "stacked.npy"
    start = time.perf_counter()
    np.save(stacked, images)
    sources["npy-memmap"] = (np.load(stacked, mmap_mode="r"), (time.perf_counter() - start) / n)
    sources["in-memory"] = (images, 0.0)
    return sources


def disk_bytes(X):
    if isinstance(X, np.memmap):
        return X.nbytes / len(X)
    if isinstance(X, np.ndarray):
        return float("nan")
    return sum(Path(p).stat().st_size for p in X) / len(X)


def time_best(fn, repeats):
    """(best, median) seconds of ``fn`` over ``repeats`` passes after one untimed pass."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return _common.summarize(times)


def training_rates(shape):
    """{file: best steady fit samples/s} from bench_training outputs at ``shape``, if any."""
    tag = "x".join(map(str, shape))
    rates = {}
    for path in sorted(_common.OUTPUT.glob(f"bench_training_*_{tag}*.csv")):
        if path.stem.endswith("_quick"):
            continue
        with open(path) as fh:
            fit = [float(r["steady_samples_per_s"]) for r in csv.DictReader(fh) if r["loop"] == "fit"]
        if fit:
            rates[path.name] = max(fit)
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 volumes of 64x76x64, 1 repeat")
    parser.add_argument("--n", type=int, help="number of volumes (default 16)")
    parser.add_argument("--shape", type=int, nargs=3, help="volume shape (default 121 145 121)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers")
    parser.add_argument("--repeats", type=int, help="passes per measurement (default 3, quick 1)")
    parser.add_argument("--device", default="auto", help="where the cache lives and decodes")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--tmpdir", help="folder for the temporary files (default: the system's)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load to drop below --max-load")
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = _common.resolve_device(args.device)
    shape = tuple(args.shape or ((64, 76, 64) if args.quick else (121, 145, 121)))
    n = args.n or (8 if args.quick else 16)
    repeats = args.repeats or (1 if args.quick else 3)
    if n < 2 or repeats < 1 or args.batch_size < 1:
        parser.error("need --n >= 2, --repeats >= 1, --batch-size >= 1")
    if args.wait_quiet:
        _common.wait_for_quiet(args.max_load, args.wait_quiet)
    info = _common.machine_header(device)
    info.update(shape="x".join(map(str, shape)), n_volumes=n, batch_size=args.batch_size,
                repeats=repeats)
    _common.print_header(info)

    data = make_synthetic_brains(n, shape=shape, random_state=0)
    mb = np.prod(shape) * 4 / 2**20  # one float32 volume, what every path delivers
    header = ["source", "method", "vol_per_s", "median_vol_per_s", "mb_per_s", "bytes_per_vol",
              "write_s_per_vol", "load_avg"]
    rows = []
    _common.print_table_header(header)

    def record(source, method, best, median, count, nbytes, write_s):
        load = _common.load_average()
        row = [source, method, count / best, count / median, count * mb / best, nbytes, write_s, load]
        rows.append(row)
        _common.print_row(header, row)

    with tempfile.TemporaryDirectory(prefix="anatcl-bench-data-", dir=args.tmpdir) as tmp:
        sources = write_sources(data.images, data.affine, Path(tmp))
        for name, (X, write_s) in sources.items():
            images = check_images(X)
            nbytes = disk_bytes(X)

            def load_all():
                for i in range(n):
                    images.load(i)

            record(name, "load", *time_best(load_all, repeats), n, nbytes, write_s)
            for workers in args.workers:
                def one_epoch():
                    loader = DataLoader(SubjectDataset(images), batch_size=args.batch_size,
                                        shuffle=True, num_workers=workers,
                                        pin_memory=device.startswith("cuda"))
                    for batch, _ in loader:
                        batch["x"].to(device, non_blocking=True)
                    _common.sync(device)

                record(name, f"loader_w{workers}", *time_best(one_epoch, repeats), n, nbytes,
                       write_s)

        npy_images = check_images(sources["npy"][0])
        generator = torch.Generator().manual_seed(0)
        for dtype in ("float16", "uint8"):
            builds = []
            for _ in range(repeats):
                _common.sync(device)
                start = time.perf_counter()
                cache = VolumeCache(npy_images, dtype, device)
                _common.sync(device)
                builds.append(time.perf_counter() - start)
            per_vol = cache.nbytes / n
            record(f"cache-{dtype}", "build", *_common.summarize(builds), n, per_vol, float("nan"))
            n_batches = max(1, (4 * n) // args.batch_size)
            batches = [torch.randint(0, n, (args.batch_size,), generator=generator)
                       for _ in range(n_batches)]

            def decode(cache=cache):
                for idx in batches:
                    cache.batch(idx, device)
                _common.sync(device)

            record(f"cache-{dtype}", "decode", *time_best(decode, repeats),
                   n_batches * args.batch_size, per_vol, float("nan"))
            err = float(np.abs(cache.batch(torch.arange(n), "cpu")[:, 0].numpy() - data.images).max())
            print(f"  cache {dtype}: max abs decode error {err:.3g} "
                  f"(volumes range {data.images.min():.3g} .. {data.images.max():.3g})", flush=True)
            del cache

    notes = ["files read from the page cache (just written): decoding cost, not disk speed",
             "mb_per_s counts the float32 volumes delivered; bytes_per_vol is the size on disk "
             "(cache: in the cache)"]
    for fname, rate in training_rates(shape).items():
        fastest = max(r[2] for r in rows if r[1] != "build")
        slowest = min(r[2] for r in rows if r[1] != "build")
        line = (f"training at this shape ({fname}): fit {rate:.3g} subjects/s; data paths "
                f"{slowest:.3g} .. {fastest:.3g} vol/s, "
                f"{'all faster' if slowest > rate else 'NOT all faster'} than training")
        notes.append(line)
        print(line, flush=True)
    meets = sorted({r[0] + ":" + r[1] for r in rows if r[1] != "build" and r[2] >= GPU_TARGET})
    line = f"paths reaching the GPU target of {GPU_TARGET:g} vol/s: {', '.join(meets) or 'none'}"
    notes.append(line)
    print(line, flush=True)
    stem = f"bench_data_{device.split(':')[0]}_{'x'.join(map(str, shape))}"
    stem += "" if device.startswith("cuda") else f"_{torch.get_num_threads()}threads"
    stem += "_quick" * args.quick
    _common.write_table(stem, header, rows, info, notes)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
