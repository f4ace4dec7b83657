"""The supervised L1 baseline of the paper: a linear age head on the encoder and an L1 loss."""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .._typing import TensorLike

from ._validation import check_age


def _as_prediction(pred: object) -> torch.Tensor:
    if not isinstance(pred, torch.Tensor):
        raise TypeError(
            f"pred must be a torch.Tensor of shape (n_samples,) or (n_samples, 1); got {type(pred).__name__}."
        )
    if pred.ndim == 2 and pred.shape[1] == 1:
        pred = pred[:, 0]
    if pred.ndim != 1 or pred.shape[0] < 1:
        raise ValueError(f"pred must have shape (n_samples,) or (n_samples, 1); got shape {tuple(pred.shape)}.")
    return pred


def l1_age_loss(pred: torch.Tensor, age: TensorLike) -> torch.Tensor:
    """Mean absolute error between predicted and true ages (the paper's "L1" baseline loss).

    Parameters
    ----------
    pred : torch.Tensor of shape (n_samples,) or (n_samples, 1)
        Predicted ages, e.g. the output of :class:`AgeRegressionHead`.
    age : torch.Tensor or array-like of shape (n_samples,) or (n_samples, 1)
        True ages, finite.

    Returns
    -------
    loss : torch.Tensor
        Scalar ``mean(|pred - age|)``, float32 for half-precision predictions.
    """
    pred = _as_prediction(pred)
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    target = check_age(age, pred.shape[0], device=pred.device, dtype=dtype)
    return (pred.to(dtype) - target).abs().mean()


class L1AgeLoss(nn.Module):
    """Module form of :func:`l1_age_loss`, usable as a skorch ``criterion``.

    Examples
    --------
    >>> import torch
    >>> from anatcl_sklearn.losses import L1AgeLoss
    >>> L1AgeLoss()(torch.tensor([[30.0], [40.0]]), torch.tensor([32.0, 39.0]))
    tensor(1.5000)
    """

    def forward(self, pred: torch.Tensor, age: TensorLike) -> torch.Tensor:
        """Compute the loss.

        Parameters
        ----------
        pred : torch.Tensor of shape (n_samples,) or (n_samples, 1)
            Predicted ages.
        age : torch.Tensor or array-like of shape (n_samples,) or (n_samples, 1)
            True ages.

        Returns
        -------
        loss : torch.Tensor
            Scalar mean absolute error.
        """
        return l1_age_loss(pred, age)


class AgeRegressionHead(nn.Module):
    """Linear age regressor on top of encoder features, as in the reference L1 baseline.

    The reference code trains ``Linear(512, 1)`` on the ResNet-18 pooled features with the L1
    loss. ``init_age`` sets the initial bias (e.g. the mean training age), which shortens the
    start of training without changing the model.

    Parameters
    ----------
    in_features : int, default=512
        Size of the encoder's feature vector (512 for ResNet-18).
    init_age : float, default=0.0
        Initial value of the bias, in years.

    Examples
    --------
    >>> import torch
    >>> from anatcl_sklearn.losses import AgeRegressionHead
    >>> AgeRegressionHead(8, init_age=40.0)(torch.zeros(3, 8)).shape
    torch.Size([3])
    """

    in_features: int
    init_age: float
    fc: nn.Linear

    def __init__(self, in_features: int = 512, init_age: float = 0.0) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, numbers.Integral) or in_features < 1:
            raise ValueError(f"in_features must be a positive integer; got {in_features!r}.")
        self.in_features = int(in_features)
        self.init_age = float(init_age)
        self.fc = nn.Linear(in_features, 1)
        with torch.no_grad():
            self.fc.bias.fill_(self.init_age)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Predict ages.

        Parameters
        ----------
        features : torch.Tensor of shape (n_samples, in_features)
            Encoder features.

        Returns
        -------
        age : torch.Tensor of shape (n_samples,)
            Predicted ages.
        """
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(
                f"features must have shape (n_samples, {self.in_features}); got shape {tuple(features.shape)}."
            )
        return self.fc(features)[:, 0]
