"""The Trainer's settings, declared once, and the names the command line offers, without importing PyTorch:
``aekit train`` makes its flags from these fields (``--batch-size`` for ``batch_size``), so that ``aekit --help``
starts at once.

:class:`aekit.Trainer` is these settings plus the training loop (``aekit/training/trainer.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .validation import Check, kind, number, one_of, optional, whole

#: The names of the choices the loop implements (``training/trainer.py`` keys its tables by them; a test keeps them equal).
OPTIMIZER_NAMES = ("adam", "adamw", "sgd")
SCHEDULE_NAMES = ("constant", "cosine")
PRECISION_NAMES = ("fp32", "bf16", "fp16")
TRACKERS = ("tensorboard", "mlflow")
#: The model options the command line offers by name (the registries in models/ and losses.py hold exactly these; a test keeps them equal).
ARCHITECTURE_NAMES = ("bow", "conv", "mlp")
ACTIVATION_NAMES = ("relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh", "softplus", "identity", "softmax")
LOSS_NAMES = ("mse", "l1", "bce", "bernoulli", "gaussian", "categorical", "multinomial")


def check_seed(seed: object) -> int:
    """``seed`` if it is an integer PyTorch and NumPy accept (0 to 2**63 - 1), else a :class:`ConfigError`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer from 0 to 2**63 - 1, got {seed!r}.")
    return seed


def check_threads(threads: object) -> int | str:
    """``"auto"`` or a positive number of threads (a numeric string, as the command line gives it, becomes the number)."""
    if isinstance(threads, str) and threads.strip().isdigit():
        threads = int(threads)
    if threads != "auto" and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be 'auto' or a positive number of CPU threads, got {threads!r}.")
    return threads


def device_check(name: str, value: Any) -> None:
    """A device: a name such as "cpu" or "cuda:0", or a ``torch.device`` (torch imported only to check one)."""
    if not isinstance(value, str):
        import torch

        kind((str, torch.device))(name, value)


def check_trackers(name: str, value: Any) -> None:
    """None, or tracker names separated by commas."""
    if value is None:
        return
    unknown = [v for v in str(value).split(",") if v.strip() not in TRACKERS] if isinstance(value, str) else [value]
    if unknown:
        raise ConfigError(f"{name} takes {' or '.join(TRACKERS)} (or both, comma-separated), got {value!r}.")


def setting(default: Any, help: str, check: Check | None = None, **cli: Any) -> Any:
    """A Trainer setting, declared once: its default, help text and check, from which the CLI makes its flag
    (``choices=`` become its choices and its check; ``cli=False``: no flag). Without a check, the value must
    have the default's type (true or false for a switch)."""
    if check is None:
        check = one_of(cli["choices"]) if "choices" in cli else kind(type(default))
    return dataclasses.field(default=default, metadata={"help": help, "check": check, **cli})


@dataclass
class TrainerSettings:
    """Every setting of :class:`aekit.Trainer`, with its default, help text and check."""

    epochs: int = setting(50, "passes over the training data (with --resume, a new total)", check=whole(1))
    batch_size: int = setting(128, "samples per optimiser step", check=whole(1))
    lr: float = setting(1e-3, "learning rate", check=number(0, low_open=True))
    weight_decay: float = setting(0.0, "L2 penalty of the optimiser", check=number(0))
    optimizer: str = setting("adam", "adam, adamw or sgd (momentum 0.9)", choices=OPTIMIZER_NAMES)
    schedule: str = setting("constant", "learning rate: constant, or cosine decay to 0 over all steps", choices=SCHEDULE_NAMES)
    val_fraction: float = setting(0.1, "share of the data held out for validation when no validation data is given", check=number(0, 1, high_open=True))
    patience: int | None = setting(None, "early stopping: stop after this many epochs without a better validation loss (default: never)", type=int, check=optional(whole(1)))
    restore_best: bool = setting(True, "end with the weights of the best epoch, not the last", cli=False)
    pretrain_epochs: int = setting(5, "greedy layer-wise pretraining epochs per stage, for models built from stages (stacked)", check=whole(0))
    prior_epochs: int = setting(10, "after training, epochs that fit a VQ-VAE's autoregressive prior on the training set's final codes (a cosine schedule from twice the batch-scaled learning rate)", check=whole(0))
    binarize: bool = setting(False, "dynamic binarisation: draw binary data ~ Bernoulli(x) afresh for every batch")
    kl_warmup: int = setting(0, "KL warm-up: a VAE's beta rises linearly from 0 to its value over this many epochs (Bowman et al. 2016)", check=whole(0))
    max_grad_norm: float | None = setting(None, "clip the gradients' total norm to this value before each step (default: no clipping)", type=float, check=optional(number(0, low_open=True)))
    ema: float | None = setting(None, "keep an exponential moving average of the weights with this decay, e.g. 0.999, and end with it (default: off)", type=float, check=optional(number(0, 1, low_open=True, high_open=True)))
    on_nonfinite: str = setting("stop", "a NaN/inf loss: stop with a clear error, or skip the batch and halve the learning rate", choices=("stop", "skip"))
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", check=device_check)
    precision: str = setting("fp32", "fp32, or mixed precision: bf16 (CPU or GPU), fp16 (GPU, with loss scaling)", choices=PRECISION_NAMES)
    threads: int | str = setting("auto", "CPU threads: auto (one for a tiny network, whose steps gain nothing from more; otherwise the cores no other process is running on, as threads stall when another process takes a core), or a number", type=str, check=lambda name, value: check_threads(value))
    compile: bool = setting(False, "train through torch.compile(model): slower start, faster steps")
    seed: int = setting(0, "seeds shuffling, the validation split, the weights and any noise a model draws", check=lambda name, value: check_seed(value))
    progress: bool | str = setting(True, "True: a progress bar on a terminal, one line per epoch otherwise; 'lines': always lines; False: silent", cli=False, check=one_of((True, False, "lines")))
    log_to: str | None = setting(None, "experiment tracking: tensorboard (event files in RUN/tensorboard), mlflow (MLflow's store: MLFLOW_TRACKING_URI, else ./mlruns), or tensorboard,mlflow; needs pip install 'aekit[tracking]' (default: none)", type=str, check=check_trackers)
    tune_allocator: bool = setting(True, "keep glibc's large buffers between steps instead of re-mapping them (training/allocator.py)", cli=False)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # each setting's check is declared beside it
            f.metadata["check"](f.name, getattr(self, f.name))
