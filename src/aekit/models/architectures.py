"""Architectures: what the network is, apart from what it is trained for.

An objective (``ae``, ``vae``, ``vqvae``, ...) defines the losses; an
architecture builds its encoder and decoder for an input shape. Any objective
takes ``architecture="mlp" | "conv"`` and the architecture's own options
(``channels`` for ``conv``), so a convolutional beta-TC-VAE is
``get_model("beta-tcvae", architecture="conv", ...)``, not a new class.

An architecture builds two kinds of code (pythae's ``AE(encoder=, decoder=)``
has the same split):

- a flat code ``(batch, size)``: :meth:`Architecture.encoder` / :meth:`Architecture.decoder`;
- a code map ``(batch, channels, h, w)`` (a VQ-VAE's): :meth:`Architecture.map_encoder` /
  :meth:`Architecture.map_decoder`, over the grid :meth:`Architecture.map_size`.

Adding one is a class with its options as constructor arguments and
``@register_architecture("name")``; every objective then builds on it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError, suggest
from ..registry import registering
from ..validation import positive_int, positive_ints
from .layers import activation as make_activation
from .layers import mlp

if TYPE_CHECKING:
    from .base import Autoencoder

_ARCHITECTURES: dict[str, type["Architecture"]] = {}
A = TypeVar("A", bound=type["Architecture"])


def register_architecture(name: str) -> Callable[[A], A]:
    """Class decorator that registers an architecture under ``name``."""
    return registering(_ARCHITECTURES, "architecture", "name", name)


def list_architectures() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_ARCHITECTURES)


def make_architecture(name: Any, options: dict[str, Any], model: str = "this") -> "Architecture":
    """The architecture ``name`` built with ``options`` (those ``model`` left to it); a :class:`ConfigError`
    for an unknown name or option."""
    if not isinstance(name, str) or name not in _ARCHITECTURES:
        raise ConfigError(f"unknown architecture {name!r}.{suggest(str(name), _ARCHITECTURES)} Choose one of: {', '.join(list_architectures())}.")
    cls = _ARCHITECTURES[name]
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"model {model!r} does not accept option(s) {', '.join(unknown)}: neither the objective nor its {name} architecture "
            f"takes them.{suggest(unknown[0], accepted)} The {name} architecture's options: {', '.join(sorted(accepted)) or 'none'}; "
            "the objective's are in its docstring (aekit list-models)."
        )
    return cls(**options)


class Architecture:
    """Builds a model's encoder and decoder from its input shape, code size and activations.

    Subclasses take their options as keyword arguments (recorded in :attr:`options`, saved in the model's
    config) and set :attr:`defaults` for the objective's shared options they size differently.
    """

    name = "?"
    #: The shared options (``hidden``, ``activation``) this architecture fills in when the objective leaves them open.
    defaults: dict[str, Any] = {}
    #: The reconstruction loss this architecture's output needs, if it needs one (``bow``: ``multinomial``).
    loss: str | None = None

    def __init__(self, **options: Any) -> None:
        self.options = options

    def encoder(self, model: "Autoencoder", size: int) -> nn.Module:
        """``(batch, *input_shape) -> (batch, size)``."""
        raise NotImplementedError

    def decoder(self, model: "Autoencoder", size: int) -> nn.Module:
        """``(batch, size) -> (batch, *input_shape)`` logits (any shape with the batch first and ``n_features`` values)."""
        raise NotImplementedError

    def map_size(self, model: "Autoencoder", positions: int) -> tuple[int, int]:
        """The ``(h, w)`` grid of a code map: ``(positions, 1)`` for an architecture without a grid of its own."""
        return (positions, 1)

    def map_encoder(self, model: "Autoencoder", channels: int, positions: int) -> nn.Module:
        """``(batch, *input_shape) -> (batch, channels, h, w)`` over :meth:`map_size`; without a grid, the flat
        encoder emits ``positions`` vectors."""
        return nn.Sequential(self.encoder(model, channels * positions), nn.Unflatten(1, (channels, positions, 1)))

    def map_decoder(self, model: "Autoencoder", channels: int, positions: int) -> nn.Module:
        """``(batch, channels, h, w) -> (batch, *output_shape)`` logits."""
        return nn.Sequential(nn.Flatten(), self.decoder(model, channels * positions))

    def output_shape(self, model: "Autoencoder") -> tuple[int, ...]:
        """The shape of one reconstruction: the input's (``bow`` reconstructs a distribution over its vocabulary)."""
        return model.input_shape

    def adapt(self, model: "Autoencoder", x: Tensor) -> None:
        """Fit what the network learns from the training samples before training (``bow``: its word weights)."""

    def scale(self, model: "Autoencoder", x: Tensor) -> Tensor:
        """Samples as the network reads them (``bow``: word counts -> weights); values unchanged by default."""
        return x

    def prepare(self, x: Tensor) -> Tensor:
        """A batch ``(batch, *input_shape)`` as the layers want it (a memory layout); values unchanged."""
        return x

    def finish(self, model: nn.Module) -> None:
        """Called once the model's layers exist (e.g. to move its kernels to a memory layout)."""


