"""Applications: each takes a fitted model (they are not methods on models)."""

from .denoise import Denoising, denoise
from .detect import Detection, anomaly_scores, conformal_pvalues, conformal_threshold, detect, feature_contributions, threshold_from
from .embed import Embedding, embed
from .generate import interpolate, log_likelihood, sample, traversal
from .probe import probe
from .protocols import ProtocolResult, mnist_one_class, odds
from .report import write_report
from .retrieve import CodeIndex, precision_at_k

__all__ = [
    "CodeIndex",
    "Denoising",
    "Detection",
    "Embedding",
    "ProtocolResult",
    "anomaly_scores",
    "conformal_pvalues",
    "conformal_threshold",
    "denoise",
    "detect",
    "embed",
    "feature_contributions",
    "interpolate",
    "log_likelihood",
    "mnist_one_class",
    "odds",
    "precision_at_k",
    "probe",
    "sample",
    "threshold_from",
    "traversal",
    "write_report",
]
