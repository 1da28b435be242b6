"""The base autoencoder: encode -> code -> decode -> reconstruction loss.

A variant overrides only what differs: :meth:`Autoencoder.corrupt` (the
input it sees while training), :meth:`Autoencoder.regularizers` (extra loss
terms) or its layers. Training, devices and checkpoints live in the
:class:`~aekit.Trainer`; a model never calls ``backward()``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError, suggest
from ..losses import RECONSTRUCTION_LOSSES
from ..registry import register_model
from .layers import activation as make_activation
from .layers import mlp


@dataclass
class AEOutput:
    """What a forward pass returns.

    Attributes
    ----------
    x_hat : Tensor, shape (batch, *input_shape)
        The reconstruction (the decoder distribution's mean).
    z : Tensor, shape (batch, code_size)
        The code.
    losses : dict of str to scalar Tensor
        Named loss terms, each averaged over the batch; the trainer logs every one.
    loss : scalar Tensor
        Their sum: what the trainer minimises.
    """

    x_hat: Tensor
    z: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    loss: Tensor | None = None


def records_config(init):
    """Wrap ``__init__`` so the arguments it was called with are kept in ``self.config``.

    Only the outermost constructor of a subclass chain records, so
    ``self.config`` holds exactly the arguments that rebuild the object.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args: Any, **kwargs: Any) -> None:
        if "config" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            config = {}
            for name, value in bound.arguments.items():
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(value)  # options passed through **kwargs to a parent class
                elif kind is inspect.Parameter.VAR_POSITIONAL:
                    if value:
                        raise TypeError(f"{type(self).__name__} takes its options by keyword, e.g. code_size=30.")
                elif name != "self":
                    config[name] = value
            self.__dict__["config"] = config
        init(self, *args, **kwargs)

    return wrapper


def _positive_ints(name: str, values: Any) -> tuple[int, ...]:
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a sequence of positive integers, got {values!r}.") from None
    if any(v <= 0 for v in out) or any(int(v) != v for v in values):
        raise ConfigError(f"{name} must hold positive integers only, got {values!r}.")
    return out


@register_model("ae")
class Autoencoder(nn.Module):
    """A fully connected autoencoder: undercomplete or overcomplete, any depth.

    Parameters
    ----------
    input_shape : sequence of int
        Shape of one sample, e.g. ``(784,)`` or ``(1, 28, 28)``; the MLP flattens it.
    code_size : int
        Size of the code ``z``; below the input size the autoencoder is
        undercomplete, above it overcomplete.
    hidden : sequence of int
        Hidden layer sizes of the encoder; the decoder mirrors them.
    activation : str
        Hidden activation (``relu``, ``sigmoid``, ``tanh``, ``gelu``, ...).
    code_activation : str
        Activation of the code layer (``identity`` keeps it linear).
    output_activation : str
        Activation of the reconstruction (``sigmoid`` for data in [0, 1],
        ``identity`` for unbounded data).
    loss : {"mse", "bce", "l1"}
        Reconstruction loss, summed over features and averaged over samples.

    Examples
    --------
    >>> model = Autoencoder(input_shape=(64,), code_size=8, hidden=(32,))
    >>> out = model(torch.rand(5, 64))
    >>> out.x_hat.shape, out.z.shape
    (torch.Size([5, 64]), torch.Size([5, 8]))
    """

    model_name = "ae"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = records_config(cls.__init__)

    @records_config
    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        code_size: int = 30,
        hidden: Sequence[int] = (1000, 500, 250),
        activation: str = "relu",
        code_activation: str = "identity",
        output_activation: str = "sigmoid",
        loss: str = "mse",
    ) -> None:
        super().__init__()
        self.input_shape = _positive_ints("input_shape", input_shape)
        if not self.input_shape:
            raise ConfigError("input_shape must name at least one dimension, e.g. (784,).")
        (code_size,) = _positive_ints("code_size", [code_size])
        hidden = _positive_ints("hidden", hidden)
        if loss not in RECONSTRUCTION_LOSSES:
            raise ConfigError(f"unknown loss {loss!r}.{suggest(loss, RECONSTRUCTION_LOSSES)} Choose one of: {', '.join(RECONSTRUCTION_LOSSES)}.")
        self.reconstruction = RECONSTRUCTION_LOSSES[loss]
        needed = self.reconstruction.output_activation
        if needed is not None and output_activation != needed:
            raise ConfigError(f"loss={loss!r} needs output_activation={needed!r} (got {output_activation!r}).")

        self.n_features = math.prod(self.input_shape)
        self.code_size = code_size
        self.encoder = mlp([self.n_features, *hidden, code_size], activation, code_activation)
        self.decoder = mlp([code_size, *reversed(hidden), self.n_features], activation)
        self.output_activation = make_activation(output_activation)

    # -- the three steps a variant may change -------------------------------------------

    def corrupt(self, x: Tensor) -> Tensor:
        """The input the encoder sees while training (a denoising variant corrupts it)."""
        return x

    def regularizers(self, x: Tensor, z: Tensor) -> dict[str, Tensor]:
        """Extra named loss terms (batch averages) added to the reconstruction loss."""
        return {}

    # -- public API ---------------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        """Map inputs of shape ``(batch, *input_shape)`` to codes ``(batch, code_size)``."""
        return self.encoder(self.flatten(x))

    def decode(self, z: Tensor) -> Tensor:
        """Map codes ``(batch, code_size)`` to reconstructions ``(batch, *input_shape)``."""
        return self.output_activation(self.decoder(z)).view(-1, *self.input_shape)

    def forward(self, x: Tensor) -> AEOutput:
        """Reconstruct ``x`` (shape ``(batch, *input_shape)``) and compute the loss terms."""
        x = self.flatten(x)
        z = self.encoder(self.corrupt(x) if self.training else x)
        logits = self.decoder(z)
        x_hat = self.output_activation(logits)
        prediction = logits if self.reconstruction.from_logits else x_hat
        losses = {"reconstruction": self.reconstruction.fn(prediction, x).mean()}
        losses.update(self.regularizers(x, z))
        total = torch.stack(list(losses.values())).sum()
        return AEOutput(x_hat=x_hat.view(-1, *self.input_shape), z=z, losses=losses, loss=total)

    def flatten(self, x: Tensor) -> Tensor:
        """``(batch, *input_shape)`` -> ``(batch, n_features)``, with a clear error for a wrong shape."""
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.n_features:
            raise DataError(
                f"this model expects samples of shape {self.input_shape} ({self.n_features} values each), "
                f"got a batch of shape {tuple(x.shape)}; check the data set or rebuild the model with a matching input_shape."
            )
        return x.reshape(x.shape[0], self.n_features)
