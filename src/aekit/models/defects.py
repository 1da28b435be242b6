"""Defects it never saw: a reconstruction of synthetic defects and a segmentation head on the residual (DRAEM).

A plain autoencoder trained on good product images reconstructs defects
too, so its residual marks them faintly. DRAEM (Zavrtanik et al. 2021,
*DRAEM: a discriminatively trained reconstruction embedding for surface
anomaly detection*) trains on good images with synthetic defects pasted in:
the autoencoder learns to restore the good surface, and a small segmentation
network, reading the input beside its restoration, learns where they differ
for a reason. Real defects are found because they too are "not this
surface", whatever they look like.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import register_model
from ..validation import positive_int
from .base import Autoencoder, check_range, positive_ints


def smooth_noise(n: int, height: int, width: int, cells: int, device: torch.device) -> Tensor:
    """Standard normal noise on a ``cells x cells`` grid, upsampled bicubically: ``(n, 1, height, width)``,
    blobs about ``height / cells`` pixels across (a cheap stand-in for Perlin noise)."""
    return F.interpolate(torch.randn(n, 1, cells, cells, device=device), size=(height, width), mode="bicubic", align_corners=False)


def curves(n: int, height: int, width: int, device: torch.device) -> Tensor:
    """One random walk per image, of up to half the image's height, one to three pixels wide: ``(n, 1, height, width)``
    (scratches and cracks: shapes that blobs of noise do not make)."""
    steps = max(2, height // 2)
    start = torch.rand(n, 2, device=device) * torch.tensor([height - 1, width - 1], device=device, dtype=torch.float32)
    angle = torch.rand(n, 1, device=device) * 2 * math.pi + (torch.randn(n, steps, device=device) * 0.25).cumsum(1)
    length = torch.randint(max(1, steps // 4), steps + 1, (n, 1), device=device)
    moving = torch.arange(steps, device=device) < length  # (n, steps): the walk stops after its length
    path = start.unsqueeze(1) + (torch.stack([angle.sin(), angle.cos()], -1) * moving.unsqueeze(-1)).cumsum(1)
    ys = path[..., 0].round().clamp(0, height - 1).long()
    xs = path[..., 1].round().clamp(0, width - 1).long()
    mask = torch.zeros(n, height * width, device=device)
    mask.scatter_(1, ys * width + xs, 1.0)
    mask = mask.view(n, 1, height, width)
    wide = F.max_pool2d(mask, 3, 1, 1)
    wider = torch.rand(n, 1, 1, 1, device=device) < 0.5
    return torch.where(wider, wide, mask)


def synthetic_defects(x: Tensor, share: float = 0.5) -> tuple[Tensor, Tensor]:
    """Good images ``x`` ``(n, c, h, w)`` in [0, 1] with defects pasted into a ``share`` of them: ``(images, masks)``,
    masks ``(n, 1, h, w)`` of 0 and 1.

    A defect's shape is a blob of thresholded smooth noise (of a random scale,
    sometimes touching the border like a break) or a random-walk curve (a
    crack); it is filled, a third each, with another image of the batch
    (mirrored), or the image itself, its contrast and brightness changed (mostly
    darker), or a flat dark area, as where material is missing; then blended with
    the image underneath by a random weight (DRAEM fills with foreign textures; a
    product's own surface, changed, is harder to tell apart and so teaches more).
    Draws from torch's generator, so a seeded run is repeatable.
    """
    n, _, height, width = x.shape
    device = x.device
    cells = 2 ** torch.randint(1, 5, (n,))
    blobs = torch.cat([smooth_noise(1, height, width, int(c), device) for c in cells])
    threshold = 0.5 + 1.5 * torch.rand(n, 1, 1, 1, device=device)  # from a third of the image to specks
    masks = (blobs > threshold).float()
    crack = torch.rand(n, 1, 1, 1, device=device) < 0.4
    masks = torch.where(crack, curves(n, height, width, device), masks)
    masks = masks * (torch.rand(n, 1, 1, 1, device=device) < share)
    gain = 0.3 + 0.9 * torch.rand(n, 1, 1, 1, device=device)
    shift = -0.35 + 0.5 * torch.rand(n, 1, 1, 1, device=device)
    # three kinds of fill: another image's surface (mirrored), changed; the image's own surface, changed (an
    # uneven patch); missing material, a flat dark area (a hole, a broken-off edge) with a little noise
    foreign = (x.roll(1, 0).flip(-1) * gain + shift).clamp(0, 1)
    own = (x * gain + shift).clamp(0, 1)
    flat = (0.3 * torch.rand(n, 1, 1, 1, device=device) + 0.02 * torch.randn_like(x)).clamp(0, 1)
    kind = torch.randint(0, 3, (n, 1, 1, 1), device=device)
    fill = torch.where(kind == 0, foreign, torch.where(kind == 1, own, flat))
    keep = 0.6 * torch.rand(n, 1, 1, 1, device=device)  # how much of the image shows through the defect
    return x * (1 - masks) + (keep * x + (1 - keep) * fill) * masks, masks


def grow(maps: Tensor, steps: int) -> Tensor:
    """The maximum of ``maps`` ``(batch, 1, h, w)`` over an octagon ``2 * steps + 1`` pixels across around every
    pixel, clipped at the border: ``steps`` maxima over a 3x3 square and over a plus sign of five, in turn (as
    maxima of shifted copies, padded with the edge's own values: six times faster than ``max_pool2d``)."""
    for i in range(steps):
        padded = F.pad(maps, (1, 1, 1, 1), mode="replicate")
        rows = torch.maximum(torch.maximum(padded[..., :-2, :], padded[..., 1:-1, :]), padded[..., 2:, :])  # a column of three
        if i % 2 == 0:
            maps = torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
        else:
            maps = torch.maximum(torch.maximum(rows[..., 1:-1], padded[..., 1:-1, :-2]), padded[..., 1:-1, 2:])
    return maps


def odd_side(share: float, size: Sequence[int]) -> int:
    """A square's side in pixels, ``share`` of the shorter side of ``size`` rounded to an odd number, at least 1."""
    side = max(1, round(share * min(size)))
    return side + 1 - side % 2


#: Seeds the synthetic defects of validation images (the same every epoch).
VALIDATION_SEED = 0


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SegmentationHead(nn.Module):
    """A small U-Net (Ronneberger et al. 2015): ``(batch, c_in, h, w) -> (batch, 1, h, w)`` logits.

    ``channels[0]`` at full resolution (one convolution), each next count at
    half the previous resolution (two); the way up joins each level's map (skip
    connections, one convolution each), so that outlines stay sharp. Most of the
    work is at the coarse levels, where a defect's surroundings are seen."""

    def __init__(self, c_in: int, channels: Sequence[int]) -> None:
        super().__init__()
        sizes = [c_in, *channels]
        self.down = nn.ModuleList(
            nn.Sequential(*conv_bn(sizes[i], sizes[i + 1]), *([] if i == 0 else conv_bn(sizes[i + 1], sizes[i + 1]))) for i in range(len(channels))
        )
        self.up = nn.ModuleList(nn.Sequential(*conv_bn(channels[i] + channels[i + 1], channels[i])) for i in reversed(range(len(channels) - 1)))
        self.out = nn.Conv2d(channels[0], 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        levels = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2, ceil_mode=True))
            levels.append(x)
        for block, skip in zip(self.up, reversed(levels[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return self.out(x)


class Members(nn.ModuleList):
    """Networks of one shape side by side (an ensemble): each reads all of the input's channels
    (``split=False``) or its own equal share of them (``split=True``); their outputs are joined along the channels."""

    def __init__(self, modules: Sequence[nn.Module], split: bool) -> None:
        super().__init__(modules)
        self.split = split

    def forward(self, x: Tensor) -> Tensor:
        parts = x.chunk(len(self), 1) if self.split else [x] * len(self)
        return torch.cat([member(part) for member, part in zip(self, parts)], 1)


def side_by_side(make: Callable[[], nn.Module], n: int, split: bool) -> nn.Module:
    """``n`` networks from ``make()`` as :class:`Members`; one is the network itself (its weights named as before)."""
    return make() if n == 1 else Members([make() for _ in range(n)], split)


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """The focal loss (Lin et al. 2017) per sample, averaged over pixels: cross-entropy weighted by ``(1 - p_t)^gamma``,
    so that the many easy good pixels do not drown the few defect pixels (DRAEM's choice)."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = torch.exp(-ce)
    return ((1 - p_t).pow(gamma) * ce).flatten(1).mean(1)


@register_model("draem")
class DefectSegmenter(Autoencoder):
    """Finds and outlines defects in product images, trained on good images only (DRAEM, Zavrtanik et al. 2021).

    While training, a ``defect_share`` of the images get synthetic defects
    (:func:`synthetic_defects`); the autoencoder (by default the ``conv``
    architecture's code map: no flat bottleneck, so detail survives; on ``mlp``,
    a flat code) reconstructs the good image from them, and a U-Net
    (``segmentation_channels``) reads the input and its reconstruction and
    outputs, per pixel, the probability of a defect, trained with the focal loss
    against the pasted masks. Losses: ``reconstruction`` (squared error to the
    good image) and ``segmentation``. Pixels must be in [0, 1] (no ``input_scaling``).

    The anomaly map (:meth:`anomaly_map`) is that probability, averaged with its
    grey-level closing over an octagon ``fill`` of the image's side across (see
    :meth:`fill_map`); the image's score is the largest mean of the map over a
    ``window`` (a share of the image's side: a whole defect, not one noisy pixel).

    Parameters
    ----------
    segmentation_channels : sequence of int
        The U-Net's channels per level, full resolution first.
    defect_share : float
        The share of training images given a synthetic defect (the rest teach "nothing here").
    window : float
        The side of the averaging window of the score, as a share of the image's shorter side.
    fill : float
        The width of the octagon the map is closed over (:meth:`fill_map`), as a share of the image's shorter side;
        0 leaves the map as the networks draw it.
    members : int
        Independent networks (autoencoder and head each) trained side by side on the same images, their maps
        averaged: an ensemble, steadier than any one (one network's map varies from seed to seed as much as
        the recipes tried differ). Their code maps lie side by side, ``members * code_size`` channels.
    **options
        The autoencoder's (``code_size``: channels of the code map; ``channels`` of the ``conv`` architecture).
    """

    architectures = ("mlp", "conv")
    architecture_note = "it outlines defects in images, pixel by pixel; documents have no pixels."
    #: The best epoch is the one that finds the synthetic defects of the held-out images best (not the one that
    #: reconstructs best: a sharper restoration does not mean a surer segmentation).
    monitor = "segmentation"
    #: Runs saved before ``members`` existed held one network.
    older_defaults = {"members": 1, "fill": 0.0}

    def __init__(
        self,
        segmentation_channels: Sequence[int] = (8, 16, 32, 64),
        defect_share: float = 0.5,
        window: float = 0.02,
        fill: float = 0.45,
        members: int = 2,
        **options: Any,
    ) -> None:
        self.segmentation_channels = positive_ints("segmentation_channels", segmentation_channels)
        if not self.segmentation_channels:
            raise ConfigError("segmentation_channels must name at least one level, e.g. [8, 16, 32, 64].")
        self.defect_share = check_range("defect_share", defect_share, 0.0, 1.0)
        self.window = check_range("window", window, 0.0, 1.0, low_open=True)
        self.fill = check_range("fill", fill, 0.0, 1.0)
        self.members = positive_int("members", members)
        options.setdefault("code_size", 16)
        if options.get("architecture", "conv") == "conv":
            options.setdefault("channels", (16, 32))
        super().__init__(**options)
        if len(self.input_shape) != 3:
            raise ConfigError(f"the draem model segments images (channels, height, width), got input_shape={self.input_shape}.")
        if self.input_scaling is not None:
            raise ConfigError("the draem model pastes defects into pixels in [0, 1]; leave input_scaling unset.")

    @classmethod
    def preferred_architecture(cls, input_shape: Sequence[int]) -> str:
        return "conv"

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """The shape of one code map, the members' side by side: ``(members * code_size, h, w)`` over the architecture's grid."""
        return (self.members * self.code_size, *self.architecture.map_size(self, 1))

    def build(self) -> None:
        n, c = self.members, self.input_shape[0]
        self.encoder = side_by_side(lambda: self.architecture.map_encoder(self, self.code_size, 1), n, split=False)
        self.decoder = side_by_side(lambda: self.architecture.map_decoder(self, self.code_size, 1), n, split=True)
        self.segmenter = side_by_side(lambda: SegmentationHead(2 * c, self.segmentation_channels), n, split=True)

    def member_logits(self, z: Tensor) -> Tensor:
        """Code maps -> every member's reconstruction logits ``(batch, members, *output_shape)``."""
        return self.decoder(z).reshape(len(z), self.members, *self.output_shape)

    def decode_logits(self, z: Tensor) -> Tensor:
        """Code maps -> the reconstruction logits, the members' mean ``(batch, *output_shape)``."""
        return self.member_logits(z).mean(1)

    def segment(self, seen: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Scaled images -> (their code maps, every member's reconstruction logits ``(batch, members, c, h, w)``,
        every member's defect logits ``(batch, members, h, w)``): each member's head reads the images beside its
        own reconstruction."""
        z = self.encoder(seen)
        logits = self.member_logits(z)
        pairs = torch.cat([torch.cat([seen, self.output_activation(restored)], 1) for restored in logits.unbind(1)], 1)
        return z, logits, self.segmenter(pairs)

    def forward(self, x: Tensor):
        x = self.scale(self.as_batch(x))
        if self.training:
            seen, masks = synthetic_defects(x, self.defect_share)
        else:  # validation: the same defects in the same held-out images every epoch, so that epochs compare
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(VALIDATION_SEED)
                seen, masks = synthetic_defects(x, self.defect_share)
        z, logits, defects = self.segment(seen)
        losses = {  # each the members' mean
            "reconstruction": self.reconstruction_nll(logits.flatten(0, 1), x.repeat_interleave(self.members, 0)).mean(),
            "segmentation": focal_loss(defects, masks.expand_as(defects)).mean(),
        }
        return self.output(logits.mean(1), z, losses)

    def member_maps(self, x: Tensor) -> Tensor:
        """Per pixel, every member's probability of a defect: ``(batch, members, height, width)``."""
        return torch.sigmoid(self.segment(self.scale(self.as_batch(x)))[2])

    def anomaly_map(self, x: Tensor) -> Tensor:
        """Per pixel, the probability of a defect, the members' mean, filled in (:meth:`fill_map`): ``(batch, height, width)``."""
        return self.fill_map(self.member_maps(x).mean(1))

    def fill_map(self, maps: Tensor) -> Tensor:
        """Maps ``(batch, h, w)`` averaged with their grey-level closing over an octagon :meth:`fill_pixels` across
        (the maximum over the octagon around every pixel, then the minimum of that; clipped at the border).

        A large defect that is a plain area of its own (a piece broken off, the grain worn away) looks like good
        surface from inside: the networks mark its edges and little of its inside. The closing lifts every pixel to
        the lowest of the maxima around it, so the inside of a marked outline rises to its edges while a lone
        pixel does not move; averaged with the map, the inside rises halfway and thin marks (a crack) spread less.
        It never changes a map's largest value. An octagon, not a square, so that filled areas keep their shape.
        Measured on the magnetic tiles (benchmarks/results/defects_fill.md)."""
        steps = self.fill_pixels() // 2
        closed = -grow(-grow(maps.unsqueeze(1), steps), steps)
        return (maps + closed[:, 0]) / 2

    def fill_pixels(self) -> int:
        """The width in pixels of the octagon :meth:`fill_map` closes over: odd, 1 when ``fill`` is 0."""
        return odd_side(self.fill, self.input_shape[1:])

    def window_pixels(self) -> int:
        """The averaging window's side in pixels: odd, at least 1."""
        return odd_side(self.window, self.input_shape[1:])

    def window_mean(self, maps: Tensor) -> Tensor:
        """Maps ``(batch, h, w)`` averaged over a window of :meth:`window_pixels` around every pixel (clipped at the
        border): what the score and the outlines read."""
        k = self.window_pixels()
        return F.avg_pool2d(maps.unsqueeze(1), k, 1, k // 2, count_include_pad=False)[:, 0]

    def map_score(self, maps: Tensor) -> Tensor:
        """Images' scores from their :meth:`anomaly_map` ``maps`` ``(batch, h, w)``: the largest value of the map's
        :meth:`window_mean`, the image's most defect-like window."""
        return self.window_mean(maps).flatten(1).amax(1)

    def anomaly_score(self, x: Tensor) -> Tensor:
        """The :meth:`map_score` of the image's :meth:`anomaly_map`."""
        return self.map_score(self.anomaly_map(x))

    def outline_maps(self, maps: Tensor, sizes: Sequence[tuple[int, int]], threshold: float) -> list:
        """Where each image is flagged, in its own pixel grid ``sizes``, from its :meth:`anomaly_map` ``maps`` at the
        model's size: the pixels whose window mean is above ``threshold``, the image score's threshold (so a flagged
        image always shows where, and a good image is outlined anywhere no more often than it is flagged: the
        conformal rate holds for the outlines too)."""
        from ..apps.segment import resize_map

        return [resize_map(m, size) > threshold for m, size in zip(self.window_mean(maps), sizes)]

    def feature_errors(self, x: Tensor) -> Tensor:
        """The anomaly map for every channel of the image, ``(batch, *input_shape)``: what pictures of errors draw."""
        return self.anomaly_map(x).unsqueeze(1).expand(-1, self.input_shape[0], -1, -1)
