"""Training state for resume: weights, optimizer and RNG states in one safetensors file.

Everything a resumed run needs is written in a single atomic file, so the
state on disk is always one consistent epoch: tensors as safetensors, the
rest (epoch, history, optimizer hyper-parameters) as JSON in its metadata.
No pickle is involved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as save_safetensors
from torch import nn

from ..checkpoint import atomic_write, load_weights, read_tensors
from ..errors import CheckpointError
from ..runfiles import RESUME


MAX_EPOCHS = 10_000_000  # no run trains longer: a larger epoch in a resume state is tampering


def keyed(callbacks: Sequence[Any]) -> dict[str, Any]:
    """The callbacks by their ``state_key``; a key taken twice gets the callback's position after it."""
    out: dict[str, Any] = {}
    for i, callback in enumerate(callbacks):
        key = getattr(callback, "state_key", type(callback).__name__)
        out[key if key not in out else f"{key}.{i}"] = callback
    return out


def save_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, shuffle: torch.Generator, info: dict[str, Any], callbacks: Sequence[Any] = ()) -> None:
    """Write the full training state of the epoch just finished to ``path`` (with the callbacks' states)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for key, callback in keyed(callbacks).items():
        tensors.update({f"callback.{key}.{k}": v.detach().cpu().contiguous() for k, v in callback.state_dict().items()})
    opt = optimizer.state_dict()
    scalars = {}
    for index, entries in opt["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"info": info, "param_groups": opt["param_groups"], "scalars": scalars}
    atomic_write(path, save_safetensors(tensors, metadata={"aekit": json.dumps(meta)}))


def load_state(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, shuffle: torch.Generator, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Restore what :func:`save_state` wrote; returns its ``info`` dictionary."""
    from safetensors import safe_open

    tensors = read_tensors(path)
    try:
        with safe_open(path, framework="pt") as f:
            meta = json.loads(f.metadata()["aekit"])
        device = next(model.parameters()).device
        load_weights(model, {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}, path)
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for key, value in meta["scalars"].items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        for param, entries in optimizer.state.items():  # load_state_dict keeps 'step' on the CPU; move the moments
            for name, value in entries.items():
                if torch.is_tensor(value) and name != "step" and value.shape != param.shape:  # a fused step would read out of bounds
                    raise CheckpointError(f"{path} holds optimizer state {name} of shape {tuple(value.shape)} for a parameter of shape {tuple(param.shape)}; it was changed or belongs to another run: start a new run.")
                if torch.is_tensor(value) and name != "step":
                    # in the parameter's memory layout (channels-last kernels): fused Adam walks both in memory order
                    entries[name] = torch.empty_like(param, dtype=value.dtype).copy_(value) if value.shape == param.shape else value.to(device)
        for i, (key, callback) in enumerate(keyed(callbacks).items()):
            prefix = f"callback.{key}."
            if not any(k.startswith(prefix) for k in tensors):  # a resume file of an earlier aekit: by list position
                prefix = f"callback.{i}."
            callback.load_state_dict({k.removeprefix(prefix): v.to(device) for k, v in tensors.items() if k.startswith(prefix)})
        torch.set_rng_state(tensors["rng.torch"])
        shuffle.set_state(tensors["rng.shuffle"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
        check_info(meta["info"], path)
        return meta["info"]
    except CheckpointError:
        raise
    except (KeyError, ValueError, TypeError, RuntimeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not a valid training state for this run ({exc}); start a new run instead.") from None


def check_info(info: Any, path: Path) -> None:
    """Refuse a state whose bookkeeping (epoch, best loss, history) is not what aekit writes."""
    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    problem = None
    if not isinstance(info, dict):
        problem = "its info is not an object"
    elif not (count(info.get("epoch")) and count(info.get("since_best")) and count(info.get("best_epoch"))):
        problem = "epoch, since_best and best_epoch must be counts"
    elif info["epoch"] > MAX_EPOCHS:
        problem = f"epoch {info['epoch']} is beyond any run's ({MAX_EPOCHS:,})"
    elif not isinstance(info.get("best"), (int, float)) or isinstance(info.get("best"), bool) or info["best"] != info["best"] or info["best"] == -math.inf:
        problem = "best must be a number (the lowest loss so far, or infinity before the first)"
    elif not (isinstance(info.get("records"), list) and all(isinstance(r, dict) for r in info["records"])):
        problem = "records must be a list of objects"
    elif "grad_scale" in info and not (isinstance(info["grad_scale"], (int, float)) and info["grad_scale"] > 0):
        problem = "grad_scale must be a positive number"
    if problem:
        raise CheckpointError(f"{path} is not a valid training state for this run ({problem}); start a new run instead.")
