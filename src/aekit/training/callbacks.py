"""Hooks into the one training loop: schedules, weight averaging, extra metrics.

A :class:`Callback` overrides the events it needs; each receives the
:class:`Loop`, which exposes the model, the optimiser and where training is.
Callbacks never call ``backward()`` or step the optimiser: the loop does.
KL warm-up is a :class:`Schedule` of the model's named scalar ``beta``::

    class Warmup(aekit.Schedule):            # beta rises from 0 over 10 epochs
        def __init__(self):
            super().__init__("beta", lambda epochs, beta: beta * min(1.0, epochs / 10))

    aekit.fit(model, x, callbacks=[Warmup()])

which is what ``Trainer(kl_warmup=10)`` (``aekit train --kl-warmup 10``) does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError


@dataclass
class Loop:
    """Where training stands, as callbacks see it.

    Attributes
    ----------
    model : nn.Module
        The model being trained (not a distributed or compiled wrapper).
    optimizer : torch.optim.Optimizer
        Its optimiser (one parameter group per model parameter group).
    epoch : int
        The current epoch, from 1.
    step : int
        The step within the epoch, from 1 (0 before the first).
    steps_per_epoch : int
        Steps in one epoch.
    epochs : int
        Epochs of the whole run.
    inspect : callable
        ``inspect()`` -> a batch of at most 1024 samples to compute metrics
        on: validation samples when there are any, else training samples.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    epochs: int
    steps_per_epoch: int
    inspect: Callable[[], Tensor]
    epoch: int = 0
    step: int = 0
    error: BaseException | None = None  # what stopped training, when it raised (for on_fit_end)

    @property
    def progress(self) -> float:
        """Epochs done, as a fraction: 0 at the start, 1.5 halfway through the second epoch."""
        return self.epoch - 1 + self.step / self.steps_per_epoch


