"""Anomaly detection: samples a model reconstructs badly (or finds unlikely) are anomalies."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from .common import batched, device_of


def anomaly_scores(model: nn.Module, x: Tensor, samples: int = 10, seed: int = 0) -> np.ndarray:
    """One score per sample, higher = more anomalous.

    The reconstruction loss the model was trained with (squared error for
    ``mse``), or, for a VAE, the negative ELBO in nats (``samples`` draws, seeded).
    """
    model.eval()
    device = device_of(model)
    if hasattr(model, "elbo"):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return batched(lambda b: -model.elbo(b.to(device), samples=samples).cpu(), x).double().numpy()

    def error(b: Tensor) -> Tensor:
        b = model.as_batch(b.to(device))
        return model.reconstruction_nll(model.decode_logits(model.encode(b)), b).cpu()

    return batched(error, x).double().numpy()


@dataclass
class Detection:
    """Scores, the threshold, predictions and, with labels, ROC AUC and average precision."""

    scores: np.ndarray  # (n,), higher = more anomalous
    threshold: float
    predictions: np.ndarray  # (n,), 1 = anomaly
    roc_auc: float | None = None
    average_precision: float | None = None

    def summary(self) -> dict[str, float | int | None]:
        return {
            "samples": len(self.scores),
            "threshold": self.threshold,
            "flagged": int(self.predictions.sum()),
            "roc_auc": self.roc_auc,
            "average_precision": self.average_precision,
        }


def threshold_from(reference: np.ndarray, contamination: float | None = None, percentile: float | None = None) -> float:
    """The score above which a sample is flagged: the ``1 - contamination`` quantile (or ``percentile``) of ``reference``."""
    if (contamination is None) == (percentile is None):
        raise ConfigError("give exactly one of contamination (a share in (0, 0.5]) or percentile (in [0, 100]).")
    if contamination is not None and not 0 < contamination <= 0.5:
        raise ConfigError(f"contamination must be in (0, 0.5], got {contamination}.")
    if percentile is not None and not 0 <= percentile <= 100:
        raise ConfigError(f"percentile must be in [0, 100], got {percentile}.")
    q = 100 * (1 - contamination) if contamination is not None else percentile
    return float(np.percentile(reference, q))


def detect(
    model: nn.Module,
    x: Tensor,
    anomalous: np.ndarray | None = None,
    reference: Tensor | None = None,
    contamination: float | None = 0.1,
    percentile: float | None = None,
) -> Detection:
    """Score ``x``, flag samples above a threshold, and evaluate against ``anomalous`` labels.

    Parameters
    ----------
    model : a fitted aekit model
    x : Tensor, (n, *input_shape)
    anomalous : bool or 0/1 array of shape (n,), optional
        True for anomalies; gives ROC AUC and average precision.
    reference : Tensor, optional
        Data whose scores set the threshold (usually the training data); ``x`` itself by default.
    contamination, percentile :
        The threshold is the ``1 - contamination`` quantile, or the ``percentile``-th percentile,
        of the reference scores (pass ``contamination=None`` to use ``percentile``).
    """
    scores = anomaly_scores(model, x)
    reference_scores = scores if reference is None else anomaly_scores(model, reference)
    threshold = threshold_from(reference_scores, contamination, percentile)
    result = Detection(scores, threshold, (scores > threshold).astype(np.int64))
    if anomalous is not None:
        truth = np.asarray(anomalous).astype(bool)
        if truth.shape != scores.shape:
            raise DataError(f"{len(truth)} labels for {len(scores)} samples.")
        if truth.all() or not truth.any():
            raise DataError("ROC AUC needs both normal and anomalous samples among the labels.")
        result.roc_auc = float(roc_auc_score(truth, scores))
        result.average_precision = float(average_precision_score(truth, scores))
    return result


def plot_score_histogram(detection: Detection, anomalous: np.ndarray | None, path, title: str = "anomaly scores"):
    """Histogram of scores, normal and anomalous samples apart, with the threshold."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.histogram_bin_edges(detection.scores, bins=60)
    if anomalous is None:
        ax.hist(detection.scores, bins=bins, color="tab:blue", alpha=0.8, label="all")
    else:
        truth = np.asarray(anomalous).astype(bool)
        ax.hist(detection.scores[~truth], bins=bins, alpha=0.6, label="normal", color="tab:blue")
        ax.hist(detection.scores[truth], bins=bins, alpha=0.6, label="anomalous", color="tab:red")
    ax.axvline(detection.threshold, color="black", linestyle="--", label="threshold")
    ax.set_xlabel("anomaly score (higher = more anomalous)")
    ax.set_ylabel("samples")
    ax.set_title(title + (f"  ROC AUC {detection.roc_auc:.3f}" if detection.roc_auc is not None else ""))
    ax.legend()
    return save_figure(fig, path)
