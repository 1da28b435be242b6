"""VAE-GAN (Larsen et al. 2016): a VAE whose decoder is also a GAN's generator, judged in a discriminator's features."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register_model
from .base import check_range
from .latents import DiagonalGaussian
from .vae import VariationalAutoencoder


def bce_logits(logits: Tensor, target: float) -> Tensor:
    """``-log sigmoid(l)`` (target 1) or ``-log(1 - sigmoid(l))`` (target 0), averaged: a GAN's two losses."""
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


@register_model("vae-gan")
class VAEGAN(VariationalAutoencoder):
    """A VAE and a discriminator that tells data from reconstructions and from decoded prior samples (Larsen et al. 2016).

    The discriminator ``D`` is the architecture's encoder with one output (on
    ``conv``, the default for images: the convolution blocks, then a linear
    layer); its last hidden layer ``f`` is where reconstructions are compared,
    a Gaussian likelihood in feature space (the paper's ``L_llike^Dis_l``):
    ``feature_weight * 1/2 ||f(x~) - f(x)||^2``. The encoder and decoder
    minimise the VAE's terms, that feature term and ``adversarial_weight``
    times the generator loss ``-log D(Dec(z_p))`` of prior draws ``z_p``
    (only the decoder makes them, so the encoder gets no GAN gradient, as in the
    paper); ``D``, its own parameter group (:attr:`loss_groups`), minimises
    ``-log D(x) - 1/2 log(1 - D(x~)) - 1/2 log(1 - D(Dec(z_p)))`` on detached images.
    Unlike the paper, the pixel likelihood stays in the loss beside the feature
    term: it keeps the first epochs stable. Evaluation mode reports the
    deterministic terms (no prior draws).
    """

    loss_groups = {"discriminator": "discriminator"}

    def __init__(self, feature_weight: float = 0.01, adversarial_weight: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.feature_weight = check_range("feature_weight", feature_weight, 0)
        self.adversarial_weight = check_range("adversarial_weight", adversarial_weight, 0)

    @classmethod
    def preferred_architecture(cls, input_shape: Sequence[int]) -> str:
        return "conv" if len(input_shape) == 3 else "mlp"

    def build(self) -> None:
        super().build()
        self.discriminator = self.architecture.encoder(self, 1)
        self.architecture.finish(self)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        critic = {id(p) for p in self.discriminator.parameters()}
        return {"model": [p for p in self.parameters() if id(p) not in critic], "discriminator": list(self.discriminator.parameters())}

    def judge(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The discriminator's features ``f`` (its last hidden layer, flattened) and its logit, for a batch of images."""
        features = self.discriminator[:-1](self.architecture.prepare(images))
        return features.flatten(1), self.discriminator[-1](features)

    def regularizers(self, x: Tensor, z: Tensor, q: DiagonalGaussian) -> dict[str, Tensor]:
        terms = super().regularizers(x, z, q)
        reconstructed = self.output_activation(self.decode_logits(z))
        real_features, real_logit = self.judge(x)
        fake_features, _ = self.judge(reconstructed)
        terms["feature_reconstruction"] = self.feature_weight * 0.5 * (fake_features - real_features.detach()).pow(2).sum(1).mean()
        if not self.training:
            return terms
        prior = self.output_activation(self.decode_logits(torch.randn_like(z)))
        terms["adversarial"] = self.adversarial_weight * bce_logits(self.judge(prior)[1], 1.0)
        fakes = torch.cat([reconstructed, prior]).detach()
        terms["discriminator"] = bce_logits(real_logit, 1.0) + bce_logits(self.judge(fakes)[1], 0.0)
        return terms
