"""Experiment tracking as callbacks of the one loop: TensorBoard event files and MLflow runs.

``Trainer(log_to="tensorboard")`` (``aekit train --log-to tensorboard``) writes
every column of ``metrics.csv`` per epoch, and the reconstruction picture, to
``RUN/tensorboard/``; ``log_to="mlflow"`` logs the settings and the model's
options as parameters, the same metrics per epoch, and the finished run
folder as artifacts, to MLflow's tracking store (``MLFLOW_TRACKING_URI``, else
``./mlruns``). A resumed run continues its MLflow run. Both packages come with
the ``tracking`` extra (``pip install 'aekit[tracking]'``).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..runfiles import LOCK, RECONSTRUCTIONS, TENSORBOARD, TRACKING
from .callbacks import Callback, Loop

def trackers(names: str | None, run: Path | None, settings: dict[str, Any], options: dict[str, Any]) -> list[Callback]:
    """The tracking callbacks ``names`` asks for (``"tensorboard"``, ``"mlflow"``, or both comma-separated)."""
    chosen = [name.strip() for name in (names or "").split(",") if name.strip()]
    if chosen and run is None:
        raise ConfigError("experiment tracking writes beside the run's files: give the run a folder (out=RUN, or aekit train --out RUN).")
    made: list[Callback] = []
    for name in chosen:
        if name == "tensorboard":
            made.append(TensorBoardLogger(run))
        elif name == "mlflow":
            made.append(MLflowLogger(run, settings, options))
    return made


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    """The record's finite numbers (the epoch number is the step, not a metric)."""
    return {k: float(v) for k, v in record.items() if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _missing(package: str) -> ConfigError:
    return ConfigError(f"--log-to {package} needs the {package} package: pip install 'aekit[tracking]'.")


class TensorBoardLogger(Callback):
    """Every number of an epoch's record as a TensorBoard scalar (step = epoch), and the run's reconstruction
    picture as an image, in event files under ``RUN/tensorboard``."""

    def __init__(self, run: Path) -> None:
        self.folder = Path(run) / TENSORBOARD
        self.writer = None

    def _open(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        return SummaryWriter(str(self.folder))

    def on_fit_start(self, loop: Loop) -> None:
        self.writer = self._open()

    def on_epoch_end(self, loop: Loop, record: dict[str, Any]) -> None:
        for key, value in _numbers(record).items():
            self.writer.add_scalar(key, value, loop.epoch)
        self.writer.flush()

    def on_fit_end(self, loop: Loop) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_run_end(self, loop: Loop, run: Path) -> None:
        picture = run / RECONSTRUCTIONS
        if picture.is_file():
            from PIL import Image

            writer = self._open()
            with Image.open(picture) as image:
                writer.add_image("reconstructions", np.asarray(image.convert("RGB")), loop.epoch, dataformats="HWC")
            writer.close()


class MLflowLogger(Callback):
    """An MLflow run per training run: the settings and model options as parameters, each epoch's numbers as
    metrics (step = epoch), the finished run folder as artifacts. Its id is kept in ``RUN/tracking.json`` so
    that a resumed run goes on logging into the same MLflow run."""

    def __init__(self, run: Path, settings: dict[str, Any], options: dict[str, Any]) -> None:
        self.run, self.settings, self.options = Path(run), settings, options
        self.active = None

    @staticmethod
    def _mlflow():
        try:
            import mlflow
        except ImportError:
            raise _missing("mlflow") from None
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its notes on creating its store's tables
        return mlflow

    def _saved_id(self) -> str | None:
        try:
            saved = json.loads((self.run / TRACKING).read_text())
        except (OSError, ValueError):
            return None
        return saved.get("mlflow_run_id") if isinstance(saved, dict) and isinstance(saved.get("mlflow_run_id"), str) else None

    def on_fit_start(self, loop: Loop) -> None:
        from ..checkpoint import atomic_write

        mlflow = self._mlflow()
        previous = self._saved_id()
        if previous is not None:
            self.active = mlflow.start_run(run_id=previous)
            return
        self.active = mlflow.start_run(run_name=self.run.name)
        params = {**{f"trainer.{k}": v for k, v in self.settings.items()}, **{f"model.{k}": v for k, v in self.options.items() if k != "vocabulary"}}
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        atomic_write(self.run / TRACKING, json.dumps({"mlflow_run_id": self.active.info.run_id}))

    def on_epoch_end(self, loop: Loop, record: dict[str, Any]) -> None:
        self._mlflow().log_metrics(_numbers(record), step=loop.epoch)

    def on_fit_end(self, loop: Loop) -> None:
        if self.active is not None and loop.error is not None:  # a failed or interrupted run ends as such
            self._mlflow().end_run(status="KILLED" if isinstance(loop.error, KeyboardInterrupt) else "FAILED")
            self.active = None

    def on_run_end(self, loop: Loop, run: Path) -> None:
        if self.active is not None:
            mlflow = self._mlflow()
            for path in sorted(run.iterdir()):  # the run folder, less its lock
                if path.name != LOCK:
                    (mlflow.log_artifacts(str(path), path.name) if path.is_dir() else mlflow.log_artifact(str(path)))
            mlflow.end_run()
            self.active = None
