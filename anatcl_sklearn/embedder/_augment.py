"""Two-view augmentations applied on the batch, on the training device.

Working on the batch tensor where it already lives (the GPU when one is used) keeps the data
loader cheap and lets a GPU-resident cache feed training directly. Randomness comes from a
dedicated :class:`torch.Generator` so that ``random_state`` makes training reproducible without
touching the global RNG the user owns.

The recipe follows y-Aware (Dufumier et al., 2021): random crop (resized back to the grid) and
cutout are always applied; flip, blur and noise each with probability 0.5. The AnatCL paper
trained without augmentation (``augment="none"``), where both views are the same image.
"""

import torch
import torch.nn.functional as F

#: Fraction of each axis kept by the random crop, and largest fraction masked by cutout.
CROP_FRACTION = 0.8
CUTOUT_FRACTION = 0.25


def _uniform(gen, low, high):
    return low + (high - low) * torch.rand((), generator=gen).item()


def _randint(gen, high):
    return int(torch.randint(0, max(int(high), 1), (), generator=gen).item())


def _crop(vol, gen):
    d, h, w = vol.shape[-3:]
    size = [max(1, int(round(s * CROP_FRACTION))) for s in (d, h, w)]
    start = [_randint(gen, s - c + 1) for s, c in zip((d, h, w), size)]
    patch = vol[..., start[0]:start[0] + size[0], start[1]:start[1] + size[1],
                start[2]:start[2] + size[2]]
    return F.interpolate(patch[None], size=(d, h, w), mode="trilinear", align_corners=False)[0]


def _cutout(vol, gen):
    out = vol.clone()
    d, h, w = vol.shape[-3:]
    size = [max(1, int(round(s * _uniform(gen, 0.1, CUTOUT_FRACTION)))) for s in (d, h, w)]
    start = [_randint(gen, s - c + 1) for s, c in zip((d, h, w), size)]
    out[..., start[0]:start[0] + size[0], start[1]:start[1] + size[1],
        start[2]:start[2] + size[2]] = 0
    return out


def _gaussian_kernel1d(sigma, device, dtype):
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(vol, gen):
    sigma = _uniform(gen, 0.1, 1.0)
    k = _gaussian_kernel1d(sigma, vol.device, vol.dtype)
    out = vol[None]  # (1, C, D, H, W)
    c = out.shape[1]
    r = k.numel() // 2
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = k.numel()
        weight = k.view(shape).repeat(c, 1, 1, 1, 1)
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
        out = F.conv3d(F.pad(out, pad, mode="replicate"), weight, groups=c)
    return out[0]


def _noise(vol, gen):
    std = _uniform(gen, 0.0, 0.1) * float(vol.std())
    noise = torch.randn(vol.shape, generator=gen, dtype=torch.float32).to(vol.device, vol.dtype)
    return vol + std * noise


def _flip(vol, gen):
    return torch.flip(vol, dims=(-3,))  # left-right is the first spatial axis in MNI space


_OPS = {"crop": (_crop, 1.0), "cutout": (_cutout, 1.0), "flip": (_flip, 0.5),
        "blur": (_blur, 0.5), "noise": (_noise, 0.5)}
_ORDER = ("crop", "flip", "blur", "noise", "cutout")


def augment_volume(vol, names, gen):
    """Return one random view of ``vol`` (C, D, H, W) using the augmentations in ``names``."""
    for name in _ORDER:
        if name in names:
            op, prob = _OPS[name]
            if prob >= 1.0 or torch.rand((), generator=gen).item() < prob:
                vol = op(vol, gen)
    return vol


def make_views(x, names, gen, n_views=2):
    """Return a batch of ``n_views`` random views per volume, shape (B, n_views, C, D, H, W)."""
    views = [torch.stack([augment_volume(v, names, gen) for v in x]) for _ in range(n_views)]
    return torch.stack(views, dim=1)
