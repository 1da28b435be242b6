"""Stochastic codes: the variational autoencoder and the noisy-code autoencoder."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..losses import free_bits_kl, log_normal_standard
from ..registry import register_model
from .base import Autoencoder, check_range
from .latents import DiagonalGaussian, PointCode


class GaussianPrior:
    """For models whose codes should follow N(0, I) (a VAE's prior, an adversarial autoencoder's target):
    :meth:`sample` decodes draws from it."""

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Decode ``n`` codes drawn from the prior N(0, I): ``(n, *input_shape)`` decoder means."""
        device = next(self.parameters()).device
        return self.decode(torch.randn(n, self.code_size, device=device))


@register_model("vae")
class VariationalAutoencoder(GaussianPrior, Autoencoder):
    """Gaussian encoder, reparameterised sample, KL to N(0, I) weighted by ``beta`` (beta-VAE), likelihood decoder.

    ``free_bits`` (nats per code unit; Kingma et al. 2016) keeps the optimiser
    from closing units: while training, each unit's KL costs at least that much
    (see :func:`aekit.losses.free_bits_kl`). ``beta`` is a scheduled scalar: the
    trainer's ``kl_warmup`` raises it from 0 to its value (Bowman et al. 2016).
    Evaluation decodes the posterior mean and reports the plain ``beta * KL``.
    """

    code_factor = 2  # the encoder emits a mean and a log-variance per code unit
    requires_likelihood = True
    scalars = ("beta",)
    sampled_score = True  # anomaly_score draws codes: a row's score depends on where it sits in its batch

    default_loss = "bernoulli"

    def __init__(self, beta: float = 1.0, free_bits: float = 0.0, loss: str | None = None, **options: Any) -> None:
        super().__init__(loss=loss, **options)
        if not self.reconstruction.is_nll:
            raise ConfigError(f"a VAE's decoder is a likelihood: use loss='bernoulli' or 'gaussian', not {self.config['loss']!r}.")
        self.beta = check_range("beta", beta, 0)
        self.free_bits = check_range("free_bits", free_bits, 0)

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        """``q(z | x)`` for inputs ``(batch, *input_shape)``."""
        return self.latent(self.encoder(self.scale(self.as_batch(x))))

    def latent(self, h: Tensor) -> DiagonalGaussian:
        return DiagonalGaussian.from_encoder(h)

    def regularizers(self, x: Tensor, z: Tensor, q: DiagonalGaussian) -> dict[str, Tensor]:
        return {"kl": self.beta * self.kl_term(q)}

    def kl_term(self, q: DiagonalGaussian) -> Tensor:
        """The batch's KL to the prior: with free bits while training, the plain mean otherwise."""
        return free_bits_kl(q.kl_units(), self.free_bits if self.training else 0.0)

    @torch.no_grad()
    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """``log p(x | z_i) + log p(z_i) - log q(z_i | x)`` for ``k`` samples ``z_i ~ q``: shape ``(k, batch)``.

        The log importance weights of Burda et al. (2016), in nats of the raw inputs.
        """
        return self._log_weights(self.scale(self.as_batch(x)), k, 1.0)[0]

    def _log_weights(self, x: Tensor, k: int, beta: float) -> tuple[Tensor, DiagonalGaussian, Tensor]:
        """``log p(x | z_i) + beta (log p(z_i) - log q(z_i | x))`` of scaled inputs ``x``, the posterior and ``log p(x | z_i)``."""
        q = self.latent(self.encoder(x))
        z = q.rsample(k)  # (k, batch, code)
        logits = self.decode_logits(z.reshape(-1, self.code_size))
        targets = x.unsqueeze(0).expand(k, *x.shape).reshape(-1, *self.input_shape)
        log_px_z = -self.reconstruction_nll(logits, targets).view(k, -1)
        # a density of the scaled values is one of the raw values once divided by the scaling's Jacobian
        jacobian = self.input_scale.log().sum() if self.input_scaling is not None else 0.0
        return log_px_z + beta * (log_normal_standard(z) - q.log_prob(z)) - jacobian, q, log_px_z

    def elbo(self, x: Tensor, samples: int = 1) -> Tensor:
        """The evidence lower bound per sample (beta = 1), in nats, averaged over ``samples`` draws."""
        return self.log_weights(x, samples).mean(0)

    def anomaly_score(self, x: Tensor, samples: int = 10) -> Tensor:
        """Minus the ELBO in nats, from ``samples`` draws of the code (seed the generator for repeatable scores)."""
        return -self.elbo(x, samples=samples)

    def log_likelihood(self, x: Tensor, k: int = 100, chunk: int = 100) -> Tensor:
        """Importance-weighted estimate of ``log p(x)`` per sample, in nats (Burda et al. 2016, eq. 8).

        ``log (1/k) sum_i p(x, z_i) / q(z_i | x)``, ``z_i ~ q(z | x)``: a lower
        bound that rises with ``k`` towards ``log p(x)``. Samples are drawn in
        chunks of ``chunk`` to bound memory.
        """
        total: Tensor | None = None
        for start in range(0, k, chunk):
            part = torch.logsumexp(self.log_weights(x, min(chunk, k - start)), dim=0)
            total = part if total is None else torch.logaddexp(total, part)
        return total - math.log(k)


@register_model("stochastic")
class StochasticAutoencoder(Autoencoder):
    """Gaussian noise injected into the code while training; the loss is the decoder distribution's NLL."""

    default_loss = "gaussian"

    def __init__(self, code_noise: float = 0.1, loss: str | None = None, **options: Any) -> None:
        super().__init__(loss=loss, **options)
        self.code_noise = check_range("code_noise", code_noise, 0)

    def latent(self, h: Tensor) -> DiagonalGaussian:
        if not self.code_noise:
            return PointCode(h)
        return DiagonalGaussian(h, torch.full_like(h, 2 * math.log(self.code_noise)))
