"""Helpers the applications share: batched inference in evaluation mode."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

BATCH = 1024


@torch.no_grad()
def batched(fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = BATCH) -> Tensor:
    """``fn`` over ``x`` in batches, concatenated."""
    return torch.cat([fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


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
