"""Loss terms and divergences as pure functions, one formula each.

Reconstruction losses are negative log-likelihoods of a decoder distribution
p(x | z) (up to constants where the name says so). They take tensors of shape
``(batch, *sample_shape)``, sum over a sample's features and return one value
per sample, shape ``(batch,)``: models average over the batch, applications
(anomaly scores, likelihood estimates) use the per-sample values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


# -- decoder likelihoods ---------------------------------------------------------------------


def squared_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """``sum_i (x_hat_i - x_i)^2`` per sample.

    Twice the unit-variance Gaussian NLL minus its constant (Goodfellow et al.,
    *Deep Learning*, eq. 5.65). Summed over pixels and averaged over images it
    is the error reported by Hinton & Salakhutdinov (2006) for MNIST.
    """
    return (x_hat - x).pow(2).flatten(1).sum(1)


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Each channel of ``images`` ``(batch, channels, height, width)`` convolved with a Gaussian of ``sigma``
    pixels, truncated at ``round(3 sigma)`` pixels and renormalised, zeros outside the image (separable)."""
    radius = max(1, int(3 * sigma + 0.5))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).repeat(images.shape[1], 1, 1, 1)  # (channels, 1, 1, width): one per channel
    rows = F.conv2d(images, kernel, padding=(0, radius), groups=images.shape[1])
    return F.conv2d(rows, kernel.transpose(2, 3), padding=(radius, 0), groups=images.shape[1])


def smoothed_squared_error(x_hat: Tensor, x: Tensor, sigma: float) -> Tensor:
    """``sum_i ((G_sigma * (x_hat - x))_i)^2`` per image ``(batch, channels, height, width)``: the squared error of
    the residual image blurred by a Gaussian of ``sigma`` pixels.

    An anomaly score for images. A reconstruction of a normal image misses by thin, scattered slivers along
    the strokes, which the blur averages away; a part the model cannot draw leaves a blob of one sign, which
    it keeps. (The structural idea of Bergmann et al. 2019, who compare reconstructions by SSIM.)
    """
    return gaussian_blur(x_hat - x, sigma).pow(2).flatten(1).sum(1)


def absolute_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """``sum_i |x_hat_i - x_i|`` per sample: the unit-scale Laplace NLL minus ``d log 2``."""
    return (x_hat - x).abs().flatten(1).sum(1)


def gaussian_nll(mean: Tensor, x: Tensor, sigma: float = 1.0) -> Tensor:
    """``-log N(x; mean, sigma^2 I) = sum_i (x_i - mean_i)^2 / (2 sigma^2) + d (log sigma + log(2 pi) / 2)``, in nats."""
    d = x[0].numel()
    return squared_error(mean, x) / (2 * sigma**2) + d * (math.log(sigma) + 0.5 * LOG_2PI)


def bernoulli_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-sum_i [x_i log p_i + (1 - x_i) log(1 - p_i)]`` with ``p = sigmoid(logits)``, in nats.

    Binary cross-entropy, computed from the logits so that it stays exact
    where the sigmoid saturates; targets may be any value in [0, 1].
    """
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def categorical_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``-sum_g sum_c x_gc log softmax(logits_g)_c``: softmax cross-entropy over the last axis.

    For one-hot ``x`` this is ``-sum_g log p_g(class_g)``, the categorical NLL
    of every group (every position of the leading axes) of categories.
    """
    return -(x * F.log_softmax(logits, dim=-1)).flatten(1).sum(1)


def multinomial_nll(logits: Tensor, bags: Tensor) -> Tensor:
    """``-sum_j (w_j / sum_k w_k) log softmax(logits)_{v_j}`` per document: the cross-entropy of a document's
    words under a softmax over the vocabulary.

    ``bags`` ``(batch, 2, length)`` hold word ids ``v_j`` and their weights ``w_j`` (counts, or TF-IDF
    weights: the ``bow`` architecture's); ``logits`` ``(batch, vocabulary)``. With counts it is the
    multinomial NLL of the document divided by its length, the mean negative log-probability of its words
    (NVDM, Miao et al. 2016, eq. 5, per word); a document without words costs 0.
    """
    ids, weights = bags[:, 0].long(), bags[:, 1].float()
    shares = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
    return -(shares * F.log_softmax(logits.float(), dim=-1).gather(1, ids)).sum(1)


