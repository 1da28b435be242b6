"""Anomaly maps: where in an image the anomaly is, pixel by pixel, measured against hand-drawn defect masks.

- :func:`anomaly_maps` — per-pixel anomaly maps ``(n, H, W)`` in the images' own pixel grid;
- :func:`find_masks` — the defect masks of a test folder, in the MVTec AD layout or beside the images;
- :func:`pixel_roc_auc` and :func:`pro` — the pixel-level ROC AUC and the per-region overlap (Bergmann et al.);
- :func:`write_overlays` — every image with its map laid over it and the outline of what was flagged.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.files import MASK_FORMATS, MASK_SUFFIXES
from ..errors import DataError
from .common import batched, device_of
from .detect import as_rows


def pixel_map(model: nn.Module, x: Tensor) -> Tensor:
    """A batch's anomaly maps ``(batch, h, w)`` at the model's input size: the model's own :meth:`anomaly_map`,
    else the squared reconstruction error summed over the channels."""
    if hasattr(model, "anomaly_map"):
        return model.anomaly_map(x)
    return model.feature_errors(x).sum(1)


def anomaly_maps(model: nn.Module, images: Any, sizes: Sequence[tuple[int, int]] | None = None) -> np.ndarray | list[np.ndarray]:
    """Per-pixel anomaly maps, higher = more anomalous, in the images' own pixel grid.

    Parameters
    ----------
    model : a fitted aekit model of images (``draem``'s map is the probability of a defect; any other model's is
        its squared reconstruction error per pixel)
    images : Tensor or array ``(n, channels, H, W)`` (or ``(n, H, W)`` for grey images), pixels in [0, 1]
        Resized to the model's input size when they differ (bilinear); each map is resized back.
    sizes : (height, width) per image, optional
        Each image's own size when ``images`` were resized to the model's already (a folder read with
        ``image_size``): the maps come back at these sizes, as a list of arrays.

    Returns
    -------
    ndarray ``(n, H, W)``, or a list of ``(height, width)`` arrays when ``sizes`` are given.
    """
    shape = tuple(getattr(model, "input_shape", ()))
    if len(shape) != 3:
        raise DataError(f"anomaly maps need a model of images (channels, height, width); this one reads samples of shape {shape}.")
    x = as_rows(images, "images")
    if x.dim() == 3 and shape[0] == 1:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != shape[0]:
        raise DataError(f"images must be (n, {shape[0]}, H, W) for this model, got shape {tuple(x.shape)}.")
    own = tuple(x.shape[-2:])
    maps = model_maps(model, x)
    if sizes is not None:
        if len(sizes) != len(maps):
            raise DataError(f"{len(sizes)} sizes for {len(maps)} images.")
        return [resize_map(m, size) for m, size in zip(maps, sizes)]
    return np.stack([resize_map(m, own) for m in maps]) if own != shape[1:] else maps.numpy()


def model_maps(model: nn.Module, x: Tensor) -> Tensor:
    """Images ``(n, channels, H, W)`` -> their anomaly maps at the model's input size ``(n, h, w)`` (images of another
    size are resized to it first, bilinear), on the CPU."""
    shape = tuple(model.input_shape)
    if tuple(x.shape[-2:]) != shape[1:]:
        x = F.interpolate(x, size=shape[1:], mode="bilinear", align_corners=False)
    model.eval()
    device = device_of(model)
    with torch.no_grad():
        return batched(lambda b: pixel_map(model, b.to(device)).float().cpu(), x, 16)


def resize_map(m: Tensor, size: tuple[int, int]) -> np.ndarray:
    """One map ``(h, w)`` resized to ``size`` (bilinear): ``(height, width)`` float32."""
    if tuple(m.shape) == tuple(size):
        return m.numpy().astype(np.float32)
    return F.interpolate(m[None, None], size=tuple(size), mode="bilinear", align_corners=False)[0, 0].numpy().astype(np.float32)


def read_mask(path: Path, size: tuple[int, int], image: Path) -> np.ndarray:
    """A defect mask as booleans (pixels above half the mask's range), checked to be ``size`` (its image's)."""
    from PIL import Image

    try:
        with Image.open(path) as mask:
            values = np.asarray(mask.convert("L"))
    except Exception as exc:  # noqa: BLE001 - any unreadable file, in one line
        raise DataError(f"cannot read mask {path} ({exc}); remove or replace it.") from None
    if values.shape != tuple(size):
        raise DataError(f"mask {path} is {values.shape[1]}x{values.shape[0]} but its image {image} is {size[1]}x{size[0]}; masks must have their image's size.")
    return values > 127


def find_masks(masks: Path, images: Path, ids: Sequence[str]) -> dict[str, Path]:
    """The mask file of each image id (its path under ``images``) that has one, in ``masks``.

    The MVTec AD layout: ``masks/<kind>/<stem>_mask.png`` for ``images/<kind>/<stem>.jpg``; or masks beside
    the images, ``<stem>.png`` (or ``<stem>_mask.png``) in the image's own folder (``masks`` is then the
    image folder itself). An image without a mask has no defect pixels. A mask that belongs to no image
    is refused: it means the two folders do not match.
    """
    if not masks.is_dir():
        raise DataError(f"--masks {masks} is not a folder of defect masks.")
    found: dict[str, Path] = {}
    image_files = {(images / i).resolve() for i in ids}
    for i in ids:
        stem = Path(i).with_suffix("")
        for suffix in MASK_SUFFIXES:
            candidate = masks / f"{stem}{suffix}"
            if candidate.is_file() and candidate.resolve() not in image_files:
                found[i] = candidate
                break
    used = {p.resolve() for p in found.values()}
    for file in sorted(masks.rglob("*")):
        if file.is_file() and file.suffix.lower() in MASK_FORMATS and file.resolve() not in used | image_files:
            relative = file.relative_to(masks).with_name(file.stem.removesuffix("_mask"))
            raise DataError(f"mask {file} belongs to no image of {images} (no {relative}.* there); remove it or fix its name.")
    return found


def pixel_roc_auc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """ROC AUC of every pixel's map value against its mask, over all images together."""
    from sklearn.metrics import roc_auc_score

    truth = np.concatenate([m.ravel() for m in masks])
    if truth.all() or not truth.any():
        raise DataError("pixel ROC AUC needs both defect and defect-free pixels among the masks.")
    return float(roc_auc_score(truth, np.concatenate([m.ravel() for m in maps])))


