"""Helpers the applications share: batched inference in evaluation mode."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

BATCH = 1024


@torch.no_grad()
def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = BATCH, *, padded: bool = False) -> Tensor:
    """``fn`` over ``x`` in batches, concatenated.

    With ``padded``, every batch has exactly ``batch_size`` rows (the last one filled with copies of its first
    row, whose results are dropped): a matrix product's rounding can depend on its number of rows, so a
    sample's result then never depends on how many samples came with it.
    """
    parts = []
    for i in range(0, len(x), batch_size):
        chunk = x[i : i + batch_size]
        if padded and len(chunk) < batch_size:
            filler = chunk[:1].expand(batch_size - len(chunk), *chunk.shape[1:])
            parts.append(fn(torch.cat([chunk, filler]))[: len(chunk)])
        else:
            parts.append(fn(chunk))
    return torch.cat(parts)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def encode(model: nn.Module, x: Tensor) -> np.ndarray:
    """Codes of ``x`` (the posterior mean for a VAE) as float32 NumPy, shape (n, code_size); a spatial code
    (a VQ-VAE's ``(code_size, h, w)`` map) is flattened to one row per sample."""
    model.eval()
    device = device_of(model)
    return batched(lambda b: model.encode(b.to(device)).flatten(1).cpu(), x).numpy()


def reconstruct(model: nn.Module, x: Tensor) -> Tensor:
    """Reconstructions of ``x`` in evaluation mode, on the CPU."""
    model.eval()
    device = device_of(model)
    return batched(lambda b: model(b.to(device)).x_hat.cpu(), x)
