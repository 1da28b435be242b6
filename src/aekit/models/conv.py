"""The names ``conv``, ``conv-denoising`` and ``conv-vae``: objectives on the ``conv`` architecture.

They were separate classes before architectures became their own axis; they
stay registered so that their runs load and their commands keep working.
``get_model("conv", ...)`` is ``get_model("ae", architecture="conv", ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..registry import register_model
from .base import Autoencoder
from .simple import DenoisingAutoencoder
from .vae import VariationalAutoencoder


class OnConv:
    """Mixin for a registered name that fixes an objective to the ``conv`` architecture."""

    architectures = ("conv",)
    architecture_note = "the conv names fix an objective to the conv architecture; name the objective itself (ae, denoising, vae) with architecture='mlp'."

    def __init__(self, architecture: str = "conv", **options: Any) -> None:
        super().__init__(architecture=architecture, **options)

    @classmethod
    def preferred_architecture(cls, input_shape: Sequence[int]) -> str:
        return "conv"


@register_model("conv")
class ConvAutoencoder(OnConv, Autoencoder):
    """The autoencoder on the conv architecture (``ae`` with ``architecture="conv"``)."""

    __init__ = OnConv.__init__


@register_model("conv-denoising")
class ConvDenoisingAutoencoder(OnConv, DenoisingAutoencoder):
    """The denoising autoencoder on the conv architecture (``denoising`` with ``architecture="conv"``)."""

    __init__ = OnConv.__init__


@register_model("conv-vae")
class ConvVariationalAutoencoder(OnConv, VariationalAutoencoder):
    """The VAE on the conv architecture (``vae`` with ``architecture="conv"``)."""

    __init__ = OnConv.__init__
