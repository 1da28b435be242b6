"""The vector-quantised autoencoder: spatial codes snapped to a learnt codebook."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError
from ..losses import codebook_perplexity
from ..registry import register_model
from .base import Autoencoder, check_range, positive_int
from .prior import CodePrior


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
class VQVAE(Autoencoder):
    """A vector-quantised autoencoder (van den Oord et al. 2017): a code map of codebook vectors, and a learnt prior over it.

    The encoder ends in a map of ``code_size``-d vectors (on ``conv``: the last
    block's grid, by a 1x1 convolution; on ``mlp``: ``positions`` vectors);
    each is replaced by its nearest of ``codebook_size`` codebook vectors, and
    the decoder reconstructs from the quantised map. The codebook is not trained
    by gradients but follows the encoder's outputs by exponential moving averages
    with rate ``decay`` (Razavi et al. 2019, appendix; Laplace-smoothed counts);
    a code unused for long (average count below ``restart_below``) restarts at a
    random encoder output of the batch, and the first batch initialises the whole
    codebook. The loss is the reconstruction loss plus ``commitment`` times
    ``||z_e - sg(z_q)||^2``; the codebook's perplexity (effective number of codes used) is logged.

    Sampling: an autoregressive prior over the map's code indices
    (:class:`~aekit.models.prior.CodePrior`, a small causal transformer, in the
    role of the paper's PixelCNN) is fitted after training on the training
    samples' final codes, by the same training loop (the trainer's ``prior_epochs``);
    :meth:`sample` draws code maps from it and decodes them. A model saved
    before the prior existed samples each position's code independently from
    the moving average of its frequencies, as it did then.
    """

    optional_weights = ("prior.",)

    def __init__(
        self,
        codebook_size: int = 128,
        code_size: int = 16,
        commitment: float = 0.25,
        decay: float = 0.99,
        restart_below: float = 0.01,
        positions: int = 16,
        prior_width: int = 64,
        prior_layers: int = 2,
        hidden: Sequence[int] | None = None,
        **options: Any,
    ) -> None:
        self.codebook_size = positive_int("codebook_size", codebook_size)
        super().__init__(code_size=code_size, hidden=hidden, **options)
        if self.architecture.name == "conv" and self.hidden:
            raise ConfigError("a VQ-VAE's code is a map of codebook vectors, with no hidden layers before it on conv; leave hidden empty.")
        self.commitment = check_range("commitment", commitment, 0)
        self.decay = check_range("decay", decay, 0, 1)
        self.restart_below = check_range("restart_below", restart_below, 0)
        self.positions = positive_int("positions", positions)
        k, d = self.codebook_size, self.code_size
        h, w = self.architecture.map_size(self, self.positions)
        self.register_buffer("codebook", torch.randn(k, d))
        self.register_buffer("code_counts", torch.zeros(k))  # moving average of each code's use per batch
        self.register_buffer("code_sums", torch.zeros(k, d))  # moving average of the outputs assigned to each code
        self.register_buffer("position_counts", torch.zeros(h, w, k))  # the prior of models saved before CodePrior
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.prior = CodePrior(k, h * w, positive_int("prior_width", prior_width), positive_int("prior_layers", prior_layers))

    @classmethod
    def preferred_architecture(cls, input_shape: Sequence[int]) -> str:
        return "conv" if len(input_shape) == 3 else "mlp"

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """The shape of one code: ``(code_size, h, w)``."""
        return (self.code_size, *self.architecture.map_size(self, self.positions))

    def make_encoder(self) -> nn.Module:
        return self.architecture.map_encoder(self, self.code_size, self.positions)

    def make_decoder(self) -> nn.Module:
        return self.architecture.map_decoder(self, self.code_size, self.positions)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The autoencoder's parameters: the prior is fitted afterwards, on the final codes (:meth:`code_indices`)."""
        return {"model": self.parameters_except(self.prior)}

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

    @torch.no_grad()
    def code_indices(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        """The code maps of samples ``x`` as indices ``(n, h * w)``: what :attr:`prior` models."""
        was_training = self.training
        self.eval()
        out = torch.cat([self.latent(self.encoder(self.scale(self.as_batch(x[i : i + batch_size])))).indices.flatten(1) for i in range(0, len(x), batch_size)])
        self.train(was_training)
        return out

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
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """Decode ``n`` code maps drawn from the learnt prior (its softmaxes at ``temperature``): ``(n, *input_shape)``.

        Below 1 the draws keep to the likeliest codes: on MNIST that made samples further from real images
        (Frechet distance 21.0 at 1, 27.1 at 0.9, 38.1 at 0.8), so 1 is the default.
        """
        h, w, k = self.position_counts.shape
        if bool(self.prior.fitted):
            indices = self.prior.sample(n, generator=generator, temperature=check_range("temperature", temperature, 0, low_open=True))
        elif float(self.position_counts.sum()):  # a model saved before the prior: independent positions
            probabilities = self.position_counts.reshape(h * w, k) + 1e-12
            indices = torch.multinomial(probabilities, n, replacement=True, generator=generator).t()  # (n, h * w)
        else:
            raise ConfigError("this VQ-VAE has not been trained, so it has no prior over its codes to sample from.")
        z = self.codebook[indices].reshape(n, h, w, self.code_size).permute(0, 3, 1, 2)
        return self.decode(z)
