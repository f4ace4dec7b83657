"""Cost of conforming a 1 mm image to OpenBHB's grid against CPU embedding, and bf16 vs fp32 on the CPU.

Two questions, each answered as a ratio against a baseline measured in the same run, the
measurements interleaved (every repeat runs each of them once, in a fixed order), the best of the
repeats the headline figure and the median beside it:

1. Is ``conform=True`` cheap next to the embedding it precedes? Input: nilearn's MNI152 grey-matter
   template (1 mm, 197x233x189, uint8 ``.nii.gz``), or, when nilearn is not installed, a synthetic
   1 mm image of that shape (said so in the output). Measured per volume:

   - ``conform_image(path)`` end to end: read, CRC-checked gzip decode, resample to OpenBHB's
     121x145x121 1.5 mm grid (target: at most 0.5 x the embedding);
   - the resampling alone, ``conform_data`` on an array read beforehand;
   - the plain read of an already conformed ``.nii.gz`` (the same image, conformed once and saved)
     through ``check_images([path]).load(0)``;

   against ``AnatCLEmbedder.transform`` (fp32, CPU) of N in-memory 121x145x121 float32 volumes,
   divided by N. The embedder holds a seeded, randomly initialised ``AnatCLModel("resnet18")``
   passed as a state dict (``pretrained=``): a frozen encoder, which costs what trained weights
   cost.

2. Should the ``embed`` CLI default to bf16 on the CPU? The same embedder with ``precision="bf16"``
   (autocast) against ``"fp32"``, transform only, on the same N synthetic brains
   (``make_synthetic_brains``, not noise): the throughput ratio bf16/fp32 and the relative
   difference ``||Z_bf16 - Z_fp32||_F / ||Z_fp32||_F`` of the (N, 512) embeddings. Decision rule:
   bf16 becomes the CPU default only if the speedup is at least 1.3 and the difference at most 1e-2.

The fp32 transform is the baseline of both parts (one measurement per repeat). Each embedder runs
one untimed transform of one volume first; the conform paths run once untimed too (that run writes
the conformed file). On a CPU without native bf16 (no AVX-512 BF16 or AMX: the header's
``mkldnn_bf16 False``) torch's bf16 3D convolutions take minutes per full-size volume; when the bf16
warm-up is more than 5 times slower than fp32's, bf16 is timed in the first repeat only (it cannot
reach the 1.3 speedup) unless ``--bf16-all-repeats``. The conform paths are numpy/scipy code on one core; ``--threads`` sets only
torch's intra-op threads.

Usage::

    python benchmarks/bench_conform.py                    # N=4, batch 4, best of 3
    python benchmarks/bench_conform.py --quick            # N=2, 1 repeat (a smoke test)
    python benchmarks/bench_conform.py --threads 1 --wait-quiet 600

Results go to ``benchmarks/output/bench_conform[_quick].{csv,md}``.
"""

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _common
import nibabel as nib
import numpy as np
import torch

from anatcl_sklearn import (
    OPENBHB_AFFINE,
    OPENBHB_SHAPE,
    AnatCLEmbedder,
    AnatCLModel,
    GridWarning,
    check_images,
    conform_image,
)
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.images._conform import _exact_mapping, _monomial_axes, conform_data

# arrays have no affine; the warning about the released weights' grid is noise here
warnings.filterwarnings("ignore", category=GridWarning)

TEMPLATE = "datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz"
TEMPLATE_SHAPE = (197, 233, 189)
CONFORM_TARGET = 0.5  # conform_image / embedding, per volume, at most
BF16_MIN_SPEEDUP = 1.3
BF16_MAX_REL_DIFF = 1e-2
# bf16 this much slower than fp32 in the warm-up cannot reach BF16_MIN_SPEEDUP: time it once only
BF16_SLOW_FACTOR = 5.0


