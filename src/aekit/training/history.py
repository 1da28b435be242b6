"""The per-epoch record of a training run."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """What :func:`aekit.fit` returns: one dictionary of metrics per epoch.

    Attributes
    ----------
    records : list of dict
        ``epoch``, ``train_loss``, ``train_<term>`` for each loss term,
        ``val_loss`` and ``val_<term>`` when there is validation data, ``lr``, ``seconds``.
    best_epoch : int
        The epoch (1-based) with the lowest validation loss (training loss without validation).
    stopped_early : bool
        True when early stopping ended the run before its last epoch.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.records[index]

    def column(self, name: str) -> list[float]:
        """One metric over the epochs, e.g. ``history.column("val_loss")``."""
        return [r[name] for r in self.records]

    def to_csv(self) -> str:
        keys: list[str] = []
        for record in self.records:
            keys += [k for k in record if k not in keys]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.records)
        return out.getvalue()
