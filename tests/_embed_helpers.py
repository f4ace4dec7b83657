"""What the tests of ``anatcl-sklearn embed`` share: in-process runs, the one error line, small
checkpoints that record the test grid."""

import torch

from anatcl_sklearn.__main__ import main

SHAPE = (24, 28, 24)
PREFIX = "anatcl-sklearn embed: error: "


def write_weights(path, seed=0, shape=SHAPE):
    """Random ResNet-18 weights recording ``shape`` as their grid (so no grid warning)."""
    from anatcl_sklearn.models import AnatCLModel

    torch.manual_seed(seed)
    torch.save({"opts": {"input_shape": list(shape)},
                "model": AnatCLModel("resnet18").state_dict()}, path)
    return str(path)


def write_images(folder, n, seed=0, shape=SHAPE):
    """``n`` random volumes on OpenBHB's grid as ``folder/s<i>.nii.gz``; their paths."""
    import nibabel as nib
    import numpy as np

    from anatcl_sklearn.images import OPENBHB_AFFINE

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        paths.append(str(folder / f"s{i}.nii.gz"))
        nib.save(nib.Nifti1Image(rng.random(shape, dtype=np.float32), OPENBHB_AFFINE), paths[-1])
    return paths


def run_embed(*argv, quiet=False):
    """``anatcl-sklearn embed ARGV`` in-process; argparse's SystemExit becomes its status."""
    try:
        return main(["embed", *(["-q"] if quiet else []), *map(str, argv)])
    except SystemExit as exc:
        return exc.code


def error_line(capsys):
    """The one ``anatcl-sklearn embed: error: ...`` line a failed run printed, and nothing else."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    return lines[0]
