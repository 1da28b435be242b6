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


# On conv, one fully connected layer of this size between the feature maps and the code, in the generator and the
# discriminator: the conv architecture's single linear layer gave the decoder too little to draw with (MNIST, 3 epochs:
# validation reconstruction 80.6 nats after one epoch, 74.0 with it).
CONV_HIDDEN = 512


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
    ``BCE(D(x), 0.9) - 1/2 log(1 - D(x~)) - 1/2 log(1 - D(Dec(z_p)))`` (real images labelled 0.9:
    one-sided label smoothing, Salimans et al. 2016).
    Unlike the paper, the pixel likelihood stays in the loss beside the feature
    term: it keeps the first epochs stable. On ``conv`` the networks get one
    512-unit hidden layer unless ``hidden`` is given. Evaluation mode reports the
    deterministic terms (no prior draws). On MNIST after 3 epochs an adversarial
    weight of 1 drew worse samples than 0.1 (Frechet distance 28.0 against 21.4,
    benchmarks/samples.py's measure), so 0.1 is the default.
    """

    architectures = ("mlp", "conv")
    architecture_note = "its discriminator compares data with reconstructions in the input's form, and a document's reconstruction is a word distribution, not a bag."

    loss_groups = {"discriminator": "discriminator"}

    def __init__(self, feature_weight: float = 0.01, adversarial_weight: float = 0.1, hidden: Sequence[int] | None = None, **options: Any) -> None:
        super().__init__(hidden=hidden, **options)
        self.feature_weight = check_range("feature_weight", feature_weight, 0)
        self.adversarial_weight = check_range("adversarial_weight", adversarial_weight, 0)
        if hidden is None and self.architecture.name == "conv":  # the layers are built after this constructor
            self.hidden = (CONV_HIDDEN,)
            self.config["hidden"] = list(self.hidden)

    @classmethod
    def preferred_architecture(cls, input_shape: Sequence[int]) -> str:
        return "conv" if len(input_shape) == 3 else "mlp"

    def build(self) -> None:
        super().build()
        self.discriminator = self.architecture.encoder(self, 1)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"model": self.parameters_except(self.discriminator), "discriminator": list(self.discriminator.parameters())}

    def judge(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """The discriminator's features ``f`` (its last hidden layer, flattened) and its logit, for a batch of images."""
        features = self.discriminator[:-1](self.architecture.prepare(images))
        return features.flatten(1), self.discriminator[-1](features)

    def regularizers(self, x: Tensor, z: Tensor, q: DiagonalGaussian) -> dict[str, Tensor]:
        terms = super().regularizers(x, z, q)
        reconstructed = self.output_activation(self.decode_logits(z))
        real_features, real_logit = self.judge(x)
        fake_features, fake_logit = self.judge(reconstructed)
        terms["feature_reconstruction"] = self.feature_weight * 0.5 * (fake_features - real_features.detach()).pow(2).sum(1).mean()
        if not self.training:
            return terms
        prior_logit = self.judge(self.output_activation(self.decode_logits(torch.randn_like(z))))[1]
        terms["adversarial"] = self.adversarial_weight * bce_logits(prior_logit, 1.0)
        # The discriminator's term is minimised over its own parameters only (loss_groups), so the images it
        # judges need no detaching: one pass of D per image serves both players. Real images are labelled 0.9,
        # not 1 (one-sided label smoothing, Salimans et al. 2016): a discriminator this close to certain from
        # the first epoch otherwise leaves the decoder little to learn from.
        terms["discriminator"] = bce_logits(real_logit, 0.9) + 0.5 * (bce_logits(fake_logit, 0.0) + bce_logits(prior_logit, 0.0))
        return terms
