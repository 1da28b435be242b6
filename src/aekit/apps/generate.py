"""Generation: samples from the prior, interpolations between inputs, latent traversals."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .common import device_of


@torch.no_grad()
def sample(model: nn.Module, n: int, seed: int = 0) -> Tensor:
    """``n`` decoded samples from the prior N(0, I): needs a model with a prior (a VAE)."""
    if not hasattr(model, "sample"):
        raise ConfigError(f"a {model.model_name!r} model has no prior to sample from; train a VAE (--model vae) to generate.")
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return model.sample(n).cpu()


@torch.no_grad()
def interpolate(model: nn.Module, a: Tensor, b: Tensor, steps: int = 10) -> Tensor:
    """Decode ``steps`` points on the straight line between the codes of samples ``a`` and ``b``."""
    model.eval()
    device = device_of(model)
    z = model.encode(torch.stack([a, b]).to(device))
    t = torch.linspace(0, 1, steps, device=device).reshape(-1, *[1] * (z.dim() - 1))  # flat or spatial codes
    return model.decode((1 - t) * z[0] + t * z[1]).cpu()


@torch.no_grad()
def traversal(model: nn.Module, x: Tensor, reference: Tensor, dims: list[int] | None = None, span: float = 2.5, steps: int = 9) -> Tensor:
    """Vary one code unit at a time around the code of ``x``: shape ``(len(dims), steps, *input_shape)``.

    Each unit moves over ``mean ± span * std`` of its values on ``reference``
    samples (for a VAE these are close to the prior's ±span); the view used to
    judge disentanglement in beta-VAE (Higgins et al. 2017, figure 7).
    """
    model.eval()
    device = device_of(model)
    codes = model.encode(reference.to(device))
    if codes.dim() != 2:
        raise ConfigError(f"a traversal varies the units of a flat code; a {model.model_name!r} model's code is a map of shape {tuple(codes.shape[1:])}: use interpolate or sample.")
    mean, std = codes.mean(0), codes.std(0).clamp_min(1e-6)
    dims = list(range(min(model.code_size, 10))) if dims is None else dims
    bad = [d for d in dims if not 0 <= d < model.code_size]
    if bad:
        raise ConfigError(f"code dimensions {bad} do not exist; the code has {model.code_size} units.")
    z0 = model.encode(x[None].to(device))[0]
    offsets = torch.linspace(-span, span, steps, device=device)
    rows = []
    for d in dims:
        z = z0.repeat(steps, 1)
        z[:, d] = mean[d] + offsets * std[d]
        rows.append(model.decode(z).cpu())
    return torch.stack(rows)


def grid_rows(images: Tensor, per_row: int) -> list[tuple[str, np.ndarray]]:
    """Split ``(n, *shape)`` images into rows for :func:`aekit.plotting.image_grid`."""
    array = images.numpy()
    return [("", array[i : i + per_row]) for i in range(0, len(array), per_row)]
