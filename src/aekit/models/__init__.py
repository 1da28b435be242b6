"""Registered autoencoder models; importing this package registers them all."""

from .base import AEOutput, Autoencoder
from .ensemble import AutoencoderEnsemble
from .conv import ConvAutoencoder, ConvDenoisingAutoencoder, ConvVariationalAutoencoder
from .recirculation import RecirculationAutoencoder
from .simple import ContractiveAutoencoder, DenoisingAutoencoder, LinearAutoencoder, SparseAutoencoder, TiedAutoencoder
from .stacked import StackedAutoencoder
from .vae import DiagonalGaussian, StochasticAutoencoder, VariationalAutoencoder

__all__ = [
    "AEOutput",
    "Autoencoder",
    "AutoencoderEnsemble",
    "ContractiveAutoencoder",
    "ConvAutoencoder",
    "ConvDenoisingAutoencoder",
    "ConvVariationalAutoencoder",
    "DenoisingAutoencoder",
    "DiagonalGaussian",
    "LinearAutoencoder",
    "RecirculationAutoencoder",
    "SparseAutoencoder",
    "StackedAutoencoder",
    "StochasticAutoencoder",
    "TiedAutoencoder",
    "VariationalAutoencoder",
]
