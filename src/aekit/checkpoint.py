"""Saving and loading models: JSON config + safetensors weights, written atomically.

A saved model is a folder with ``config.json`` (the registered model name and
the constructor arguments) and ``model.safetensors`` (the weights). Loading
builds the model from the JSON, validated against the model's signature, and
fills it from safetensors: no code is ever unpickled.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from .errors import AekitError, CheckpointError
from .fileio import MAX_JSON, atomic_write, lock_run, read_json, remove_stale_temporaries  # noqa: F401 (kept here too: aekit.checkpoint.atomic_write, ...)
from .runfiles import CONFIG, WEIGHTS
from .registry import list_models, model_class

FORMAT_VERSION = 1


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"cannot save option value {value!r} ({type(value).__name__}) as JSON; use numbers, strings or lists.")


def model_config(model: nn.Module) -> dict[str, Any]:
    """The JSON-ready description that rebuilds ``model``: its registered name and options."""
    name = getattr(model, "model_name", None)
    if name is None or not hasattr(model, "config"):
        raise CheckpointError(f"{type(model).__name__} is not a registered aekit model; register it with @register_model.")
    if name not in list_models() or model_class(name) is not type(model):  # a subclass inherits its parent's name
        raise CheckpointError(
            f"{type(model).__name__} is not registered (only its parent {name!r} is), so it would load as that parent, "
            f"without what it changes; decorate it with @aekit.register_model('a-new-name')."
        )
    return {"format": FORMAT_VERSION, "model": name, "options": _jsonable(model.config)}


def weights_bytes(model: nn.Module) -> bytes:
    return save_safetensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})


def save(model: nn.Module, path: str | Path, weights: str = WEIGHTS) -> Path:
    """Save ``model`` into the folder ``path`` (``config.json`` + ``model.safetensors``)."""
    path = Path(path)
    atomic_write(path / weights, weights_bytes(model))
    atomic_write(path / CONFIG, json.dumps(model_config(model), indent=2))
    return path


def build_from_config(config: Any, source: Path) -> nn.Module:
    """Rebuild a model from a config dictionary, checking it against the model's signature."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), str) or not isinstance(config.get("options"), dict):
        raise CheckpointError(f"{source} is not an aekit model config (expected 'model' and 'options').")
    version = config.get("format", 1)  # files from before the field was written are version 1
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{source} has checkpoint format {version!r}; this aekit reads formats 1 to {FORMAT_VERSION}: upgrade aekit (pip install -U aekit).")
    try:
        cls = model_class(config["model"])
        options = {**getattr(cls, "older_defaults", {}), **config["options"]}  # an earlier aekit's meaning of a missing option
        inspect.signature(cls).bind(**options)
        return cls(**options)
    except TypeError as exc:
        raise CheckpointError(f"{source}: options do not match model {config['model']!r} ({exc}).") from None
    except AekitError as exc:
        raise CheckpointError(f"{source}: {exc}") from None


MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


def _safetensors_bytes(path: Path) -> bytes:
    """The bytes a safetensors file declares (8-byte header length, JSON header, the tensors' extent), read
    no further: a file that is endless (a link to /dev/zero) or padded is refused, not read whole."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("shorter than its 8-byte header length")
        n = int.from_bytes(head, "little")
        if not 2 <= n <= MAX_HEADER:
            raise ValueError(f"its header length {n} is impossible")
        header = f.read(n)
        offsets = [end for key, entry in json.loads(header).items() if key != "__metadata__" for end in entry["data_offsets"][1:]]
        extent = max(offsets, default=0)
        body = f.read(extent)
        if len(body) < extent:
            raise ValueError(f"it declares {extent} bytes of tensors but holds {len(body)}")
        if f.read(1):
            raise ValueError("it holds bytes beyond the tensors it declares")
    return head + header + body


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning any corruption into a :class:`CheckpointError`."""
    try:
        return load_safetensors(_safetensors_bytes(path))
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found.") from None
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt ({exc}); it cannot be loaded.") from None


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    """Copy ``tensors`` into ``model``, requiring exactly its parameter names and shapes.

    Only weights under the model's ``optional_weights`` prefixes (parts added after a checkpoint was written,
    such as a VQ-VAE's prior) may be absent; they keep their initial values.
    """
    expected = model.state_dict()
    optional = tuple(getattr(model, "optional_weights", ()))
    missing = sorted(k for k in set(expected) - set(tensors) if not (optional and k.startswith(optional)))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    wrong += [f"{k} {tensors[k].dtype} != {v.dtype}" for k, v in expected.items() if k in tensors and tensors[k].dtype != v.dtype]
    if missing or unexpected or wrong:
        details = "; ".join(
            part
            for part in (
                missing and f"missing {missing[:3]}",
                unexpected and f"unexpected {unexpected[:3]}",
                wrong and f"wrong shape or dtype {wrong[:3]}",
            )
            if part
        )
        raise CheckpointError(f"{source} does not fit this model's architecture ({details}); it was saved from another model.")
    broken = next((k for k, v in tensors.items() if k in expected and v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if broken is not None:
        raise CheckpointError(f"{source} holds non-finite weights (NaN or inf) in {broken}: the training diverged or the file was changed; retrain (a lower --lr), or restore the file.")
    with torch.no_grad():
        for key, value in expected.items():
            if key in tensors:
                value.copy_(tensors[key])


def load(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Load a saved model or run folder, in evaluation mode.

    Parameters
    ----------
    path : path
        A folder holding ``config.json`` and ``model.safetensors`` (what
        :func:`save` and training runs write), or a ``.safetensors`` file with
        ``config.json`` beside it (e.g. a run's ``last.safetensors``).

    Raises
    ------
    CheckpointError
        If the folder is not a saved model, a file is truncated or tampered
        with, or the weights belong to another architecture.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"load takes the path of a saved model or run folder, got {type(path).__name__} {path!r}.")
    path = Path(path)
    folder, weights = (path.parent, path) if path.suffix == ".safetensors" else (path, path / WEIGHTS)
    if not folder.is_dir():
        raise CheckpointError(f"{folder} does not exist; give the folder of a saved model or training run.")
    config = read_json(folder / CONFIG, "not an aekit model folder (no config.json)")
    model = build_from_config(config, folder / CONFIG)
    load_weights(model, read_tensors(weights), weights)
    return model.to(device).eval()
