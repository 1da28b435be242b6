"""The one training loop. Models define losses; the Trainer does everything else.

It owns the optimiser, batching, the validation split, early stopping, the
device, seeding, the progress bar, metrics and checkpoints. Every registered
model trains through it unchanged, because it only needs ``model(x).loss``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..runfiles import CONFIG, LAST, METRICS, RECONSTRUCTIONS, RESUME, TRAINER, WEIGHTS
from ..checkpoint import atomic_write, lock_run, model_config, read_tensors, remove_stale_temporaries, weights_bytes
from ..data import Dataset, check_finite
from ..data.stream import StreamedDataset
from ..errors import CheckpointError, ConfigError, DataError, TrainingError, suggest
from . import allocator
from ..settings import TrainerSettings, check_seed, check_threads  # noqa: F401 (check_seed: used by callers of this module)
from .callbacks import ActiveUnits, Callback, KLWarmup, LearningRateSchedule, Loop, WeightAverage
from .distributed import Workers, local_device, rank_and_world, workers
from .history import History
from .samples import InMemory, OnDisk
from .state import load_state, save_state
from .threads import cpu_threads, threads_for_model
from .tracking import trackers

# Adam's fused kernel updates every parameter in one pass: on this project's CPU it takes 0.5 ms
# per step for a 1M-parameter MLP, against 5.6 ms for PyTorch's CPU default (benchmarks/speed.py).
OPTIMIZERS = {  # keyed by settings.OPTIMIZER_NAMES, as are the next two
    "adam": lambda params, lr, wd: torch.optim.Adam(params, lr=lr, weight_decay=wd, fused=True),
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd, fused=True),
    "sgd": lambda params, lr, wd: torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=0.9),
}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
SCHEDULES = {  # learning-rate factor as a function of training progress in [0, 1)
    "constant": lambda progress: 1.0,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
}
EVAL_BATCH = 1024
PRIOR_BATCH = 256  # the smallest batch of the prior fitted after training (Trainer._fit_prior)
MAX_SKIPS = 10  # with on_nonfinite="skip": non-finite batches skipped per epoch before giving up


@dataclass
class Fit:
    """What one call of :meth:`Trainer.fit` trains with: the model and the modules that run it, the optimiser
    and its gradient scaler (a pass-through unless fp16), the parameter groups, callbacks, processes, the
    progress bar, the run folder (None: nothing written) and the shuffling generator."""

    model: nn.Module
    forward: nn.Module  # full batches: the model, wrapped for several processes, compiled on request
    eager: nn.Module  # an epoch's last, smaller batch (no second compilation for its shape)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    groups: dict[str, list[nn.Parameter]]
    callbacks: list[Callback]
    team: Workers
    bar: Any
    run: Path | None
    shuffle: torch.Generator


@dataclass
class RunState:
    """Where a run stands between epochs: what a checkpoint saves and a resumed run starts from."""

    history: History = dataclasses.field(default_factory=History)
    epoch: int = 0  # epochs finished
    best: float = math.inf  # the best validation loss (training loss without validation) so far
    since_best: int = 0
    grad_scale: float = 2.0**16  # fp16 loss scaling
    best_weights: dict[str, Tensor] = dataclasses.field(default_factory=dict)

    @classmethod
    def resumed(cls, run: Path, model: nn.Module, optimizer, shuffle: torch.Generator, callbacks: list[Callback], team: Workers, seed: int) -> "RunState":
        """Restore the model, optimiser, generators and callbacks from ``run``'s resume state."""
        info = load_state(run / RESUME, model, optimizer, shuffle, callbacks)
        if team.rank:  # the state holds rank 0's generator; the others draw their own noise
            torch.manual_seed((seed + team.rank) * 100_003 + info["epoch"])
        return cls(History(info["records"], info["best_epoch"]), info["epoch"], info["best"], info["since_best"], info.get("grad_scale", 2.0**16))

    def add(self, record: dict[str, Any], model: nn.Module) -> bool:
        """Log a finished epoch; True (and its weights kept) when it is the best so far."""
        self.history.records.append(record)
        self.epoch = record["epoch"]
        # the model's own measure of a good epoch (a loss term's name), else its whole loss
        monitor = getattr(model, "monitor", "loss")  # plain nn.Modules train too
        score = record.get(f"val_{monitor}", record.get(f"train_{monitor}", record["train_loss"]))
        if not score < self.best:
            self.since_best += 1
            return False
        self.best, self.since_best, self.history.best_epoch = score, 0, self.epoch
        self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return True

    def info(self, grad_scale: float | None) -> dict[str, Any]:
        """The JSON part of a checkpoint."""
        info = {"epoch": self.epoch, "best": self.best, "since_best": self.since_best, "best_epoch": self.history.best_epoch, "records": self.history.records}
        return info if grad_scale is None else {**info, "grad_scale": grad_scale}


