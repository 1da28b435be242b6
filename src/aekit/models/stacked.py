"""Greedy layer-wise pretraining (Hinton & Salakhutdinov 2006; Bengio et al. 2007)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..registry import register_model
from .base import Autoencoder


def linear_layers(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


@register_model("stacked")
class StackedAutoencoder(Autoencoder):
    """A deep MLP autoencoder pretrained greedily, one shallow autoencoder per layer, then fine-tuned.

    Before its first epoch the :class:`~aekit.Trainer` calls :meth:`pretrain`,
    which trains the shallow autoencoders of :meth:`layerwise_stages` in turn
    through the one training loop (each on the codes of the one before, for
    ``pretrain_epochs`` epochs) and copies their weights in with
    :meth:`load_stages`; the trainer then fine-tunes the unrolled network end to end.
    """

    architectures = ("mlp",)
    architecture_note = "its stages are shallow fully connected autoencoders, one per layer."

    def layerwise_stages(self) -> list[Autoencoder]:
        """Fresh shallow autoencoders, outermost first: stage i maps layer i's input to its output and back."""
        sizes = [self.n_features, *self.hidden, self.code_size]
        last = len(sizes) - 2
        return [
            Autoencoder(
                input_shape=(sizes[i],),
                code_size=sizes[i + 1],
                hidden=(),
                code_activation=self.code_activation if i == last else self.activation,
                # stage 0 reconstructs the data; the others reconstruct hidden activations
                output_activation=self.config.get("output_activation") if i == 0 else self.activation,
                loss=self.config.get("loss", "mse") if i == 0 else "mse",
            )
            for i in range(last + 1)
        ]

    def pretrain(self, x: Tensor, fit: Callable[[nn.Module, Tensor], Any]) -> None:
        """Greedy layer-wise pretraining on samples ``x``: ``fit(stage, data)`` (the one training loop, with the
        trainer's stage settings) trains each stage on the codes of the one before; then the stages are unrolled."""
        stages, h = self.layerwise_stages(), self.scale(x)  # the first stage sees what the model will
        for stage in stages:
            fit(stage, h)
            with torch.no_grad():
                h = torch.cat([stage.eval().encode(h[i : i + 1024]) for i in range(0, len(h), 1024)])
        self.load_stages(stages)

    def load_stages(self, stages: list[Autoencoder]) -> None:
        """Unroll trained stages: stage i's encoder layer is encoder layer i, its decoder layer is decoder layer -1-i."""
        encoder, decoder = linear_layers(self.encoder), linear_layers(self.decoder)
        for i, stage in enumerate(stages):
            (enc,), (dec,) = linear_layers(stage.encoder), linear_layers(stage.decoder)
            encoder[i].load_state_dict(enc.state_dict())
            decoder[len(decoder) - 1 - i].load_state_dict(dec.state_dict())
