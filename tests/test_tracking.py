"""Experiment tracking: TensorBoard event files and MLflow runs, read back with their own readers."""

from __future__ import annotations

import csv

import pytest
import torch

import aekit
from aekit.cli import main
from aekit.errors import ConfigError


def metrics(run) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_tensorboard_holds_every_metrics_column_per_epoch_and_the_picture(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--hidden", "16", "--code-size", "4", "--log-to", "tensorboard", "--out", str(run), "--quiet"]) == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = metrics(run)
    columns = [c for c in rows[0] if c != "epoch"]
    assert sorted(events.Tags()["scalars"]) == sorted(columns)  # train/val losses and terms, lr, seconds
    for column in columns:
        logged = events.Scalars(column)
        assert [e.step for e in logged] == [1, 2, 3]
        assert [e.value for e in logged] == pytest.approx([float(r[column]) for r in rows], rel=1e-6)
    assert events.Tags()["images"] == ["reconstructions"]


@pytest.mark.slow  # MLflow's store takes seconds to set up
def test_mlflow_run_holds_params_metrics_and_the_run_folder_and_a_resume_continues_it(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--hidden", "16", "--code-size", "4", "--log-to", "mlflow", "--out", str(run), "--quiet"]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    client = MlflowClient()
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(found) == 1  # the resumed run went on in the same MLflow run
    logged = found[0]
    history = client.get_metric_history(logged.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == pytest.approx([float(r["train_loss"]) for r in metrics(run)])
    assert logged.data.params["trainer.epochs"] == "2" and logged.data.params["model.code_size"] == "4"
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id)}
    assert {"model.safetensors", "config.json", "metrics.csv"} <= artifacts and ".lock" not in artifacts
    assert logged.info.status == "FINISHED"


def test_tracking_needs_a_run_folder_and_a_known_tracker():
    with pytest.raises(ConfigError, match="tensorboard or mlflow"):
        aekit.Trainer(log_to="wandb")
    with pytest.raises(ConfigError, match="give the run a folder"):
        aekit.fit(aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(3,)), torch.rand(20, 4), epochs=1, log_to="tensorboard", progress=False)
