"""The beta-TC-VAE: the VAE whose KL term is split in three, each with its own weight."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..losses import total_correlation_terms
from ..registry import register_model
from .base import check_range
from .latents import DiagonalGaussian
from .vae import VariationalAutoencoder


@register_model("beta-tcvae")
class BetaTCVAE(VariationalAutoencoder):
    """The KL to the prior as index-code mutual information, total correlation and dimension-wise KL (Chen et al. 2018).

    The loss is ``reconstruction + alpha * MI + beta * TC + gamma * dimension-wise KL``,
    each estimated on the batch by minibatch stratified sampling
    (:func:`aekit.losses.total_correlation_terms`); ``alpha = beta = gamma = 1``
    is the VAE. Penalising the total correlation (``beta`` > 1) pushes the code
    units to be independent, a disentangled code, without the blur a larger
    KL weight brings. The estimator needs the training set's size, which
    :meth:`adapt` records when training starts. A KL warm-up schedules ``beta``.
    Evaluation mode estimates the terms from a fixed draw of the code, so it is deterministic.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 4.0, gamma: float = 1.0, **options: Any) -> None:
        if options.get("free_bits"):
            raise ConfigError("free_bits applies to the VAE's KL term, which the beta-TC-VAE splits in three; leave it at 0.")
        super().__init__(beta=beta, **options)
        self.alpha = check_range("alpha", alpha, 0)
        self.gamma = check_range("gamma", gamma, 0)
        self.register_buffer("dataset_size", torch.zeros((), dtype=torch.long))

    def adapt(self, x: Tensor) -> None:
        super().adapt(x)
        self.dataset_size.fill_(len(x))

    def regularizers(self, x: Tensor, z: Tensor, q: DiagonalGaussian) -> dict[str, Tensor]:
        # Before adapt() (a model used without the trainer) the batch stands for the data set: the
        # estimates are then shifted by constants, and their gradients unchanged.
        n = int(self.dataset_size) or len(z)
        if not self.training:  # the estimates need a sample of q (at its mean, log q(z|x) grows without bound): a fixed one
            noise = torch.randn(q.mean.shape, generator=torch.Generator(q.mean.device).manual_seed(0), device=q.mean.device)
            z = q.mean + (0.5 * q.logvar).exp() * noise.to(q.mean.dtype)
        mi, tc, dimension_kl = total_correlation_terms(z.flatten(1), q.mean.flatten(1), q.logvar.flatten(1), n)
        return {"mutual_info": self.alpha * mi.mean(), "total_correlation": self.beta * tc.mean(), "dimension_kl": self.gamma * dimension_kl.mean()}
