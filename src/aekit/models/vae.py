"""Stochastic codes: the variational autoencoder and the noisy-code autoencoder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..losses import kl_normal_standard, log_normal_diag, log_normal_standard
from ..registry import register_model
from .base import Autoencoder, check_range


@dataclass
class DiagonalGaussian:
    """``N(mean, diag(exp(logvar)))`` over codes of shape ``(batch, code_size)``."""

    mean: Tensor
    logvar: Tensor

    @classmethod
    def from_encoder(cls, h: Tensor) -> "DiagonalGaussian":
        mean, logvar = h.chunk(2, dim=1)
        return cls(mean, logvar.clamp(-30.0, 20.0))  # keeps exp(logvar) finite in float32

    def rsample(self, n: int | None = None) -> Tensor:
        """A reparameterised sample ``mean + exp(logvar / 2) * eps`` (Kingma & Welling 2014, eq. 10); ``(n, batch, code)`` with ``n``."""
        shape = self.mean.shape if n is None else (n, *self.mean.shape)
        return self.mean + (0.5 * self.logvar).exp() * torch.randn(shape, dtype=self.mean.dtype, device=self.mean.device)

    def kl(self) -> Tensor:
        """``KL(q || N(0, I))`` per sample, closed form."""
        return kl_normal_standard(self.mean, self.logvar)

    def log_prob(self, z: Tensor) -> Tensor:
        return log_normal_diag(z, self.mean, self.logvar)


@register_model("vae")
class VariationalAutoencoder(Autoencoder):
    """Gaussian encoder, reparameterised sample, KL to N(0, I) weighted by ``beta`` (beta-VAE), likelihood decoder."""

    code_factor = 2  # the encoder emits a mean and a log-variance per code unit
    requires_likelihood = True

    def __init__(self, beta: float = 1.0, loss: str = "bernoulli", **options: Any) -> None:
        super().__init__(loss=loss, **options)
        if not self.reconstruction.is_nll:
            raise ConfigError(f"a VAE's decoder is a likelihood: use loss='bernoulli' or 'gaussian', not {loss!r}.")
        self.beta = check_range("beta", beta, 0)

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        """``q(z | x)`` for inputs ``(batch, *input_shape)``."""
        return DiagonalGaussian.from_encoder(self.encoder(self.scale(self.as_batch(x))))

    def latent(self, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        # Training decodes a sample; evaluation decodes the posterior mean, so evaluation is deterministic
        # (use elbo() and log_likelihood() for sampled estimates).
        q = DiagonalGaussian.from_encoder(h)
        return (q.rsample() if self.training else q.mean), {"kl": self.beta * q.kl().mean()}

    def code(self, h: Tensor) -> Tensor:
        return DiagonalGaussian.from_encoder(h).mean

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Decode ``n`` codes drawn from the prior N(0, I): ``(n, *input_shape)`` decoder means."""
        device = next(self.parameters()).device
        return self.decode(torch.randn(n, self.code_size, device=device))

    @torch.no_grad()
    def log_weights(self, x: Tensor, k: int) -> Tensor:
        """``log p(x | z_i) + log p(z_i) - log q(z_i | x)`` for ``k`` samples ``z_i ~ q``: shape ``(k, batch)``."""
        x = self.scale(self.as_batch(x))
        q = DiagonalGaussian.from_encoder(self.encoder(x))
        z = q.rsample(k)  # (k, batch, code)
        logits = self.decode_logits(z.reshape(-1, self.code_size))
        targets = x.unsqueeze(0).expand(k, *x.shape).reshape(-1, *self.input_shape)
        log_px_z = -self.reconstruction_nll(logits, targets).view(k, -1)
        # a density of the scaled values is one of the raw values once divided by the scaling's Jacobian
        jacobian = self.input_scale.log().sum() if self.input_scaling is not None else 0.0
        return log_px_z + log_normal_standard(z) - q.log_prob(z) - jacobian

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

    def __init__(self, code_noise: float = 0.1, loss: str = "gaussian", **options: Any) -> None:
        super().__init__(loss=loss, **options)
        self.code_noise = check_range("code_noise", code_noise, 0)

    def latent(self, h: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return (h + self.code_noise * torch.randn_like(h) if self.training else h), {}
