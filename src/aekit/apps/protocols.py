"""The standard anomaly-detection protocols: MNIST one-class and the ODDS tabular sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split

from ..data import load_dataset
from ..data.dataset import Scaling
from ..registry import get_model
from ..training import Trainer, seed_everything
from .detect import anomaly_scores


@dataclass
class ProtocolResult:
    """Per-case ROC AUC (and AP), and their means."""

    roc_auc: dict[str, float] = field(default_factory=dict)
    average_precision: dict[str, float] = field(default_factory=dict)

    @property
    def mean_roc_auc(self) -> float:
        return float(np.mean(list(self.roc_auc.values())))


def mnist_one_class(
    digits=range(10), model: str = "ae", options: dict[str, Any] | None = None, trainer: Trainer | None = None, data_dir: str | Path | None = None, seed: int = 0
) -> ProtocolResult:
    """Train on one digit's training images only; score all 10,000 test images (that digit normal).

    The protocol of Ruff et al. (2018), *Deep One-Class Classification*.
    """
    train, test = load_dataset("mnist", "train", data_dir), load_dataset("mnist", "test", data_dir)
    trainer = trainer or Trainer(epochs=20, progress=False)
    result = ProtocolResult()
    for digit in digits:
        seed_everything(seed)
        net = get_model(model, input_shape=train.shape, **(options or {}))
        trainer.fit(net, train.x[train.y == digit])
        scores = anomaly_scores(net, test.x)
        anomalous = (test.y != digit).numpy()
        result.roc_auc[str(digit)] = float(roc_auc_score(anomalous, scores))
        result.average_precision[str(digit)] = float(average_precision_score(anomalous, scores))
    return result


def odds(
    name: str, seeds: int = 10, model: str = "ae", options: dict[str, Any] | None = None, trainer: Trainer | None = None, data_dir: str | Path | None = None
) -> ProtocolResult:
    """An ODDS set: stratified 60/40 split per seed, min-max scaling fit on the training part,
    the detector fit without labels, ROC AUC and AP on the test part (PyOD / ADBench protocol)."""
    raw = load_dataset(f"odds:{name}", split="all", data_dir=data_dir, scaling=None)
    x, y = raw.x.numpy(), raw.y.numpy()
    trainer = trainer or Trainer(epochs=50, progress=False, val_fraction=0.0)
    result = ProtocolResult()
    for seed in range(seeds):
        train_idx, test_idx = train_test_split(np.arange(len(x)), test_size=0.4, stratify=y, random_state=seed)
        scaling = Scaling.fit(x[train_idx])
        x_train, x_test = (torch.from_numpy(scaling.apply(x[i])) for i in (train_idx, test_idx))
        seed_everything(seed)
        net = get_model(model, input_shape=raw.shape, **{"output_activation": "identity", **(options or {})})
        Trainer(**{**trainer.__dict__, "seed": seed}).fit(net, x_train)
        scores = anomaly_scores(net, x_test)
        result.roc_auc[str(seed)] = float(roc_auc_score(y[test_idx], scores))
        result.average_precision[str(seed)] = float(average_precision_score(y[test_idx], scores))
    return result
