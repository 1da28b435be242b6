"""Recirculation (Hinton & McClelland 1988): learning to reconstruct without backpropagation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..losses import squared_error
from ..registry import register_model
from .base import AEOutput, Autoencoder, check_range


@register_model("recirculation")
class RecirculationAutoencoder(Autoencoder):
    """One hidden layer trained by recirculation: weight changes from activity differences, no backprop.

    Two passes around the loop visible -> hidden -> visible -> hidden, with
    regression ``lambda`` (the share of a unit's old activity it keeps):

    - ``h1 = s(W_e x0 + b_e)``
    - ``x2 = lambda x0 + (1 - lambda) s(W_d h1 + b_d)``
    - ``h3 = lambda h1 + (1 - lambda) s(W_e x2 + b_e)``

    and the updates (eqs. 1-2 of the paper) ``dW_d = (x0 - x2) h1^T``,
    ``dW_e = (h1 - h3) x2^T``, with the matching bias changes. The forward pass
    returns a surrogate loss whose value is the squared reconstruction error
    and whose gradient is exactly ``-dW``: the one training loop's
    ``backward()`` writes the recirculation update into ``.grad`` and its
    optimiser (plain SGD is the classic choice) applies it.
    """

    architectures = ("mlp",)
    architecture_note = "recirculation's local learning rules are written for one fully connected sigmoid layer."
    #: Options the model sets itself (the scikit-learn adapter leaves them out).
    fixed_options = {"hidden": (), "activation": "sigmoid", "code_activation": "sigmoid", "output_activation": "sigmoid", "loss": "mse", "input_scaling": None}

    def __init__(self, regression: float = 0.75, code_size: int = 30, **options: Any) -> None:
        fixed = self.fixed_options
        clash = sorted(k for k, v in options.items() if k in fixed and (tuple(v) if k == "hidden" else v) != fixed[k])
        if clash:
            raise ConfigError(f"recirculation uses one sigmoid hidden layer and MSE; it has no {', '.join(clash)} to set.")
        super().__init__(code_size=code_size, **{**options, **fixed})
        self.regression = check_range("regression", regression, 0, 1)

    def updates(self, x0: Tensor) -> tuple[dict[str, Tensor], Tensor, Tensor]:
        """The recirculation changes of every parameter (batch means), the code and the reconstruction."""
        enc, dec, lam = self.encoder[1], self.decoder[0], self.regression
        with torch.no_grad():
            h1 = torch.sigmoid(enc(x0))
            x_hat = torch.sigmoid(dec(h1))
            x2 = lam * x0 + (1 - lam) * x_hat
            h3 = lam * h1 + (1 - lam) * torch.sigmoid(enc(x2))
            n = len(x0)
            changes = {
                "decoder.0.weight": (x0 - x2).t() @ h1 / n,
                "decoder.0.bias": (x0 - x2).mean(0),
                "encoder.1.weight": (h1 - h3).t() @ x2 / n,
                "encoder.1.bias": (h1 - h3).mean(0),
            }
        return changes, h1, x_hat

    def forward(self, x: Tensor) -> AEOutput:
        x = self.as_batch(x)
        x0 = x.flatten(1)
        changes, h1, x_hat = self.updates(x0)
        error = squared_error(x_hat, x0).mean()
        params = dict(self.named_parameters())
        surrogate = -sum((changes[name] * params[name]).sum() for name in changes)
        loss = error + (surrogate - surrogate.detach())  # value: the error; gradient: minus the update
        return AEOutput(x_hat=x_hat.view(-1, *self.input_shape), z=h1, losses={"reconstruction": error}, loss=loss)
