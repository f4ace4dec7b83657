"""``embed``'s up-front read of N ``.nii.gz`` files: before and after issue #21's reader.

Times ``check_images(files)._read_ahead(1 << 30, workers=W)`` (every file inflated, its CRC
checked, its voxels cast to float32 C order, checked finite and kept) for W = 1 and 2, and, in
the same process, the reader as it was before (``gzip.GzipFile`` read in 1 MiB pieces, joined,
``from_bytes``, ``ascontiguousarray``, the finite check): wall and process CPU seconds, medians
of interleaved repetitions, with the load average each ran under. CPU time is what other
processes do not inflate; the threads' gain shows in wall time only when a core is free.

Usage::

    python benchmarks/bench_read.py                  # 64 files of 121x145x121, 3 repetitions
    python benchmarks/bench_read.py --quick          # 16 files
    python benchmarks/bench_read.py --folder DIR     # files already written (*.nii.gz)
"""

import argparse
import gzip
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    load_average,
    machine_header,
    print_header,
    wait_for_quiet,
    write_table,
)
from bench_embed_command import write_files

from anatcl_sklearn import check_images
from anatcl_sklearn.images._files import nonfinite_voxels


def read_before(files):
    """The reader before issue #21, step for step: the headers checked, then each file read
    by GzipFile, joined, ``from_bytes``, cast, checked finite and kept (as the read-ahead
    keeps its volumes: fresh memory for each)."""
    check_images(files)
    kept = []
    for path in files:
        with gzip.GzipFile(path, "rb") as fh:
            raw = b"".join(iter(lambda fh=fh: fh.read(1 << 20), b""))
        img = nib.Nifti1Image.from_bytes(raw)
        volume = np.ascontiguousarray(np.asanyarray(img.dataobj), dtype=np.float32)
        assert not nonfinite_voxels(volume)
        kept.append(volume)
    assert len(kept) == len(files)


def read_after(files, workers):
    images = check_images(files)
    images._read_ahead(1 << 30, workers=workers)
    assert len(images._warm) == len(files)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--shape", type=int, nargs=3, default=(121, 145, 121))
    parser.add_argument("--folder", type=Path, help="read DIR/*.nii.gz instead of writing files")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 files, 2 repetitions")
    parser.add_argument("--wait-quiet", type=float, default=0.0)
    parser.add_argument("--max-load", type=float, default=1.5)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 16, 2
    info = machine_header()
    print_header(info)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            folder = Path(tmp)
            write_files(folder, args.n, tuple(args.shape))
        files = sorted(str(p) for p in folder.glob("*.nii.gz"))[:args.n]
        for path in files:  # in the page cache: the disk is not what is measured
            Path(path).read_bytes()
        variants = {"GzipFile (before)": lambda: read_before(files),
                    "GzipStream, 1 thread": lambda: read_after(files, 1),
                    "GzipStream, 2 threads": lambda: read_after(files, 2)}
        times = {name: [] for name in variants}
        wait_for_quiet(args.max_load, args.wait_quiet)
        for rep in range(args.repeats):
            for name, run in variants.items():
                load = load_average()
                wall, cpu = time.perf_counter(), time.process_time()
                run()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                times[name].append((wall, cpu, load))
                print(f"rep {rep}: {name:24s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  "
                      f"load {load:.2f}", flush=True)
    header = ["reader", "files", "wall_s_median", "cpu_s_median", "wall_ratio_to_before",
              "load_avg_1min"]
    base = statistics.median(t[0] for t in times["GzipFile (before)"])
    rows = []
    for name, runs in times.items():
        wall = statistics.median(t[0] for t in runs)
        rows.append([name, len(files), wall, statistics.median(t[1] for t in runs),
                     wall / base, statistics.median(t[2] for t in runs)])
        print(f"{name:24s} wall {wall:6.2f} s  ({wall / base:.2f}x before)", flush=True)
    write_table("bench_read", header, rows, info)


if __name__ == "__main__":
    main()
