"""AnatCL network: a 3D ResNet encoder followed by a two-layer projection head."""

from __future__ import annotations

import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._resnet3d import ResNet3D, build_encoder

__all__ = ["AnatCLModel"]


class AnatCLModel(nn.Module):
    """3D ResNet encoder with the contrastive projection head of AnatCL.

    The module and parameter names match the released AnatCL checkpoints
    (``encoder.*``, ``head.0.*``, ``head.2.*``), so their ``"model"`` state
    dict loads into it unchanged (see :func:`load_checkpoint`).

    Parameters
    ----------
    arch : {"resnet18", "resnet34", "resnet50"}, default="resnet18"
        Encoder architecture. The released AnatCL weights are ResNet-18.
    out_dim : int, default=128
        Output size of the projection head (128 in AnatCL). With
        ``out_dim=1`` and ``normalize=False`` the head is a non-linear
        regressor, e.g. for a supervised brain-age baseline.
    normalize : bool, default=True
        Whether :meth:`forward` L2-normalises the head output along dimension
        1, as the contrastive loss expects.
    in_channels : int, default=1
        Number of input channels.

    Attributes
    ----------
    encoder : ResNet3D
        The backbone; its output is what downstream tasks use.
    head : torch.nn.Sequential
        ``Linear(F, F) -> ReLU -> Linear(F, out_dim)`` with ``F`` the number
        of encoder features.
    n_features : int
        Number of encoder features ``F`` (512 for ResNet-18/34, 2048 for 50).
    input_shape : tuple of int or None
        The grid ``(D, H, W)`` the weights were trained on, when known: set by
        :func:`load_checkpoint` from a checkpoint that records it, from a
        saved-model folder, and by ``AnatCLEmbedder.fit``. ``None`` for new
        models and the released
        weights (trained on OpenBHB's 121 x 145 x 121).
    input_affine : ndarray of shape (4, 4) or None
        The voxel-to-world affine of that grid, when known (images with an affine:
        NIfTI files, nibabel images). ``None`` with ``input_shape`` None means
        OpenBHB's grid (:data:`anatcl_sklearn.OPENBHB_AFFINE`).

    See Also
    --------
    load_checkpoint : Build the model and load saved weights.
    resolve_pretrained : Build the model from a name, a path or a state dict.

    Examples
    --------
    >>> import torch
    >>> from anatcl_sklearn.models import AnatCLModel
    >>> model = AnatCLModel().eval()
    >>> x = torch.zeros(2, 1, 24, 28, 24)
    >>> model(x).shape, model.encode(x).shape
    (torch.Size([2, 128]), torch.Size([2, 512]))
    """

    arch: str
    out_dim: int
    normalize: bool
    n_features: int
    encoder: ResNet3D
    head: nn.Sequential
    # The (D, H, W) grid the weights were trained on (None when unknown).
    input_shape: tuple[int, ...] | None
    # The 4 x 4 affine of that grid (None when unknown).
    input_affine: np.ndarray | None

    def __init__(
        self,
        arch: str = "resnet18",
        out_dim: int = 128,
        normalize: bool = True,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        if (
            isinstance(out_dim, bool)
            or not isinstance(out_dim, numbers.Integral)
            or out_dim < 1
        ):
            raise ValueError(f"out_dim must be a positive integer, got {out_dim!r}.")
        out_dim = int(out_dim)
        if not isinstance(normalize, bool):
            raise TypeError(
                f"normalize must be a bool, got {type(normalize).__name__}."
            )
        self.arch = arch
        self.out_dim = out_dim
        self.normalize = normalize
        self.input_shape = None
        self.input_affine = None
        self.encoder = build_encoder(arch, in_channels=in_channels)
        self.n_features = self.encoder.n_features
        self.head = nn.Sequential(
            nn.Linear(self.n_features, self.n_features),
            nn.ReLU(inplace=True),
            nn.Linear(self.n_features, out_dim),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Return the encoder features (the representation used downstream).

        Parameters
        ----------
        x : torch.Tensor of shape (n_samples, in_channels, D, H, W)
            Batch of volumes.

        Returns
        -------
        features : torch.Tensor of shape (n_samples, n_features)
            Encoder output, before the projection head.
        """
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the projection-head output.

        Parameters
        ----------
        x : torch.Tensor of shape (n_samples, in_channels, D, H, W)
            Batch of volumes.

        Returns
        -------
        projection : torch.Tensor of shape (n_samples, out_dim)
            Head output, with unit L2 norm per row when ``normalize``.
        """
        z = self.head(self.encoder(x))
        return F.normalize(z, dim=1) if self.normalize else z

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch!r}, out_dim={self.out_dim}, normalize={self.normalize}"
        )