def holds(path: Path, content: bytes) -> bool:
    """True when ``path`` is a regular file of exactly ``content`` (read no further than that)."""
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(len(content) + 1) == content


def ensure_new_run(run: Path) -> None:
    """Refuse to start a run in a folder that already holds one: runs are never overwritten."""
    if (run / RESUME).exists() or (run / WEIGHTS).exists():
        raise CheckpointError(f"{run} already holds a training run; resume it (--resume) or choose another folder.")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's generators (call before building a model)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; asking for absent CUDA is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {device!r} cannot train aekit models; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but PyTorch sees no CUDA GPU here; use --device cpu.")
    return resolved


def as_samples(data: Dataset | Tensor | np.ndarray, name: str = "data") -> tuple[Tensor, float, float]:
    """The samples of ``data`` as a float32 tensor, and their minimum and maximum; refuses empty or non-finite data."""
    if isinstance(data, Dataset):
        data = data.x
    if isinstance(data, np.ndarray):
        if data.dtype.kind not in "biuf":
            raise DataError(f"{name} must be numeric, got a {data.dtype} array.")
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, Tensor):
        raise DataError(f"{name} must be an aekit Dataset, a torch tensor or a numpy array, got {type(data).__name__}.")
    if data.dim() < 2 or len(data) == 0:
        raise DataError(f"{name} must hold at least one sample, shape (n, features...); got shape {tuple(data.shape)}.")
    data = data.float()
    low, high = torch.aminmax(data)  # NaN propagates into both: one pass checks finiteness and range
    if not (math.isfinite(low) and math.isfinite(high)):
        check_finite(data, name)  # says how many values are bad and where the first one is
    return data, float(low), float(high)


