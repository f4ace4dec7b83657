"""A user's script that calls AnatCLEmbedder(...).fit, launched by tests/test_engine.py with
``torchrun --nproc-per-node=2``. Each rank writes its history and weights to --out.

Imported by the test, :func:`fit` with ``world_for_reference`` gives the single-process
reference: the same estimator on the same data, its module forwarding each global batch as the
processes' shards (so that BatchNorm sees the same statistics).
"""

import argparse
import json
import os

import torch

from anatcl_sklearn import AnatCLEmbedder, make_synthetic_brains
from anatcl_sklearn.models import AnatCLModel

# 32 subjects, global batches of 16: 8 per process. With fewer subjects per shard, BatchNorm
# over 16^3 volumes (1 voxel per channel in layer4) turns float32 rounding into visibly
# different trajectories within a few steps, in single-process runs too (1 vs 2 threads).
N, SHAPE, BATCH, EPOCHS = 32, (16, 16, 16), 16, 2


class ShardedForward(AnatCLModel):
    """Forwards a batch as ``shards`` separate pieces (BatchNorm statistics per piece)."""

    shards = 1

    def forward(self, x):
        return torch.cat([super(ShardedForward, self).forward(p)
                          for p in torch.tensor_split(x, self.shards)])


def initial_model(cls=AnatCLModel):
    torch.manual_seed(42)
    return cls()


def fit(world_for_reference=None, checkpoint_dir=None, callbacks=None, batch_size=BATCH,
        bad_rank=None, epochs=EPOCHS, differ=None):
    data = make_synthetic_brains(N, shape=SHAPE, random_state=0)
    images, age, anatomy, sigma = data.images, data.age.copy(), data.anatomy, 2.0
    if bad_rank is not None and int(os.environ.get("RANK", "0")) == bad_rank:
        age[0] = float("nan")  # only this rank sees bad input
    if differ is not None and int(os.environ.get("RANK", "0")) == 1:  # rank 1 holds other data
        if differ == "images":
            images = images[::-1].copy()
        elif differ == "count":
            images, age, anatomy = images[:N - 2], age[:N - 2], anatomy[:N - 2]
        elif differ == "sigma":
            sigma = 3.0
    if world_for_reference:
        model = initial_model(ShardedForward)
        model.shards = world_for_reference
    else:
        model = initial_model()
    est = AnatCLEmbedder(
        method="anatcl", descriptor="global", max_epochs=epochs, batch_size=batch_size, sigma=sigma,
        lr=1e-3, pretrained=model, finetune=True,
        random_state=0, verbose=0,
        checkpoint_dir=checkpoint_dir, callbacks=callbacks,
        net_params={"optimizer": torch.optim.SGD, "optimizer__fused": None})
    return est.fit(images, age=age, anatomy=anatomy)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint-dir")
    p.add_argument("--crash-at", type=int)
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--bad-rank", type=int)
    p.add_argument("--differ", choices=["images", "count", "sigma"])
    args = p.parse_args()
    callbacks = None
    if args.crash_at:
        from skorch.callbacks import Callback

        class Crash(Callback):
            def on_epoch_begin(self, net, **kwargs):
                if len(net.history) == args.crash_at:
                    raise SystemExit(f"crash requested at epoch {args.crash_at}")

        callbacks = [Crash()]
    import torch.distributed as dist

    try:
        est = fit(checkpoint_dir=args.checkpoint_dir, callbacks=callbacks,
                  batch_size=args.batch_size, bad_rank=args.bad_rank, differ=args.differ)
    except ValueError as exc:  # which ranks raised, and what they said
        with open(os.path.join(args.out, f"error{os.environ.get('RANK', '0')}.txt"), "w") as fh:
            fh.write(str(exc))
        raise

    rank, world = dist.get_rank(), dist.get_world_size()
    data = make_synthetic_brains(N, shape=SHAPE, random_state=0)
    info = dict(world=world, n_features_out=est.n_features_out_,
                step_losses=[b["train_loss"] for e in est.history_ for b in e["batches"]],
                embeddings=est.transform(data.images[:4]).tolist())
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as fh:
        json.dump(info, fh)
    torch.save(est.net_.module_.state_dict(), os.path.join(args.out, f"rank{rank}.pt"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
