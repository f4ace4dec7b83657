"""
From your pipeline's output to embeddings
=========================================

The released AnatCL weights saw one kind of image: OpenBHB's CAT12 VBM grey-matter maps,
121 x 145 x 121 voxels of 1.5 mm in MNI space, LAS axes, the first voxel's centre at (90,
-126, -72) mm (:data:`~anatcl_sklearn.OPENBHB_SHAPE`, :data:`~anatcl_sklearn.OPENBHB_AFFINE`).
Preprocessing pipelines write other grids. ``AnatCLEmbedder(conform=True)``, ``anatcl-sklearn
embed --conform`` and :func:`~anatcl_sklearn.conform_image` put each image on the weights'
grid through its affine:

.. list-table::
   :header-rows: 1
   :widths: 16 34 50

   * - Pipeline
     - What it writes
     - What the toolkit does with it
   * - CAT12 >= 12.8
     - ``mri/mwp1*.nii``, 113 x 137 x 113 at 1.5 mm (default bounding box ``bb = 12``)
     - Same voxel centres as OpenBHB's grid: ``conform=True`` zero-pads it exactly, bit for
       bit, no interpolation. Or set ``cat.extopts.bb = 16`` to have CAT12 write the OpenBHB
       grid itself.
   * - CAT12 < 12.8
     - ``mri/mwp1*.nii``, 121 x 145 x 121 at 1.5 mm
     - Already on the grid: nothing to do (``conform=True`` leaves it unchanged).
   * - FSL-VBM
     - One 4-D merged file (``stats/GM_mod_merg*.nii.gz``), 91 x 109 x 91 at 2 mm
     - :func:`~anatcl_sklearn.split_4d` (one lazy image per subject), then ``conform=True``:
       trilinear resampling 2 -> 1.5 mm. Or ``anatcl-sklearn embed`` on the merged file,
       which writes one row per volume (``PATH#0``, ``PATH#1``...).
   * - fMRIPrep
     - ``space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz``, 193 x 229 x 193 at 1 mm, RAS
     - Resampled through the affine (``conform=True``): axes flipped, 1 -> 1.5 mm.
   * - SPM12
     - Depends on the bounding box and voxel size you chose (Normalise: Write defaults to
       2 mm)
     - Resampled through the affine (``conform=True``); exact when its voxel centres are
       OpenBHB's.

.. warning::

   **The toolkit fixes the grid, not the preprocessing.** Conforming makes the shape, voxel
   size, orientation and field of view right. It does not make an FSL-VBM, fMRIPrep or
   SPM12 map a CAT12 map: modulation (fMRIPrep's probabilities are unmodulated), smoothing,
   the tissue model and the template all differ from what produced OpenBHB. Embeddings of
   non-CAT12 maps are therefore shifted in distribution. Check them before trusting them:
   for example, fit a probe of age on the embeddings of your own controls and compare its
   error with the paper's, or compare a few subjects processed by both CAT12 and your
   pipeline.

This example needs no download. By default it makes a few **synthetic** brains on
OpenBHB's grid, writes them as each pipeline would (a CAT12 ``bb = 12`` crop, an FSL-VBM
4-D merged 2 mm file, an fMRIPrep-like 1 mm RAS file), conforms them back and measures how
close each comes to the original, then embeds them all with a **randomly initialised
encoder** saved in the checkpoint format -- not the released weights, so the embeddings
say nothing but how far each pipeline's grid moves them -- and runs the equivalent
``anatcl-sklearn embed`` command. Run as shipped, it took 20 s on two idle CPU cores (measured
once), most of it running 24 full-size volumes through the
ResNet-18.

Environment variables (all optional):

``ANATCL_NIFTI_DIR``
    Your folder of grey-matter maps from any pipeline (``.nii`` / ``.nii.gz``, searched
    recursively; a 4-D file gives one row per volume): each is conformed and embedded, and
    the table goes to ``embeddings.csv``.
``ANATCL_WEIGHTS``
    ``anatcl-global`` or ``anatcl-local`` (the released weights, downloaded once into
    ``~/.cache/anatcl_sklearn``; never in the fast mode) or a checkpoint file, instead of
    the random encoder. ``ANATCL_FOLD`` picks the fold (0-4, default 0).
``ANATCL_EXAMPLES_FAST=1``, ``ANATCL_EXAMPLES_OUTPUT``
    A tiny run (two subjects; the random encoder records a 3 mm grid of the same field of
    view, and ``conform=True`` conforms to the grid the weights record); where figures, CSV
    files and the synthetic pipeline folders go (default ``examples/output/``).
"""

