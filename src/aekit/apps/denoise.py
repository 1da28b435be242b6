"""Denoising: corrupt clean data, reconstruct it, and measure the gain in PSNR."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..corruption import corrupt
from ..losses import psnr
from .common import reconstruct


@dataclass
class Denoising:
    noisy: Tensor
    denoised: Tensor
    psnr_noisy: float  # dB, per image, averaged
    psnr_denoised: float

    @property
    def gain(self) -> float:
        return self.psnr_denoised - self.psnr_noisy

    def summary(self) -> dict[str, float]:
        return {"psnr_noisy": self.psnr_noisy, "psnr_denoised": self.psnr_denoised, "psnr_gain": self.gain}


def denoise(model: nn.Module, clean: Tensor, noise: str = "gaussian:0.5", seed: int = 0, clip: bool = True) -> Denoising:
    """Corrupt ``clean`` (values in [0, 1]) with ``noise`` (see :mod:`aekit.corruption`), reconstruct, and score.

    PSNR is ``10 log10(1 / MSE)`` per image (data range 1), averaged over images.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        noisy = corrupt(clean, noise, clip=(0.0, 1.0) if clip else None)
    denoised = reconstruct(model, noisy).reshape(clean.shape)
    return Denoising(noisy, denoised, psnr(noisy, clean).mean().item(), psnr(denoised, clean).mean().item())