class Callback:
    """Events of the training loop; override the ones you need.

    ``on_epoch_end`` may add numbers to ``record``: they are logged with the
    epoch (in metrics.csv). A callback with state that a resumed run needs
    returns it as tensors from :meth:`state_dict`.
    """

    def on_fit_start(self, loop: Loop) -> None:
        """Before the first epoch (of a fresh or a resumed run)."""

    def on_epoch_start(self, loop: Loop) -> None:
        """Before an epoch's first step."""

    def on_step_start(self, loop: Loop) -> None:
        """Before a step's forward pass."""

    def on_step_end(self, loop: Loop) -> None:
        """After a step's optimiser update."""

    def on_train_epoch_end(self, loop: Loop) -> None:
        """After an epoch's last step, before the validation losses are computed."""

    def on_epoch_end(self, loop: Loop, record: dict[str, Any]) -> None:
        """After validation, before the epoch is logged and checkpointed; may add to ``record``."""

    def on_fit_end(self, loop: Loop) -> None:
        """After the last epoch, or when training stops with an exception (``loop.error``): restore what the callback set."""

    def on_run_end(self, loop: Loop, run: Path) -> None:
        """After a finished run's last files (best weights, pictures) are written into its folder ``run``."""

    @property
    def state_key(self) -> str:
        """The name its state is saved under in a resume file (its class name; a schedule adds its scalar's)."""
        return type(self).__name__

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` returned (when a run is resumed)."""


class Schedule(Callback):
    """Set the model's named scalar ``name`` (one of ``model.scalars``) before every step.

    ``value(epochs, target)`` gets the epochs done (a float) and the scalar's
    own value, and returns the value to train with. Validation sees the own
    value, so that validation losses of all epochs measure one objective and
    the best epoch is chosen fairly; the scheduled value of the epoch's last
    step is logged under ``name``.
    """

    def __init__(self, name: str, value: Callable[[float, float], float]) -> None:
        self.name, self.value = name, value
        self.target: float | None = None
        self.last: float | None = None

    def on_fit_start(self, loop: Loop) -> None:
        if self.name not in getattr(loop.model, "scalars", ()):
            name = getattr(loop.model, "model_name", type(loop.model).__name__)
            raise ConfigError(f"model {name!r} has no scalar {self.name!r} to schedule (its scalars: {', '.join(getattr(loop.model, 'scalars', ())) or 'none'}); a KL warm-up needs a VAE.")
        self.target = float(getattr(loop.model, self.name))

    def on_step_start(self, loop: Loop) -> None:
        self.last = float(self.value(loop.progress, self.target))
        setattr(loop.model, self.name, self.last)

    def on_train_epoch_end(self, loop: Loop) -> None:
        setattr(loop.model, self.name, self.target)

    def on_epoch_end(self, loop: Loop, record: dict[str, Any]) -> None:
        if self.last is not None:
            record[self.name] = self.last

    def on_fit_end(self, loop: Loop) -> None:
        if self.target is not None:
            setattr(loop.model, self.name, self.target)

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class LearningRateSchedule(Callback):
    """Every parameter group's learning rate: its base rate times ``factor(progress)``, progress in [0, 1) over all steps."""

    def __init__(self, factor: Callable[[float], float]) -> None:
        self.factor = factor

    def on_step_start(self, loop: Loop) -> None:
        done = ((loop.epoch - 1) * loop.steps_per_epoch + loop.step - 1) / (loop.epochs * loop.steps_per_epoch)
        for group in loop.optimizer.param_groups:
            group["lr"] = group["base_lr"] * self.factor(done)


class KLWarmup(Schedule):
    """``beta`` rises linearly from 0 to its value over ``epochs`` epochs, step by step (Bowman et al. 2016)."""

    def __init__(self, epochs: int) -> None:
        super().__init__("beta", lambda done, beta: beta * min(1.0, done / epochs))


class WeightAverage(Callback):
    """An exponential moving average of the weights: ``avg <- decay * avg + (1 - decay) * w`` after every step.

    Validation, the best and last checkpoints and the trained model use the
    averaged weights; training continues from the raw ones (swapped back at
    the next epoch's start). Buffers (running statistics) are copied, not averaged.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.average: dict[str, Tensor] = {}
        self.raw: dict[str, Tensor] = {}  # the training weights while the average is swapped in

    def _parameters(self, model: nn.Module) -> dict[str, Tensor]:
        return {name: p for name, p in model.named_parameters()}

    def on_fit_start(self, loop: Loop) -> None:
        if not self.average:
            self.average = {k: v.detach().clone() for k, v in self._parameters(loop.model).items()}

    def on_epoch_start(self, loop: Loop) -> None:
        if self.raw:  # the model holds the average since the last epoch's end
            with torch.no_grad():
                for name, p in self._parameters(loop.model).items():
                    self.average[name].copy_(p)
                    p.copy_(self.raw[name])
            self.raw = {}

    @torch.no_grad()
    def on_step_end(self, loop: Loop) -> None:
        averages = [self.average[k] for k in self._parameters(loop.model)]
        torch._foreach_lerp_(averages, [p.detach() for p in self._parameters(loop.model).values()], 1.0 - self.decay)

    @torch.no_grad()
    def on_train_epoch_end(self, loop: Loop) -> None:
        self.raw = {}
        for name, p in self._parameters(loop.model).items():
            self.raw[name] = p.detach().clone()
            p.copy_(self.average[name])

    def state_dict(self) -> dict[str, Tensor]:
        return {f"raw.{k}": v for k, v in self.raw.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        # the checkpoint was written with the average swapped in: the model holds it, the state the raw weights
        self.raw = {k.removeprefix("raw."): v for k, v in state.items()}
        self.average = {}


ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(means: Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Units ``u`` with ``Cov_x(E_q[z_u | x]) > threshold`` (Burda et al. 2016, section 5.2), from posterior means ``(n, units)``."""
    return int((means.flatten(1).double().var(0, correction=1) > threshold).sum())


class ActiveUnits(Callback):
    """Log ``active_units`` every epoch for a model with a posterior (``model.posterior(x).mean``)."""

    @torch.no_grad()
    def on_epoch_end(self, loop: Loop, record: dict[str, Any]) -> None:
        x = loop.inspect()
        if len(x) < 2:
            return
        was_training = loop.model.training
        loop.model.eval()
        record["active_units"] = active_units(loop.model.posterior(x).mean)
        loop.model.train(was_training)


def check_decay(decay: Any) -> None:
    if decay is not None and not (isinstance(decay, (int, float)) and not isinstance(decay, bool) and 0 < decay < 1 and math.isfinite(decay)):
        raise ConfigError(f"ema is the weight average's decay, in (0, 1) (e.g. 0.999), got {decay!r}.")
