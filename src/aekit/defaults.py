"""Defaults sized to the data: what the CLI and the scikit-learn detector choose for rows of ``d`` features.

One place for the "auto" choices, so that ``aekit train`` on a CSV file and
``AutoencoderOutlierDetector()`` build the same detector: an ensemble of small
autoencoders (``ensemble``), inputs standardised inside the model, a code of
``ceil(sqrt(d))`` units and one hidden layer of ``2 d`` (at most 256), each
member trained on its own subsample of at most 256 rows for about 100
optimiser steps, whatever the number of rows (benchmarks/results/detection.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

from .validation import check_range, positive_int

if TYPE_CHECKING:
    from torch import Tensor

MEMBERS = 8  # autoencoders in the ensemble
MEMBER_ROWS = 256  # rows in each member's subsample (as isolation forests draw 256 per tree)
STEPS = 100  # optimiser steps of the whole training (200 before the neighbour term: ADBench mean 0.738 -> 0.736, half the time)
BATCH_SIZE = 64
LR = 3e-3
TABULAR_CALIBRATION = 0.2  # share of rows held out to calibrate thresholds, tabular data
IMAGE_CALIBRATION = 0.05  # and image data (more rows, so a smaller share suffices)
#: At most this many rows are scored to calibrate: p-values resolve 1 / 20,001, and half a million rows are not scored twice.
CALIBRATION_ROWS = 20_000


def tabular_sizes(n_features: int) -> dict[str, object]:
    """Code and hidden sizes for rows of ``n_features`` features."""
    # A code of about sqrt(d) units: d/4 (tried first) let 42-unit codes of 166 features learn a small cluster
    # of outliers (a musk-like set: ROC AUC 0.49, against 0.87 with 13 units; benchmarks/results/detection.md).
    return {"code_size": max(2, math.ceil(math.sqrt(n_features))), "hidden": (min(256, max(8, 2 * n_features)),)}


def fill_tabular(cls: type, n_features: int, options: dict[str, object], input_scaling: str | None = "standard", members: int = MEMBERS) -> list[str]:
    """Fill in what ``options`` leave open for model ``cls`` on rows of ``n_features`` features: the input
    scaling, the sizes (:func:`tabular_sizes`) and, for the ensemble, its members; never an option the model
    fixes itself. Returns what the model will use, in words (the CLI prints it)."""
    fixed = getattr(cls, "fixed_options", {})
    chosen = []
    if "input_scaling" not in fixed:
        options.setdefault("input_scaling", input_scaling)
        if options["input_scaling"] is not None:
            chosen.append(f"{options['input_scaling']} scaling learnt from the training rows, kept in the model")
    for key, value in tabular_sizes(n_features).items():
        if key not in options and key not in fixed:
            options[key] = value
            chosen.append(f"{key} {'-'.join(map(str, value)) if isinstance(value, tuple) else value}")
    from .models.ensemble import AutoencoderEnsemble  # here, not above: the CLI's parser reads this module's numbers without torch

    if issubclass(cls, AutoencoderEnsemble):
        options.setdefault("members", members)
    return chosen


#: Images whose shorter side has at least this many pixels are photographs (product images, not digits): their
#: default model finds defects (``draem``), at ``PHOTO_SIZE`` x ``PHOTO_SIZE`` pixels when they differ in size or are
#: larger (resized, aspect ratio not kept; anomaly maps are resized back to each image's own grid).
PHOTO_SIDE, PHOTO_SIZE = 64, 128
#: Optimiser steps of the defect detector (batches of 16), whatever the number of images. More steps find the
#: synthetic defects of the held-out good images better (best focal loss 0.033 at 1,200 steps, 0.023-0.028 at
#: 2,400; benchmarks/results/defects_steps.md), and in bfloat16 a step takes half the time, so: 2,400 steps in
#: bf16 where the CPU computes in it natively (AVX-512-BF16 or AMX; about 11 minutes on 2 cores at 128 x 128
#: pixels with the two members), half as many in fp32 on other CPUs (the same time), 2,400 in fp32 on a GPU
#: (:func:`photo_training`).
PHOTO_STEPS, PHOTO_BATCH = 2400, 16
#: Good photographs held out to calibrate the threshold: more than other images' 5%, as a set of photographs
#: is small (700 tiles: 70 calibration scores, so that a 5% false-alarm rate is not set by the largest one).
PHOTO_CALIBRATION = 0.1


def photo_defaults(sizes: list[tuple[int, int]]) -> tuple[str | None, str | None]:
    """For a folder of images of ``sizes`` (height, width): (the default model, the image size to resize to), each
    None when the folder is not one of photographs or needs no resizing."""
    if not sizes or min(min(size) for size in sizes) < PHOTO_SIDE:
        return None, None
    resize = len(set(sizes)) > 1 or max(max(size) for size in sizes) > PHOTO_SIZE
    return "draem", (str(PHOTO_SIZE) if resize else None)


def photo_training(device: str, precision: str | None = None) -> tuple[str, int]:
    """(precision, optimiser steps) of the defect detector trained on ``device`` ("auto", "cpu", "cuda", ...) in
    ``precision`` (None: the default): on a CPU with bfloat16 arithmetic, bf16 and ``PHOTO_STEPS``; on other CPUs
    or in fp32, half the steps in the same time (emulated bf16 is slower than fp32); on a GPU, fp32 and ``PHOTO_STEPS``."""
    import torch

    from .training.trainer import resolve_device

    if resolve_device(device).type != "cpu":
        return precision or "fp32", PHOTO_STEPS
    native = any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    precision = precision or ("bf16" if native else "fp32")
    return precision, PHOTO_STEPS if native and precision == "bf16" else PHOTO_STEPS // 2


def image_sizes(n_values: int) -> dict[str, object]:
    """Sizes of an MLP autoencoder for images of ``n_values`` pixel values, and ELU: with ReLU and a sigmoid
    output the default network sat at the mean image for ~8 epochs on digits (ELU: 1.95 test error after 5
    epochs against 4.69, the mean image's 4.75)."""
    return {"hidden": (min(1000, 4 * n_values), min(500, 2 * n_values)), "code_size": min(30, max(2, n_values // 4)), "activation": "elu"}


def image_score(cls: type, options: dict[str, object]) -> list[str]:
    """For a model ``cls`` of images that scores anomalies by its reconstruction: unless ``options`` say otherwise,
    score by the squared error of the residual blurred by a Gaussian of one pixel (``score_smoothing``). On MNIST
    one-class it lifts the mean ROC AUC from 0.968 to 0.975 (3 seeds), the blur chosen on a validation split of
    the training images (benchmarks/results/fidelity.md). Returns the choice, in words."""
    from .models.base import scores_by_reconstruction

    if "score_smoothing" in options or not scores_by_reconstruction(cls):
        return []
    options["score_smoothing"] = 1.0
    return ["anomaly score: squared error of the residual blurred by 1 pixel (--option score_smoothing=0: plain)"]


def builds_mlp(cls: type, options: dict[str, object], input_shape: tuple[int, ...]) -> bool:
    """True for a model made of the architecture's MLP with free sizes (not on conv, not the ensemble, linear or recirculation)."""
    from .models import Autoencoder

    architecture = options.get("architecture") or cls.preferred_architecture(input_shape)
    return architecture == "mlp" and getattr(cls, "make_encoder", None) is Autoencoder.make_encoder and not getattr(cls, "fixed_options", None)


def fill_images(cls: type, input_shape: tuple[int, ...], options: dict[str, object]) -> list[str]:
    """Fill in what ``options`` leave open for model ``cls`` on images of ``input_shape``: an MLP's sizes from
    the pixel count (:func:`image_sizes`) and the blurred-residual anomaly score (:func:`image_score`).
    Returns what the model will use, in words (the CLI prints it)."""
    chosen: list[str] = []
    if builds_mlp(cls, options, input_shape) and not {"hidden", "code_size", "activation"} & set(options):
        options.update(image_sizes(math.prod(input_shape)))
        chosen.append(f"hidden {'-'.join(map(str, options['hidden']))}; code_size {options['code_size']}; activation elu")
    if len(input_shape) >= 2:
        chosen += image_score(cls, options)
    return chosen


#: Documents: bits of the default code, batch size and optimiser steps (about 15 epochs of 20 Newsgroups).
DOCUMENT_BITS, DOCUMENT_BATCH, DOCUMENT_STEPS = 64, 64, 2500


def fill_documents(data, options: dict[str, object], model_note: str | None = None) -> list[str]:
    """Fill in what ``options`` leave open for documents ``data``: the ``bow`` architecture over the data's
    vocabulary (its defaults: one hidden layer of 1000, word dropout 0.5) and a 64-bit code, chosen by
    retrieval precision on a validation split of 20 Newsgroups' training documents (benchmarks/results/text.md).
    Returns the choices, in words."""
    chosen = [model_note] if model_note else []
    options.setdefault("architecture", "bow")
    options.setdefault("vocabulary", data.vocabulary)
    if "code_size" not in options:
        options["code_size"] = DOCUMENT_BITS
        chosen.append(f"{DOCUMENT_BITS} bits")
    return chosen


def row_loss(cls: type) -> str:
    """The reconstruction loss for unbounded rows: the squared error, as a Gaussian likelihood for models that need one (VAEs)."""
    return "gaussian" if getattr(cls, "requires_likelihood", False) else "mse"


def batch_size_for(n_samples: int, steps_per_epoch: int = 50, largest: int = 128, smallest: int = 16) -> int:
    """A batch size (a power of two) that gives an epoch about ``steps_per_epoch`` steps, within [smallest, largest].

    With the fixed 128, an epoch of digits' 1,400 training images was 11 steps, and the models that learn
    slowest (VAEs, adversarial and total-correlation variants) still sat near the mean image after 15
    epochs (test error 3.0-4.8 against the mean's 4.7); with 32, 2.2-3.2 (benchmarks in the README).
    """
    if n_samples <= 0:
        return largest
    return int(min(largest, max(smallest, 2 ** round(math.log2(max(1.0, n_samples / steps_per_epoch))))))


def epochs_for(steps: int, n_samples: int, batch_size: int) -> int:
    """The epochs that make about ``steps`` optimiser steps over ``n_samples`` samples."""
    return max(1, round(steps / math.ceil(n_samples / batch_size)))


@dataclass(frozen=True)
class RowPlan:
    """Which rows train and which calibrate: reproducible from the seed, so a resumed run splits alike.

    Attributes
    ----------
    calibration_fraction : float
        Share of the rows held out, never trained on, to calibrate thresholds.
    members : int or None
        For the ensemble: one subsample of at most ``member_rows`` rows per member.
    """

    calibration_fraction: float
    members: int | None = None
    member_rows: int = MEMBER_ROWS
    #: At most this many calibration rows (None: every held-out row, as runs written before the cap).
    calibration_rows: int | None = None

    def __post_init__(self) -> None:
        check_range("calibration_fraction", self.calibration_fraction, 0, 1, high_open=True)
        for name in ("members", "calibration_rows"):
            if getattr(self, name) is not None:
                positive_int(name, getattr(self, name))
        positive_int("member_rows", self.member_rows)

    def split(self, n: int, seed: int) -> tuple[np.ndarray, Tensor]:
        """``(calibration rows, training rows)`` of ``n`` rows; training rows are ``(rows, members)`` for the ensemble.

        Rows that no member's subsample drew join the calibration rows: no member trained on them. Beyond
        ``calibration_rows``, held-out rows are left unused.
        """
        import torch

        from .models.ensemble import member_subsamples

        order = np.random.RandomState(seed % 2**32).permutation(n)
        n_cal = min(int(round(self.calibration_fraction * n)), n - 1)
        train = order[n_cal:]
        if self.members is None:
            return order[:n_cal][: self.calibration_rows], torch.from_numpy(train)
        picks = member_subsamples(len(train), self.members, self.member_rows, torch.Generator().manual_seed(seed))
        unused = np.setdiff1d(np.arange(len(train)), picks.numpy().ravel()) if n_cal else np.empty(0, dtype=np.int64)
        return np.concatenate([order[:n_cal], train[unused]])[: self.calibration_rows], torch.from_numpy(train)[picks]

    def to_json(self) -> dict[str, object]:
        return {"calibration_fraction": self.calibration_fraction, "members": self.members, "member_rows": self.member_rows, "calibration_rows": self.calibration_rows}
