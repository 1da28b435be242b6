"""Anomaly detection: samples a model reconstructs badly (or finds unlikely) are anomalies."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from ..training.threads import threads_for_model
from .common import BATCH, batched, device_of


def as_rows(x: Any, name: str = "X") -> Tensor:
    """Samples as a float32 tensor, from a tensor of any float dtype, a NumPy array or a pandas DataFrame."""
    if isinstance(x, Tensor):
        if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
            raise DataError(f"{name} must hold numbers, got a tensor of {x.dtype}.")
        return x.detach().to(torch.float32)
    if hasattr(x, "dtypes") and hasattr(x, "columns"):  # a pandas DataFrame: name the column that is not numeric
        bad = [str(c) for c, kind in zip(x.columns, x.dtypes) if getattr(kind, "kind", "O") not in "biuf"]
        if bad:
            raise DataError(f"{name} has non-numeric column(s) {bad}; drop them, or pass them as ids (--id-column / --ignore-columns).")
    array = np.asarray(x)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold numbers, got an array of {array.dtype}.")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


SCORE_BATCH = 256  # deterministic scores are computed in batches of exactly this many rows: a row's score never depends on the others


def score_batch(model: nn.Module) -> int:
    """Rows per scoring batch: :data:`SCORE_BATCH`, fewer for large samples (photographs: 16 of 256 x 256), so
    that a batch padded to this size costs no more than about a million input values."""
    return max(1, min(SCORE_BATCH, 2**20 // max(1, getattr(model, "n_features", 1))))


def anomaly_scores(model: nn.Module, x: Any, seed: int = 0) -> np.ndarray:
    """One score per sample, higher = more anomalous: the model's :meth:`anomaly_score`.

    The one scoring path of the command line, the applications and the
    scikit-learn detector. The reconstruction loss the model was trained with
    (squared error for ``mse``); for a VAE, minus the ELBO in nats (10 draws,
    seeded by ``seed``); for the ``ensemble``, reconstruction error and code
    density together. ``x``: a tensor of any float dtype, a NumPy array or a
    pandas DataFrame of raw samples (a model with ``input_scaling`` scales them).
    """
    model.eval()
    device = device_of(model)
    rows = as_rows(x)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # a VAE's score is sampled: seeded, it is the same on every call
        # A sampled score (a VAE's) keeps unpadded batches: padding would move every row's noise, and with it
        # the scores of runs saved by earlier versions.
        padded = not getattr(model, "sampled_score", False)
        batch = score_batch(model) if padded else BATCH
        with threads_for_model(model, batch, device):
            return batched(lambda b: model.anomaly_score(b.to(device)).cpu(), rows, batch, padded=padded).double().numpy()


def feature_contributions(model: nn.Module, x: Any) -> np.ndarray:
    """Each feature's share of each sample's reconstruction error: ``(n, *input_shape)``, rows summing to 1.

    For images, a per-pixel error map. Shares come from the squared error of
    every feature in the model's (scaled) space.
    """
    model.eval()
    device = device_of(model)
    errors = batched(lambda b: model.feature_errors(b.to(device)).cpu(), as_rows(x)).double()
    totals = errors.flatten(1).sum(1).clamp_min(1e-300)
    return (errors / totals.view(-1, *[1] * (errors.dim() - 1))).numpy()


def conformal_pvalues(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(1 + #{calibration scores >= s}) / (n + 1)`` for every score ``s`` (higher score = more anomalous).

    The marginal conformal p-value of Bates et al. (2023), *Testing for
    outliers with conformal p-values*, eq. 2: for a sample exchangeable with
    the ``n`` calibration samples (normal data the model never trained on),
    ``P(p <= alpha) <= alpha``, so flagging ``p <= alpha`` keeps false alarms
    at or below ``alpha``.
    """
    ordered = np.sort(np.asarray(calibration, dtype=np.float64))
    at_or_above = len(ordered) - np.searchsorted(ordered, np.asarray(scores, dtype=np.float64), side="left")
    return (1.0 + at_or_above) / (len(ordered) + 1.0)


