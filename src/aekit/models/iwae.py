"""The importance-weighted autoencoder: the VAE trained on a tighter bound."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..losses import importance_weighted_bound
from ..registry import register_model
from .base import AEOutput, positive_int
from .vae import VariationalAutoencoder


@register_model("iwae")
class ImportanceWeightedAutoencoder(VariationalAutoencoder):
    """The VAE trained on the k-sample importance-weighted bound instead of the ELBO (Burda et al. 2016).

    The loss is ``-log (1/k) sum_i p(x, z_i) / q(z_i | x)``
    (:func:`aekit.losses.importance_weighted_bound`): tighter than the ELBO
    for k > 1, and it uses more of the code's units. ``beta`` weights the
    prior-to-posterior ratio inside the weights, so a KL warm-up acts on it too.
    Evaluation mode reports the VAE's deterministic terms (the decoder at the
    posterior mean, the closed-form KL); :meth:`log_likelihood` estimates the bound.
    """

    def __init__(self, samples: int = 5, **options: Any) -> None:
        super().__init__(**options)
        self.samples = positive_int("samples", samples)

    def forward(self, x: Tensor) -> AEOutput:
        if not self.training:  # deterministic, as the VAE's: the decoder at the posterior mean, the closed-form KL
            return super().forward(x)
        x = self.scale(self.as_batch(x))
        log_w, q, log_px_z = self._log_weights(x, self.samples, self.beta)
        bound = importance_weighted_bound(log_w).mean()
        # The bound split as the ELBO is (exactly so for k = 1): the reconstruction under the normalised
        # importance weights, and the rest. The terms sum to -bound, so the gradient is the bound's.
        reconstruction = -(torch.softmax(log_w, dim=0).detach() * log_px_z).sum(0).mean()
        losses = {"reconstruction": reconstruction, "kl": -bound - reconstruction}
        return self.output(self.decode_logits(q.mean), q.mean, losses)