def source_image(folder):
    """(path, description) of the 1 mm input: nilearn's template, else a synthetic stand-in."""
    try:
        import nilearn

        path = Path(nilearn.__file__).parent / TEMPLATE
        if path.is_file():
            return path, f"nilearn MNI152 GM template ({path.name}, 1 mm, 197x233x189, uint8)"
        why = f"{path} is missing"
    except ImportError:
        why = "nilearn is not installed"
    # Same grid (RAS, 1 mm, the template's origin) and dtype as the template, so the decode and
    # resampling cost the same; the content is a synthetic brain scaled to 0..255.
    affine = np.eye(4)
    affine[:3, 3] = (-98.0, -134.0, -72.0)
    vol = make_synthetic_brains(1, shape=TEMPLATE_SHAPE, random_state=0).images[0]
    vol = np.asarray(vol, dtype=np.float32)
    vol = np.round(255 * np.clip(vol / max(float(vol.max()), 1e-12), 0, 1)).astype(np.uint8)
    path = folder / "synthetic_1mm.nii.gz"
    img = nib.Nifti1Image(vol, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return path, (f"SYNTHETIC 1 mm 197x233x189 uint8 image ({why}); not the MNI template, "
                  "so the figures only approximate it")


def resample_path(source_affine):
    """Which branch of conform_data the source -> OpenBHB mapping takes (linear interpolation)."""
    m = np.linalg.inv(np.asarray(source_affine, float)) @ np.asarray(OPENBHB_AFFINE, float)
    if _exact_mapping(m[:3, :3], m[:3, 3]) is not None:
        return "exact reorder/pad/crop"
    if _monomial_axes(m[:3, :3]) is not None:
        return "separable trilinear"
    return "scipy affine_transform"


def make_embedder(state, precision, batch, X):
    """(embedder, warm-up s): a frozen CPU embedder holding ``state``, fitted and warmed up."""
    # the constructor's batch_size is >= 2 (for training); transform takes any size
    est = AnatCLEmbedder(pretrained=state, device="cpu", precision=precision,
                         batch_size=max(2, batch), verbose=0)
    est.fit(X)
    est.set_params(batch_size=batch)
    warm_s, _ = timed(lambda: est.transform(X[:1]))  # warm-up: one volume (oneDNN, allocator)
    return est, warm_s


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def mkldnn_bf16():
    """Whether oneDNN has fast bf16 kernels on this CPU (AVX-512 BF16 or AMX); None if unknown."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def pass_fail(ok):
    return "PASS" if ok else "FAIL"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=2, 1 repeat (a smoke test)")
    parser.add_argument("--n", type=int, help="volumes embedded per repeat (default 4, quick 2)")
    parser.add_argument("--batch-size", type=int, default=4, help="transform batch size")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 3, quick 1)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the 1-minute load to drop below --max-load")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--no-bf16", action="store_true",
                        help="skip the bf16 rows (minutes per volume without native bf16)")
    parser.add_argument("--bf16-all-repeats", action="store_true",
                        help=f"time bf16 in every repeat even when its warm-up is over "
                        f"{BF16_SLOW_FACTOR:g}x slower than fp32's (by default it is then timed "
                        "in the first repeat only: minutes per volume without native bf16)")
    args = parser.parse_args(argv)

    n = args.n or (2 if args.quick else 4)
    repeats = args.repeats or (1 if args.quick else 3)
    batch = args.batch_size
    if n < 1 or batch < 1 or repeats < 1:
        parser.error("need --n, --batch-size and --repeats >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.wait_quiet:
        _common.wait_for_quiet(args.max_load, args.wait_quiet)

    tmp = tempfile.TemporaryDirectory(prefix="bench_conform_")
    folder = Path(tmp.name)
    src, src_desc = source_image(folder)
    info = _common.machine_header("cpu")
    info.update(input=src_desc, n=n, batch=batch, repeats=repeats, mkldnn_bf16=mkldnn_bf16())
    _common.print_header(info)

    # -- inputs, untimed ----------------------------------------------------------------------
    print(f"generating {n} synthetic brains of 121x145x121 ...", flush=True)
    X = np.ascontiguousarray(
        make_synthetic_brains(n, shape=OPENBHB_SHAPE, random_state=0).images, dtype=np.float32)
    src_img = nib.load(src)
    src_data = np.asarray(src_img.dataobj, dtype=np.float32)
    path_kind = resample_path(src_img.affine)
    conformed = folder / "conformed.nii.gz"
    nib.save(conform_image(src), conformed)  # also the conform paths' warm-up
    conform_data(src_data, src_img.affine, OPENBHB_SHAPE, OPENBHB_AFFINE)
    check_images([conformed]).load(0)
    torch.manual_seed(0)
    state = AnatCLModel("resnet18").state_dict()
    est32, warm32 = make_embedder(state, "fp32", batch, X)
    if args.no_bf16:
        est16, warm16, bf16_once = est32, warm32, False
        print(f"fp32 warm-up (1 volume) {warm32:.2f} s; bf16 skipped (--no-bf16)", flush=True)
    else:
        print(f"fp32 warm-up (1 volume) {warm32:.2f} s; bf16 warm-up ...", flush=True)
        est16, warm16 = make_embedder(state, "bf16", batch, X)
        bf16_once = warm16 > BF16_SLOW_FACTOR * warm32 and not args.bf16_all_repeats
    bf16_note = (f"bf16 warm-up {warm16:.2f} s = {warm16 / warm32:.1f} x fp32's {warm32:.2f} s"
                 + (f" (> {BF16_SLOW_FACTOR:g} x): bf16 timed in the first repeat only, its speedup "
                    "from that single run (--bf16-all-repeats to time it in every repeat)"
                    if bf16_once else ""))
    if not args.no_bf16:
        print(bf16_note, flush=True)

    # -- interleaved repeats ------------------------------------------------------------------
    names = ["conform", "resample", "read", "embed_fp32", "embed_bf16"]
    calls = {
        "conform": lambda: conform_image(src),
        "resample": lambda: conform_data(src_data, src_img.affine, OPENBHB_SHAPE, OPENBHB_AFFINE),
        "read": lambda: check_images([conformed]).load(0),
        "embed_fp32": lambda: est32.transform(X),
        "embed_bf16": lambda: est16.transform(X),
    }
    times = {k: [] for k in names}
    loads = [_common.load_average()]
    Z = {}
    for r in range(repeats):
        done = []
        for k in names:
            if k == "embed_bf16" and ((bf16_once and r > 0) or args.no_bf16):
                continue
            done.append(k)
            t, out = timed(calls[k])
            times[k].append(t / n if k.startswith("embed") else t)
            if k.startswith("embed"):
                Z[k] = out
        loads.append(_common.load_average())
        print(f"  repeat {r + 1}/{repeats}: "
              + ", ".join(f"{k} {times[k][-1]:.3f} s" for k in done)
              + " (embed: per volume)", flush=True)
    load = statistics.mean(loads)
    tmp.cleanup()

    if args.no_bf16:  # the bf16 rows then repeat fp32's and are dropped below
        times["embed_bf16"], Z["embed_bf16"] = times["embed_fp32"], Z["embed_fp32"]
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    z32, z16 = Z["embed_fp32"].astype(np.float64), Z["embed_bf16"].astype(np.float64)
    assert z32.shape == z16.shape == (n, est32.n_features_out_)
    rel_diff = float(np.linalg.norm(z16 - z32) / np.linalg.norm(z32))
    conform_ratio = best["conform"] / best["embed_fp32"]
    speedup = best["embed_fp32"] / best["embed_bf16"]

    header = ["measure", "unit", "best_s", "median_s", "vs", "ratio_best", "ratio_median",
              "target", "result", "load_avg"]
    nan = float("nan")
    rows = [
        ["embed_fp32", "s/volume", best["embed_fp32"], med["embed_fp32"], "-", 1.0, 1.0,
         "-", "-", load],
        ["conform_image", "s/volume", best["conform"], med["conform"], "embed_fp32",
         conform_ratio, med["conform"] / med["embed_fp32"], f"<= {CONFORM_TARGET}",
         pass_fail(conform_ratio <= CONFORM_TARGET), load],
        ["resample_only", "s/volume", best["resample"], med["resample"], "embed_fp32",
         best["resample"] / best["embed_fp32"], med["resample"] / med["embed_fp32"], "-", "-",
         load],
        ["read_conformed_nii_gz", "s/volume", best["read"], med["read"], "embed_fp32",
         best["read"] / best["embed_fp32"], med["read"] / med["embed_fp32"], "-", "-", load],
        ["embed_bf16 (speedup)", "s/volume", best["embed_bf16"], med["embed_bf16"],
         "embed_fp32", speedup, med["embed_fp32"] / med["embed_bf16"], f">= {BF16_MIN_SPEEDUP}",
         pass_fail(speedup >= BF16_MIN_SPEEDUP), load],
        ["bf16_rel_diff", "norm(Zb-Zf)/norm(Zf)", nan, nan, "Z_fp32", rel_diff, rel_diff,
         f"<= {BF16_MAX_REL_DIFF:g}", pass_fail(rel_diff <= BF16_MAX_REL_DIFF), load],
    ]
    if args.no_bf16:
        rows = rows[:4]
    print()
    _common.print_table_header(header)
    for row in rows:
        _common.print_row(header, row)

    adopt = speedup >= BF16_MIN_SPEEDUP and rel_diff <= BF16_MAX_REL_DIFF
    lines = [
        f"conform_image {best['conform']:.3f} s (median {med['conform']:.3f}) = "
        f"{conform_ratio:.3f} x the fp32 embedding of one volume ({best['embed_fp32']:.3f} s); "
        f"target <= {CONFORM_TARGET}: {pass_fail(conform_ratio <= CONFORM_TARGET)}",
        f"of which resampling ({path_kind}) {best['resample']:.3f} s; reading an already "
        f"conformed .nii.gz {best['read']:.3f} s",
        f"bf16 decision rule: bf16 becomes the CLI's CPU default only if speedup >= "
        f"{BF16_MIN_SPEEDUP} and rel. diff <= {BF16_MAX_REL_DIFF:g}",
        f"  speedup bf16/fp32 {speedup:.3f} (median {med['embed_fp32'] / med['embed_bf16']:.3f})"
        f" >= {BF16_MIN_SPEEDUP}: {pass_fail(speedup >= BF16_MIN_SPEEDUP)}",
        f"  rel. diff {rel_diff:.3g} <= {BF16_MAX_REL_DIFF:g}: "
        f"{pass_fail(rel_diff <= BF16_MAX_REL_DIFF)}",
        f"  -> {'bf16 qualifies as' if adopt else 'keep fp32 as'} the CLI's CPU default",
    ]
    if args.no_bf16:
        lines = lines[:2] + ["bf16 not measured in this run (--no-bf16)"]
    print()
    for line in lines:
        print(line, flush=True)

    notes = [
        f"input: {src_desc}; resampled to OpenBHB's 121x145x121 1.5 mm grid by {path_kind}",
        f"embedding: AnatCLEmbedder(pretrained=seeded AnatCLModel('resnet18') state dict), CPU, "
        f"transform of {n} in-memory float32 synthetic brains, batch {batch}, per volume",
        "times: best (and median) of the repeats, the measurements interleaved; conform paths "
        "are single-threaded numpy/scipy, torch_threads applies to the embedding only",
        bf16_note,
        "weights are random (not trained), so bf16_rel_diff is indicative of, not equal to, the "
        "released weights' difference",
        *lines,
    ]
    _common.write_table("bench_conform" + "_quick" * args.quick, header, rows, info, notes)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
