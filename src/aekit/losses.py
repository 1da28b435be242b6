"""Loss terms as pure functions, one formula each.

Every reconstruction loss is the negative log-likelihood of a decoder
distribution p(x | z), up to constants, summed over a sample's features and
returned per sample (shape ``(batch,)``): models average over the batch, and
applications (anomaly scores, evaluation) use the per-sample values directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import Tensor


def squared_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """``sum_i (x_hat_i - x_i)^2`` per sample.

    The Gaussian decoder's negative log-likelihood with unit variance is half
    of this plus a constant (Goodfellow et al., *Deep Learning*, eq. 5.65).
    Summed over pixels and averaged over images it is the error reported by
    Hinton & Salakhutdinov (2006) for MNIST.
    """
    return (x_hat - x).pow(2).flatten(1).sum(1)


def absolute_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """``sum_i |x_hat_i - x_i|`` per sample: the Laplace decoder's NLL up to constants."""
    return (x_hat - x).abs().flatten(1).sum(1)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-sum_i [x_i log p_i + (1 - x_i) log(1 - p_i)]`` with ``p = sigmoid(logits)``, per sample.

    The Bernoulli decoder's negative log-likelihood (binary cross-entropy).
    It is computed from the logits, which stays exact where the sigmoid
    saturates; targets may be any value in [0, 1].
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


@dataclass(frozen=True)
class ReconstructionLoss:
    """A reconstruction loss and which decoder output it reads."""

    fn: Callable[[Tensor, Tensor], Tensor]
    #: True when ``fn`` takes the decoder's pre-activation output (logits).
    from_logits: bool = False
    #: The output activation the loss assumes, if any (``bce`` needs probabilities).
    output_activation: str | None = None


RECONSTRUCTION_LOSSES: dict[str, ReconstructionLoss] = {
    "mse": ReconstructionLoss(squared_error),
    "l1": ReconstructionLoss(absolute_error),
    "bce": ReconstructionLoss(bernoulli_nll, from_logits=True, output_activation="sigmoid"),
}

__all__ = [
    "RECONSTRUCTION_LOSSES",
    "ReconstructionLoss",
    "absolute_error",
    "bernoulli_nll",
    "squared_error",
]
