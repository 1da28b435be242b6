"""Variants that change only the layers or add a penalty: linear, tied, sparse, contractive, denoising."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..corruption import corrupt, parse_corruption
from ..errors import ConfigError
from ..losses import contractive_penalty_sigmoid, jacobian_frobenius_sq, jacobian_frobenius_sq_estimate, kl_bernoulli, l1_penalty
from ..registry import register_model
from .base import Autoencoder, check_range, positive_int
from .layers import activation as make_activation


@register_model("linear")
class LinearAutoencoder(Autoencoder):
    """Linear encoder and decoder with MSE: spans the same subspace as PCA."""

    architectures = ("mlp",)
    architecture_note = "its encoder and decoder are single linear maps (the PCA subspace), which a convolutional network is not."
    #: Options the model sets itself (the scikit-learn adapter leaves them out).
    fixed_options = {"activation": "identity", "code_activation": "identity", "output_activation": "identity", "loss": "mse"}

    def __init__(self, hidden=(), **options: Any) -> None:
        clash = {k: v for k, v in options.items() if k in self.fixed_options and v != self.fixed_options[k]}
        if clash:
            raise ConfigError(f"the linear autoencoder has no {', '.join(clash)} to set (it is linear with MSE).")
        super().__init__(hidden=hidden, **{**options, **self.fixed_options})


class TiedDecoder(nn.Module):
    """The decoder half of a tied autoencoder: its own biases, the encoder's weights transposed."""

    def __init__(self, in_features: list[int], activation: str) -> None:
        super().__init__()
        self.biases = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in in_features])
        self.activation = make_activation(activation)

    def forward(self, z: Tensor, weights: list[Tensor]) -> Tensor:
        """``weights``: the encoder's weight matrices, last layer first."""
        for i, (weight, bias) in enumerate(zip(weights, self.biases)):
            z = F.linear(z, weight.t(), bias)
            if i < len(weights) - 1:
                z = self.activation(z)
        return z


@register_model("tied")
class TiedAutoencoder(Autoencoder):
    """Decoder weights are the encoder's, transposed: one weight matrix per layer pair."""

    architectures = ("mlp",)
    architecture_note = "its decoder is the encoder's weight matrices transposed, which only fully connected layers have."

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.encoder if isinstance(m, nn.Linear)]

    def make_decoder(self) -> nn.Module:
        return TiedDecoder([layer.in_features for layer in reversed(self.linears())], self.activation)

    def decode_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z, [layer.weight for layer in reversed(self.linears())]).reshape(-1, *self.input_shape)


@register_model("sparse")
class SparseAutoencoder(Autoencoder):
    """A sparse code: an L1 penalty ``weight * sum_j |z_j|``, or KL sparsity ``weight * sum_j KL(rho || rho_hat_j)``."""

    def __init__(self, penalty: str = "l1", weight: float = 1e-3, rho: float = 0.05, **options: Any) -> None:
        if penalty not in ("l1", "kl"):
            raise ConfigError(f"penalty must be 'l1' or 'kl', got {penalty!r}.")
        if penalty == "kl":  # rho_hat is a mean activation probability: the code must be sigmoid
            options.setdefault("code_activation", "sigmoid")
            if options["code_activation"] != "sigmoid":
                raise ConfigError("KL sparsity needs code_activation='sigmoid' (rho_hat is a mean firing probability).")
        super().__init__(**options)
        if not 0 < rho < 1:
            raise ConfigError(f"rho, the target mean activation, must be in (0, 1), got {rho!r}.")
        self.penalty, self.rho = penalty, float(rho)
        self.weight = check_range("weight", weight, 0)

    def regularizers(self, x: Tensor, z: Tensor, q: Any) -> dict[str, Tensor]:
        if self.penalty == "l1":
            return {"sparsity": self.weight * l1_penalty(z).mean()}
        return {"sparsity": self.weight * kl_bernoulli(self.rho, z.mean(0))}


@register_model("contractive")
class ContractiveAutoencoder(Autoencoder):
    """Adds ``weight * ||J_f(x)||_F^2``, the encoder Jacobian's squared Frobenius norm (Rifai et al. 2011)."""

    architectures = ("mlp", "conv")
    architecture_note = "its penalty differentiates the code by the input's values, and a bag of words's input is word ids."

    def __init__(self, weight: float = 0.1, jacobian: str = "exact", probes: int = 1, **options: Any) -> None:
        super().__init__(**options)
        if jacobian not in ("exact", "estimate"):
            raise ConfigError(f"jacobian must be 'exact' or 'estimate' (Hutchinson, cheaper), got {jacobian!r}.")
        self.weight = check_range("weight", weight, 0)
        self.jacobian, self.probes = jacobian, positive_int("probes", probes)

    def regularizers(self, x: Tensor, z: Tensor, q: Any) -> dict[str, Tensor]:
        return {"contractive": self.weight * self.jacobian_penalty(x, z).mean()}

    def jacobian_penalty(self, x: Tensor, z: Tensor) -> Tensor:
        """``||J_f(x)||_F^2`` per sample: closed form for one sigmoid layer; otherwise exact and batched
        (one vector-Jacobian product per code unit) or, with ``jacobian="estimate"``, Hutchinson's
        unbiased estimate from ``probes`` products."""
        if self.architecture.name == "mlp" and not self.hidden and self.code_activation == "sigmoid":
            return contractive_penalty_sigmoid(z, self.encoder[1].weight)
        if self.jacobian == "estimate":
            return jacobian_frobenius_sq_estimate(self.encoder, x, self.probes)
        return jacobian_frobenius_sq(self.encoder, x)


@register_model("denoising")
class DenoisingAutoencoder(Autoencoder):
    """Corrupts its input while training (``noise="gaussian:0.5"``, ``"masking:0.3"``, ``"salt_and_pepper:0.1"``) and reconstructs the clean input."""

    architectures = ("mlp", "conv")
    architecture_note = "its noise would corrupt a bag's word ids; for documents, drop words instead: the bow architecture's word_dropout."

    def __init__(self, noise: str = "gaussian:0.3", clip: bool = True, **options: Any) -> None:
        super().__init__(**options)
        parse_corruption(noise)  # a bad spec fails at construction, not mid-training
        self.noise, self.clip = noise, clip

    def corrupt(self, x: Tensor) -> Tensor:
        # scaled inputs are not in [0, 1]: clipping applies to unscaled data only
        return corrupt(x, self.noise, clip=(0.0, 1.0) if self.clip and self.input_scaling is None else None)
