"""Registered autoencoder models; importing this package registers them."""

from .base import AEOutput, Autoencoder

__all__ = ["AEOutput", "Autoencoder"]