@register_architecture("mlp")
class MLP(Architecture):
    """Fully connected layers: the input flattened, ``hidden`` sizes down to the code, mirrored back up.

    A code map is ``(channels, positions, 1)``: the last hidden layer emits ``positions`` vectors.
    """

    defaults = {"hidden": (1000, 500, 250), "activation": "relu"}

    def __init__(self) -> None:
        super().__init__()

    def encoder(self, model: "Autoencoder", size: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), *mlp([model.n_features, *model.hidden, size], model.activation, model.code_activation))

    def decoder(self, model: "Autoencoder", size: int) -> nn.Module:
        return mlp([size, *reversed(model.hidden), model.n_features], model.activation)


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


@register_architecture("conv")
class Conv(Architecture):
    """Convolutions for images ``(channels, height, width)`` of any size.

    Each encoder block is a same-padded convolution, the activation (ELU by
    default: with ReLU, dead units early in training can leave the decoder stuck
    on a black image) and a 2x2 max-pool (ceil mode, so odd sizes work); linear
    layers (``hidden``, then the code) follow. The decoder mirrors it: linear
    layers back to the smallest feature map, then per block an upsampling to the
    exact size of the matching encoder map and a convolution. A code map is the
    last block's grid, reached by a 1x1 convolution.

    With ``channels_last`` (the default) kernels and feature maps are kept in the
    channels-last memory layout: on a CPU, PyTorch's oneDNN kernels otherwise
    convert each map to it and back around every pooling and upsampling; on a GPU
    it is the layout tensor cores want. Only the speed changes
    (benchmarks/results/speed.md).
    """

    defaults = {"hidden": (), "activation": "elu"}

    def __init__(self, channels: Sequence[int] = (32, 64), kernel_size: int = 3, channels_last: bool = True) -> None:
        if not isinstance(channels_last, bool):
            raise ConfigError(f"channels_last must be true or false, got {channels_last!r}.")
        kernel_size = positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd (same padding), got {kernel_size}.")
        super().__init__(channels=positive_ints("channels", channels), kernel_size=kernel_size, channels_last=channels_last)
        if not self.options["channels"]:
            raise ConfigError("channels must name at least one convolution block, e.g. [32, 64].")
        self.channels, self.kernel_size, self.channels_last = self.options["channels"], kernel_size, channels_last

    def feature_sizes(self, model: "Autoencoder") -> list[tuple[int, ...]]:
        """Spatial size of the input and after each pooling block."""
        if len(model.input_shape) != 3:
            raise ConfigError(
                f"the conv architecture needs image samples (channels, height, width), got input_shape={model.input_shape}; "
                "use architecture='mlp' for rows of features."
            )
        sizes = [model.input_shape[1:]]
        for _ in self.channels:
            sizes.append(tuple(math.ceil(s / 2) for s in sizes[-1]))
        return sizes

    def down_blocks(self, model: "Autoencoder") -> list[nn.Module]:
        """Per channel count: a same-padded convolution, the activation and a 2x2 max-pool."""
        self.feature_sizes(model)  # images only
        layers: list[nn.Module] = []
        c_in, pad = model.input_shape[0], self.kernel_size // 2
        for c_out in self.channels:
            layers += [nn.Conv2d(c_in, c_out, self.kernel_size, padding=pad), make_activation(model.activation), nn.MaxPool2d(2, ceil_mode=True)]
            c_in = c_out
        return layers

    def up_blocks(self, model: "Autoencoder") -> list[nn.Module]:
        """The mirror of :meth:`down_blocks`, from the smallest map to the image's logits."""
        sizes, pad = self.feature_sizes(model), self.kernel_size // 2
        outputs = [model.input_shape[0], *self.channels[:-1]]
        layers: list[nn.Module] = []
        for i in reversed(range(len(self.channels))):
            layers += [nn.Upsample(size=sizes[i], mode="nearest"), nn.Conv2d(self.channels[i], outputs[i], self.kernel_size, padding=pad)]
            if i > 0:
                layers.append(make_activation(model.activation))
        return layers

    def encoder(self, model: "Autoencoder", size: int) -> nn.Module:
        flat = self.channels[-1] * math.prod(self.feature_sizes(model)[-1])
        return nn.Sequential(*self.down_blocks(model), nn.Flatten(), *mlp([flat, *model.hidden, size], model.activation, model.code_activation))

    def decoder(self, model: "Autoencoder", size: int) -> nn.Module:
        smallest, last = self.feature_sizes(model)[-1], self.channels[-1]
        return nn.Sequential(
            *mlp([size, *reversed(model.hidden), last * math.prod(smallest)], model.activation, model.activation),
            ToImage((last, *smallest), self.channels_last),
            *self.up_blocks(model),
        )

    def map_size(self, model: "Autoencoder", positions: int) -> tuple[int, int]:
        return tuple(self.feature_sizes(model)[-1])

    def map_encoder(self, model: "Autoencoder", channels: int, positions: int) -> nn.Module:
        return nn.Sequential(*self.down_blocks(model), nn.Conv2d(self.channels[-1], channels, 1))

    def map_decoder(self, model: "Autoencoder", channels: int, positions: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(channels, self.channels[-1], 1), make_activation(model.activation), *self.up_blocks(model))

    def prepare(self, x: Tensor) -> Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def finish(self, model: nn.Module) -> None:
        if self.channels_last:  # the kernels too: with bf16 autocast, their per-step casts then come out channels-last
            model.to(memory_format=torch.channels_last)
