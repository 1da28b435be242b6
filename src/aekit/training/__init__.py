"""Training: the one loop, its history and its resumable state."""

from .history import History
from .trainer import Trainer, evaluate_losses, fit, resolve_device, seed_everything

__all__ = ["History", "Trainer", "evaluate_losses", "fit", "resolve_device", "seed_everything"]
