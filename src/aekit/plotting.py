"""Pictures of what a model does. Every figure is written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from .checkpoint import atomic_write  # noqa: E402


def as_image(sample: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` or ``(H, W)`` -> something ``imshow`` shows (H, W) or (H, W, 3)."""
    if sample.ndim == 3:
        return sample[0] if sample.shape[0] == 1 else np.clip(sample.transpose(1, 2, 0), 0, 1)
    return sample


def image_grid(
    rows: list[tuple[str, np.ndarray]], path: str | Path, title: str | None = None,
    column_titles: list[str] | None = None, frame_first: bool = False,
) -> Path:
    """Save a grid: one row per ``(label, images)``, images of shape ``(n, C, H, W)`` in [0, 1].

    ``column_titles`` name the columns above the first row; ``frame_first`` sets the first column
    apart with a coloured frame and a gap (a search's query before its hits).
    """
    n = max(len(images) for _, images in rows)
    widths = [1.0, 0.15, *[1.0] * (n - 1)] if frame_first and n > 1 else [1.0] * n
    fig, grid = plt.subplots(len(rows), len(widths), figsize=(1.2 * sum(widths), 1.3 * len(rows)), squeeze=False, gridspec_kw={"width_ratios": widths})
    axes = [[row[0], *row[2:]] if len(widths) > n else list(row) for row in grid]
    for row in grid:
        if len(widths) > n:
            row[1].axis("off")  # the gap between the query and its hits
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(frame_first and c == 0)
                spine.set_color("tab:orange")
                spine.set_linewidth(3)
            if c < len(images):
                ax.imshow(as_image(images[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if r == 0 and column_titles and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=9)
        axes[r][0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG, atomically, and close it."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


@torch.no_grad()
def reconstruction_grid(model: nn.Module, x: Tensor, path: str | Path) -> Path:
    """Originals (top row) above their reconstructions (bottom row), for image models."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x_hat = model(x.to(device)).x_hat
    model.train(was_training)
    shape = model.input_shape
    originals = x.reshape(-1, *shape).cpu().numpy()
    return image_grid([("input", originals), ("output", x_hat.reshape(-1, *shape).cpu().numpy())], path)
