"""Input corruptions for denoising: pure functions of a batch, drawing from torch's global RNG.

A corruption is named by a spec string ``"KIND:LEVEL"``, e.g. ``"gaussian:0.5"``
(noise standard deviation), ``"masking:0.3"`` (fraction of values set to 0) or
``"salt_and_pepper:0.1"`` (fraction set to the minimum or maximum, half each).
Vincent et al. (2008, 2010), *Stacked Denoising Autoencoders*, section 4.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .errors import ConfigError, suggest


def _draw(sample: Callable[..., Tensor], x: Tensor) -> Tensor:
    """Noise of ``x``'s shape drawn in the samples' logical order, so that it does not depend on the
    memory layout (a channels-last batch gets the same noise as the same batch in NCHW)."""
    return sample(x.shape, dtype=x.dtype, device=x.device)


def gaussian_noise(x: Tensor, sigma: float, clip: tuple[float, float] | None = None) -> Tensor:
    """``x + sigma * eps``, ``eps ~ N(0, I)``; clipped to ``clip`` when given."""
    noisy = x + sigma * _draw(torch.randn, x)
    return noisy.clamp(*clip) if clip is not None else noisy


def masking_noise(x: Tensor, fraction: float, clip: tuple[float, float] | None = None) -> Tensor:
    """Each value set to 0 independently with probability ``fraction``."""
    return x * (_draw(torch.rand, x) >= fraction)


def salt_and_pepper_noise(x: Tensor, fraction: float, clip: tuple[float, float] | None = None) -> Tensor:
    """Each value, with probability ``fraction``, set to the minimum or maximum (``clip``, else 0 and 1), with equal odds."""
    low, high = clip if clip is not None else (0.0, 1.0)
    hit = _draw(torch.rand, x) < fraction
    salt = _draw(torch.rand, x) < 0.5
    return torch.where(hit, torch.where(salt, torch.full_like(x, high), torch.full_like(x, low)), x)


CORRUPTIONS: dict[str, Callable[..., Tensor]] = {
    "gaussian": gaussian_noise,
    "masking": masking_noise,
    "salt_and_pepper": salt_and_pepper_noise,
}


def parse_corruption(spec: str) -> tuple[str, float]:
    """``"gaussian:0.5"`` -> ``("gaussian", 0.5)``, validating the kind and the level."""
    kind, _, level_text = str(spec).partition(":")
    kind = kind.strip().replace("-", "_")
    if kind not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {kind!r}.{suggest(kind, CORRUPTIONS)} Use gaussian:SIGMA, masking:FRACTION or salt_and_pepper:FRACTION.")
    try:
        level = float(level_text)
    except ValueError:
        raise ConfigError(f"corruption {spec!r} needs a level, e.g. {kind}:0.3.") from None
    if kind == "gaussian" and not level >= 0:
        raise ConfigError(f"the noise sigma must be >= 0, got {level}.")
    if kind != "gaussian" and not 0 <= level <= 1:
        raise ConfigError(f"the {kind} fraction must be in [0, 1], got {level}.")
    return kind, level


def corrupt(x: Tensor, spec: str, clip: tuple[float, float] | None = None) -> Tensor:
    """Apply the corruption named by ``spec`` to ``x``."""
    kind, level = parse_corruption(spec)
    return CORRUPTIONS[kind](x, level, clip)
