"""An ensemble of small autoencoders trained at once, scored by reconstruction error and code density.

Chen et al. (2017), *Outlier Detection with Autoencoder Ensembles* (RandNet),
and Ding et al. (2022), *Hyperparameter Sensitivity in Deep Outlier
Detection* (ROBOD), show that averaging many small autoencoders, each fitted
to its own subsample, makes reconstruction-based detection far less
sensitive to the architecture and to outliers in the training data. Zong et
al. (2018), *DAGMM*, score a sample by where its code falls as well as by its
reconstruction error: an anomaly far along the data's main directions is
reconstructed well but has an unusual code. Zimek et al. (2013),
*Subsampling for efficient and effective unsupervised outlier detection
ensembles*, show that the distance to the k-th nearest of a small random
subsample of rows, averaged over subsamples, is a strong detector of its
own: each member keeps its own rows and adds that distance, a view of the
data that reconstruction and code density lack.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DataError
from ..registry import register_model
from .base import AEOutput, Autoencoder, check_range, positive_int
from ..validation import whole
from .layers import mlp

MOMENTUM = 0.05  # of the running code and error statistics, as batch normalisation keeps its running moments
JITTER = 1e-3  # added to the codes' covariance diagonal so that its inverse exists
NEIGHBOURS = 16  # k of the distance to a member's k-th nearest training row: above the rows a tight cluster of outliers puts among 256 (k = 5: a musk-like cluster of 3% scored 0.08)
NEIGHBOUR_WEIGHT = 16.0  # of that distance (over its mean) in the score; chosen on 23 ADBench sets (benchmarks/results/detection_adbench.md)


class MemberLinear(nn.Module):
    """``members`` independent linear layers in one: ``(members, batch, n_in) -> (members, batch, n_out)``."""

    def __init__(self, members: int, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1 / math.sqrt(n_in)  # nn.Linear's default initialisation, member by member
        self.weight = nn.Parameter(torch.empty(members, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def member_subsamples(n: int, members: int, rows: int, generator: torch.Generator) -> Tensor:
    """Row indices of each member's own random subsample of ``min(rows, n)`` of ``n`` rows, without
    replacement: ``(min(rows, n), members)``. ``x[indices]`` is the training data that gives each member its own rows."""
    take = min(rows, n)
    return torch.stack([torch.randperm(n, generator=generator)[:take] for _ in range(members)], dim=1)


def kth_neighbour_distance(rows: Tensor, bank: Tensor, k: int) -> Tensor:
    """Per member and row, the Euclidean distance to the ``k``-th nearest row of the member's ``bank``:
    ``rows`` (members, batch, d), ``bank`` (members, r, d) -> (members, batch). Squared distances come from one
    matrix product (``|a|^2 - 2 a.b + |b|^2``), which ONNX can express; ``|a|^2`` is the same for every bank row,
    so it is added (and the result clamped at 0 against rounding) after the k-th smallest is found."""
    partial = torch.baddbmm(bank.pow(2).sum(-1).unsqueeze(1), rows, bank.transpose(1, 2), alpha=-2)
    kth = kth_smallest(partial, min(k, bank.shape[1]))
    return (kth + rows.pow(2).sum(-1)).clamp_min(0).sqrt()


def kth_smallest(values: Tensor, k: int) -> Tensor:
    """The ``k``-th smallest value along the last dimension (``k`` from 1). On the CPU, outside autograd and export,
    NumPy's selection (introselect): 2.5x faster than ``topk`` on two threads (the neighbour term of half a
    million rows is most of their scoring time), on one thread, so it does not stall when another process takes a
    core; else ``topk``, which ONNX, the GPU and NumPy-less dtypes (bfloat16, under autocast) run."""
    numpy_ready = values.device.type == "cpu" and values.dtype in (torch.float32, torch.float64) and not values.requires_grad
    if numpy_ready and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
        return torch.from_numpy(np.partition(values.numpy(), k - 1, axis=-1)[..., k - 1])
    return values.topk(k, dim=-1, largest=False, sorted=False).values.amax(-1)


def mahalanobis_sq(z: Tensor, mean: Tensor, precision: Tensor) -> Tensor:
    """``(z - mean)^T P (z - mean)`` per member and sample: ``z`` (members, batch, c), ``P`` (members, c, c)."""
    centred = z - mean.unsqueeze(1)
    return ((centred @ precision) * centred).sum(-1)


@register_model("ensemble")
class AutoencoderEnsemble(Autoencoder):
    """``members`` small autoencoders of the same shape, trained at once; each may see its own rows.

    A batch of shape ``(batch, *input_shape)`` goes to every member; one of
    shape ``(batch, members, *input_shape)`` gives member ``m`` the rows
    ``[:, m]``, so that each member trains on its own subsample (see
    :func:`aekit.sklearn.AutoencoderOutlierDetector`). The code is the
    members' codes side by side, ``(batch, members * code_size)``; the
    reconstruction is their mean. While training, each member keeps running
    statistics of its codes (mean, covariance) and of its reconstruction
    error, like batch normalisation's running moments; :meth:`anomaly_score`
    uses them (``1/M sum_m e_m / mean(e_m) + d_m^2 / code_size``, with ``d_m``
    the Mahalanobis distance of the code).

    Each member also keeps up to ``bank_rows`` of its own training rows (scaled),
    taken when training starts (:meth:`adapt`), and adds ``neighbour_weight``
    times the distance of a row to the ``neighbours``-th nearest of them, over
    that distance's mean among the kept rows themselves (about 1 for typical
    rows). ``neighbours=0`` leaves it out; so does a checkpoint written before
    it existed (its ``neighbour_scale`` is 0), whose scores stay what they were.
    """

    architectures = ("mlp",)
    architecture_note = "its members are fully connected networks computed side by side in batched matrix products."

    #: The kept rows and their distance scale came after the first ensembles: those checkpoints lack them.
    optional_weights = ("bank", "neighbour_scale")  # "bank" covers bank_size

    def __init__(self, members: int = 8, neighbours: int = NEIGHBOURS, neighbour_weight: float = NEIGHBOUR_WEIGHT, bank_rows: int = 256, **options: Any) -> None:
        super().__init__(**options)
        self.members = positive_int("members", members)
        whole(0)("neighbours", neighbours)  # 0: no neighbour term
        self.neighbours = neighbours
        self.neighbour_weight = check_range("neighbour_weight", neighbour_weight, 0.0)
        self.bank_rows = positive_int("bank_rows", bank_rows)
        m, c = self.members, self.code_size
        self.register_buffer("code_mean", torch.zeros(m, c))
        self.register_buffer("code_cov", torch.eye(c).repeat(m, 1, 1))
        self.register_buffer("error_mean", torch.ones(m))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        # filled by adapt(): the kept rows (the first bank_size of bank_rows slots) and 1 / their mean distance;
        # a scale of 0 (no neighbour term) until then
        self.register_buffer("bank", torch.zeros(m, self.bank_rows, self.n_features))
        self.register_buffer("bank_size", torch.zeros((), dtype=torch.long))
        self.register_buffer("neighbour_scale", torch.zeros(m))

    def make_encoder(self) -> nn.Module:
        return self.member_mlp([self.n_features, *self.hidden, self.code_size])

    def make_decoder(self) -> nn.Module:
        return self.member_mlp([self.code_size, *reversed(self.hidden), self.n_features])

    def member_mlp(self, sizes: list[int]) -> nn.Sequential:
        """The MLP ``sizes`` of every member at once: ``(members, batch, sizes[0]) -> (members, batch, sizes[-1])``."""
        return mlp(sizes, self.activation, linear=functools.partial(MemberLinear, self.members), copies=self.members)

    def is_per_member(self, x: Tensor) -> bool:
        """True for a batch of rows per member, ``(batch, members, *input_shape)``."""
        return x.dim() >= 3 and x.shape[1] == self.members and math.prod(x.shape[2:]) == self.n_features

    def as_batch(self, x: Tensor) -> Tensor:
        return x if self.is_per_member(x) else super().as_batch(x)

    def adapt(self, x: Tensor) -> None:
        """Learn the input scaling, then keep each member's first ``bank_rows`` training rows (scaled) and the mean
        distance of each kept row to its ``neighbours``-th nearest other kept row."""
        super().adapt(x.reshape(-1, *self.input_shape) if self.is_per_member(x) else x)
        if not self.neighbours:
            return
        with torch.no_grad():
            bank = self.member_rows(x[: self.bank_rows].to(self.bank.device, self.bank.dtype))
            self.bank.zero_()[:, : bank.shape[1]] = bank
            self.bank_size.fill_(bank.shape[1])
            # leave-one-out: each kept row is its own nearest (distance 0), so its k-th other row is the (k+1)-th
            own = kth_neighbour_distance(bank, bank, self.neighbours + 1).mean(1) if bank.shape[1] > 1 else torch.zeros_like(self.neighbour_scale)
            self.neighbour_scale.copy_(torch.where(own > 0, 1 / own.clamp_min(1e-12), torch.zeros_like(own)))

    def extra_row_flops(self) -> int:
        """The neighbour search's work per row beyond the layers' (for the choice of threads): a distance to every
        kept row of every member, and the selection of the k-th (about as costly)."""
        return 4 * self.members * int(self.bank_size) * self.n_features if self.neighbours else 0

    def kept_rows(self) -> Tensor:
        """Each member's kept training rows (scaled): ``(members, bank_size, n_features)``."""
        return self.bank[:, : max(1, int(self.bank_size))]

    def member_rows(self, x: Tensor) -> Tensor:
        """Scaled rows for every member, ``(members, batch, n_features)``."""
        if self.is_per_member(x):
            rows = x.reshape(x.shape[0], self.members, self.n_features).transpose(0, 1)
            return self.scale(rows.reshape(-1, self.n_features)).reshape(rows.shape)
        x = self.scale(self.as_batch(x)).reshape(x.shape[0], self.n_features)
        return x.unsqueeze(0).expand(self.members, *x.shape)

    def member_forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Every member's rows, codes and decoder logits, each ``(members, batch, ...)``."""
        rows = self.member_rows(x)
        codes = self.encoder(rows)
        return rows, codes, self.decoder(codes)

    def member_nll(self, logits: Tensor, rows: Tensor) -> Tensor:
        """The reconstruction loss per member and sample, ``(members, batch)``."""
        m, b, d = logits.shape
        return self.reconstruction_nll(logits.reshape(m * b, d), rows.reshape(m * b, d)).reshape(m, b)

    def forward(self, x: Tensor) -> AEOutput:
        rows, codes, logits = self.member_forward(x)
        errors = self.member_nll(logits, rows)
        if self.training:
            self._update_statistics(codes.detach(), errors.detach())
        losses = {"reconstruction": errors.mean(1).sum()}  # each member minimises its own mean error
        x_hat = self.unscale(self.output_activation(logits).mean(0)).reshape(-1, *self.input_shape)
        return AEOutput(x_hat=x_hat, z=codes.transpose(0, 1).reshape(x.shape[0], -1), losses=losses, loss=losses["reconstruction"])

    @torch.no_grad()
    def _update_statistics(self, codes: Tensor, errors: Tensor) -> None:
        momentum = max(MOMENTUM, 1.0 / float(self.updates + 1))  # a cumulative mean over the first steps
        mean = codes.mean(1)
        centred = codes - mean.unsqueeze(1)
        self.code_mean.lerp_(mean, momentum)
        self.code_cov.lerp_(centred.transpose(1, 2) @ centred / max(codes.shape[1] - 1, 1), momentum)
        self.error_mean.lerp_(errors.mean(1), momentum)
        self.updates += 1

    # -- what the applications use -------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        """The members' codes side by side: ``(batch, members * code_size)``."""
        codes = self.encoder(self.member_rows(x))
        return codes.transpose(0, 1).reshape(codes.shape[1], -1)

    def decode(self, z: Tensor) -> Tensor:
        """Codes ``(batch, members * code_size)`` -> the members' mean reconstruction, in raw units."""
        if z.dim() != 2 or z.shape[1] != self.members * self.code_size:
            raise DataError(f"this ensemble decodes codes of shape (batch, {self.members * self.code_size}), got {tuple(z.shape)}.")
        codes = z.reshape(z.shape[0], self.members, self.code_size).transpose(0, 1)
        return self.unscale(self.output_activation(self.decoder(codes)).mean(0)).reshape(-1, *self.input_shape)

    def reconstruction_error(self, x: Tensor) -> Tensor:
        """The members' mean reconstruction loss per sample, ``(batch,)``."""
        rows, _, logits = self.member_forward(x)
        return self.member_nll(logits, rows).mean(0)

    def feature_errors(self, x: Tensor) -> Tensor:
        """Squared error per feature, each member's divided by its mean error, averaged over members."""
        rows, _, logits = self.member_forward(x)
        errors = (self.output_activation(logits) - rows).pow(2) / self.error_mean.view(-1, 1, 1)
        return errors.mean(0).reshape(-1, *self.input_shape)

    def code_precision(self) -> Tensor:
        """The inverse of each member's running code covariance (plus a small jitter): ``(members, c, c)``."""
        eye = torch.eye(self.code_size, dtype=self.code_cov.dtype, device=self.code_cov.device)
        return torch.linalg.inv(self.code_cov + JITTER * eye)

    def anomaly_score(self, x: Tensor, precision: Tensor | None = None, kept: Tensor | None = None) -> Tensor:
        """Per sample: the members' mean of reconstruction error over its running mean, plus squared
        Mahalanobis distance of the code over the code size, plus ``neighbour_weight`` times the distance to the
        ``neighbours``-th nearest kept training row over its mean (each about 1 for typical rows).

        ``precision``: :meth:`code_precision`, and ``kept``: :meth:`kept_rows`, when computed once for many calls
        (as the ONNX export does: their sizes are data, which a graph of fixed operations cannot read).
        """
        rows, codes, logits = self.member_forward(x)
        errors = self.member_nll(logits, rows) / self.error_mean.unsqueeze(1)
        precision = self.code_precision() if precision is None else precision
        distances = mahalanobis_sq(codes, self.code_mean, precision) / self.code_size
        score = errors + distances
        if self.neighbours:  # a scale of 0 (a checkpoint from before the term) leaves it out
            score = score + self.neighbour_weight * kth_neighbour_distance(rows, self.kept_rows() if kept is None else kept, self.neighbours) * self.neighbour_scale.unsqueeze(1)
        return score.mean(0)