@dataclass(frozen=True)
class ReconstructionLoss:
    """A reconstruction loss and which decoder output it reads."""

    fn: Callable[[Tensor, Tensor], Tensor]
    #: True when ``fn`` takes the decoder's pre-activation output (logits).
    from_logits: bool = False
    #: The output activation the loss assumes, if any (``bce`` needs probabilities).
    output_activation: str | None = None
    #: True when ``fn`` is a normalised negative log-likelihood (usable in an ELBO).
    is_nll: bool = False


_BERNOULLI = ReconstructionLoss(bernoulli_nll, from_logits=True, output_activation="sigmoid", is_nll=True)

RECONSTRUCTION_LOSSES: dict[str, ReconstructionLoss] = {
    "mse": ReconstructionLoss(squared_error),
    "l1": ReconstructionLoss(absolute_error),
    "bce": _BERNOULLI,
    "bernoulli": _BERNOULLI,
    "gaussian": ReconstructionLoss(gaussian_nll, is_nll=True),
    "categorical": ReconstructionLoss(categorical_nll, from_logits=True, output_activation="softmax", is_nll=True),
    "multinomial": ReconstructionLoss(multinomial_nll, from_logits=True, output_activation="softmax", is_nll=True),
}


# -- latent divergences and densities ----------------------------------------------------------


def kl_normal_standard_units(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean_j, exp(logvar_j)) || N(0, 1)) = 1/2 (exp(logvar_j) + mean_j^2 - 1 - logvar_j)`` of every unit (elementwise).

    Kingma & Welling (2014), *Auto-Encoding Variational Bayes*, Appendix B.
    """
    return 0.5 * (logvar.exp() + mean.pow(2) - 1.0 - logvar)


def kl_normal_standard(mean: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(mean, diag(exp(logvar))) || N(0, I))`` per sample: the units' KL summed over dim 1."""
    return kl_normal_standard_units(mean, logvar).sum(1)


def free_bits_kl(kl_units: Tensor, free_bits: float) -> Tensor:
    """``sum_j max(lambda, mean_batch KL_j)``: the KL term with free bits (Kingma et al. 2016, eq. 15).

    ``kl_units`` is ``(batch, units)``; a unit whose batch-mean KL is below
    ``lambda`` nats costs ``lambda`` and gets no gradient, so the optimiser has
    no reason to close it. ``free_bits=0`` gives the plain batch-mean KL.
    """
    return kl_units.mean(0).clamp_min(free_bits).sum()


