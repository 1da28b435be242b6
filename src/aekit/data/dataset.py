"""The :class:`Dataset` that loaders return, and how raw arrays become one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError

#: The fraction of rows in the "train" split of sets without an official split.
TRAIN_FRACTION = 0.8
#: The seed of that fixed split, so "train" and "test" never overlap across calls.
SPLIT_SEED = 0
SPLITS = ("train", "test", "all")
#: The most DEFLATE can expand data (about 1032:1): a compressed file claiming more is forged or corrupt.
MAX_EXPANSION = 1100


@dataclass(frozen=True)
class Scaling:
    """Per-feature min-max scaling ``(x - low) / (high - low)``, fitted on training rows.

    Constant features (``high == low``) map to 0.
    """

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Scaling":
        x = x.reshape(len(x), -1)
        return cls(low=x.min(0).astype(np.float64), high=x.max(0).astype(np.float64))

    def apply(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        if flat.shape[1] != self.low.size:
            raise DataError(f"scaling was fitted on {self.low.size} features but the data has {flat.shape[1]}.")
        span = self.high - self.low
        span = np.where(span > 0, span, 1.0)
        out = np.empty(flat.shape, dtype=np.float32)
        rows = max(1, 2**22 // max(1, flat.shape[1]))  # computed in float64, 32 MB at a time
        for start in range(0, len(flat), rows):
            out[start : start + rows] = (flat[start : start + rows].astype(np.float64) - self.low) / span
        return out.reshape(x.shape)

    def to_json(self) -> dict[str, Any]:
        return {"low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Scaling":
        return cls(low=np.asarray(data["low"], dtype=np.float64), high=np.asarray(data["high"], dtype=np.float64))


@dataclass
class Dataset:
    """Samples, labels and the shape of one sample.

    Attributes
    ----------
    x : Tensor, shape (n, *shape), float32
        The samples; images in [0, 1], tabular data as described by ``scaling``.
    y : Tensor of shape (n,), int64, or None
        Labels, when the source has them.
    name : str
        What was loaded (``"mnist"``, a path, ...).
    split : str
        ``"train"``, ``"test"`` or ``"all"``.
    scaling : Scaling or None
        The min-max scaling applied to tabular data (None for images and raw data).
    classes : list of str or None
        Label names, when labels are categories with names.
    ids : list of str or None
        Row ids (a CSV's id column), in the order of the rows.
    columns : list of str or None
        Feature names (a CSV header).
    vocabulary : list of str or None
        For documents: the words of the bags (:mod:`aekit.data.text`); ``x`` is then ``(n, 2, length)`` bags.
    texts : list of str or None
        For documents: their texts, in the order of the rows.
    categories : dict of str to list of str, or None
        A table's category columns and their values in training; ``columns`` names their indicators
        ``column=value`` (:mod:`aekit.data.categories`).
    """

    x: Tensor
    y: Tensor | None = None
    name: str = "data"
    split: str = "all"
    scaling: Scaling | None = None
    classes: list[str] | None = field(default=None)
    ids: list[str] | None = field(default=None, repr=False)
    columns: list[str] | None = field(default=None, repr=False)
    vocabulary: list[str] | None = field(default=None, repr=False)
    texts: list[str] | None = field(default=None, repr=False)
    categories: dict[str, list[str]] | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. ``(1, 28, 28)`` or ``(21,)``."""
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def is_text(self) -> bool:
        return self.vocabulary is not None

    def __len__(self) -> int:
        return len(self.x)

    def __repr__(self) -> str:
        labels = "no labels" if self.y is None else f"{len(torch.unique(self.y))} classes"
        return f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, shape={self.shape}, {labels})"


@dataclass
class RawData:
    """What a source reads, before splitting and scaling."""

    x: np.ndarray
    y: np.ndarray | None = None
    #: Divide by this to get [0, 1] (255 for 8-bit images); None means tabular, min-max scaled.
    pixel_max: float | None = None
    classes: list[str] | None = None
    #: True when the source already returned the requested split (MNIST's own train/test files).
    presplit: bool = False
    #: Row ids (a CSV's id column), kept out of the features.
    ids: list[str] | None = None
    #: Feature names (a CSV header), in the order of the features; a category column's indicators are ``column=value``.
    columns: list[str] | None = None
    #: A table's category columns and the values each had in training (:mod:`aekit.data.categories`).
    categories: dict[str, list[str]] | None = None
    #: Documents: the bags' words and the texts.
    vocabulary: list[str] | None = None
    texts: list[str] | None = None


def fixed_split(n: int, split: str) -> np.ndarray:
    """Row indices of ``split`` in the fixed 80/20 split of ``n`` rows."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    cut = int(round(TRAIN_FRACTION * n))
    return {"train": order[:cut], "test": order[cut:], "all": np.arange(n)}[split]


def build(raw: RawData, name: str, split: str, scaling: Scaling | str | None) -> Dataset:
    """Split, scale and validate ``raw`` into a :class:`Dataset`."""
    x, y = raw.x, raw.y
    if len(x) == 0:
        raise DataError(f"{name} holds no samples.")
    if y is not None and len(y) != len(x):
        raise DataError(f"{name}: {len(x)} samples but {len(y)} labels.")
    rows = slice(None) if raw.presplit or split == "all" else fixed_split(len(x), split)
    picked = x[rows]
    fitted: Scaling | None = None
    if raw.vocabulary is not None:  # bags of words: word ids and counts, never scaled
        values = picked
    elif raw.pixel_max is not None:
        values = picked.astype(np.float32) / np.float32(raw.pixel_max)
    else:
        check_finite(x, name)
        if scaling == "minmax":  # fitted on the rows returned, except that "test" borrows the training rows'
            fitted = Scaling.fit(x[fixed_split(len(x), "train")] if split == "test" and not raw.presplit else picked)
        elif isinstance(scaling, Scaling):
            fitted = scaling
        elif scaling is not None:
            raise DataError(f"scaling must be 'minmax', None or a Scaling object, got {scaling!r}.")
        values = fitted.apply(picked) if fitted else picked.astype(np.float32, copy=False)
    labels = None if y is None else torch.as_tensor(np.asarray(y[rows]).astype(np.int64).reshape(-1))
    if len(values) == 0:
        raise DataError(f"the {split!r} split of {name} is empty; use split='all'.")
    picked_rows = np.arange(len(x))[rows]
    ids = None if raw.ids is None else [raw.ids[i] for i in picked_rows]
    texts = None if raw.texts is None else [raw.texts[i] for i in picked_rows]
    return Dataset(torch.from_numpy(np.ascontiguousarray(values)), labels, name, split, fitted, raw.classes, ids, raw.columns, raw.vocabulary, texts, raw.categories)


def check_finite(x: np.ndarray | Tensor, name: str) -> None:
    """Raise a :class:`DataError` saying how many values are NaN/inf and where the first one is."""
    bad = ~np.isfinite(x) if isinstance(x, np.ndarray) else ~torch.isfinite(x)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in np.argwhere(np.asarray(bad))[0])
        raise DataError(
            f"{name} holds {count} non-finite value(s) (NaN or inf); the first is at index {first}. "
            "Remove or impute them before training."
        )
