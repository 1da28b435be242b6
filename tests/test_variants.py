"""Each variant's own maths, against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA
from torch.autograd.functional import jacobian
from torch.distributions import Bernoulli, Categorical, Normal

import aekit
import aekit.cli
from aekit.corruption import corrupt, gaussian_noise, masking_noise, salt_and_pepper_noise
from aekit.errors import ConfigError
from aekit.losses import bernoulli_nll, categorical_nll, gaussian_nll, kl_bernoulli, kl_normal_standard, psnr
from aekit.training import evaluate_losses


def sse(model, x):
    with torch.no_grad():
        return ((model.eval()(x).x_hat - x) ** 2).flatten(1).sum(1).mean().item()


# -- ae ------------------------------------------------------------------------------------------


def test_overcomplete_ae_copies_and_undercomplete_cannot():
    x = torch.rand(256, 20, generator=torch.Generator().manual_seed(0))  # full-rank noise: nothing to compress
    errors = {}
    for code_size in (5, 40):
        aekit.seed_everything(0)
        model = aekit.get_model("ae", input_shape=(20,), code_size=code_size, hidden=(64,), output_activation="identity")
        aekit.fit(model, x, epochs=400, batch_size=256, lr=3e-3, val_fraction=0, progress=False)
        errors[code_size] = sse(model, x)
    pca = PCA(5).fit(x.numpy())
    pca_error = ((pca.inverse_transform(pca.transform(x.numpy())) - x.numpy()) ** 2).sum(1).mean()
    assert errors[40] < 0.01  # near-zero: it can copy (the variance per sample is 20/12 = 1.67)
    assert errors[5] > 0.5 * pca_error > 0.5  # it cannot


# -- linear --------------------------------------------------------------------------------------


@pytest.mark.slow  # 8-20 s: the default suite stays under 4 minutes
def test_linear_ae_spans_the_pca_subspace():
    x = aekit.load_dataset("digits", split="all").x.flatten(1)
    k = 8
    pca = PCA(k).fit(x.numpy())
    pca_error = ((pca.inverse_transform(pca.transform(x.numpy())) - x.numpy()) ** 2).sum(1).mean()
    aekit.seed_everything(0)
    model = aekit.get_model("linear", input_shape=(64,), code_size=k)
    aekit.fit(model, x, epochs=4000, batch_size=len(x), lr=1e-2, val_fraction=0, progress=False)
    decoder_columns = model.decoder[0].weight.detach().numpy()  # (64, k)
    largest_angle = np.degrees(subspace_angles(decoder_columns, pca.components_.T)).max()
    assert largest_angle < 2.0
    assert sse(model, x) < 1.02 * pca_error


def test_linear_refuses_nonlinear_options():
    with pytest.raises(ConfigError, match="activation"):
        aekit.get_model("linear", input_shape=(4,), code_size=2, activation="relu")


# -- tied ----------------------------------------------------------------------------------------


def test_tied_shares_one_weight_per_layer_pair_and_gets_gradient_from_both_sides():
    model = aekit.get_model("tied", input_shape=(12,), code_size=3, hidden=(8,))
    untied = aekit.get_model("ae", input_shape=(12,), code_size=3, hidden=(8,))
    weights = 12 * 8 + 8 * 3
    assert sum(p.numel() for p in model.parameters()) == weights + (8 + 3) + (8 + 12)  # weights once, biases both ways
    assert sum(p.numel() for p in untied.parameters()) == 2 * weights + (8 + 3) + (8 + 12)

    # independent computation: the same network with the weights used twice as separate leaves
    x = torch.rand(6, 12)
    model(x).loss.backward()
    w1, w2 = model.encoder[1].weight, model.encoder[3].weight
    e1, e2 = (w.detach().clone().requires_grad_() for w in (w1, w2))
    d1, d2 = (w.detach().clone().requires_grad_() for w in (w1, w2))
    b = [p.detach() for p in (model.encoder[1].bias, model.encoder[3].bias, *model.decoder.biases)]
    z = torch.relu(x @ e1.t() + b[0]) @ e2.t() + b[1]
    x_hat = torch.sigmoid(torch.relu(z @ d2 + b[2]) @ d1 + b[3])
    ((x_hat - x) ** 2).sum(1).mean().backward()
    assert e1.grad.abs().sum() > 0 and d1.grad.abs().sum() > 0  # both sides contribute
    torch.testing.assert_close(w1.grad, e1.grad + d1.grad)
    torch.testing.assert_close(w2.grad, e2.grad + d2.grad)


# -- sparse --------------------------------------------------------------------------------------


def test_sparse_penalties_equal_a_hand_computation():
    x = torch.rand(10, 12)
    l1 = aekit.get_model("sparse", input_shape=(12,), code_size=4, hidden=(8,), penalty="l1", weight=0.3).eval()
    out = l1(x)
    z = out.z.detach().numpy()
    assert out.losses["sparsity"].item() == pytest.approx(0.3 * np.abs(z).sum(1).mean(), rel=1e-5)

    kl = aekit.get_model("sparse", input_shape=(12,), code_size=4, hidden=(8,), penalty="kl", rho=0.05, weight=2.0).eval()
    out = kl(x)
    rho_hat = out.z.detach().double().numpy().mean(0)
    hand = sum(0.05 * math.log(0.05 / r) + 0.95 * math.log(0.95 / (1 - r)) for r in rho_hat)
    assert out.losses["sparsity"].item() == pytest.approx(2.0 * hand, rel=1e-5)
    assert kl_bernoulli(0.05, torch.tensor([0.05, 0.05])).item() == pytest.approx(0.0, abs=1e-9)


def test_kl_sparsity_moves_mean_activations_to_rho():
    data = aekit.load_dataset("digits")
    means = {}
    for weight in (0.0, 3.0):
        aekit.seed_everything(0)
        model = aekit.get_model("sparse", input_shape=data.shape, code_size=16, hidden=(64,), penalty="kl", rho=0.05, weight=weight)
        aekit.fit(model, data, epochs=40, lr=3e-3, progress=False)
        with torch.no_grad():
            means[weight] = model.encode(data.x).mean(0)
    assert abs(means[3.0].mean().item() - 0.05) < 0.02
    assert (means[3.0] - 0.05).abs().max() < 0.1
    assert abs(means[0.0].mean().item() - 0.05) > 0.1  # without the penalty they stay far away


def test_sparse_option_errors():
    with pytest.raises(ConfigError, match="rho"):
        aekit.get_model("sparse", input_shape=(4,), code_size=2, penalty="kl", rho=1.0)
    with pytest.raises(ConfigError, match="sigmoid"):
        aekit.get_model("sparse", input_shape=(4,), code_size=2, penalty="kl", code_activation="relu")
    with pytest.raises(ConfigError, match="penalty"):
        aekit.get_model("sparse", input_shape=(4,), code_size=2, penalty="l2")


# -- denoising -----------------------------------------------------------------------------------


def test_corruption_statistics_match_their_parameters():
    torch.manual_seed(0)
    x = torch.rand(400, 500) * 0.8 + 0.1  # never exactly 0 or 1
    n = x.numel()
    tolerance = lambda p: 5 * math.sqrt(p * (1 - p) / n)  # noqa: E731  (5 binomial standard errors)
    masked = masking_noise(x, 0.3)
    assert abs((masked == 0).float().mean().item() - 0.3) < tolerance(0.3)
    assert torch.equal(masked[masked != 0], x[masked != 0])
    noise = gaussian_noise(x, 0.5) - x
    assert noise.std().item() == pytest.approx(0.5, rel=0.01) and abs(noise.mean().item()) < 0.005
    peppered = salt_and_pepper_noise(x, 0.2)
    assert abs((peppered == 0).float().mean().item() - 0.1) < tolerance(0.1)
    assert abs((peppered == 1).float().mean().item() - 0.1) < tolerance(0.1)
    assert gaussian_noise(x, 2.0, clip=(0.0, 1.0)).min() >= 0
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        corrupt(x, "masking:1.5")
    with pytest.raises(ConfigError, match="Did you mean 'gaussian'"):
        corrupt(x, "gausian:0.1")


def test_denoising_corrupts_only_while_training():
    model = aekit.get_model("denoising", input_shape=(12,), code_size=3, hidden=(8,), noise="masking:0.5")
    x = torch.rand(50, 12)
    model.eval()
    assert torch.equal(model(x).z, model.encode(x))
    model.train()
    assert not torch.allclose(model(x).z, model.encode(x))


def test_denoising_on_mnist_raises_psnr(shared_data):
    train = aekit.load_dataset("mnist", split="train", data_dir=shared_data)
    test = aekit.load_dataset("mnist", split="test", data_dir=shared_data)
    aekit.seed_everything(0)
    model = aekit.get_model("denoising", input_shape=(784,), code_size=64, hidden=(512,), noise="gaussian:0.5", loss="bce")
    aekit.fit(model, train.x[:20_000].flatten(1), epochs=3, lr=1e-3, progress=False)
    clean = test.x[:2000].flatten(1)
    torch.manual_seed(1)
    noisy = corrupt(clean, "gaussian:0.5", clip=(0.0, 1.0))
    with torch.no_grad():
        denoised = model.eval()(noisy).x_hat
    noisy_psnr, denoised_psnr = psnr(noisy, clean).mean().item(), psnr(denoised, clean).mean().item()
    assert denoised_psnr > noisy_psnr + 6, (noisy_psnr, denoised_psnr)


# -- contractive ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"hidden": (), "code_activation": "sigmoid"},  # the closed form
        {"hidden": (7, 5), "activation": "tanh"},  # exact, batched
        {"hidden": (6,), "activation": "relu", "code_activation": "sigmoid"},
    ],
)
def test_contractive_penalty_equals_per_sample_autograd_jacobian(options):
    model = aekit.get_model("contractive", input_shape=(9,), code_size=4, weight=0.5, **options).double()
    x = torch.rand(6, 9, dtype=torch.double)
    out = model(x)
    brute = [jacobian(lambda s: model.encoder(s.unsqueeze(0)).squeeze(0), sample).pow(2).sum() for sample in x]
    torch.testing.assert_close(model.jacobian_penalty(x, out.z), torch.stack(brute))
    assert out.losses["contractive"].item() == pytest.approx(0.5 * torch.stack(brute).mean().item())


def test_hutchinson_estimate_is_unbiased_for_the_exact_penalty():
    model = aekit.get_model("contractive", input_shape=(9,), code_size=4, hidden=(7,), activation="tanh", jacobian="estimate", probes=1).double()
    x = torch.rand(5, 9, dtype=torch.double)
    exact = torch.stack([jacobian(lambda s: model.encoder(s.unsqueeze(0)).squeeze(0), sample).pow(2).sum() for sample in x])
    torch.manual_seed(0)
    estimates = torch.stack([model.jacobian_penalty(x, None) for _ in range(4000)])  # (draws, samples)
    standard_error = estimates.std(0) / math.sqrt(len(estimates))
    assert ((estimates.mean(0) - exact).abs() < 4 * standard_error).all()
    out = model.train()(x)
    out.loss.backward()
    assert model.encoder[1].weight.grad.abs().sum() > 0
    history = aekit.fit(model.float(), torch.rand(40, 9), epochs=2, val_fraction=0.25, progress=False)  # validation runs under no_grad
    assert np.isfinite(history[-1]["val_contractive"])
    with pytest.raises(ConfigError, match="jacobian"):
        aekit.get_model("contractive", input_shape=(4,), code_size=2, jacobian="approx")


def test_contractive_penalty_on_images():
    model = aekit.get_model("contractive", input_shape=(1, 4, 4), code_size=2, hidden=(5,)).double()
    x = torch.rand(3, 1, 4, 4, dtype=torch.double)
    brute = [jacobian(lambda s: model.encoder(s.unsqueeze(0)).squeeze(0), sample).pow(2).sum() for sample in x]
    torch.testing.assert_close(model.jacobian_penalty(x, model.encode(x)), torch.stack(brute))


# -- vae -----------------------------------------------------------------------------------------


def test_kl_closed_form_equals_monte_carlo():
    torch.manual_seed(0)
    mean, logvar = torch.randn(3, 4, dtype=torch.double), torch.randn(3, 4, dtype=torch.double) * 0.5
    q = Normal(mean, (0.5 * logvar).exp())
    z = q.sample((400_000,))
    monte_carlo = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1).mean(0)
    torch.testing.assert_close(kl_normal_standard(mean, logvar), monte_carlo, rtol=0.02, atol=0.01)


@pytest.fixture(scope="module")
def trained_vae():
    data = aekit.load_dataset("digits")
    binary = (data.x > 0.5).float()
    aekit.seed_everything(0)
    model = aekit.get_model("vae", input_shape=data.shape, code_size=8, hidden=(128,))
    aekit.fit(model, binary, epochs=40, lr=1e-3, progress=False)
    test = (aekit.load_dataset("digits", split="test").x > 0.5).float()
    return model.eval(), test


def test_importance_weighted_estimate_is_above_the_elbo_and_rises_with_k(trained_vae):
    model, x = trained_vae
    torch.manual_seed(0)
    elbo = model.elbo(x, samples=200).mean().item()
    estimates = [model.log_likelihood(x, k=k).mean().item() for k in (1, 10, 100, 1000)]
    assert estimates[0] == pytest.approx(elbo, abs=0.3)  # k = 1 is the ELBO itself
    assert elbo < estimates[1] < estimates[2] < estimates[3]
    assert estimates[3] - elbo > 0.5  # a real gap, not noise


def test_vae_log_weights_and_elbo_match_their_definitions(trained_vae):
    model, x = trained_vae
    x = x[:20].flatten(1)
    q = model.posterior(x)
    std = (0.5 * q.logvar).exp()
    torch.manual_seed(0)
    z = q.mean + std * torch.randn(1, *q.mean.shape)  # the draw log_weights makes after the same seed
    with torch.no_grad():
        log_px = Bernoulli(logits=model.decode_logits(z[0]).flatten(1)).log_prob(x).sum(1)
        log_pz = Normal(0.0, 1.0).log_prob(z[0]).sum(1)
        log_qz = Normal(q.mean, std).log_prob(z[0]).sum(1)
    torch.manual_seed(0)
    torch.testing.assert_close(model.log_weights(x, 1)[0], (log_px + log_pz - log_qz).detach())

    # the ELBO, E_q[log p(x|z)] - KL(q || p) with the KL in closed form, by Monte Carlo over 4000 draws
    torch.manual_seed(1)
    draws = q.mean + std * torch.randn(4000, *q.mean.shape)
    with torch.no_grad():
        expected_log_px = Bernoulli(logits=model.decode_logits(draws.flatten(0, 1)).flatten(1)).log_prob(x.repeat(4000, 1)).sum(1)
        expected = expected_log_px.view(4000, -1).mean(0) - kl_normal_standard(q.mean, q.logvar)
    torch.testing.assert_close(model.elbo(x, samples=4000), expected.detach(), rtol=0.01, atol=0.3)


def test_vae_samples_and_beta():
    model = aekit.get_model("vae", input_shape=(1, 8, 8), code_size=4, hidden=(16,), beta=4.0)
    samples = model.sample(7)
    assert samples.shape == (7, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    out = model.eval()(torch.rand(5, 1, 8, 8))
    q = model.posterior(torch.rand(5, 1, 8, 8))
    assert out.losses["kl"].item() > 0 and q.mean.shape == (5, 4)
    with pytest.raises(ConfigError, match="likelihood"):
        aekit.get_model("vae", input_shape=(4,), code_size=2, loss="mse")


# -- stochastic ----------------------------------------------------------------------------------


def test_decoder_nlls_equal_torch_distributions():
    torch.manual_seed(0)
    mean, x = torch.rand(4, 6), torch.rand(4, 6)
    torch.testing.assert_close(gaussian_nll(mean, x), -Normal(mean, 1.0).log_prob(x).sum(1))
    torch.testing.assert_close(gaussian_nll(mean, x, sigma=0.3), -Normal(mean, 0.3).log_prob(x).sum(1))
    logits, binary = torch.randn(4, 6) * 3, torch.rand(4, 6).round()
    torch.testing.assert_close(bernoulli_nll(logits, binary), -Bernoulli(logits=logits).log_prob(binary).sum(1))
    logits, classes = torch.randn(4, 3, 5), torch.randint(0, 5, (4, 3))
    one_hot = torch.nn.functional.one_hot(classes, 5).float()
    torch.testing.assert_close(categorical_nll(logits, one_hot), -Categorical(logits=logits).log_prob(classes).sum(1))


@pytest.mark.parametrize("loss", ["gaussian", "bernoulli", "categorical"])
def test_stochastic_model_loss_is_its_decoder_distributions_nll(loss):
    shape = (3, 5)
    model = aekit.get_model("stochastic", input_shape=shape, code_size=4, hidden=(8,), loss=loss, code_noise=0.5).eval()
    classes = torch.randint(0, 5, (6, 3))
    x = torch.nn.functional.one_hot(classes, 5).float() if loss == "categorical" else torch.rand(6, *shape).round()
    out = model(x)
    logits = model.decode_logits(out.z)
    distribution = {
        "gaussian": lambda: Normal(out.x_hat, 1.0).log_prob(x).sum((1, 2)),
        "bernoulli": lambda: Bernoulli(logits=logits).log_prob(x).sum((1, 2)),
        "categorical": lambda: Categorical(logits=logits).log_prob(classes).sum(1),
    }[loss]()
    torch.testing.assert_close(out.losses["reconstruction"], -distribution.mean())
    if loss == "categorical":
        torch.testing.assert_close(out.x_hat.sum(-1), torch.ones(6, 3))  # softmax means


def test_stochastic_code_noise_only_while_training():
    model = aekit.get_model("stochastic", input_shape=(6,), code_size=3, hidden=(8,), code_noise=1.0)
    x = torch.rand(200, 6)
    assert torch.equal(model.eval()(x).z, model.encode(x))
    torch.testing.assert_close((model.train()(x).z - model.encode(x)).std(), torch.tensor(1.0), rtol=0.1, atol=0.0)


# -- conv ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 15, 17)])
@pytest.mark.parametrize("name", ["conv", "conv-denoising", "conv-vae"])
def test_conv_output_shape_equals_input_shape(name, shape):
    model = aekit.get_model(name, input_shape=shape, code_size=8, channels=(8, 16))
    x = torch.rand(2, *shape)
    assert model(x).x_hat.shape == x.shape and model.encode(x).shape == (2, 8)


def test_conv_needs_images():
    with pytest.raises(ConfigError, match="image"):
        aekit.get_model("conv", input_shape=(784,))


def test_conv_trains_on_mnist(shared_data):
    train = aekit.load_dataset("mnist", split="train", data_dir=shared_data)
    test = aekit.load_dataset("mnist", split="test", data_dir=shared_data)
    mean_image_error = ((test.x[:1000] - train.x.mean(0)) ** 2).flatten(1).sum(1).mean().item()
    aekit.seed_everything(0)
    model = aekit.get_model("conv", input_shape=(1, 28, 28), code_size=16, channels=(8, 16), loss="bce")
    aekit.fit(model, train.x[:6000], epochs=4, lr=5e-3, batch_size=64, progress=False)
    assert sse(model, test.x[:1000]) < 0.5 * mean_image_error


# -- stacked -------------------------------------------------------------------------------------


def test_unrolled_stack_equals_the_composition_of_its_shallow_stages():
    x = aekit.load_dataset("digits").x.flatten(1)
    aekit.seed_everything(0)
    model = aekit.get_model("stacked", input_shape=(64,), code_size=4, hidden=(32, 16))
    trainer = aekit.Trainer(pretrain_epochs=3, progress=False)
    stages = model.layerwise_stages()
    model.load_stages(stages)  # untrained, to check the mapping alone
    model.pretrain(x, trainer.stage(trainer.pretrain_epochs).fit)  # trains fresh stages and loads them

    def composed(stages, x):
        h = x
        for stage in stages:
            h = stage.encode(h)
        for stage in reversed(stages):
            h = stage.decode(h)
        return h

    trained = []
    aekit.seed_everything(0)
    model2 = aekit.get_model("stacked", input_shape=(64,), code_size=4, hidden=(32, 16))

    def keep(stages):
        trained.extend(stages)
        return stages

    original = model2.layerwise_stages
    model2.layerwise_stages = lambda: keep(original())
    model2.pretrain(x, trainer.stage(trainer.pretrain_epochs).fit)
    with torch.no_grad():
        torch.testing.assert_close(model2.eval()(x).x_hat, composed(trained, x))
        assert not torch.allclose(model2(x).x_hat, aekit.get_model("stacked", input_shape=(64,), code_size=4, hidden=(32, 16))(x).x_hat)
    assert len(trained) == 3 and [s.code_size for s in trained] == [32, 16, 4]


def test_pretraining_runs_once_before_fine_tuning(tmp_path):
    data = aekit.load_dataset("digits")
    aekit.seed_everything(0)
    model = aekit.get_model("stacked", input_shape=data.shape, code_size=8, hidden=(32,))
    history = aekit.fit(model, data, epochs=2, pretrain_epochs=2, out=tmp_path / "run", progress=False)
    assert len(history) == 2
    assert aekit.cli.main(["train", "--model", "stacked", "--pretrain-epochs", "1", "--epochs", "1", "--hidden", "16", "--code-size", "4", "--no-progress", "--out", str(tmp_path / "cli")]) == 0


# -- recirculation -------------------------------------------------------------------------------


def test_recirculation_error_falls_without_backpropagation():
    x = aekit.load_dataset("digits").x.flatten(1)
    aekit.seed_everything(0)
    model = aekit.get_model("recirculation", input_shape=(64,), code_size=16)
    before = evaluate_losses(model, x)["reconstruction"]
    history = aekit.fit(model, x, epochs=30, lr=0.5, optimizer="sgd", val_fraction=0, progress=False)
    errors = history.column("train_reconstruction")
    assert errors[-1] < 0.3 * before and all(b <= a * 1.05 for a, b in zip(errors, errors[1:]))


def _update_and_gradient_cosines(model, x):
    """Cosine between the recirculation update and backprop's negative gradient, per parameter, plus their inner product."""
    model.zero_grad()
    model.train()(x).loss.backward()  # .grad now holds minus the recirculation update
    update = {n: -p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    x_hat = torch.sigmoid(model.decoder[0](torch.sigmoid(model.encoder[1](x))))  # plain backprop, independent
    ((x_hat - x) ** 2).sum(1).mean().backward()
    downhill = {n: -p.grad for n, p in model.named_parameters()}
    inner = sum((update[n] * downhill[n]).sum() for n in update).item()
    cosines = {n: torch.nn.functional.cosine_similarity(update[n].flatten(), downhill[n].flatten(), dim=0).item() for n in update}
    return inner, cosines


def test_recirculation_update_points_downhill():
    x = aekit.load_dataset("digits").x.flatten(1)
    aekit.seed_everything(0)
    model = aekit.get_model("recirculation", input_shape=(64,), code_size=16, regression=0.75)
    inner, cosines = _update_and_gradient_cosines(model, x[:256])
    assert inner > 0 and cosines["decoder.0.weight"] > 0.9
    # Hinton & McClelland: the hidden units' update follows the gradient once the weights are roughly
    # symmetric, which the visible units' learning brings about within a few epochs.
    aekit.fit(model, x, epochs=5, lr=0.5, optimizer="sgd", val_fraction=0, progress=False)
    inner, cosines = _update_and_gradient_cosines(model, x[:256])
    assert inner > 0 and min(cosines.values()) > 0.5, cosines
