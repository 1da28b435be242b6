"""The adversarial autoencoder: a discriminator makes the codes look like prior samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register_model
from .base import Autoencoder, check_range, positive_ints
from .layers import mlp
from .vae import GaussianPrior


@register_model("aae")
class AdversarialAutoencoder(GaussianPrior, Autoencoder):
    """A deterministic autoencoder whose codes a discriminator must not tell from N(0, I) samples (Makhzani et al. 2016).

    Every batch takes both of the paper's phases in one optimiser step: the
    encoder and decoder minimise the reconstruction loss plus
    ``adversarial_weight`` times the generator loss ``-log D(z)``; the
    discriminator (``discriminator`` hidden sizes, its own parameter group,
    see :attr:`loss_groups`) minimises ``-log D(z') - log(1 - D(z))`` for prior
    samples ``z'``, on codes detached from the encoder. Once the codes match
    the prior, :meth:`sample` decodes prior draws. Evaluation mode reports the
    generator term only (the discriminator's needs random prior draws).
    """

    loss_groups = {"discriminator": "discriminator"}

    def __init__(self, adversarial_weight: float = 0.3, discriminator: Sequence[int] = (256, 256), **options: Any) -> None:
        super().__init__(**options)
        self.adversarial_weight = check_range("adversarial_weight", adversarial_weight, 0)
        self.discriminator_sizes = positive_ints("discriminator", discriminator)

    def build(self) -> None:
        super().build()
        self.discriminator = mlp([self.code_size, *self.discriminator_sizes, 1], "leaky_relu")

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"model": self.parameters_except(self.discriminator), "discriminator": list(self.discriminator.parameters())}

    def regularizers(self, x: Tensor, z: Tensor, q: Any) -> dict[str, Tensor]:
        fake = self.discriminator(z)
        terms = {"adversarial": self.adversarial_weight * F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))}
        if self.training:
            real, fake = self.discriminator(torch.randn_like(z)), self.discriminator(z.detach())
            terms["discriminator"] = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        return terms