# %%
# Real data (optional)
# --------------------
# Everything this example reads from the environment (``ANATCL_*``, listed above) is read
# here; without it, it runs on synthetic data.
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
import torch

from anatcl_sklearn import (
    OPENBHB_AFFINE,
    OPENBHB_SHAPE,
    AnatCLEmbedder,
    conform_image,
    split_4d,
)
from anatcl_sklearn.__main__ import main as anatcl_sklearn_cli
from anatcl_sklearn.datasets import make_synthetic_brains
from anatcl_sklearn.models import OFFICIAL_WEIGHTS, AnatCLModel

FAST = os.environ.get("ANATCL_EXAMPLES_FAST", "0") not in ("", "0")
WEIGHTS = os.environ.get("ANATCL_WEIGHTS") or None
NIFTI_DIR = os.environ.get("ANATCL_NIFTI_DIR") or None
FOLD = int(os.environ.get("ANATCL_FOLD", "0"))
here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
OUTPUT = Path(os.environ.get("ANATCL_EXAMPLES_OUTPUT") or here / "output")
OUTPUT = OUTPUT / "plot_from_your_pipeline"
OUTPUT.mkdir(parents=True, exist_ok=True)
if FAST and WEIGHTS in OFFICIAL_WEIGHTS:
    print(f"Fast mode downloads nothing: ignoring ANATCL_WEIGHTS={WEIGHTS}.")
    WEIGHTS = None
N_SUBJECTS = 2 if FAST else 4
BATCH_SIZE = 4  # full-size volumes: a few at a time keeps memory low


def grid(voxel_mm, origin, shape):
    """A (shape, affine) grid with diagonal axes: negative voxel size = the x axis runs R->L."""
    affine = np.diag([*voxel_mm, 1.0])
    affine[:3, 3] = origin
    return tuple(shape), affine


# Each pipeline's output grid, in MNI space (mm).
CAT12_BB12 = grid((-1.5, 1.5, 1.5), (84, -120, -72), (113, 137, 113))  # CAT12 >= 12.8
FSL_2MM = grid((-2, 2, 2), (90, -126, -72), (91, 109, 91))  # FSL's MNI152 2 mm
FMRIPREP_1MM = grid((1, 1, 1), (-96, -132, -78), (193, 229, 193))  # MNI152NLin2009cAsym, RAS

# %%
# Synthetic brains, written as each pipeline would
# ------------------------------------------------
# The brains are made on OpenBHB's grid (their reference), then written:
#
# - CAT12 < 12.8: the grid itself, ``cat12_bb16/mri/mwp1<subject>.nii``;
# - CAT12 >= 12.8: the ``bb = 12`` box, a crop of 4 voxels on each side in x and y and 8 at
#   the top in z (what ``conform=True`` pads back), ``cat12/mri/mwp1<subject>.nii``;
# - FSL-VBM: every subject resampled to FSL's 2 mm template grid and stacked into one 4-D
#   file, ``fslvbm/stats/GM_mod_merg.nii.gz``;
# - fMRIPrep: resampled to the 1 mm MNI152NLin2009cAsym grid with RAS axes,
#   ``fmriprep/<subject>/anat/<subject>_space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz``.
#
# Real pipelines also differ in what they put in the voxels (see the warning above); these
# files differ only in their grid.
start_all = time.perf_counter()
brains = make_synthetic_brains(N_SUBJECTS, random_state=0)
assert brains.images.shape[1:] == OPENBHB_SHAPE and np.allclose(brains.affine, OPENBHB_AFFINE)
subjects = list(brains.participants["participant_id"])
originals = brains.images  # (n, 121, 145, 121) on OpenBHB's grid


