"""Registered autoencoder models; importing this package registers them all."""

from .aae import AdversarialAutoencoder
from .architectures import Architecture, list_architectures, register_architecture
from .base import AEOutput, Autoencoder
from .ensemble import AutoencoderEnsemble
from .documents import BagOfWords
from .hashing import SemanticHashing
from .defects import DefectSegmenter
from .conv import ConvAutoencoder, ConvDenoisingAutoencoder, ConvVariationalAutoencoder
from .recirculation import RecirculationAutoencoder
from .simple import ContractiveAutoencoder, DenoisingAutoencoder, LinearAutoencoder, SparseAutoencoder, TiedAutoencoder
from .stacked import StackedAutoencoder
from .tcvae import BetaTCVAE
from .latents import DiagonalGaussian, PointCode
from .iwae import ImportanceWeightedAutoencoder
from .vae import StochasticAutoencoder, VariationalAutoencoder
from .vaegan import VAEGAN
from .vqvae import VQVAE, Quantized

__all__ = [
    "AdversarialAutoencoder",
    "Architecture",
    "list_architectures",
    "register_architecture",
    "BagOfWords",
    "BetaTCVAE",
    "Quantized",
    "VAEGAN",
    "VQVAE",
    "AEOutput",
    "Autoencoder",
    "AutoencoderEnsemble",
    "ContractiveAutoencoder",
    "ConvAutoencoder",
    "ConvDenoisingAutoencoder",
    "ConvVariationalAutoencoder",
    "DefectSegmenter",
    "DenoisingAutoencoder",
    "DiagonalGaussian",
    "ImportanceWeightedAutoencoder",
    "PointCode",
    "LinearAutoencoder",
    "RecirculationAutoencoder",
    "SemanticHashing",
    "SparseAutoencoder",
    "StackedAutoencoder",
    "StochasticAutoencoder",
    "TiedAutoencoder",
    "VariationalAutoencoder",
]
