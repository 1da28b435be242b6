"""Generation: samples from the prior, interpolations between inputs, latent traversals, and the likelihood."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from ..models.base import positive_int
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
def log_likelihood(model: nn.Module, x: Tensor, k: int = 5000, binarize: bool = False, seed: int = 0, batch_size: int = 100, progress: bool = False) -> np.ndarray:
    """Importance-weighted estimates of ``log p(x)`` in nats, one per sample (Burda et al. 2016; their tables
    use ``k = 5000``): a lower bound that rises with ``k`` towards ``log p(x)``. ``binarize`` first draws binary
    data ~ Bernoulli(x) once, as the binarised-MNIST tables do; that draw and the estimate's samples come from
    ``seed``, so the numbers repeat. Needs a model with a prior and an encoder distribution (vae, iwae).
    ``progress`` shows a bar over the batches (k = 5000 on 10,000 images takes minutes on a CPU)."""
    if not hasattr(model, "log_likelihood"):
        raise ConfigError(f"a {model.model_name!r} model has no likelihood estimate; train a VAE (--model vae or iwae) to estimate log p(x).")
    k = positive_int("k", k)
    if binarize and not (0 <= float(x.min()) and float(x.max()) <= 1):
        raise DataError(f"binarize draws Bernoulli(x), which needs data in [0, 1]; it ranges over [{float(x.min()):.3g}, {float(x.max()):.3g}].")
    model.eval()
    device = device_of(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = torch.bernoulli(x) if binarize else x
        batches = tqdm(range(0, len(x), batch_size), disable=not progress, unit="batch", desc=f"log p(x), k = {k}", dynamic_ncols=True)
        return torch.cat([model.log_likelihood(x[i : i + batch_size].to(device), k=k).cpu() for i in batches]).numpy()


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
