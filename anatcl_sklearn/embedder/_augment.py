"""Two-view augmentations applied on the batch, on the training device.

Working on the batch tensor where it already lives (the GPU when one is used) keeps the data
loader cheap and lets a GPU-resident cache feed training directly. Randomness comes from a
dedicated :class:`torch.Generator` so that ``random_state`` makes training reproducible without
touching the global RNG the user owns.

Every random number is drawn on the generator's device, which must be the batch's (torch refuses
a CUDA generator for a CPU draw). The per-volume parameters of a view are drawn as one
``(B, n_params)`` tensor and read back once, so a view costs one host synchronisation, not one
per volume and augmentation; the crop's resize runs once for the batch, and the noise of all the
volumes that draw it comes from one call.

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


def _crop(vols, draws):
    spatial = vols[0].shape[-3:]
    size = [max(1, int(round(s * CROP_FRACTION))) for s in spatial]
    patches = []
    for vol, u in zip(vols, draws):
        a, b, c = (_box_start(v, s, k) for v, s, k in zip(u[_CROP_START], spatial, size))
        patches.append(vol[..., a:a + size[0], b:b + size[1], c:c + size[2]])
    # one resize for the whole batch: every patch has the same size
    resized = F.interpolate(torch.stack(patches), size=tuple(spatial), mode="trilinear",
                            align_corners=False)
    return list(resized.unbind(0))


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


def _chosen(draws, column, name):
    """Indices of the volumes that draw augmentation ``name`` (known on the host: no sync)."""
    return [i for i, u in enumerate(draws) if u[column] < PROBABILITY[name]]


def _flip(vols, draws):
    for i in _chosen(draws, _FLIP, "flip"):
        vols[i] = torch.flip(vols[i], dims=(-3,))  # left-right is the first axis in MNI space
    return vols


def _blur(vols, draws):
    low, high = BLUR_SIGMA
    for i in _chosen(draws, _BLUR, "blur"):
        vols[i] = _blur_volume(vols[i], low + (high - low) * draws[i][_BLUR_SIGMA])
    return vols


def _noise(vols, draws, gen):
    rows = _chosen(draws, _NOISE, "noise")
    if rows:
        noise = torch.randn((len(rows), *vols[0].shape), generator=gen, device=gen.device,
                            dtype=torch.float32)
        for j, i in enumerate(rows):
            vol = vols[i]
            std = NOISE_MAX_STD * draws[i][_NOISE_STD] * vol.detach().float().std()  # its own
            vols[i] = vol + (std * noise[j]).to(vol.device, vol.dtype)
    return vols


def _cutout(x, draws):
    """Zero one random box per volume of ``x``, in place (``x`` is a fresh stack)."""
    spatial = x.shape[-3:]
    for vol, u in zip(x, draws):
        size = [max(1, int(round(s * (CUTOUT_MIN_FRACTION
                                      + (CUTOUT_FRACTION - CUTOUT_MIN_FRACTION) * v))))
                for s, v in zip(spatial, u[_CUTOUT_SIZE])]
        a, b, c = (_box_start(v, s, k) for v, s, k in zip(u[_CUTOUT_START], spatial, size))
        vol[..., a:a + size[0], b:b + size[1], c:c + size[2]] = 0
    return x


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
    # the one host synchronisation: Python numbers for choices, boxes and slicing
    draws = torch.rand((x.shape[0], _N_DRAWS), generator=gen, device=gen.device).tolist()
    vols = list(x.unbind(0))  # views of the user's batch: every step below makes new tensors
    if "crop" in names:
        vols = _crop(vols, draws)
    if "flip" in names:
        vols = _flip(vols, draws)
    if "blur" in names:
        vols = _blur(vols, draws)
    if "noise" in names:
        vols = _noise(vols, draws, gen)
    view = torch.stack(vols)
    if "cutout" in names:
        view = _cutout(view, draws)
    return view


def make_views(x, names, gen, n_views=2):
    """Return a batch of ``n_views`` random views per volume, shape (B, n_views, C, D, H, W)."""
    return torch.stack([augment_batch(x, names, gen) for _ in range(n_views)], dim=1)
