"""Convolutional autoencoders: conv + max-pool blocks down, upsample + conv blocks up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import register_model
from .base import Autoencoder, positive_int, positive_ints
from .layers import activation as make_activation
from .layers import mlp
from .simple import DenoisingAutoencoder
from .vae import VariationalAutoencoder


class ToImage(nn.Unflatten):
    """``(batch, c * h * w) -> (batch, c, h, w)``, in the channels-last memory layout when asked.

    A subclass of ``nn.Unflatten`` rather than an extra layer, so that the
    decoder's parameter names (and so older checkpoints) stay as they were.
    """

    def __init__(self, shape: tuple[int, int, int], channels_last: bool) -> None:
        super().__init__(1, shape)
        self.channels_last = channels_last

    def forward(self, h: Tensor) -> Tensor:
        h = super().forward(h)
        return h.contiguous(memory_format=torch.channels_last) if self.channels_last else h


@register_model("conv")
class ConvAutoencoder(Autoencoder):
    """Convolutional encoder and decoder for images ``(channels, height, width)`` of any size.

    Each encoder block is a same-padded convolution, the activation (ELU by
    default) and a 2x2 max-pool (ceil mode, so odd sizes work); a linear layer
    (after optional ``hidden`` layers) makes the code. The decoder mirrors it: linear layers
    back to the smallest feature map, then per block an upsampling to the
    exact size of the matching encoder map and a convolution.

    With ``channels_last`` (the default) the kernels and feature maps are kept
    in the channels-last memory layout: inputs are converted once per batch and
    the decoder's first map once per step, and every convolution, pooling and
    upsampling then runs in that layout. On a CPU, PyTorch's oneDNN kernels
    otherwise convert each map to it and back, around every pooling and
    upsampling; on a GPU it is the layout tensor cores want. The numbers are
    the same up to float rounding; only the speed changes
    (benchmarks/results/speed.md).
    """

    def __init__(
        self,
        channels: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        hidden: Sequence[int] = (),
        activation: str = "elu",  # with ReLU, dead units early in training can leave the decoder stuck on a black image
        channels_last: bool = True,
        **options: Any,
    ) -> None:
        if not isinstance(channels_last, bool):
            raise ConfigError(f"channels_last must be true or false, got {channels_last!r}.")
        self.channels_last = channels_last
        # read by make_encoder / make_decoder, which the base constructor calls
        self.channels = positive_ints("channels", channels)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same padding), got {kernel_size}.")
        super().__init__(hidden=hidden, activation=activation, **options)
        if channels_last:  # the kernels too: with bf16 autocast, their per-step casts then come out channels-last
            self.to(memory_format=torch.channels_last)

    def feature_sizes(self) -> list[tuple[int, int]]:
        """Spatial size of the input and after each pooling block."""
        if len(self.input_shape) != 3:
            raise ConfigError(f"the conv model needs image samples (channels, height, width), got input_shape={self.input_shape}.")
        sizes = [self.input_shape[1:]]
        for _ in self.channels:
            sizes.append(tuple(math.ceil(s / 2) for s in sizes[-1]))
        return sizes

    def down_blocks(self) -> list[nn.Module]:
        """Per channel count: a same-padded convolution, the activation and a 2x2 max-pool."""
        layers: list[nn.Module] = []
        c_in, pad = self.input_shape[0], self.kernel_size // 2
        for c_out in self.channels:
            layers += [nn.Conv2d(c_in, c_out, self.kernel_size, padding=pad), make_activation(self.activation), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        return layers

    def up_blocks(self) -> list[nn.Module]:
        """The mirror of :meth:`down_blocks`: per block an upsampling to the matching encoder map's size and a
        convolution, from the smallest map ``(channels[-1], *feature_sizes()[-1])`` to the image's logits."""
        sizes, pad = self.feature_sizes(), self.kernel_size // 2
        outputs = [self.input_shape[0], *self.channels[:-1]]
        layers: list[nn.Module] = []
        for i in reversed(range(len(self.channels))):
            layers += [nn.Upsample(size=sizes[i], mode="nearest"), nn.Conv2d(self.channels[i], outputs[i], self.kernel_size, padding=pad)]
            if i > 0:
                layers.append(make_activation(self.activation))
        return layers

    def make_encoder(self) -> nn.Module:
        flat = self.channels[-1] * math.prod(self.feature_sizes()[-1])
        return nn.Sequential(*self.down_blocks(), nn.Flatten(), *mlp([flat, *self.hidden, self.code_factor * self.code_size], self.activation, self.code_activation))

    def make_decoder(self) -> nn.Module:
        sizes, last = self.feature_sizes(), self.channels[-1]
        return nn.Sequential(
            *mlp([self.code_size, *reversed(self.hidden), last * math.prod(sizes[-1])], self.activation, self.activation),
            ToImage((last, *sizes[-1]), self.channels_last),
            *self.up_blocks(),
        )

    def as_batch(self, x: Tensor) -> Tensor:
        x = super().as_batch(x)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


@register_model("conv-denoising")
class ConvDenoisingAutoencoder(ConvAutoencoder, DenoisingAutoencoder):
    """The convolutional autoencoder with the denoising corruption."""


@register_model("conv-vae")
class ConvVariationalAutoencoder(ConvAutoencoder, VariationalAutoencoder):
    """The convolutional autoencoder with the VAE's Gaussian latent."""
