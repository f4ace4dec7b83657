"""Helpers shared by the benchmark scripts: timing, peak memory, machine header, output tables.

Not part of the package: the scripts in ``benchmarks/`` import it as a sibling module
(``python benchmarks/bench_x.py`` puts this folder first on ``sys.path``).
"""

import datetime
import os
import platform
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import torch

OUTPUT = Path(__file__).resolve().parent / "output"

# Dense (no sparsity) tensor-core peaks in TFLOP/s, from the vendors' data sheets. "fp32" is the
# TF32 tensor-core figure: PyTorch lets cuDNN use TF32 for float32 convolutions by default
# (torch.backends.cudnn.allow_tf32), and convolutions are nearly all of the model's FLOPs.
GPU_PEAK_TFLOPS = {
    # name fragment (lower case): (bf16 dense, tf32 dense)
    "h200": (989.0, 494.7),
    "h100 sxm": (989.0, 494.7),
    "h100 nvl": (835.0, 417.5),
    "h100 pcie": (756.0, 378.0),
    "h100": (989.0, 494.7),  # an H100 that names no form factor: assume SXM
    "a100": (312.0, 156.0),
    "l40s": (362.0, 183.0),
    "a10g": (70.0, 35.0),
    "rtx 4090": (165.0, 82.6),
}


def resolve_device(device):
    """``"auto"`` -> ``"cuda"`` when available else ``"cpu"``; refuse CUDA when absent."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device} but CUDA is not available on this machine.")
    return str(device)


def sync(device):
    """Wait for queued GPU work so a wall-clock reading covers it (no-op on the CPU)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def load_average():
    """The 1-minute load average (other processes competing for the cores)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def wait_for_quiet(max_load, timeout_s):
    """Wait (up to ``timeout_s``) until the 1-minute load average is below ``max_load``.

    Returns the load average seen last. The benchmarks share the machine with test suites;
    waiting does not make a busy machine quiet, it only gives it the chance.
    """
    deadline = time.monotonic() + timeout_s
    load = load_average()
    while load >= max_load and time.monotonic() < deadline:
        print(f"  load average {load:.2f} >= {max_load}; waiting ...", flush=True)
        time.sleep(20)
        load = load_average()
    return load


def cpu_model():
    """The CPU as ``lscpu`` reports it: model name, family/model, hypervisor, AVX-512 flags."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or platform.machine()
    fields = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    parts = [fields.get("model name", platform.machine())]
    if "cpu family" in fields:
        parts.append(f"family {fields['cpu family']} model {fields.get('model', '?')}")
    if "hypervisor vendor" in fields:
        parts.append(f"{fields['hypervisor vendor']} guest")
    flags = set(fields.get("flags", "").split())
    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    if simd:
        parts.append("/".join(simd))
    return ", ".join(parts)


def gpu_name(device):
    if not str(device).startswith("cuda"):
        return None
    return torch.cuda.get_device_name(torch.device(device).index or 0)


def gpu_peak_tflops(device, precision):
    """Dense peak TFLOP/s of the detected GPU for ``precision`` ("bf16"/"fp32"), or None."""
    name = (gpu_name(device) or "").lower()
    for fragment, (bf16, tf32) in GPU_PEAK_TFLOPS.items():
        if fragment in name:
            return bf16 if precision == "bf16" else tf32
    return None


def git_commit():
    """``git describe --always --dirty`` of the checkout the benchmark ran from, if any."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_header(device="cpu"):
    """One dict describing where and with what a benchmark ran."""
    import nibabel
    import sklearn
    import skorch

    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "skorch": skorch.__version__,
        "sklearn": sklearn.__version__,
        "nibabel": nibabel.__version__,
        "python": platform.python_version(),
        "commit": git_commit(),
        "device": str(device),
        "load_avg_1min_at_start": round(load_average(), 2),
    }
    if str(device).startswith("cuda"):
        info["gpu"] = gpu_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def print_header(info):
    print("; ".join(f"{k} {v}" for k, v in info.items()), flush=True)


def summarize(times):
    """(best, median) of a list of seconds; best is the headline figure because on a shared
    machine other processes only ever add time."""
    return min(times), statistics.median(times)


class PeakRSS:
    """Context manager sampling this process's resident set size in a background thread.

    ``peak_bytes - baseline_bytes`` is the extra memory the operator needed (what the OS saw,
    including torch's CPU allocations, which ``tracemalloc`` does not see). Run each
    measurement in a fresh process: freed memory often stays mapped, which hides later peaks.
    """

    def __init__(self, interval_s=0.002):
        self.interval_s = interval_s
        self.baseline_bytes = self.peak_bytes = 0
        self._stop = threading.Event()

    @staticmethod
    def current():
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: fall back to the lifetime peak
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self):
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.current())
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self.baseline_bytes = self.peak_bytes = self.current()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self.current())

    @property
    def extra_bytes(self):
        return self.peak_bytes - self.baseline_bytes


def count_flops(shape, arch="resnet18"):
    """(forward, forward+backward) FLOPs of ``AnatCLModel(arch)`` for one subject of ``shape``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is 2 FLOPs) on the
    meta device: no memory, no compute, any shape.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from anatcl_sklearn.models import AnatCLModel

    model = AnatCLModel(arch).to("meta").train()
    x = torch.zeros(2, 1, *shape, device="meta")
    with FlopCounterMode(display=False) as counter:
        model(x)
    forward = counter.get_total_flops() / 2
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return forward, counter.get_total_flops() / 2


def _fmt(value):
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4g}"
    return str(value)


def print_row(header, row, width=12):
    print(" | ".join(f"{_fmt(v):>{max(width, len(h))}}" for h, v in zip(header, row)), flush=True)


def print_table_header(header, width=12):
    print(" | ".join(f"{h:>{width}}" for h in header), flush=True)


def write_table(stem, header, rows, info, notes=()):
    """Write ``benchmarks/output/<stem>.csv`` and ``.md`` (machine header, notes, table)."""
    OUTPUT.mkdir(parents=True, exist_ok=True)
    csv_lines = [",".join(header)] + [",".join(_fmt(v) for v in row) for row in rows]
    (OUTPUT / f"{stem}.csv").write_text("\n".join(csv_lines) + "\n")
    md = ["- " + "; ".join(f"{k} {v}" for k, v in info.items())]
    md += [f"- {note}" for note in notes]
    md += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    (OUTPUT / f"{stem}.md").write_text("\n".join(md) + "\n")
    print(f"written {OUTPUT / stem}.csv and .md", flush=True)