@dataclass
class Trainer(TrainerSettings):
    """Trains any registered model. Keyword arguments are its settings.

    Each setting is declared once, with its help text, in
    :class:`aekit.settings.TrainerSettings`: ``aekit train`` makes its flags
    from those fields (``--batch-size`` for ``batch_size``).

    Examples
    --------
    >>> history = Trainer(epochs=5, lr=1e-3).fit(model, data)   # doctest: +SKIP
    """

    @classmethod
    def from_settings(cls, settings: Any, source: Path) -> "Trainer":
        """A Trainer from a run's saved ``trainer.json``, with a clear error if it does not fit."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(settings, dict) or set(settings) - fields:
            extra = sorted(set(settings) - fields) if isinstance(settings, dict) else settings
            raise CheckpointError(f"{source} holds settings this version of aekit does not know ({extra}).")
        try:
            return cls(**settings)
        except ConfigError as exc:
            raise CheckpointError(f"{source}: {exc}") from None

    def fit(
        self,
        model: nn.Module,
        data: Dataset | Tensor | np.ndarray,
        *,
        val_data: Dataset | Tensor | np.ndarray | None = None,
        out: str | Path | None = None,
        resume: bool = False,
        callbacks: Sequence[Callback] = (),
    ) -> History:
        """Train ``model`` on ``data``; with ``out``, write a run folder there.

        Parameters
        ----------
        model : nn.Module
            A registered model (see :func:`aekit.get_model`); trained in place.
        data : Dataset, Tensor or ndarray of shape (n, *input_shape)
            Training samples. Unless ``val_data`` is given, ``val_fraction`` of
            them (chosen with ``seed``) is held out for validation.
        val_data : optional
            Validation samples.
        out : path, optional
            Run folder for the config, weights (best and last), resume state,
            metrics and, for images, a reconstruction grid.
        resume : bool
            Continue the run saved in ``out`` from its last finished epoch.
        callbacks : sequence of Callback
            Hooks called at the loop's events (:mod:`aekit.training.callbacks`),
            after the ones the settings ask for (``kl_warmup``, ``ema``) and the
            active-units count of models with a posterior.

        While it trains, the run folder is locked: a second process training
        into the same folder stops with a :class:`CheckpointError`.
        """
        if not isinstance(model, nn.Module) or not hasattr(model, "as_batch"):
            raise ConfigError(f"fit trains an aekit model object, e.g. aekit.get_model('ae', input_shape=(784,)); got {type(model).__name__} {str(model)[:40]!r}.")
        if out is not None and not isinstance(out, (str, os.PathLike)):
            raise ConfigError(f"out is the run folder's path (a str or Path), got {type(out).__name__} {out!r}.")
        strangers = [type(c).__name__ for c in callbacks if not isinstance(c, Callback)] if isinstance(callbacks, (list, tuple)) else [type(callbacks).__name__]
        if strangers:
            raise ConfigError(f"callbacks must be a list of aekit.Callback objects (subclass it and override its events); got {', '.join(strangers)}.")
        with self._threads(model):
            if out is None or rank_and_world()[0] != 0:
                return self._fit(model, data, val_data, out, resume, list(callbacks))
            with lock_run(Path(out)):
                return self._fit(model, data, val_data, out, resume, list(callbacks))

    def _threads(self, model: nn.Module) -> contextlib.AbstractContextManager:
        """The CPU threads training runs on: ``threads``, or for "auto" as many as one step's work gains from."""
        threads = check_threads(self.threads)
        if threads != "auto":
            return cpu_threads(threads)
        return threads_for_model(model, self.batch_size, resolve_device(self.device))

    def callbacks(self, model: nn.Module) -> list[Callback]:
        """The callbacks the settings ask for: KL warm-up, weight averaging, and active units where there is a posterior."""
        chosen: list[Callback] = [LearningRateSchedule(SCHEDULES[self.schedule])] if self.schedule != "constant" else []
        if self.kl_warmup:
            chosen.append(KLWarmup(self.kl_warmup))
        if self.ema is not None:
            chosen.append(WeightAverage(self.ema))
        if hasattr(model, "posterior"):
            chosen.append(ActiveUnits())
        return chosen

    def _fit(self, model: nn.Module, data, val_data, out, resume: bool, extra: list[Callback]) -> History:
        device, team = self._devices()
        run = Path(out) if out is not None else None
        if run is not None and not resume:
            ensure_new_run(run)
        train_data, val_data_ = self._split(model, data, val_data, device)
        self._adapt(model, train_data)
        model.to(device).train()
        groups = model.parameter_groups() if hasattr(model, "parameter_groups") else {"model": list(model.parameters())}
        if team.distributed and len(groups) > 1:
            raise ConfigError(f"a model with several parameter groups ({', '.join(groups)}) trains in one process; run it without torchrun.")
        optimizer = OPTIMIZERS[self.optimizer]([{"params": params, "name": name} for name, params in groups.items()], self.lr, self.weight_decay)
        shuffle = torch.Generator().manual_seed(self.seed + 1)
        torch.manual_seed(self.seed + team.rank)  # the noise models draw differs between processes
        writes = run is not None and team.is_main  # only rank 0 writes
        callbacks = [*self.callbacks(model), *extra]
        if self.log_to and team.is_main:  # last: they see what the other callbacks add to a record
            callbacks += trackers(self.log_to, run, dataclasses.asdict(self), model_config(model)["options"])
        state = RunState.resumed(run, model, optimizer, shuffle, callbacks, team, self.seed) if resume and run is not None and (run / RESUME).exists() else RunState()
        if state.epoch and self.epochs < state.epoch:
            raise ConfigError(f"{run} has trained {state.epoch} epochs already; to continue it, ask for more (--epochs {state.epoch + 1} or more).")
        if writes:  # only once the resume state has been read: a failed resume changes nothing in the run
            remove_stale_temporaries(run)  # left by a process killed while writing
            for name, text in ((CONFIG, json.dumps(model_config(model), indent=2)), (TRAINER, json.dumps(dataclasses.asdict(self), indent=2))):
                if not holds(run / name, text.encode()):  # the CLI wrote them first: each file is written once
                    atomic_write(run / name, text)
        for group in optimizer.param_groups:  # schedules scale base_lr; skipped batches halve it
            group.setdefault("base_lr", group["lr"])
        if state.epoch == 0 and self.pretrain_epochs and hasattr(model, "pretrain"):  # greedy layer-wise (stacked)
            model.pretrain(train_data.x, self.stage(self.pretrain_epochs).fit)
        state.best_weights = read_tensors(run / WEIGHTS) if state.epoch and (run / WEIGHTS).exists() else model.state_dict()
        state.best_weights = {k: v.detach().to(device).clone() for k, v in state.best_weights.items()}
        shown = val_data_ if len(val_data_) else train_data
        steps = math.ceil(len(train_data) / self.batch_size)
        loop = Loop(model, optimizer, self.epochs, steps, lambda: shown.batch(torch.arange(min(EVAL_BATCH, len(shown)))))
        fit = Fit(model, *self._forward(model, team, device, groups), optimizer, torch.amp.GradScaler(device.type, init_scale=state.grad_scale, enabled=self.precision == "fp16"),
                  groups, callbacks, team, self._progress_bar(team, state.epoch * steps, self.epochs * steps), run if writes else None, shuffle)
        for callback in callbacks:
            callback.on_fit_start(loop)
        try:
            for epoch in range(state.epoch + 1, self.epochs + 1):
                record = self._epoch(fit, loop, epoch, train_data, val_data_)
                improved = state.add(record, model)
                self._report(fit, record)
                if writes:
                    self._checkpoint(fit, state, improved)
                if self.patience is not None and state.since_best >= self.patience:
                    state.history.stopped_early = epoch < self.epochs
                    break
        except BaseException as exc:
            loop.error = exc
            raise
        finally:  # also when training raises: a callback restores what it set (a warm-up's beta)
            fit.bar.close()
            for callback in callbacks:
                callback.on_fit_end(loop)
        if self.restore_best and state.history.best_epoch:
            model.load_state_dict(state.best_weights)
        if self.prior_epochs and hasattr(model, "code_indices") and isinstance(train_data, InMemory):
            self._fit_prior(model, train_data.x, run if writes else None)
        model.eval()
        if writes:
            self._draw_reconstructions(model, shown, run)
            for callback in callbacks:
                callback.on_run_end(loop, run)
        return state.history

    def _devices(self) -> tuple[torch.device, Workers]:
        """This process's device and its place among the training processes (the allocator tuned first)."""
        if self.tune_allocator:
            allocator.tune_allocator()
        device = resolve_device(self.device)
        if self.precision == "fp16" and device.type != "cuda":
            raise ConfigError("precision 'fp16' needs a CUDA GPU (its loss scaling is a GPU feature); use 'bf16' on the CPU.")
        device = local_device(device)
        team = workers(device)
        if team.distributed and self.on_nonfinite == "skip":
            raise ConfigError("on_nonfinite='skip' works in one process only; with several, use 'stop' and resume from the last checkpoint.")
        return device, team

    def _adapt(self, model: nn.Module, train_data: InMemory | OnDisk) -> None:
        """Fit what the model learns from the data before training (its input scaling; a resumed run restores it)."""
        if self.pretrain_epochs and hasattr(model, "pretrain") and not isinstance(train_data, InMemory):
            raise ConfigError("layer-wise pretraining needs the data in memory; stream it with pretrain_epochs=0, or load it.")
        if isinstance(train_data, InMemory) and hasattr(model, "adapt"):
            model.adapt(train_data.x)
        elif getattr(model, "input_scaling", None) is not None:
            raise ConfigError("input_scaling is fitted on the training rows in memory; load the data instead of streaming it.")

    def _progress_bar(self, team: Workers, done: int, total: int):
        """A progress bar over all steps, shown on a terminal of the main process only."""
        shown = self.progress is True and team.is_main and sys.stderr.isatty()
        return tqdm(total=total, initial=done, disable=not shown, unit="step", dynamic_ncols=True)

    def _epoch(self, fit: "Fit", loop: Loop, epoch: int, train_data, val_data) -> dict[str, Any]:
        """Train one epoch, validate, and return the epoch's record (every term, the scalars, the learning rate)."""
        began = time.perf_counter()
        fit.bar.set_description(f"epoch {epoch}/{self.epochs}")
        loop.epoch, loop.step = epoch, 0
        for callback in fit.callbacks:
            callback.on_epoch_start(loop)
        train = self._train_epoch(fit, loop, train_data)
        for callback in fit.callbacks:
            callback.on_train_epoch_end(loop)
        record: dict[str, Any] = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()}}
        if len(val_data):
            record.update({f"val_{k}": v for k, v in self._evaluate(fit.model, val_data, fit.team).items()})
        record.update({name: float(getattr(fit.model, name)) for name in getattr(fit.model, "scalars", ())})
        record["lr"] = fit.optimizer.param_groups[0]["lr"]
        record["seconds"] = round(time.perf_counter() - began, 4)
        for callback in fit.callbacks:  # trackers, the last, see every number of the epoch
            callback.on_epoch_end(loop, record)
        return record

    def _report(self, fit: "Fit", record: dict[str, Any]) -> None:
        """The epoch on the bar, or as one line where there is no bar (piped output gets no carriage returns)."""
        fit.bar.set_postfix_str(" ".join(f"{k}={record[k]:.4g}" for k in ("train_loss", "val_loss") if k in record))
        if self.progress and fit.team.is_main and fit.bar.disable:
            terms = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k.startswith(("train_", "val_")))
            print(f"epoch {record['epoch']}/{self.epochs}  {terms}  {record['seconds']:.2f} s", file=sys.stderr, flush=True)

    @staticmethod
    def _draw_reconstructions(model: nn.Module, shown, run: Path) -> None:
        """``reconstructions.png`` for grey or RGB images."""
        shape = getattr(model, "input_shape", ())
        if len(shape) == 3 and shape[0] not in (1, 3):
            print(f"aekit: samples of shape {shape} are not grey or RGB images: no {RECONSTRUCTIONS}", file=sys.stderr)
        elif len(shape) == 3:
            from ..plotting import reconstruction_grid

            reconstruction_grid(model, shown.batch(torch.arange(min(8, len(shown)))), run / RECONSTRUCTIONS)

    def _forward(self, model: nn.Module, team: Workers, device: torch.device, groups: dict[str, list[nn.Parameter]]) -> tuple[nn.Module, nn.Module]:
        """What a training step calls: the model, wrapped for several processes, compiled on request.

        Returns the module for full batches and the eager one for the last, smaller batch of an
        epoch, which would otherwise cost a second compilation for its shape.
        """
        eager = model
        if team.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # parameters outside every group (a VQ-VAE's prior, fitted afterwards) get no gradient in these steps
            outside = sum(1 for _ in model.parameters()) > sum(len(params) for params in groups.values())
            eager = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=outside)
        return (torch.compile(eager) if self.compile else eager), eager

    def _split(self, model: nn.Module, data, val_data, device: torch.device) -> tuple[InMemory | OnDisk, InMemory | OnDisk]:
        """Check the data against the model and split off the validation samples (seeded)."""
        if isinstance(data, StreamedDataset):
            return self._split_stream(model, data, val_data, device)
        x, low, high = as_samples(data)
        model.as_batch(x[:1])  # a wrong sample shape fails here, clearly, before any work
        self._check_range(model, low, high)
        if val_data is not None:
            return InMemory(x.to(device)), InMemory(as_samples(val_data, "val_data")[0].to(device))
        n_val = self._n_val(len(x))
        if n_val == 0:  # training shuffles anyway: no copy
            return InMemory(x.to(device)), InMemory(x[:0].to(device))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
        return InMemory(x[order[n_val:]].to(device)), InMemory(x[order[:n_val]].to(device))

    def _split_stream(self, model: nn.Module, data: StreamedDataset, val_data, device: torch.device) -> tuple[OnDisk, OnDisk]:
        """The same split for data read from disk: positions, not samples, are divided."""
        model.as_batch(data.read(np.arange(1)))
        if data.dtype == np.uint8 or data.scaling is not None:  # values in [0, 1] on the training rows
            self._check_range(model, 0.0, 1.0)
        if val_data is not None:
            if not isinstance(val_data, StreamedDataset):
                raise DataError("with streamed training data, give streamed val_data too (aekit.open_stream).")
            return OnDisk(data, np.arange(len(data)), device), OnDisk(val_data, np.arange(len(val_data)), device)
        n_val = self._n_val(len(data))
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed)).numpy()
        return OnDisk(data, order[n_val:], device), OnDisk(data, order[:n_val], device)

    def _n_val(self, n: int) -> int:
        n_val = int(round(self.val_fraction * n))
        if n_val >= n:
            raise DataError(f"{n} samples are too few to hold out {self.val_fraction:.0%} for validation; set val_fraction=0.")
        return n_val

    def _check_range(self, model: nn.Module, low: float, high: float) -> None:
        in_unit_interval = low >= 0 and high <= 1
        needs_probabilities = getattr(getattr(model, "reconstruction", None), "output_activation", None) == "sigmoid"
        if needs_probabilities and not in_unit_interval:
            raise DataError(
                f"this model's loss ({model.config.get('loss')}) needs data in [0, 1], but it ranges over "
                f"[{low:.3g}, {high:.3g}]; scale the data (aekit.load_dataset scales to [0, 1]) or use loss='mse'."
            )
        if self.binarize and not in_unit_interval:
            raise DataError(f"binarize=True draws Bernoulli(x), which needs data in [0, 1]; it ranges over [{low:.3g}, {high:.3g}].")

    def stage(self, epochs: int, **settings: Any) -> "Trainer":
        """These settings for an auxiliary fit (a stacked model's layer-wise stage, a VQ-VAE's prior): ``epochs``
        epochs, no early stopping, schedules or weight averaging of its own, and no stages in turn."""
        return dataclasses.replace(self, epochs=epochs, patience=None, pretrain_epochs=0, prior_epochs=0, kl_warmup=0, ema=None, **settings)

    def _fit_prior(self, model: nn.Module, x_train: Tensor, run: Path | None) -> None:
        """Fit the model's prior on the training samples' codes, as they are after training (a VQ-VAE's): the
        codes the decoder will be given. The run's best weights then hold it."""
        # A transformer over short code sequences uses the CPU better in larger batches (an epoch in half the
        # time at 256 than at 128); the learning rate grows with the batch (the linear scaling rule), starts twice
        # that and decays on a cosine. On MNIST's 4x4 maps (3 epochs of the VQ-VAE): 3 epochs at the scaled rate gave
        # samples at Frechet distance 22.4 (nll 95.2 nats a map), 6 cosine epochs from twice the rate 16.0 (88.5),
        # 12 constant epochs 14.8 (85.9); the decoder's own reconstructions 7.2, a VAE's samples 18-20.
        batch_size = max(self.batch_size, PRIOR_BATCH)
        stage = self.stage(self.prior_epochs, batch_size=batch_size, lr=2 * self.lr * batch_size / self.batch_size, schedule="cosine")
        if self.progress:
            print(f"aekit: fitting the prior over the code maps of {len(x_train)} training samples for {self.prior_epochs} epochs", file=sys.stderr)
        stage.fit(model.prior, model.code_indices(x_train).float())
        if run is not None:
            atomic_write(run / WEIGHTS, weights_bytes(model))

    def _autocast(self, device: torch.device):
        dtype = PRECISIONS[self.precision]
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def _train_epoch(self, fit: "Fit", loop: Loop, data) -> dict[str, float]:
        """One pass over ``data`` in shuffled batches; returns the mean of every loss term and metric."""
        model, optimizer, scaler, team, bar, callbacks, epoch = fit.model, fit.optimizer, fit.scaler, fit.team, fit.bar, fit.callbacks, loop.epoch
        model.train()
        device = next(model.parameters()).device
        # A finite-check syncs a GPU, so there it runs every 25 steps, unless bad batches are to be skipped.
        check_every = 1 if device.type == "cpu" or self.on_nonfinite == "skip" else 25
        perm = torch.randperm(len(data), generator=fit.shuffle)
        if isinstance(data, InMemory):
            perm = perm.to(device)
        mixed = PRECISIONS[self.precision] is not None
        sums: Tensor | float = 0.0  # the loss and each of its terms, times the samples they cover
        names: list[str] = []
        seen = skipped = 0
        for step, start in enumerate(range(0, len(data), self.batch_size), start=1):
            indices, weight = team.share(perm[start : start + self.batch_size])
            batch = data.batch(indices)
            loop.step = step
            for callback in callbacks:
                callback.on_step_start(loop)
            if self.binarize:
                batch = torch.bernoulli(batch)
            with self._autocast(device) if mixed else contextlib.nullcontext():
                out = (fit.forward if start + self.batch_size <= len(data) else fit.eager)(batch)
            if step % check_every == 0 and not math.isfinite(out.loss.item()):
                if self.on_nonfinite == "skip" and skipped < MAX_SKIPS:
                    skipped += 1
                    for group in optimizer.param_groups:
                        group["lr"] /= 2
                        group["base_lr"] /= 2
                    bar.write(f"aekit: non-finite loss in epoch {epoch}, step {step}: batch skipped, learning rate halved to {optimizer.param_groups[0]['lr']:.3g}")
                    bar.update(1)
                    continue
                kept, run = "", fit.run
                if run is not None:
                    kept = f"the last good checkpoint in {run} is intact; " if (run / RESUME).exists() else "no checkpoint had been written yet; "
                raise TrainingError(
                    f"the loss became non-finite (NaN or inf) in epoch {epoch} at or before step {step}; "
                    f"{kept}lower the learning rate, check the data, or pass on_nonfinite='skip' (--on-nonfinite skip)."
                )
            optimizer.zero_grad(set_to_none=True)
            loss = out.loss * weight if weight != 1.0 else out.loss
            self._backward(loss, out.group_losses, fit.groups, scaler)
            if self.max_grad_norm is not None:
                scaler.unscale_(optimizer)  # a no-op unless fp16 loss scaling is on, as are the scaler's other calls
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            for callback in callbacks:
                callback.on_step_end(loop)
            count = len(batch) if weight else 0  # samples this process trained on
            seen += count
            names = names or ["loss", *out.losses, *out.metrics]
            sums = sums + torch.stack([out.loss.detach(), *(v.detach() for v in (*out.losses.values(), *out.metrics.values()))]).float() * count
            bar.update(1)
        totals = team.sum(torch.cat([torch.tensor([float(seen)], device=device), torch.as_tensor(sums, device=device).reshape(-1)]))
        if not totals[0]:
            raise TrainingError(f"every batch of epoch {epoch} had a non-finite loss; check the data and the learning rate.")
        means = dict(zip(names, (totals[1:] / totals[0]).tolist()))
        if not math.isfinite(means["loss"]):
            raise TrainingError(f"the loss became non-finite (NaN or inf) in epoch {epoch}; lower the learning rate or check the data.")
        return means

    @staticmethod
    def _backward(loss: Tensor, group_losses: dict[str, Tensor], groups: dict[str, list[nn.Parameter]], scaler) -> None:
        """Gradients of the loss into the model's parameters and of each group's loss into that group's only."""
        if not group_losses:  # fp16: the scaler scales the loss so that small gradients survive; otherwise it passes it on
            scaler.scale(loss).backward()
            return
        parts = [(loss, groups["model"]), *((value, groups[name]) for name, value in group_losses.items())]
        for i, (value, params) in enumerate(parts):
            scaler.scale(value).backward(inputs=params, retain_graph=i < len(parts) - 1)

    def _evaluate(self, model: nn.Module, data: InMemory | OnDisk, team: Workers) -> dict[str, float]:
        """The loss terms on ``data`` in evaluation mode, each process taking its share, averaged over samples."""
        return mean_losses(model, data, team, lambda: self._autocast(next(model.parameters()).device))

    @staticmethod
    def _checkpoint(fit: "Fit", state: "RunState", improved: bool) -> None:
        """Write the epoch's files; the resume state goes last, as the commit point."""
        run, weights = fit.run, weights_bytes(fit.model)
        if improved:
            atomic_write(run / WEIGHTS, weights)
        atomic_write(run / LAST, weights)
        atomic_write(run / METRICS, state.history.to_csv())
        info = state.info(fit.scaler.get_scale() if fit.scaler.is_enabled() else None)
        save_state(run / RESUME, fit.model, fit.optimizer, fit.shuffle, info, fit.callbacks)


