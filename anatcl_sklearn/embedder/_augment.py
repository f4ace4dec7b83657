"""Two-view augmentations applied on the batch, on the training device.

Working on the batch tensor where it already lives (the GPU when one is used) keeps the data
loader cheap and lets a GPU-resident cache feed training directly. Randomness comes from a
dedicated :class:`torch.Generator` so that ``random_state`` makes training reproducible without
touching the global RNG the user owns.

Every random number is drawn on the generator's device, which must be the batch's (torch refuses
a CUDA generator for a CPU draw). The per-volume parameters of a view are drawn as one
``(B, n_params)`` tensor and read back once, so a view costs one host synchronisation, not one
per volume and augmentation; flip and noise are applied to the whole batch at once.

The recipe follows y-Aware (Dufumier et al., 2021): random crop (resized back to the grid) and
cutout are always applied; flip, blur and noise each with probability 0.5. The AnatCL paper
trained without augmentation (``augment="none"``), where both views are the same image.
"""

import torch
import torch.nn.functional as F

#: Fraction of each axis kept by the random crop, and largest fraction masked by cutout.
CROP_FRACTION = 0.8
CUTOUT_FRACTION = 0.25
CUTOUT_MIN_FRACTION = 0.1
BLUR_SIGMA = (0.1, 1.0)
NOISE_MAX_STD = 0.1  # noise standard deviation, as a fraction of the view's own
PROBABILITY = {"crop": 1.0, "flip": 0.5, "blur": 0.5, "noise": 0.5, "cutout": 1.0}

# Columns of the per-volume uniform draws in [0, 1).
_CROP_START = slice(0, 3)
_FLIP, _BLUR, _BLUR_SIGMA, _NOISE, _NOISE_STD = 3, 4, 5, 6, 7
_CUTOUT_SIZE = slice(8, 11)
_CUTOUT_START = slice(11, 14)
_N_DRAWS = 14


def _box_start(u, axis_size, box_size):
    """A start index uniform over the positions where a box of ``box_size`` fits."""
    return min(int(u * (axis_size - box_size + 1)), axis_size - box_size)


def _crop(x, draws):
    spatial = x.shape[-3:]
    size = [max(1, int(round(s * CROP_FRACTION))) for s in spatial]
    patches = []
    for vol, u in zip(x, draws):
        a, b, c = (_box_start(v, s, k) for v, s, k in zip(u[_CROP_START], spatial, size))
        patches.append(vol[..., a:a + size[0], b:b + size[1], c:c + size[2]])
    return F.interpolate(torch.stack(patches), size=tuple(spatial), mode="trilinear",
                         align_corners=False)


def _gaussian_kernel1d(sigma, device, dtype):
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur_volume(vol, sigma):
    """Separable Gaussian blur of one (C, D, H, W) volume with replicate padding."""
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


def _blur(x, draws):
    low, high = BLUR_SIGMA
    return torch.stack([
        _blur_volume(vol, low + (high - low) * u[_BLUR_SIGMA]) if u[_BLUR] < PROBABILITY["blur"]
        else vol
        for vol, u in zip(x, draws)
    ])


def _flip(x, u):
    # left-right is the first spatial axis in MNI space
    chosen = (u[:, _FLIP] < PROBABILITY["flip"]).view(-1, *[1] * (x.dim() - 1))
    return torch.where(chosen, torch.flip(x, dims=(-3,)), x)


def _noise(x, u, gen):
    noise = torch.randn(x.shape, generator=gen, device=gen.device, dtype=torch.float32)
    std = x.detach().flatten(1).float().std(dim=1)  # each view's own spread
    scale = torch.where(u[:, _NOISE] < PROBABILITY["noise"], NOISE_MAX_STD * u[:, _NOISE_STD] * std,
                        torch.zeros_like(std))
    return x + (scale.view(-1, *[1] * (x.dim() - 1)) * noise).to(x.device, x.dtype)


def _cutout(x, draws):
    out = x.clone()
    spatial = x.shape[-3:]
    for vol, u in zip(out, draws):
        size = [max(1, int(round(s * (CUTOUT_MIN_FRACTION
                                      + (CUTOUT_FRACTION - CUTOUT_MIN_FRACTION) * v))))
                for s, v in zip(spatial, u[_CUTOUT_SIZE])]
        a, b, c = (_box_start(v, s, k) for v, s, k in zip(u[_CUTOUT_START], spatial, size))
        vol[..., a:a + size[0], b:b + size[1], c:c + size[2]] = 0
    return out


def augment_batch(x, names, gen):
    """Return one random view of each volume of ``x`` (B, C, D, H, W).

    Parameters
    ----------
    x : torch.Tensor of shape (B, C, D, H, W)
        The batch, on the same device as ``gen``.
    names : collection of str
        Augmentations to draw, from ``PROBABILITY``; applied in the order crop, flip, blur,
        noise, cutout.
    gen : torch.Generator
        Source of randomness, on ``x``'s device.

    Returns
    -------
    view : torch.Tensor of shape (B, C, D, H, W)
    """
    if x.device.type != gen.device.type:
        raise ValueError(
            f"the augmentation generator is on {gen.device} but the batch is on {x.device}; "
            "they must be on the same device."
        )
    u = torch.rand((x.shape[0], _N_DRAWS), generator=gen, device=gen.device)
    draws = u.tolist()  # the one host synchronisation: Python numbers for slicing
    u = u.to(x.device)
    if "crop" in names:
        x = _crop(x, draws)
    if "flip" in names:
        x = _flip(x, u)
    if "blur" in names:
        x = _blur(x, draws)
    if "noise" in names:
        x = _noise(x, u, gen)
    if "cutout" in names:
        x = _cutout(x, draws)
    return x


def make_views(x, names, gen, n_views=2):
    """Return a batch of ``n_views`` random views per volume, shape (B, n_views, C, D, H, W)."""
    return torch.stack([augment_batch(x, names, gen) for _ in range(n_views)], dim=1)
