"""A seeded small fit whose embeddings are compared with those of the code before the fit was
split into a plan and a launcher (issue #18 item 1): ``tests/data/seeded_fit_reference.npz``
was written by this script run on that code (``python tests/data/seeded_fit.py OUT.npz``).

Three fits on 8 synthetic brains of 24x28x24 voxels with quarter-width ResNets: AnatCL from
scratch (2 epochs, with a checkpoint folder), fine-tuning those weights (1 epoch), and a frozen
encoder loading them; the embeddings of each, and the training losses.
"""

import sys
import tempfile

import numpy as np


def run():
    from anatcl_sklearn import AnatCLEmbedder, make_synthetic_brains
    from anatcl_sklearn.models import _resnet3d

    widths = _resnet3d._STAGE_WIDTHS
    _resnet3d._STAGE_WIDTHS = (16, 32, 64, 128)
    try:
        data = make_synthetic_brains(8, shape=(24, 28, 24), random_state=0)
        meta = dict(age=data.age, anatomy=data.anatomy)
        common = dict(batch_size=4, lr=1e-3, verbose=0, random_state=0)
        with tempfile.TemporaryDirectory() as tmp:
            scratch = AnatCLEmbedder(max_epochs=2, checkpoint_dir=tmp, **common).fit(
                data.images, **meta)
            scratch.save_pretrained(f"{tmp}/saved")
            tuned = AnatCLEmbedder(max_epochs=1, pretrained=f"{tmp}/saved", finetune=True,
                                   **common).fit(data.images, **meta)
            frozen = AnatCLEmbedder(pretrained=f"{tmp}/saved", **common).fit(data.images)
            out = {
                "scratch": scratch.transform(data.images),
                "scratch_losses": np.asarray(scratch.history_[:, "train_loss"]),
                "tuned": tuned.transform(data.images),
                "tuned_losses": np.asarray(tuned.history_[:, "train_loss"]),
                "frozen": frozen.transform(data.images),
            }
    finally:
        _resnet3d._STAGE_WIDTHS = widths
    return out


if __name__ == "__main__":
    np.savez(sys.argv[1], **run())
