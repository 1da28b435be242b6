"""An autoregressive prior over the code indices of a discrete code map (a VQ-VAE's)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AEOutput


class CodePrior(nn.Module):
    """``p(k) = prod_i p(k_i | k_<i)`` over the ``positions`` code indices of a map in raster order.

    A small causal transformer (a decoder-only one, as the priors of VQGAN and
    later VQ-VAEs; the original paper used a PixelCNN): the indices shifted
    right behind a start token, learnt position embeddings, ``layers``
    pre-norm blocks of width ``width``, and a softmax over the ``codebook_size`` codes.

    Parameters
    ----------
    codebook_size : int
        Number of codes ``K``.
    positions : int
        Codes per map ``h * w``.
    width, layers : int
        The transformer's width and depth.
    """

    def __init__(self, codebook_size: int, positions: int, width: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.codebook_size, self.positions = codebook_size, positions
        self.embed = nn.Embedding(codebook_size + 1, width)  # the last index is the start token
        self.position = nn.Parameter(torch.randn(positions, width) * 0.02)
        block = nn.TransformerEncoderLayer(width, max(1, width // 32), 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, codebook_size)
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))  # set once it has seen training codes
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(positions), persistent=False)

    def as_batch(self, x: Tensor) -> Tensor:
        """Code maps ``(batch, positions)`` (or ``(batch, h, w)``) of indices, as the trainer hands them (float), as longs."""
        return x.reshape(len(x), self.positions).long()

    def forward(self, indices: Tensor) -> AEOutput:
        """The prior as a model the one training loop fits on code maps: its loss is ``-log p(k)`` in nats per map."""
        indices = self.as_batch(indices)
        if self.training:
            self.fitted.fill_(True)
        nll = self.nll(indices).mean()
        return AEOutput(x_hat=indices, z=indices, losses={"prior": nll}, loss=nll)

    def logits(self, indices: Tensor) -> Tensor:
        """``(batch, n)`` indices (``n <= positions``) -> ``(batch, n, codebook_size)`` logits of each position given those before it."""
        n = indices.shape[1]
        start = torch.full_like(indices[:, :1], self.codebook_size)
        h = self.embed(torch.cat([start, indices[:, :-1]], dim=1)) + self.position[:n]
        h = self.blocks(h, mask=self.causal[:n, :n], is_causal=True)
        return self.head(self.norm(h))

    def nll(self, indices: Tensor) -> Tensor:
        """``-log p(k)`` per map of ``(batch, positions)`` indices, in nats."""
        logits = self.logits(indices)
        return F.cross_entropy(logits.transpose(1, 2).float(), indices, reduction="none").sum(1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> Tensor:
        """``n`` maps of indices ``(n, positions)``, drawn position by position (each softmax's logits divided by ``temperature``)."""
        device = self.head.weight.device
        indices = torch.zeros(n, 0, dtype=torch.long, device=device)
        for _ in range(self.positions):
            last = self.logits(torch.cat([indices, indices.new_zeros(n, 1)], dim=1))[:, -1].float() / temperature
            draw = torch.multinomial(torch.softmax(last, dim=-1), 1, generator=generator)
            indices = torch.cat([indices, draw], dim=1)
        return indices
