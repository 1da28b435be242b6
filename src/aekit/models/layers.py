"""Building blocks shared by the models: activations by name and MLP stacks."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from torch import nn

from ..errors import ConfigError, suggest

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "identity": nn.Identity,
    "softmax": lambda: nn.Softmax(dim=-1),  # over the last axis of the sample shape (categorical decoders)
}


def activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ConfigError(
            f"unknown activation {name!r}.{suggest(name, ACTIVATIONS)} Choose one of: {', '.join(ACTIVATIONS)}."
        ) from None


def check_fits_in_memory(sizes: Sequence[int], copies: int = 1) -> None:
    """Refuse layer sizes whose weights alone (4 bytes each, ``copies`` times; training needs about 4x that)
    exceed this machine's memory."""
    weights = copies * sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system: no check
        return
    if 4 * weights > memory:
        raise ConfigError(
            f"layers {list(sizes)} hold {weights:,} weights ({4 * weights / 2**30:.1f} GiB), more than this machine's "
            f"{memory / 2**30:.0f} GiB of memory; choose smaller hidden or code sizes."
        )


def mlp(
    sizes: Sequence[int], hidden_activation: str, final_activation: str = "identity",
    linear: Callable[[int, int], nn.Module] = nn.Linear, copies: int = 1,
) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    ``hidden_activation`` follows every layer but the last, which is followed
    by ``final_activation`` (left out when it is ``"identity"``). ``linear``
    builds each layer (``nn.Linear``, or several in one, ``copies`` of them,
    for an ensemble).
    """
    check_fits_in_memory(sizes, copies)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(linear(n_in, n_out))
        last = i == len(sizes) - 2
        name = final_activation if last else hidden_activation
        if name != "identity":
            layers.append(activation(name))
    return nn.Sequential(*layers)
