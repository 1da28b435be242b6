"""The latent: what an encoder's output becomes before the decoder sees it.

A model's :meth:`~aekit.models.Autoencoder.latent` turns the encoder's output
``h`` into one of these objects, and the base forward pass decodes
``latent.sample()`` while training and ``latent.mode()`` otherwise. The
regularisers receive the object itself, so that a variant that needs the
posterior (a beta-TC-VAE, free bits, a quantiser's commitment loss) is its
regulariser only. Codes may have any shape after the batch dimension: flat
``(batch, code_size)`` or spatial ``(batch, channels, h, w)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..losses import kl_normal_standard_units, log_normal_diag


@dataclass
class PointCode:
    """A deterministic code: the encoder's output itself."""

    value: Tensor

    def sample(self) -> Tensor:
        return self.value

    def mode(self) -> Tensor:
        return self.value


@dataclass
class DiagonalGaussian:
    """``N(mean, diag(exp(logvar)))`` over codes of shape ``(batch, *code_shape)``.

    The diagonal Gaussian posterior of a VAE (diffusers' ``DiagonalGaussianDistribution``
    has the same role): reparameterised samples, the closed-form KL to N(0, I),
    log-densities.
    """

    mean: Tensor
    logvar: Tensor

    @classmethod
    def from_encoder(cls, h: Tensor) -> "DiagonalGaussian":
        """Split the encoder's output ``(batch, 2 * code, ...)`` along dim 1 into mean and log-variance."""
        mean, logvar = h.chunk(2, dim=1)
        return cls(mean, logvar.clamp(-30.0, 20.0))  # keeps exp(logvar) finite in float32

    def rsample(self, n: int | None = None) -> Tensor:
        """A reparameterised sample ``mean + exp(logvar / 2) * eps`` (Kingma & Welling 2014, eq. 10); ``(n, batch, ...)`` with ``n``."""
        shape = self.mean.shape if n is None else (n, *self.mean.shape)
        return self.mean + (0.5 * self.logvar).exp() * torch.randn(shape, dtype=self.mean.dtype, device=self.mean.device)

    def sample(self) -> Tensor:
        return self.rsample()

    def mode(self) -> Tensor:
        return self.mean

    def kl_units(self) -> Tensor:
        """``KL(q || N(0, 1))`` of every code unit, shape ``(batch, code_size)`` (flattened code), closed form."""
        return kl_normal_standard_units(self.mean.flatten(1), self.logvar.flatten(1))

    def kl(self) -> Tensor:
        """``KL(q || N(0, I))`` per sample, closed form, shape ``(batch,)``."""
        return self.kl_units().sum(1)

    def log_prob(self, z: Tensor) -> Tensor:
        """``log q(z)`` per sample for codes ``z`` of shape ``(..., batch, code_size)``."""
        return log_normal_diag(z, self.mean, self.logvar)
