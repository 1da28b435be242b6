"""Training: the one loop, its history and its resumable state (imported on first use: see aekit/_lazy.py)."""

from .._lazy import lazy_names

__all__ = ["History", "Trainer", "evaluate_losses", "fit", "resolve_device", "seed_everything"]
lazy_names(__name__, {"History": ".history", **dict.fromkeys(__all__[1:], ".trainer")})