def log_normal_units(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z_j; mean_j, exp(logvar_j))`` of every unit (elementwise, broadcasting)."""
    return -0.5 * ((z - mean).pow(2) / logvar.exp() + logvar + LOG_2PI)


def importance_weighted_bound(log_weights: Tensor) -> Tensor:
    """``log (1/k) sum_i w_i`` from ``log w_i`` of shape ``(k, batch)``: the k-sample bound of Burda et al. (2016, eq. 8).

    ``w_i = p(x, z_i) / q(z_i | x)`` with ``z_i ~ q(z | x)``; k = 1 is the
    ELBO, and the bound rises towards ``log p(x)`` with k.
    """
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


def total_correlation_terms(z: Tensor, mean: Tensor, logvar: Tensor, dataset_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Index-code mutual information, total correlation and dimension-wise KL, per sample, from one batch.

    Chen et al. (2018), *Isolating Sources of Disentanglement in VAEs*, eq. 2:
    ``KL = MI + TC + dimension-wise KL``. The aggregate posterior
    ``q(z) = 1/N sum_n q(z | x_n)`` at ``z_i ~ q(z | x_i)`` is estimated from
    the batch of ``M`` as in their minibatch stratified sampling: the own
    sample ``x_i`` weighs ``1/N`` and each of the other ``M - 1`` stands for
    ``(N - 1) / (M - 1)`` of the rest, ``(N - 1) / (N (M - 1))``; likewise per
    unit for the marginals ``q(z_iu)``. The estimate of ``q(z_i)`` is unbiased,
    and exact when the batch is the whole data set. Returns ``(log q(z|x) - log q(z),
    log q(z) - sum_u log q(z_u), sum_u log q(z_u) - log p(z))``; their sum is the
    one-sample estimate ``log q(z|x) - log p(z)`` of the KL. Tensors are ``(batch, units)``.
    """
    n, m = dataset_size, len(z)
    pairs = log_normal_units(z.unsqueeze(1), mean.unsqueeze(0), logvar.unsqueeze(0))  # [i, j, u] = log q(z_iu | x_j)
    others = math.log((n - 1) / (n * max(m - 1, 1))) if n > 1 else -math.inf
    log_weights = torch.full((m, m), others, dtype=z.dtype, device=z.device)
    log_weights.fill_diagonal_(-math.log(n))
    log_qz = torch.logsumexp(log_weights + pairs.sum(2), dim=1)
    log_qz_product = torch.logsumexp(log_weights.unsqueeze(2) + pairs, dim=1).sum(1)
    log_qz_x = log_normal_units(z, mean, logvar).sum(1)
    log_pz = log_normal_units(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return log_qz_x - log_qz, log_qz - log_qz_product, log_qz_product - log_pz


def log_normal_diag(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """``log N(z; mean, diag(exp(logvar)))`` summed over the last axis."""
    return -0.5 * ((z - mean).pow(2) / logvar.exp() + logvar + LOG_2PI).sum(-1)


def log_normal_standard(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last axis."""
    return -0.5 * (z.pow(2) + LOG_2PI).sum(-1)


def kl_bernoulli(rho: float, rho_hat: Tensor, eps: float = 1e-6) -> Tensor:
    """``sum_j [rho log(rho / rho_hat_j) + (1 - rho) log((1 - rho) / (1 - rho_hat_j))]``.

    The sparsity penalty of Ng's sparse autoencoder (CS294A lecture notes,
    2011): the KL divergence between Bernoulli(rho) and Bernoulli(rho_hat_j),
    rho_hat_j the mean activation of code unit j. ``rho_hat`` is clamped to
    [eps, 1 - eps] so a dead unit gives a large finite penalty.
    """
    rho_hat = rho_hat.clamp(eps, 1 - eps)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


# -- code penalties ------------------------------------------------------------------------------


def l1_penalty(z: Tensor) -> Tensor:
    """``sum_j |z_j|`` per sample (the sparse autoencoder's L1 penalty, Goodfellow et al. eq. 14.2)."""
    return z.abs().sum(1)


def contractive_penalty_sigmoid(h: Tensor, weight: Tensor) -> Tensor:
    """``||J||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2`` for ``h = sigmoid(W x + b)``, per sample.

    The closed form of Rifai et al. (2011), *Contractive Auto-Encoders*, eq. 5:
    the encoder's Jacobian is ``diag(h (1 - h)) W``.
    """
    return (h * (1 - h)).pow(2) @ weight.pow(2).sum(1)


def jacobian_frobenius_sq(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``||d f(x) / d x||_F^2`` per sample, exactly, for any batched function ``f``.

    Uses one reverse-mode pass per output unit, vectorised over the outputs and
    the batch (``torch.func.vmap`` of ``jacrev``); differentiable, so it can be
    minimised. ``f`` must treat samples independently (no batch statistics).
    """
    from torch.func import jacrev, vmap

    def single(sample: Tensor) -> Tensor:
        return f(sample.unsqueeze(0)).squeeze(0)

    jacobians = vmap(jacrev(single))(x)  # (batch, code, *input_shape)
    return jacobians.pow(2).flatten(1).sum(1)


def jacobian_frobenius_sq_estimate(f: Callable[[Tensor], Tensor], x: Tensor, probes: int = 1) -> Tensor:
    """An unbiased estimate of ``||d f(x) / d x||_F^2`` per sample from ``probes`` random projections.

    Hutchinson's trick: for ``v ~ N(0, I)`` over the outputs,
    ``E ||v^T J||^2 = tr(J J^T) = ||J||_F^2``. Each probe costs one
    vector-Jacobian product instead of one per output unit. ``f`` must treat
    samples independently.
    """
    differentiable = torch.is_grad_enabled()  # under no_grad (evaluation) the estimate is only a number
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        z = f(x)
        total = torch.zeros(len(x), dtype=z.dtype, device=z.device)
        for _ in range(probes):
            v = torch.randn_like(z)
            (vjp,) = torch.autograd.grad(z, x, grad_outputs=v, create_graph=differentiable)
            total = total + vjp.pow(2).flatten(1).sum(1)
    return total / probes if differentiable else (total / probes).detach()


# -- image quality -------------------------------------------------------------------------------


def psnr(x_hat: Tensor, x: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per sample, ``10 log10(data_range^2 / MSE)``, in dB."""
    mse = (x_hat - x).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-12))


def codebook_perplexity(usage: Tensor) -> Tensor:
    """``exp(-sum_k p_k log p_k)`` with ``p_k`` the share of positions given code ``k``: the number of
    codes in effective use (van den Oord et al. 2017 log it; 1 when one code takes all, K when all are used alike)."""
    p = usage.float() / usage.sum().clamp_min(1)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