@torch.no_grad()
def mean_losses(model: nn.Module, data: InMemory | OnDisk, team: Workers = Workers(), autocast=contextlib.nullcontext, batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """The loss terms on ``data`` in evaluation mode, averaged over samples; each process takes its share."""
    was_training = model.training
    model.eval()
    mine = torch.tensor_split(torch.arange(len(data)), team.world)[team.rank]
    # A process without samples evaluates one with weight 0: the sums need every process.
    chunks = [(mine[i : i + batch_size], 1.0) for i in range(0, len(mine), batch_size)] or [(torch.arange(1), 0.0)]
    sums, names = 0, []
    for indices, weight in chunks:
        batch = data.batch(indices)
        with autocast():
            out = model(batch)
        terms = {"loss": out.loss, **out.losses, **out.metrics}
        names = list(terms)
        sums = sums + torch.stack([v.detach().float() for v in terms.values()]) * (len(batch) * weight)
    model.train(was_training)
    totals = team.sum(sums)
    return {name: value / len(data) for name, value in zip(names, totals.tolist())}


def evaluate_losses(model: nn.Module, x: Tensor, batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """The model's loss terms on ``x`` in evaluation mode, averaged over samples."""
    return mean_losses(model, InMemory(x), batch_size=batch_size)


def fit(model: nn.Module, data, *, val_data=None, out=None, resume: bool = False, callbacks: Sequence[Callback] = (), **settings: Any) -> History:
    """Train ``model`` on ``data``: ``Trainer(**settings).fit(model, data, ...)``.

    Parameters
    ----------
    model : nn.Module
        A model from :func:`aekit.get_model`.
    data : Dataset, Tensor or ndarray
        Training samples, shape ``(n, *input_shape)``.
    **settings
        Any :class:`Trainer` setting (each field there has its default and help text): ``epochs``,
        ``batch_size``, ``lr``, ``weight_decay``, ``optimizer``, ``schedule``, ``val_fraction``,
        ``patience``, ``restore_best``, ``pretrain_epochs``, ``prior_epochs``, ``binarize``, ``kl_warmup``,
        ``max_grad_norm``, ``ema``, ``on_nonfinite``, ``device``, ``precision``, ``threads`` (CPU threads: ``"auto"``
        or a number), ``compile``, ``seed``,
        ``progress``, ``log_to`` (experiment tracking: ``"tensorboard"``, ``"mlflow"``), ``tune_allocator``.

    Returns
    -------
    History
        Per-epoch metrics.
    """
    fields = {f.name for f in dataclasses.fields(Trainer)}
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise ConfigError(f"unknown training setting(s) {unknown}.{suggest(unknown[0], fields)} Settings: {', '.join(sorted(fields))}.")
    return Trainer(**settings).fit(model, data, val_data=val_data, out=out, resume=resume, callbacks=callbacks)
