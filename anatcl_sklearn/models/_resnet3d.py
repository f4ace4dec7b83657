"""3D ResNet encoders for brain volumes.

The layout (module names, kernel sizes, strides, projection shortcuts) follows
the torchvision ResNet with every 2D operator replaced by its 3D counterpart,
which is also the layout of the released AnatCL / y-Aware brain-age encoders:
their state-dict keys load into these modules unchanged.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ARCHITECTURES", "ResNet3D", "build_encoder"]

#: Names of the encoders :func:`build_encoder` builds (512, 512 and 2048 features).
ARCHITECTURES = ("resnet18", "resnet34", "resnet50")

# arch -> (block kind, blocks per stage)
_ARCH_SPECS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}

_STAGE_WIDTHS = (64, 128, 256, 512)


def _conv3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(
        in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False
    )


def _conv1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class _BasicBlock(nn.Module):
    """Two 3x3x3 convolutions with an identity (or projection) shortcut."""

    expansion = 1

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class _Bottleneck(nn.Module):
    """1x1x1 reduce, 3x3x3 (strided, as torchvision v1.5), 1x1x1 expand by 4."""

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = _conv3(planes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = _conv1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


_BLOCKS = {"basic": _BasicBlock, "bottleneck": _Bottleneck}


class ResNet3D(nn.Module):
    """3D ResNet encoder mapping a volume to one feature vector.

    A 7x7x7 stride-2 stem convolution, batch normalisation, ReLU and a 3x3x3
    stride-2 max-pool are followed by four residual stages of width 64, 128,
    256 and 512 (the last three halve the resolution), a global average pool
    and a flatten. There is no classification layer.

    Parameters
    ----------
    block : {"basic", "bottleneck"}, default="basic"
        Residual block: two 3x3x3 convolutions ("basic", ResNet-18/34) or the
        1-3-1 bottleneck with expansion 4 ("bottleneck", ResNet-50).
    layers : sequence of 4 int, default=(2, 2, 2, 2)
        Number of blocks in each of the four stages.
    in_channels : int, default=1
        Number of input channels (1 for a grey-matter map).

    Attributes
    ----------
    n_features : int
        Length of the output feature vector: 512 for "basic", 2048 for
        "bottleneck".
    arch : str or None
        Name of the architecture ("resnet18", ...) when ``block`` and
        ``layers`` match one of :data:`ARCHITECTURES`, else None.
    in_channels : int
        Number of input channels expected by :meth:`forward`.

    See Also
    --------
    build_encoder : Build a named architecture ("resnet18", ...).

    Notes
    -----
    Weights are initialised as in torchvision: Kaiming-normal (fan-out, ReLU)
    for convolutions, ones and zeros for batch-norm scale and shift.

    Examples
    --------
    >>> import torch
    >>> from anatcl_sklearn.models import ResNet3D
    >>> encoder = ResNet3D("basic", (2, 2, 2, 2))
    >>> encoder(torch.zeros(2, 1, 24, 28, 24)).shape
    torch.Size([2, 512])
    """

    in_channels: int
    arch: str | None
    n_features: int
    conv1: nn.Conv3d
    bn1: nn.BatchNorm3d
    relu: nn.ReLU
    maxpool: nn.MaxPool3d
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential
    avgpool: nn.AdaptiveAvgPool3d

    def __init__(
        self, block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), in_channels: int = 1
    ) -> None:
        super().__init__()
        if not isinstance(block, str) or block not in _BLOCKS:
            raise ValueError(
                f"block must be one of {sorted(_BLOCKS)}, got {block!r}."
            )
        layers = tuple(layers)
        if len(layers) != 4 or not all(
            isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
            for n in layers
        ):
            raise ValueError(
                "layers must be 4 positive integers (blocks per stage), "
                f"got {layers!r}."
            )
        layers = tuple(int(n) for n in layers)
        if (
            isinstance(in_channels, bool)
            or not isinstance(in_channels, numbers.Integral)
            or in_channels < 1
        ):
            raise ValueError(
                f"in_channels must be a positive integer, got {in_channels!r}."
            )
        block_cls = _BLOCKS[block]
        in_channels = int(in_channels)
        self.in_channels = in_channels
        self.arch = next(
            (name for name, spec in _ARCH_SPECS.items() if spec == (block, layers)),
            None,
        )
        self.n_features = _STAGE_WIDTHS[-1] * block_cls.expansion

        self.conv1 = nn.Conv3d(
            in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
        )
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)

        planes_in = 64
        for index, (width, n_blocks) in enumerate(zip(_STAGE_WIDTHS, layers)):
            stride = 1 if index == 0 else 2
            stage, planes_in = _make_stage(block_cls, planes_in, width, n_blocks, stride)
            self.add_module(f"layer{index + 1}", stage)

        self.avgpool = nn.AdaptiveAvgPool3d(1)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a batch of volumes.

        Parameters
        ----------
        x : torch.Tensor of shape (n_samples, in_channels, D, H, W)
            Batch of volumes.

        Returns
        -------
        features : torch.Tensor of shape (n_samples, n_features)
            Globally pooled features.
        """
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                "ResNet3D expects a tensor of shape (n_samples, "
                f"{self.in_channels}, D, H, W); got shape {tuple(x.shape)}."
            )
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def _make_stage(
    block_cls: type[_BasicBlock] | type[_Bottleneck],
    planes_in: int,
    width: int,
    n_blocks: int,
    stride: int,
) -> tuple[nn.Sequential, int]:
    planes_out = width * block_cls.expansion
    downsample = None
    if stride != 1 or planes_in != planes_out:
        downsample = nn.Sequential(
            _conv1(planes_in, planes_out, stride), nn.BatchNorm3d(planes_out)
        )
    blocks = [block_cls(planes_in, width, stride, downsample)]
    blocks += [block_cls(planes_out, width) for _ in range(1, n_blocks)]
    return nn.Sequential(*blocks), planes_out


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_encoder(arch: str = "resnet18", in_channels: int = 1) -> ResNet3D:
    """Build a 3D ResNet encoder by name.

    Parameters
    ----------
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
        Architecture. ResNet-18 and -34 give 512 features, ResNet-50 2048.
    in_channels : int, default=1
        Number of input channels.

    Returns
    -------
    encoder : ResNet3D
        Freshly initialised encoder; its ``arch`` attribute holds ``arch``.

    Raises
    ------
    ValueError
        If ``arch`` is not one of :data:`ARCHITECTURES`.

    Examples
    --------
    >>> from anatcl_sklearn.models import build_encoder
    >>> build_encoder("resnet50").n_features
    2048
    """
    if not isinstance(arch, str) or arch not in _ARCH_SPECS:
        raise ValueError(
            f"Unknown architecture {arch!r}; valid architectures are "
            f"{', '.join(ARCHITECTURES)}."
        )
    block, layers = _ARCH_SPECS[arch]
    return ResNet3D(block, layers, in_channels=in_channels)
