"""Saving and loading models: JSON config + safetensors weights, written atomically.

A saved model is a folder with ``config.json`` (the registered model name and
the constructor arguments) and ``model.safetensors`` (the weights). Loading
builds the model from the JSON, validated against the model's signature, and
fills it from safetensors: no code is ever unpickled.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

from .errors import AekitError, CheckpointError
from .runfiles import CONFIG, LOCK, WEIGHTS
from .registry import list_models, model_class

FORMAT_VERSION = 1


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The bytes go to a temporary file in the same folder, are flushed to disk
    (fsync), and the file is renamed over ``path`` (atomic on POSIX).
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a read-only or missing place: nothing was written
        raise CheckpointError(f"cannot write {path} ({exc.strerror or exc}); choose a folder you can write to.") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; the user's umask decides, as for open()
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: the old file, if any, is untouched
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path} ({exc.strerror or exc}); the previous version, if any, is intact. Free some space or choose another folder.") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


_held: set[Path] = set()  # run folders this process has locked


@contextlib.contextmanager
def lock_run(run: Path):
    """Hold an exclusive lock on the run folder ``run`` (created if needed) while the block runs.

    A second process that writes into the same folder at the same time gets a
    :class:`CheckpointError` naming the holder, instead of both runs mixing
    their files. Re-entrant within one process; released when the process
    ends, however it ends. Where ``fcntl`` is missing (Windows) it does nothing.
    """
    run = Path(run).resolve()
    if fcntl is None or run in _held:  # no locks here, or this process holds it already (the outer block releases it)
        yield
        return
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666 & ~_umask())
    except OSError as exc:
        if (run / LOCK).is_symlink():  # never written through: the link could lead anywhere outside the run
            raise CheckpointError(f"{run / LOCK} is a symbolic link, not aekit's lock file; remove it (aekit writes nothing outside the run).") from None
        raise CheckpointError(f"cannot write in the run folder {run} ({exc.strerror or exc}); choose a folder you can write to.") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise CheckpointError(f"{run} is being written by another aekit process (pid {holder}); wait for it to finish, or choose another --out.") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    _held.add(run)
    try:
        yield
    finally:
        _held.discard(run)
        os.close(fd)  # closing releases the lock


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that a write killed mid-way left behind (the real files are intact)."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file()] if Path(folder).is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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


MAX_JSON = 64 * 2**20  # a run's JSON files are small; a larger one is not aekit's


def read_json(path: Path, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_JSON + 1)
        if len(text) > MAX_JSON:
            raise CheckpointError(f"{path} is larger than {MAX_JSON // 2**20} MiB: not an aekit file.")
        return json.loads(text)
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found: {what}.") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or a huge integer
        raise CheckpointError(f"{path} is not valid JSON ({type(exc).__name__}: {str(exc)[:100]}); the file is corrupt.") from None


def build_from_config(config: Any, source: Path) -> nn.Module:
    """Rebuild a model from a config dictionary, checking it against the model's signature."""
    if not isinstance(config, dict) or not isinstance(config.get("model"), str) or not isinstance(config.get("options"), dict):
        raise CheckpointError(f"{source} is not an aekit model config (expected 'model' and 'options').")
    version = config.get("format", 1)  # files from before the field was written are version 1
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{source} has checkpoint format {version!r}; this aekit reads formats 1 to {FORMAT_VERSION}: upgrade aekit (pip install -U aekit).")
    try:
        cls = model_class(config["model"])
        inspect.signature(cls).bind(**config["options"])
        return cls(**config["options"])
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