def save(data, affine, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
    return path


def to_grid(volume, target):
    """One OpenBHB-grid volume resampled to another grid (what a pipeline's template gives)."""
    resampled = conform_image(nib.Nifti1Image(volume, OPENBHB_AFFINE), *target)
    return resampled.get_fdata(dtype=np.float32)


files = {"CAT12 < 12.8": [], "CAT12 >= 12.8": [], "fMRIPrep": []}
fsl_volumes = []
for subject, volume in zip(subjects, originals):
    files["CAT12 < 12.8"].append(
        save(volume, OPENBHB_AFFINE, OUTPUT / "cat12_bb16" / "mri" / f"mwp1{subject}.nii"))
    files["CAT12 >= 12.8"].append(save(volume[4:-4, 4:-4, 0:-8], CAT12_BB12[1],
                                       OUTPUT / "cat12" / "mri" / f"mwp1{subject}.nii"))
    fsl_volumes.append(to_grid(volume, FSL_2MM))
    name = f"{subject}_space-MNI152NLin2009cAsym_label-GM_probseg.nii.gz"
    files["fMRIPrep"].append(save(to_grid(volume, FMRIPREP_1MM), FMRIPREP_1MM[1],
                                  OUTPUT / "fmriprep" / subject / "anat" / name))
FSL_MERGED = save(np.stack(fsl_volumes, axis=-1), FSL_2MM[1],
                  OUTPUT / "fslvbm" / "stats" / "GM_mod_merg.nii.gz")
# One subject per element: the merged file split into lazy 3-D images, in the file's order.
files["FSL-VBM"] = split_4d(FSL_MERGED)
PIPELINES = ["CAT12 < 12.8", "CAT12 >= 12.8", "FSL-VBM", "fMRIPrep"]
print(f"{N_SUBJECTS} synthetic subjects written in {time.perf_counter() - start_all:.1f} s:")
for pipeline in PIPELINES:
    example = nib.load(FSL_MERGED) if pipeline == "FSL-VBM" else nib.load(files[pipeline][0])
    print(f"  {pipeline:<14} {'x'.join(map(str, example.shape)):<16} "
          f"{''.join(nib.aff2axcodes(example.affine))}  "
          f"{'x'.join(f'{z:g}' for z in example.header.get_zooms()[:3])} mm")

# %%
# Conform them back and compare with the originals
# ------------------------------------------------
# :func:`~anatcl_sklearn.conform_image` reads each image's affine: the CAT12 ``bb = 12``
# crop lands on OpenBHB's grid exactly (its voxel centres are OpenBHB's), the 2 mm and
# 1 mm files are interpolated (trilinear) -- twice in this round trip, once on the way out
# and once back, so they come close to the original without matching it.
rows, conformed = [], {}
for pipeline in PIPELINES:
    conformed[pipeline] = [conform_image(img).get_fdata(dtype=np.float32)
                           for img in files[pipeline]]
    first = files[pipeline][0]
    first = nib.load(first) if isinstance(first, Path) else first
    pairs = list(zip(conformed[pipeline], originals))
    exact = all(np.array_equal(c, o) for c, o in pairs)
    # Correlation over the voxels where either volume is non-zero (not the empty background).
    corr = [np.corrcoef(c[(c != 0) | (o != 0)], o[(c != 0) | (o != 0)])[0, 1] for c, o in pairs]
    rows.append({
        "pipeline": pipeline,
        "shape_in": "x".join(map(str, nib.load(FSL_MERGED).shape if pipeline == "FSL-VBM"
                                 else first.shape)),
        "voxel_size_mm": "x".join(f"{z:g}" for z in first.header.get_zooms()[:3]),
        "orientation": "".join(nib.aff2axcodes(first.affine)),
        "exact": exact,  # bit for bit the original
        "correlation": float(np.min(corr)),  # the worst subject
        "max_abs_diff": float(max(np.abs(c - o).max() for c, o in pairs)),
    })
conform_check = pd.DataFrame(rows)
conform_check.to_csv(OUTPUT / "conform_check.csv", index=False)
print(conform_check.to_string(index=False))
assert conform_check.set_index("pipeline").loc["CAT12 >= 12.8", "exact"]  # bit for bit

# %%
# One axial slice per pipeline, before and after
# ----------------------------------------------
# Each file as written (on its own grid, drawn in MNI millimetres so they line up; left
# hemisphere on the left), the same slice conformed onto OpenBHB's grid, and the
# difference from the original synthetic brain.
Z_MM = 18.0  # the axial slice shown, MNI z in mm


def axial(data, affine):
    """The axial slice nearest MNI z = Z_MM and its extent (x, y voxel edges in mm)."""
    k = round(float((np.linalg.inv(affine) @ [0, 0, Z_MM, 1])[2]))
    n_x, n_y = data.shape[:2]
    x0, x1 = (affine @ [-0.5, 0, 0, 1])[0], (affine @ [n_x - 0.5, 0, 0, 1])[0]
    y0, y1 = (affine @ [0, -0.5, 0, 1])[1], (affine @ [0, n_y - 0.5, 0, 1])[1]
    return data[:, :, k].T, (x0, x1, y0, y1)


fig, axes = plt.subplots(len(PIPELINES), 3, figsize=(8.4, 2.6 * len(PIPELINES)))
vmax = float(originals.max())
for row, pipeline in zip(axes, PIPELINES):
    written = files[pipeline][0]
    written = nib.load(written) if isinstance(written, Path) else written
    data = np.asarray(written.dataobj, np.float32)
    after = conformed[pipeline][0]
    shape = nib.load(FSL_MERGED).shape if pipeline == "FSL-VBM" else data.shape
    panels = [(data, written.affine, "gray", 0, vmax,
               f"as written: {'x'.join(map(str, shape))}, "
               f"{''.join(nib.aff2axcodes(written.affine))}"
               + (" (volume 0)" if pipeline == "FSL-VBM" else "")),
              (after, OPENBHB_AFFINE, "gray", 0, vmax, "conformed: 121x145x121, LAS"),
              (after - originals[0], OPENBHB_AFFINE, "RdBu_r", -0.2 * vmax, 0.2 * vmax,
               "conformed - original")]
    for ax, (volume, affine, cmap, lo, hi, title) in zip(row, panels):
        image, extent = axial(volume, affine)
        ax.imshow(image, cmap=cmap, vmin=lo, vmax=hi, extent=extent, origin="lower",
                  interpolation="nearest")
        ax.set_xlim(-100, 100)  # the same MNI frame for every grid: left on the left
        ax.set_ylim(-135, 100)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for x, side in ((-80, "L"), (80, "R")):
        row[0].text(x, -110, side, fontsize=8, ha="center", va="center", color="white")
    check = conform_check.set_index("pipeline").loc[pipeline]
    row[0].set_ylabel(pipeline, fontsize=9)
    row[2].set_xlabel("exact" if check["exact"] else f"r = {check['correlation']:.4f}",
                      fontsize=8)
fig.suptitle(f"{subjects[0]}, axial slice at z = {Z_MM:g} mm (SYNTHETIC brain)", fontsize=10)
fig.tight_layout()
fig.savefig(OUTPUT / "pipelines.png", dpi=90)

# %%
# Weights
# -------
# Without ``ANATCL_WEIGHTS``, a seeded **random** encoder is saved in the checkpoint format
# (``{"model": state_dict}``) -- NOT the released weights: its embeddings only show whether
# two images of one brain give the same features. Such a checkpoint records no training
# grid, so the embedder takes it for OpenBHB's, as for the released weights. In the fast
# mode it records a 3 mm grid of the same field of view (``"opts"``: ``input_shape``,
# ``input_affine``), and ``conform=True`` conforms to that grid instead: 8 times fewer
# voxels to run through the network.
if WEIGHTS is None:
    torch.manual_seed(0)
    model = AnatCLModel(arch="resnet18")
    checkpoint = {"model": model.state_dict()}
    if FAST:
        shape_3mm, affine_3mm = grid((-3, 3, 3), (90, -126, -72), (61, 73, 61))
        checkpoint["opts"] = {"input_shape": shape_3mm, "input_affine": affine_3mm.tolist()}
    WEIGHTS = OUTPUT / "random-encoder_NOT-the-released-weights.pth"
    torch.save(checkpoint, WEIGHTS)
    WEIGHTS_LABEL = "a RANDOM encoder, not the released weights"
    print(f"Saved a random encoder (not the released weights): {WEIGHTS.name}")
else:
    WEIGHTS_LABEL = f"weights {WEIGHTS}"
LABEL = f"SYNTHETIC brains, {WEIGHTS_LABEL}"

# %%
# Embed every pipeline's files
# ----------------------------
# One embedder, ``conform=True``: it takes the CAT12 paths, the FSL-VBM volumes of
# ``split_4d`` and the fMRIPrep paths alike, each conformed batch by batch as it is read.
# ``fit`` trains nothing for a frozen pretrained encoder: it loads the weights.
embedder = AnatCLEmbedder(pretrained=WEIGHTS, fold=FOLD, conform=True, batch_size=BATCH_SIZE,
                          verbose=0)
embedder.fit(files["CAT12 < 12.8"])
embeddings = {}
for pipeline in PIPELINES:
    start = time.perf_counter()
    embeddings[pipeline] = embedder.transform(files[pipeline])
    print(f"{pipeline:<14} {embeddings[pipeline].shape} in {time.perf_counter() - start:.1f} s")

# %%
# Do the pipelines agree?
# -----------------------
# For each subject and pipeline: the cosine similarity of its embedding with the same
# subject's embedding from the reference, the OpenBHB-grid file (CAT12 < 12.8), and with the
# other subjects' (the highest). The features of a ReLU network are all positive, so even
# different brains have cosine-close embeddings; ``distance_ratio`` puts the distance to the
# subject's own reference against the distance between that reference and the nearest other
# subject's (below 1: the pipeline moved the embedding less than a change of brain would),
# and ``nearest_reference`` says whose reference embedding is closest.
#
# CAT12's ``bb = 12`` crop gives the reference's embedding exactly (its conformed image is
# the same array). The resampled files move it a little, the 2 mm FSL-VBM file most: detail
# lost at 2 mm does not come back at 1.5 mm. These synthetic subjects are much alike and
# the encoder is random, so compare the shift with the between-subject distances rather
# than read anything into the values; with ``ANATCL_WEIGHTS=anatcl-global`` the same table
# measures it for the released encoder (and only the grid: the files carry the same voxels
# otherwise, unlike real pipelines).
reference = embeddings["CAT12 < 12.8"]


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


rows = []
for pipeline in PIPELINES[1:]:
    for i, subject in enumerate(subjects):
        z = embeddings[pipeline][i]
        others = [j for j in range(N_SUBJECTS) if j != i]
        distances = np.linalg.norm(reference - z, axis=1)
        rows.append({
            "participant_id": subject,
            "pipeline": pipeline,
            "cosine": cosine(z, reference[i]),
            "cosine_other_subjects": max(cosine(z, reference[j]) for j in others),
            "distance_ratio": float(distances[i] / min(np.linalg.norm(reference[i] - reference[j])
                                                       for j in others)),
            "nearest_reference": subjects[int(np.argmin(distances))],
            "identified": bool(np.argmin(distances) == i),
            "data": LABEL,
        })
agreement = pd.DataFrame(rows)
agreement.to_csv(OUTPUT / "embeddings_agreement.csv", index=False)
print(agreement.pivot(index="participant_id", columns="pipeline", values="cosine")
      .round(5).to_string())
summary = agreement.groupby("pipeline", sort=False).agg(
    cosine=("cosine", "min"), cosine_other_subjects=("cosine_other_subjects", "max"),
    distance_ratio=("distance_ratio", "max"), identified=("identified", "sum"))
print(f"Worst case over the {N_SUBJECTS} subjects (identified: nearest to its own reference):")
print(summary.round(5).to_string())
bb12 = embeddings["CAT12 >= 12.8"]
print(f"CAT12 >= 12.8 against the OpenBHB-grid file: largest difference "
      f"{np.abs(bb12 - reference).max():.2g} (the conformed images are identical)")

# %%
# The same from the command line
# ------------------------------
# ``anatcl-sklearn embed`` does all of this on files: glob patterns, ``--conform``, and one
# row per volume for a 4-D file. With the released weights (the default ``--weights
# anatcl-global``) you would run, from the folder holding ``cat12/`` and ``fslvbm/``::
#
#     anatcl-sklearn embed 'cat12/mri/mwp1*.nii' --conform --output embeddings.csv
#     anatcl-sklearn embed fslvbm/stats/GM_mod_merg.nii.gz --conform --output fslvbm.csv
#
# Here it runs in-process (``anatcl_sklearn.__main__.main``) with this example's weights,
# on the CAT12 folder and the merged FSL-VBM file at once, and the table is read back.
cli_output = OUTPUT / "cli_embeddings.csv"
argv = ["embed", str(OUTPUT / "cat12" / "mri" / "mwp1*.nii"), str(FSL_MERGED), "--conform",
        "--weights", str(WEIGHTS), "--fold", str(FOLD), "--batch-size", str(BATCH_SIZE),
        "--output", str(cli_output), "--force"]
shown = [a.replace(str(OUTPUT) + os.sep, "") for a in argv]  # paths as seen from that folder
print("In the example's output folder: anatcl-sklearn "
      + " ".join(f"'{a}'" if "*" in a else a for a in shown))
status = anatcl_sklearn_cli(argv)
assert status == 0, f"anatcl-sklearn embed exited with status {status}"
table = pd.read_csv(cli_output)
print(table.iloc[:, :4].assign(image=table["image"].map(lambda p: Path(p).name)).to_string())
features = table.drop(columns="image").to_numpy()
from_python = np.concatenate([embeddings["CAT12 >= 12.8"], embeddings["FSL-VBM"]])
print(f"CLI against the embedder above: largest difference "
      f"{np.abs(features - from_python).max():.2g}")
assert np.allclose(features, from_python, atol=1e-4)

# %%
# Your own folder
# ---------------
# With ``ANATCL_NIFTI_DIR``, every ``.nii`` / ``.nii.gz`` under it is listed with its grid,
# conformed and embedded (a 4-D file gives one row per volume, named ``PATH#T`` as by the
# command line), into ``embeddings.csv``. Remember the warning at the top: only CAT12 maps
# are what the weights saw.
if NIFTI_DIR:
    folder = Path(NIFTI_DIR).expanduser()
    paths = sorted(p for p in folder.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
    if not paths:
        raise SystemExit(f"ANATCL_NIFTI_DIR={folder}: no .nii or .nii.gz file under it.")
    labels, images, grids = [], [], []
    for path in paths:
        header = nib.load(path)
        grids.append({"image": str(path), "shape": "x".join(map(str, header.shape)),
                      "voxel_size_mm": "x".join(f"{z:g}" for z in header.header.get_zooms()[:3]),
                      "orientation": "".join(nib.aff2axcodes(header.affine))})
        if len(header.shape) == 4 and header.shape[3] > 1:
            volumes = split_4d(path)
            labels += [f"{path}#{t}" for t in range(len(volumes))]
            images += volumes
        else:
            labels.append(str(path))
            images.append(str(path))
    print(pd.DataFrame(grids).to_string(index=False))
    Z = embedder.transform(images)
    own = pd.DataFrame(Z, columns=embedder.get_feature_names_out())
    own.insert(0, "image", labels)
    own.to_csv(OUTPUT / "embeddings.csv", index=False)
    print(f"{len(labels)} embeddings of your images ({WEIGHTS_LABEL}) written to "
          f"{OUTPUT.name}/embeddings.csv")

print(f"Figures and tables written to {OUTPUT.name}/ in the examples' output folder "
      f"({time.perf_counter() - start_all:.0f} s)")
plt.show()
