"""Every file name of a run folder, in one place (as diffusers keeps its saved folder's names in one module).

A run folder holds what ``aekit train`` (or ``fit(..., out=RUN)``) wrote; the
README's table describes each file. Nothing else in aekit spells these names.
"""

from __future__ import annotations

COMMAND = "command.json"  # the command line that started the run, written first: a run killed before its settings restarts from it
CONFIG = "config.json"  # the model's registered name and constructor options: rebuilds the model
WEIGHTS = "model.safetensors"  # the best epoch's weights
LAST = "last.safetensors"  # the weights after the last finished epoch
RESUME = "resume.safetensors"  # weights, optimizer state, generators, epoch and history, for --resume
METRICS = "metrics.csv"  # one row per epoch: every loss term, scalar, learning rate, seconds
TRAINER = "trainer.json"  # the training settings
DATA = "data.json"  # how the run's data was loaded, so later commands can load it the same way
CALIBRATION = "calibration.json"  # anomaly scores of rows held out from training: the basis of saved thresholds
RECONSTRUCTIONS = "reconstructions.png"  # inputs above their reconstructions (images)
DOCUMENTS = "documents.json"  # documents: the training documents' paths, classes and openings, for search
DOCUMENT_CODES = "documents.npz"  # documents: their codes and bits (packed), the code mean and unit thresholds
RESULTS = "results"  # numbers (JSON) and pictures (PNG) of the application commands, for the report
TENSORBOARD = "tensorboard"  # with --log-to tensorboard: TensorBoard's event files
TRACKING = "tracking.json"  # with --log-to mlflow: the MLflow run's id, so a resumed run logs into it
LOCK = ".lock"  # held (flock) while a process trains into the folder
