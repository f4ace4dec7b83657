"""``torch.nn.Module`` wrappers of the contrastive losses, for skorch's ``criterion``.

Parameters are checked when the module is built (skorch builds the criterion in
``initialize``), so a bad value fails before any batch is seen.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._typing import TensorLike

from ._contrastive import anatcl_loss, expw_loss, simclr_loss, yaware_loss
from ._kernels import _age_kernel
from ._validation import (
    AGE_KERNELS,
    DESCRIPTORS,
    check_age,
    check_features,
    check_option,
    check_scalar,
)


class AnatCLLoss(nn.Module):
    """AnatCL loss (Eq. 4) as a module; see :func:`anatcl_loss`.

    Parameters
    ----------
    descriptor : {"global", "local"}, default="global"
        Which anatomy kernel.
    sigma : float, default=2.0
        Age kernel parameter; must be > 0.
    lambda_age : float, default=1.0
        Weight of the age term; must be >= 0.
    lambda_anat : float, default=1.0
        Weight of the anatomy term; must be >= 0.
    temperature : float, default=0.1
        Softmax temperature; must be > 0.
    kernel : {"rbf", "gaussian", "cauchy"}, default="rbf"
        Age kernel.
    """

    def __init__(
        self,
        descriptor: str = "global",
        sigma: float = 2.0,
        lambda_age: float = 1.0,
        lambda_anat: float = 1.0,
        temperature: float = 0.1,
        kernel: str = "rbf",
    ) -> None:
        super().__init__()
        self.descriptor = check_option(descriptor, "descriptor", DESCRIPTORS)
        self.sigma = check_scalar(sigma, "sigma")
        self.lambda_age = check_scalar(lambda_age, "lambda_age", strictly_positive=False)
        self.lambda_anat = check_scalar(lambda_anat, "lambda_anat", strictly_positive=False)
        if self.lambda_age == 0 and self.lambda_anat == 0:
            raise ValueError("lambda_age and lambda_anat are both 0; at least one must be > 0.")
        self.temperature = check_scalar(temperature, "temperature")
        self.kernel = check_option(kernel, "kernel", AGE_KERNELS)

    def forward(self, z: torch.Tensor, age: TensorLike, anatomy: TensorLike) -> torch.Tensor:
        """Compute the loss.

        Parameters
        ----------
        z : torch.Tensor of shape (n_samples, n_views, n_features)
            Embeddings.
        age : torch.Tensor or array-like of shape (n_samples,), or None
            Ages (None allowed when ``lambda_age == 0``).
        anatomy : torch.Tensor or array-like of shape (n_samples, n_regions, n_measures), or None
            Anatomical measures (None allowed when ``lambda_anat == 0``).

        Returns
        -------
        loss : torch.Tensor
            Scalar loss.
        """
        return anatcl_loss(
            z,
            age,
            anatomy,
            descriptor=self.descriptor,
            sigma=self.sigma,
            lambda_age=self.lambda_age,
            lambda_anat=self.lambda_anat,
            temperature=self.temperature,
            kernel=self.kernel,
        )

    def extra_repr(self) -> str:
        return (
            f"descriptor={self.descriptor!r}, sigma={self.sigma}, lambda_age={self.lambda_age}, "
            f"lambda_anat={self.lambda_anat}, temperature={self.temperature}, kernel={self.kernel!r}"
        )


class _AgeWeightedLoss(nn.Module):
    """Shared parameters of the age-kernel losses."""

    _loss: Callable[..., torch.Tensor] | None = None

    def __init__(self, sigma: float = 2.0, temperature: float = 0.1, kernel: str = "rbf") -> None:
        super().__init__()
        self.sigma = check_scalar(sigma, "sigma")
        self.temperature = check_scalar(temperature, "temperature")
        self.kernel = check_option(kernel, "kernel", AGE_KERNELS)

    def forward(self, z: torch.Tensor, age: TensorLike) -> torch.Tensor:
        """Compute the loss.

        Parameters
        ----------
        z : torch.Tensor of shape (n_samples, n_views, n_features)
            Embeddings.
        age : torch.Tensor or array-like of shape (n_samples,) or (n_samples, 1)
            Ages.

        Returns
        -------
        loss : torch.Tensor
            Scalar loss.
        """
        check_features(z)
        age = check_age(age, z.shape[0], device=z.device)
        weights = _age_kernel(age, self.sigma, self.kernel)
        loss = type(self)._loss
        if loss is None:  # the shared base itself, not YAwareLoss or ExpWLoss
            raise TypeError(f"{type(self).__name__} has no loss; use YAwareLoss or ExpWLoss.")
        return loss(z, weights, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}, temperature={self.temperature}, kernel={self.kernel!r}"


class YAwareLoss(_AgeWeightedLoss):
    """y-Aware loss (Eq. 1) with an age kernel, as a module; see :func:`yaware_loss`.

    Parameters
    ----------
    sigma : float, default=2.0
        Age kernel parameter; must be > 0.
    temperature : float, default=0.1
        Softmax temperature; must be > 0.
    kernel : {"rbf", "gaussian", "cauchy"}, default="rbf"
        Age kernel (see :func:`age_kernel`).
    """

    _loss = staticmethod(yaware_loss)


class ExpWLoss(_AgeWeightedLoss):
    """ExpW loss with an age kernel, as a module; see :func:`expw_loss`.

    Parameters
    ----------
    sigma : float, default=2.0
        Age kernel parameter; must be > 0.
    temperature : float, default=0.1
        Softmax temperature; must be > 0.
    kernel : {"rbf", "gaussian", "cauchy"}, default="rbf"
        Age kernel (see :func:`age_kernel`).
    """

    _loss = staticmethod(expw_loss)


class SimCLRLoss(nn.Module):
    """SimCLR NT-Xent loss as a module; see :func:`simclr_loss`.

    Parameters
    ----------
    temperature : float, default=0.1
        Softmax temperature; must be > 0.
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = check_scalar(temperature, "temperature")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Parameters
        ----------
        z : torch.Tensor of shape (n_samples, n_views, n_features)
            Embeddings, at least 2 views.

        Returns
        -------
        loss : torch.Tensor
            Scalar loss.
        """
        return simclr_loss(z, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