def conformal_threshold(calibration: np.ndarray, false_alarm_rate: float) -> float:
    """The score above which :func:`conformal_pvalues` is at most ``false_alarm_rate`` (inf if no score can be)."""
    check_rate(false_alarm_rate)
    ordered = np.sort(np.asarray(calibration, dtype=np.float64))[::-1]
    allowed = math.floor(false_alarm_rate * (len(ordered) + 1)) - 1  # calibration scores a flagged sample may stay under
    return float(ordered[allowed]) if 0 <= allowed < len(ordered) else (math.inf if allowed < 0 else -math.inf)


def check_rate(false_alarm_rate: float) -> float:
    if isinstance(false_alarm_rate, bool) or not isinstance(false_alarm_rate, (int, float)) or not 0 < false_alarm_rate < 1:
        raise ConfigError(f"false_alarm_rate must be a share in (0, 1), e.g. 0.05, got {false_alarm_rate!r}.")
    return float(false_alarm_rate)


@dataclass
class Detection:
    """Scores, the threshold, predictions and, with labels, ROC AUC and average precision."""

    scores: np.ndarray  # (n,), higher = more anomalous
    threshold: float
    predictions: np.ndarray  # (n,), 1 = anomaly
    roc_auc: float | None = None
    average_precision: float | None = None
    pvalues: np.ndarray | None = None  # (n,), conformal p-values, when calibration scores were given
    rule: str = ""  # how the threshold was set, in words

    def summary(self) -> dict[str, float | int | str | None]:
        return {
            "samples": len(self.scores),
            "threshold": self.threshold,
            "rule": self.rule,
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
    x: Any,
    anomalous: np.ndarray | None = None,
    *,
    calibration: np.ndarray | None = None,
    false_alarm_rate: float = 0.05,
    reference: Any = None,
    contamination: float | None = None,
    percentile: float | None = None,
    scores: np.ndarray | None = None,
) -> Detection:
    """Score ``x``, flag samples above a threshold, and evaluate against ``anomalous`` labels.

    Parameters
    ----------
    model : a fitted aekit model
    x : Tensor, ndarray or DataFrame, (n, *input_shape)
    anomalous : bool or 0/1 array of shape (n,), optional
        True for anomalies; gives ROC AUC and average precision.
    calibration : array, optional
        Scores of normal samples the model did not train on (a run's
        calibration split): a sample is flagged when its conformal p-value is
        at most ``false_alarm_rate`` (:func:`conformal_pvalues`).
    reference, contamination, percentile :
        Instead, flag scores above the ``1 - contamination`` quantile (or the
        ``percentile``-th percentile) of the scores of ``reference`` (``x``
        itself when not given). Without calibration scores, ``contamination``
        defaults to 0.1.
    scores : array of shape (n,), optional
        The model's scores of ``x`` when already computed (:func:`anomaly_scores`, or read from the model's
        anomaly maps), so that the network does not run twice.
    """
    if scores is None:
        scores = anomaly_scores(model, x)
    elif len(scores) != len(x):
        raise DataError(f"{len(scores)} scores for {len(x)} samples.")
    pvalues = None if calibration is None else conformal_pvalues(calibration, scores)
    if contamination is None and percentile is None and calibration is not None:
        threshold = conformal_threshold(calibration, false_alarm_rate)
        rule = f"conformal p-value <= {false_alarm_rate:g} against {len(calibration)} calibration scores"
    else:
        if contamination is None and percentile is None:
            contamination = 0.1
        reference_scores = scores if reference is None else anomaly_scores(model, reference)
        threshold = threshold_from(reference_scores, contamination, percentile)
        cut = f"{1 - contamination:.0%} quantile" if contamination is not None else f"{percentile:g}th percentile"
        rule = f"score above the {cut} of the {'reference' if reference is not None else 'scored'} samples"
    result = Detection(scores, threshold, (scores > threshold).astype(np.int64), pvalues=pvalues, rule=rule)
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
    scores = detection.scores
    skewed = scores.min() > 0 and scores.max() > 20 * np.median(scores)  # a long right tail: log-spaced bins
    bins = np.geomspace(scores.min(), scores.max(), 61) if skewed else np.histogram_bin_edges(scores, bins=60)
    if skewed:
        ax.set_xscale("log")
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
