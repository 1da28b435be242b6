"""The vector-quantised autoencoder: spatial codes snapped to a learnt codebook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import codebook_perplexity
from ..registry import register_model
from .base import check_range, positive_int
from .conv import ConvAutoencoder
from .layers import activation as make_activation


@dataclass
class Quantized:
    """A quantiser's result for encoder maps ``z_e`` of shape ``(batch, dim, h, w)``.

    ``indices`` ``(batch, h, w)`` name the nearest codebook vector of every
    position and ``z_q`` holds those vectors. :meth:`sample` and :meth:`mode`
    are the straight-through code ``z_e + sg(z_q - z_e)``: its value is
    ``z_q``, its gradient passes to the encoder unchanged (van den Oord et al. 2017, eq. 3).
    """

    z_e: Tensor
    z_q: Tensor
    indices: Tensor
    usage: Tensor  # (codebook_size,) how often the batch used each code

    def sample(self) -> Tensor:
        return self.z_e + (self.z_q - self.z_e).detach()

    def mode(self) -> Tensor:
        return self.sample()

    def commitment(self) -> Tensor:
        """``||z_e - sg(z_q)||^2`` per sample: keeps the encoder's outputs near their codes."""
        return (self.z_e - self.z_q.detach()).pow(2).flatten(1).sum(1)

    def metrics(self) -> dict[str, Tensor]:
        return {"perplexity": codebook_perplexity(self.usage)}


@register_model("vqvae")
class VQVAE(ConvAutoencoder):
    """A convolutional autoencoder with a discrete, spatial code (van den Oord et al. 2017).

    The encoder's convolution blocks end in a 1x1 convolution to ``code_size``
    channels; each position of that map is replaced by its nearest of
    ``codebook_size`` vectors, and the decoder (a 1x1 convolution, then the
    upsampling blocks) reconstructs from the quantised map. The codebook is
    not trained by gradients but follows the encoder's outputs by exponential
    moving averages with rate ``decay`` (Razavi et al. 2019, appendix;
    Laplace-smoothed counts); a code unused for long (average count below
    ``restart_below``) restarts at a random encoder output of the batch, and
    the first batch initialises the whole codebook. The loss is the
    reconstruction loss plus ``commitment`` times ``||z_e - sg(z_q)||^2``; the
    codebook's perplexity (effective number of codes used) is logged.

    Sampling: the model keeps, like the codebook, a moving average of how often
    each code appears at each position of the map, and :meth:`sample` draws every
    position's code independently from it. That prior ignores how positions
    depend on each other, so samples are rougher than with the paper's
    autoregressive PixelCNN prior, which this model does not train.
    """

    def __init__(
        self,
        codebook_size: int = 128,
        code_size: int = 16,
        commitment: float = 0.25,
        decay: float = 0.99,
        restart_below: float = 0.01,
        hidden: tuple[int, ...] = (),
        **options: Any,
    ) -> None:
        self.codebook_size = positive_int("codebook_size", codebook_size)
        super().__init__(code_size=code_size, hidden=(), **options)
        if tuple(hidden):
            raise ConfigError("a VQ-VAE's code is a map of codebook vectors, with no hidden layers before it; leave hidden empty.")
        self.commitment = check_range("commitment", commitment, 0)
        self.decay = check_range("decay", decay, 0, 1)
        self.restart_below = check_range("restart_below", restart_below, 0)
        k, d = self.codebook_size, self.code_size
        h, w = self.feature_sizes()[-1]
        self.register_buffer("codebook", torch.randn(k, d))
        self.register_buffer("code_counts", torch.zeros(k))  # moving average of each code's use per batch
        self.register_buffer("code_sums", torch.zeros(k, d))  # moving average of the outputs assigned to each code
        self.register_buffer("position_counts", torch.zeros(h, w, k))  # the sampling prior
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """The shape of one code: ``(code_size, h, w)``."""
        return (self.code_size, *self.feature_sizes()[-1])

    def make_encoder(self) -> nn.Module:
        return nn.Sequential(*self.down_blocks(), nn.Conv2d(self.channels[-1], self.code_size, 1))

    def make_decoder(self) -> nn.Module:
        return nn.Sequential(nn.Conv2d(self.code_size, self.channels[-1], 1), make_activation(self.activation), *self.up_blocks())

    def latent(self, h: Tensor) -> Quantized:
        b, _, height, width = h.shape
        flat = h.permute(0, 2, 3, 1).reshape(-1, self.code_size)  # one row per position
        learning = self.training and torch.is_grad_enabled()
        if learning and not self.initialised:  # the first batch's outputs are the initial codebook
            self._restart(torch.arange(self.codebook_size, device=h.device), flat.detach().float())
            self.initialised.fill_(True)
        codebook = self.codebook.to(flat.dtype)
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.t() + codebook.pow(2).sum(1)
        indices = distances.argmin(1)
        z_q = codebook[indices].reshape(b, height, width, self.code_size).permute(0, 3, 1, 2)  # a copy: safe from the update
        if learning:
            self._update(flat.detach().float(), indices)
        usage = torch.bincount(indices, minlength=self.codebook_size).to(h.dtype)
        return Quantized(h, z_q, indices.reshape(b, height, width), usage)

    def regularizers(self, x: Tensor, z: Tensor, q: Quantized) -> dict[str, Tensor]:
        return {"commitment": self.commitment * q.commitment().mean()}

    @torch.no_grad()
    def _update(self, flat: Tensor, indices: Tensor) -> None:
        """One step of the codebook's and the prior's moving averages, then restarts of unused codes."""
        one_hot = nn.functional.one_hot(indices, self.codebook_size).float()
        counts, sums = one_hot.sum(0), one_hot.t() @ flat
        if dist.is_available() and dist.is_initialized():  # every process keeps the same codebook
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.code_counts.lerp_(counts, 1 - self.decay)
        self.code_sums.lerp_(sums, 1 - self.decay)
        n, eps = self.code_counts.sum(), 1e-5
        smoothed = (self.code_counts + eps) / (n + self.codebook_size * eps) * n  # no division by a zero count
        self.codebook.copy_(self.code_sums / smoothed.unsqueeze(1))
        per_position = one_hot.reshape(-1, *self.position_counts.shape).mean(0)  # (h, w, codebook_size)
        self.position_counts.lerp_(per_position, 1 - self.decay)
        dead = (self.code_counts < self.restart_below).nonzero().flatten()
        if len(dead):
            self._restart(dead, flat)

    @torch.no_grad()
    def _restart(self, codes: Tensor, flat: Tensor) -> None:
        """Move ``codes`` to random encoder outputs of the batch, as if each had been used once."""
        chosen = flat[torch.randint(len(flat), (len(codes),), device=flat.device)]
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(chosen, 0)
        self.codebook[codes] = chosen
        self.code_sums[codes] = chosen
        self.code_counts[codes] = 1.0

    @torch.no_grad()
    def sample(self, n: int) -> Tensor:
        """Decode ``n`` code maps drawn position by position from the learnt code frequencies: ``(n, *input_shape)``."""
        if not float(self.position_counts.sum()):
            raise ConfigError("this VQ-VAE has not been trained, so it has no prior over its codes to sample from.")
        h, w, k = self.position_counts.shape
        probabilities = self.position_counts.reshape(h * w, k) + 1e-12
        indices = torch.multinomial(probabilities, n, replacement=True).t()  # (n, h * w)
        z = self.codebook[indices].reshape(n, h, w, self.code_size).permute(0, 3, 1, 2)
        return self.decode(z)
