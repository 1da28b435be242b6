"""Reduce to two dimensions and look: the code space beside PCA's projection of the inputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.manifold import TSNE, trustworthiness
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from ..data import Dataset
from ..errors import ConfigError, DataError
from .common import encode


MIN_SAMPLES = 6  # fewer, and neighbourhoods (trustworthiness, k-NN) mean nothing


@dataclass
class Embedding:
    """2-D maps of the same samples from the autoencoder's code and from PCA of the inputs."""

    autoencoder: np.ndarray  # (n, 2)
    pca: np.ndarray  # (n, 2)
    labels: np.ndarray | None
    trustworthiness: dict[str, float]  # per map: how well 2-D neighbourhoods respect input-space ones
    knn_accuracy: dict[str, float]  # per map: 5-fold k-NN accuracy on the labels (when there are labels)
    baseline: str = "PCA of the inputs"  # what the second map is (documents: LSA)

    def summary(self) -> dict[str, dict[str, float]]:
        return {"trustworthiness": self.trustworthiness, "knn_accuracy": self.knn_accuracy}


def to_2d(points: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Project ``points`` to 2-D with ``pca``, ``tsne`` or ``umap`` (points already 2-D are kept)."""
    if points.shape[1] <= 2:
        return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(points)
    if method == "tsne":  # perplexity below the number of points, as t-SNE requires
        return TSNE(2, random_state=seed, init="pca", perplexity=min(30.0, (len(points) - 1) / 3)).fit_transform(points)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ConfigError("method='umap' needs the umap-learn package (pip install umap-learn); or use 'pca' or 'tsne'.") from None
        return umap.UMAP(random_state=seed).fit_transform(points)
    raise ConfigError(f"unknown projection {method!r}; use 'pca', 'tsne' or 'umap'.")


def embed(model: nn.Module, data: Dataset, method: str = "pca", n_neighbors: int = 5, max_points: int = 3000, seed: int = 0) -> Embedding:
    """Encode ``data`` (at most ``max_points`` samples, drawn with ``seed``), map codes to 2-D, compare with PCA.

    Trustworthiness (Venna & Kaski 2001, scikit-learn) is computed against the
    raw inputs with ``n_neighbors``; the k-NN accuracy is a 5-fold
    cross-validated ``KNeighborsClassifier(n_neighbors)`` in each 2-D map.
    """
    if len(data) < MIN_SAMPLES:
        raise DataError(f"a 2-D map needs at least {MIN_SAMPLES} samples, and {data.name} [{data.split}] has {len(data)}; use --split all, or more data.")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(data), size=min(max_points, len(data)), replace=False))
    n_neighbors = min(n_neighbors, (len(keep) - 1) // 2)  # trustworthiness needs n_neighbors < n / 2
    x = data.x[keep]
    labels = data.y[keep].numpy() if data.y is not None else None
    if data.is_text:  # documents: their TF-IDF vectors (sparse) are the inputs, and PCA is LSA's truncated SVD
        from .documents import tfidf

        raw = tfidf(model, x)
        baseline = TruncatedSVD(2, random_state=seed).fit_transform(raw)
    else:
        raw = x.flatten(1).numpy()
        baseline = to_2d(raw, "pca", seed)
    maps = {"autoencoder": to_2d(encode(model, x), method, seed), "pca": baseline}
    trust = {name: float(trustworthiness(raw, points, n_neighbors=n_neighbors)) for name, points in maps.items()}
    knn = {}
    if labels is not None and len(np.unique(labels)) > 1:
        folds = min(5, int(np.bincount(labels).min()) if labels.min() >= 0 else 5)
        if folds >= 2:
            knn = {name: float(cross_val_score(KNeighborsClassifier(n_neighbors), points, labels, cv=folds).mean()) for name, points in maps.items()}
    return Embedding(maps["autoencoder"], maps["pca"], labels, trust, knn, "LSA (truncated SVD of TF-IDF)" if data.is_text else "PCA of the inputs")


def plot_embedding(embedding: Embedding, path, title: str = "", classes: list[str] | None = None):
    """Two scatter plots side by side, coloured by label: a legend of class names for up to 20 classes, a colour bar beyond."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    labels = embedding.labels
    few = labels is not None and len(np.unique(labels)) <= 20
    palette = plt.cm.tab10 if labels is not None and len(np.unique(labels)) <= 10 else plt.cm.tab20
    for ax, (name, points) in zip(axes, (("autoencoder code", embedding.autoencoder), (embedding.baseline, embedding.pca))):
        key = "autoencoder" if name.startswith("auto") else "pca"
        if few:
            for i, label in enumerate(np.unique(labels)):
                shown = classes[label] if classes is not None and 0 <= label < len(classes) else str(label)
                ax.scatter(*points[labels == label].T, s=4, alpha=0.8, color=palette(i), label=shown)
        else:
            colours = {"c": labels, "cmap": "viridis"} if labels is not None else {"c": "tab:blue"}
            scatter = ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.8, **colours)
        numbers = f"trustworthiness {embedding.trustworthiness[key]:.3f}"
        if key in embedding.knn_accuracy:
            numbers += f", k-NN accuracy {embedding.knn_accuracy[key]:.3f}"
        ax.set_title(f"{name}\n{numbers}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if few:
        axes[1].legend(loc="center left", bbox_to_anchor=(1.0, 0.5), markerscale=3, fontsize=8, frameon=False)
    elif labels is not None:
        fig.colorbar(scatter, ax=list(axes), shrink=0.8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