def pro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_fpr: float = 0.3, steps: int = 200) -> float:
    """The per-region overlap (Bergmann et al. 2020, MVTec AD; 2021, IJCV): the area under the mean overlap of
    every connected defect region with the pixels above a threshold, against the false-positive rate of the
    defect-free pixels, up to ``max_fpr``, divided by ``max_fpr`` (1 is perfect; each region counts alike,
    however large). Thresholds: ``steps`` quantiles of the defect-free pixels' values."""
    from scipy import ndimage

    normal = np.sort(np.concatenate([m[~k].ravel() for m, k in zip(maps, masks)]))
    regions = []
    for m, k in zip(maps, masks):
        labels, count = ndimage.label(k)
        for r in range(1, count + 1):
            regions.append(np.sort(m[labels == r]))
    if not regions or not len(normal):
        raise DataError("PRO needs defect regions and defect-free pixels among the masks.")
    fprs = np.linspace(0, max_fpr, steps + 1)
    thresholds = normal[np.clip(np.ceil((1 - fprs) * len(normal)).astype(int) - 1, 0, len(normal) - 1)]
    fpr = 1 - np.searchsorted(normal, thresholds, side="right") / len(normal)  # share of normal pixels above each
    overlap = np.mean([1 - np.searchsorted(v, thresholds, side="right") / len(v) for v in regions], axis=0)
    keep = fpr <= max_fpr
    x, y = np.concatenate([[0.0], fpr[keep], [max_fpr]]), np.concatenate([[0.0], overlap[keep], [overlap[keep][-1] if keep.any() else 0.0]])
    order = np.argsort(x, kind="stable")
    return float(np.trapezoid(y[order], x[order]) / max_fpr)


def overlay(image: np.ndarray, heat: np.ndarray, outline: np.ndarray | None = None, truth: np.ndarray | None = None) -> np.ndarray:
    """An RGB picture ``(h, w, 3)`` uint8: ``image`` (grey ``(h, w)`` or RGB ``(h, w, 3)``, 0-255) dimmed and tinted
    red by ``heat`` (in [0, 1]), with the border of ``outline`` (flagged pixels) in yellow and of ``truth`` (a
    defect mask) in green."""
    from scipy import ndimage

    rgb = np.repeat(image[..., None], 3, -1) if image.ndim == 2 else image[..., :3]
    rgb = rgb.astype(np.float32)
    alpha = np.minimum(0.85, 1.2 * np.clip(heat, 0, 1) ** 2)[..., None]  # squared: a map's low floor leaves the image as it is
    picture = rgb * (1 - alpha) + np.array([255.0, 0, 0]) * alpha
    for region, colour in ((truth, (0, 255, 0)), (outline, (255, 255, 0))):
        if region is not None and region.any():
            border = region & ~ndimage.binary_erosion(region, iterations=2)
            picture[border] = colour
    return picture.clip(0, 255).astype(np.uint8)


def write_overlays(
    folder: Path, images: Path, ids: Sequence[str], maps: Sequence[np.ndarray], outlines: Sequence[np.ndarray] | None = None,
    truth: Sequence[np.ndarray] | None = None, npy: bool = False,
) -> Path:
    """Write ``folder/<id>.png`` for every image id (its path under ``images``): the image with its map over it
    (a map scaled by the largest value of all maps unless it is a probability), flagged regions outlined in
    yellow and, given ``truth``, the defect masks in green; with ``npy``, ``folder/<id>.npy`` holds the map."""
    from PIL import Image

    from ..checkpoint import atomic_write

    top = max(float(m.max()) for m in maps) if len(maps) else 1.0
    scale = 1.0 if top <= 1.0 and min(float(m.min()) for m in maps) >= 0 else max(top, 1e-12)
    folder.mkdir(parents=True, exist_ok=True)
    for k, (i, m) in enumerate(zip(ids, maps)):
        target = folder / Path(i).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(images / i) as source:
            picture = np.asarray(source.convert("L" if source.mode in ("L", "I;16", "I", "F", "1") else "RGB"))
        painted = overlay(picture, m / scale, None if outlines is None else outlines[k], None if truth is None else truth[k])
        buffer = io.BytesIO()
        Image.fromarray(painted).save(buffer, format="PNG")
        atomic_write(target, buffer.getvalue())
        if npy:
            buffer = io.BytesIO()
            np.save(buffer, m.astype(np.float32))
            atomic_write(target.with_suffix(".npy"), buffer.getvalue())
    return folder
