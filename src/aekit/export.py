"""Export a fitted model to ONNX, its input scaling inside the graph: raw samples in; x_hat, z and the score out."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .checkpoint import atomic_write
from .errors import AekitError, ConfigError


class Deployable(nn.Module):
    """What the exported graph computes: ``x -> (x_hat, z, score)`` in evaluation mode.

    ``score`` is the model's :meth:`anomaly_score` (higher = more anomalous); a
    model whose score is sampled (the VAE's minus ELBO) exports its
    reconstruction error instead, so that the graph is deterministic.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()
        sampled = hasattr(model, "elbo")
        self.score = model.reconstruction_error if sampled else model.anomaly_score
        if hasattr(model, "code_precision"):  # a matrix inverse ONNX cannot express and a slice sized by a buffer's
            # value: computed once, constants
            self.score = functools.partial(model.anomaly_score, precision=model.code_precision().detach(), kept=model.kept_rows().detach())

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        z = self.model.encode(x)
        return self.model.decode(z), z, self.score(x)


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Raise these loggers to ERROR while the block runs, then put them back."""
    saved = {name: logging.getLogger(name).level for name in loggers}
    for name in loggers:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def export_onnx(model: nn.Module, path: str | Path, opset: int = 18) -> Path:
    """Write ``model`` as an ONNX graph with input ``x`` (raw samples, any batch size) and outputs
    ``x_hat``, ``z`` and ``score``.

    Check it with onnxruntime: ``InferenceSession(path).run(None, {"x": batch})``.
    """
    if not isinstance(model, nn.Module) or not hasattr(model, "input_shape") or not hasattr(model, "encode"):
        raise ConfigError(f"export_onnx takes a fitted aekit model (aekit.load(RUN)), got {type(model).__name__}.")
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"export_onnx writes to a file path ending in .onnx, got {type(path).__name__} {path!r}.")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ConfigError(f"name the ONNX file with the .onnx suffix, got {path.name!r}.")
    wrapper = Deployable(model.cpu())
    example = torch.rand(3, *model.input_shape)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "torch._export", "onnxscript"), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes (a missing torchvision, ...) are nothing a user can act on
            program = torch.onnx.export(
                wrapper, (example,), input_names=["x"], output_names=["x_hat", "z", "score"],
                dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset, dynamo=True, verbose=False,
            )
            program.save(buffer)
    except ImportError as exc:
        raise AekitError(f"ONNX export needs the onnx package: pip install onnx ({exc}).") from None
    except Exception as exc:  # the exporter's own errors: an operation ONNX cannot express
        raise AekitError(f"{type(model).__name__} could not be exported to ONNX ({type(exc).__name__}: {str(exc)[:160]}).") from None
    atomic_write(path, buffer.getvalue())
    return path
