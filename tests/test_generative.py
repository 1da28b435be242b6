"""The generative families (beta and free bits, IWAE, beta-TC-VAE, AAE, VQ-VAE) and the loop's hooks, each
against an independent computation."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal

import aekit
from aekit.checkpoint import model_config
from aekit.runfiles import CONFIG
from aekit.cli import main
from aekit.errors import CheckpointError, ConfigError
from aekit.losses import codebook_perplexity, free_bits_kl, importance_weighted_bound, kl_normal_standard, total_correlation_terms
from aekit.training.callbacks import active_units


def rows(n: int = 64, d: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.sigmoid(3 * torch.randn(n, 3, generator=g) @ torch.randn(3, d, generator=g))


# -- beta and free bits ------------------------------------------------------------------------------


def test_the_kl_term_is_beta_times_the_closed_form_kl():
    x = rows()
    for beta in (0.0, 0.5, 3.0):
        torch.manual_seed(0)
        model = aekit.get_model("vae", input_shape=(12,), code_size=4, hidden=(8,), beta=beta).eval()
        q = model.posterior(x)
        expected = beta * kl_normal_standard(q.mean, q.logvar).mean()
        torch.testing.assert_close(model(x).losses["kl"], expected)


def test_free_bits_is_the_sum_of_unit_kls_floored_at_lambda():
    kl_units = torch.tensor([[0.1, 2.0, 0.0], [0.3, 1.0, 0.0]])  # batch means 0.2, 1.5, 0
    assert free_bits_kl(kl_units, 0.5).item() == pytest.approx(0.5 + 1.5 + 0.5)
    assert free_bits_kl(kl_units, 0.0).item() == pytest.approx(kl_units.sum(1).mean().item())
    # a unit under the floor gets no gradient: the optimiser has no reason to close it further
    units = kl_units.clone().requires_grad_()
    free_bits_kl(units, 0.5).backward()
    assert units.grad[:, 0].abs().sum() == 0 and units.grad[:, 1].abs().sum() > 0


def test_free_bits_act_while_training_only():
    model = aekit.get_model("vae", input_shape=(12,), code_size=4, hidden=(8,), free_bits=0.5)
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # q = the prior for every input: each unit's KL is 0
        last.weight.zero_()
        last.bias.zero_()
    assert model.train()(rows()).losses["kl"].item() == pytest.approx(4 * 0.5)
    assert model.eval()(rows()).losses["kl"].item() == pytest.approx(0.0, abs=1e-6)


# -- IWAE ----------------------------------------------------------------------------------------------


def test_importance_weighted_bound_against_a_direct_computation():
    log_w = torch.randn(7, 3, dtype=torch.float64) * 5
    expected = torch.log(torch.exp(log_w).mean(0))
    torch.testing.assert_close(importance_weighted_bound(log_w), expected)


def test_iwae_loss_is_minus_the_bound_of_its_weights_and_k1_is_the_elbo():
    x = rows(8)
    model = aekit.get_model("iwae", input_shape=(12,), code_size=3, hidden=(8,), samples=6).train()
    torch.manual_seed(1)
    out = model(x)
    torch.manual_seed(1)
    log_w = model.log_weights(x, 6)  # the same draws
    torch.testing.assert_close(out.loss, -importance_weighted_bound(log_w).mean())
    # with one sample the split is the ELBO's: reconstruction = -log p(x|z), kl = log q - log p
    single = aekit.get_model("iwae", input_shape=(12,), code_size=3, hidden=(8,), samples=1).train()
    torch.manual_seed(2)
    terms = single(x).losses
    torch.manual_seed(2)
    q = single.posterior(x)
    z = q.rsample(1)[0]
    log_px = -single.reconstruction_nll(single.decode_logits(z), x)
    log_ratio = Normal(q.mean, (0.5 * q.logvar).exp()).log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(terms["reconstruction"], -log_px.mean())
    torch.testing.assert_close(terms["kl"], log_ratio.mean(), rtol=1e-4, atol=1e-5)


def test_log_likelihood_matches_the_marginal_by_quadrature():
    """A one-dimensional code: log p(x) = log of the integral of p(x|z) N(z; 0, 1) over z, on a fine grid."""
    from aekit.apps import log_likelihood

    torch.manual_seed(0)
    model = aekit.get_model("vae", input_shape=(6,), code_size=1, hidden=(8,)).double().eval()
    x = torch.bernoulli(torch.full((5, 6), 0.4, dtype=torch.float64))
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    with torch.no_grad():
        logits = model.decode_logits(z[:, None])  # (grid, 6)
        log_joint = -torch.nn.functional.binary_cross_entropy_with_logits(logits[:, None].expand(-1, 5, -1), x.expand(len(z), -1, -1), reduction="none").sum(-1)
        log_joint = log_joint + Normal(0.0, 1.0).log_prob(z)[:, None]
    exact = torch.logsumexp(log_joint, dim=0) + math.log(z[1] - z[0])
    estimate = log_likelihood(model, x, k=20000)
    np.testing.assert_allclose(estimate, exact.numpy(), atol=0.02)
    assert (estimate < exact.numpy() + 0.02).all()  # a lower bound, up to the estimate's noise


def test_log_likelihood_binarises_once_and_repeats_with_its_seed():
    from aekit.apps import log_likelihood

    model = aekit.get_model("vae", input_shape=(12,), code_size=3, hidden=(8,))
    x = rows(16)
    first, again = (log_likelihood(model, x, k=20, binarize=True, seed=3) for _ in range(2))
    np.testing.assert_array_equal(first, again)
    torch.manual_seed(3)
    binary = torch.bernoulli(x)  # the draw log_likelihood makes after the same seed, then its samples
    np.testing.assert_allclose(first, model.eval().log_likelihood(binary, k=20).detach().numpy(), rtol=1e-6)
    with pytest.raises(aekit.DataError, match=r"\[0, 1\]"):
        log_likelihood(model, x * 2, k=5, binarize=True)
    with pytest.raises(ConfigError, match="no likelihood estimate"):
        log_likelihood(aekit.get_model("ae", input_shape=(12,), code_size=3, hidden=(8,)), x, k=5)
    with pytest.raises(ConfigError, match="positive"):
        log_likelihood(model, x, k=0)


def test_evaluate_estimates_the_log_likelihood_from_the_cli(tmp_path, capsys):
    from aekit.apps import log_likelihood

    run = tmp_path / "vae"
    assert main(["train", "--model", "vae", "--binarize", "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--log-likelihood", "30", "--binarize", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    test = aekit.load_dataset("digits", split="test")
    assert result["log_likelihood_k"] == 30
    assert result["log_likelihood"] == pytest.approx(float(log_likelihood(aekit.load(run), test.x, k=30, binarize=True).mean()), rel=1e-5)
    assert main(["evaluate", str(run), "--log-likelihood", "30"]) == 0
    captured = capsys.readouterr()
    assert "nats per sample" in captured.out and "--binarize" in captured.err  # grey digits: the note says what to add
    assert main(["evaluate", str(run), "--binarize"]) != 0
    assert "--log-likelihood" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "vae"), "--log-likelihood", "0"]) != 0


# -- beta-TC-VAE ---------------------------------------------------------------------------------------


def test_total_correlation_terms_are_exact_when_the_batch_is_the_data_set():
    torch.manual_seed(0)
    n, units = 6, 3
    mean, logvar = torch.randn(n, units, dtype=torch.float64), torch.randn(n, units, dtype=torch.float64) * 0.5
    z = mean + (0.5 * logvar).exp() * torch.randn(n, units, dtype=torch.float64)
    mi, tc, dimension_kl = total_correlation_terms(z, mean, logvar, dataset_size=n)
    # brute force: q(z) = 1/N sum_n q(z | x_n), and its marginals, with torch.distributions
    components = Normal(mean.unsqueeze(0), (0.5 * logvar).exp().unsqueeze(0))  # [., n, u]
    per_unit = components.log_prob(z.unsqueeze(1))  # [i, n, u]
    log_qz = torch.logsumexp(per_unit.sum(2), 1) - math.log(n)
    log_marginals = (torch.logsumexp(per_unit, 1) - math.log(n)).sum(1)
    log_qz_x = Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(mi, log_qz_x - log_qz)
    torch.testing.assert_close(tc, log_qz - log_marginals)
    torch.testing.assert_close(dimension_kl, log_marginals - log_pz)


def test_total_correlation_estimate_of_q_z_is_unbiased_on_minibatches():
    torch.manual_seed(0)
    n, m, units = 40, 8, 2
    mean, logvar = torch.randn(n, units, dtype=torch.float64), torch.full((n, units), -1.0, dtype=torch.float64)
    z = mean[0] + (0.5 * logvar[0]).exp() * torch.randn(units, dtype=torch.float64)  # one code from x_0
    exact = torch.exp(Normal(mean, (0.5 * logvar).exp()).log_prob(z).sum(1)).mean()
    estimates = []
    for _ in range(4000):  # batches holding x_0 first, then m - 1 others drawn without replacement
        idx = torch.cat([torch.tensor([0]), 1 + torch.randperm(n - 1)[: m - 1]])
        zs = torch.cat([z.unsqueeze(0), mean[idx[1:]]])  # only row 0's code is used below
        mi, tc, _ = total_correlation_terms(zs, mean[idx], logvar[idx], dataset_size=n)
        log_qz_x = Normal(mean[0], (0.5 * logvar[0]).exp()).log_prob(z).sum()
        estimates.append(torch.exp(log_qz_x - mi[0]))  # mi = log q(z|x) - log q(z)
    assert torch.stack(estimates).mean().item() == pytest.approx(exact.item(), rel=0.03)


def test_beta_tcvae_terms_sum_to_the_kl_and_the_weights_apply():
    model = aekit.get_model("beta-tcvae", input_shape=(12,), code_size=3, hidden=(8,), alpha=2.0, beta=3.0, gamma=0.5).train()
    model.adapt(rows(100))
    assert int(model.dataset_size) == 100
    torch.manual_seed(0)
    out = model(rows(16))
    torch.manual_seed(0)
    q = model.posterior(rows(16))
    z = q.rsample()
    mi, tc, dkl = total_correlation_terms(z, q.mean, q.logvar, 100)
    torch.testing.assert_close(out.losses["mutual_info"], 2.0 * mi.mean())
    torch.testing.assert_close(out.losses["total_correlation"], 3.0 * tc.mean())
    torch.testing.assert_close(out.losses["dimension_kl"], 0.5 * dkl.mean())
    one_sample_kl = Normal(q.mean, (0.5 * q.logvar).exp()).log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(z).sum(1)
    torch.testing.assert_close(mi + tc + dkl, one_sample_kl)
    with pytest.raises(ConfigError, match="free_bits"):
        aekit.get_model("beta-tcvae", input_shape=(12,), free_bits=0.5)


# -- adversarial autoencoder ---------------------------------------------------------------------------


def test_aae_each_group_learns_only_from_its_own_terms():
    model = aekit.get_model("aae", input_shape=(12,), code_size=2, hidden=(8,), discriminator=(8,)).train()
    groups = model.parameter_groups()
    assert {id(p) for p in groups["discriminator"]} == {id(p) for p in model.discriminator.parameters()}
    assert len(groups["model"]) + len(groups["discriminator"]) == len(list(model.parameters()))
    torch.manual_seed(0)
    out = model(rows(16))
    assert set(out.group_losses) == {"discriminator"} and "discriminator" in out.losses
    torch.testing.assert_close(out.loss, out.losses["reconstruction"] + out.losses["adversarial"])
    aekit.Trainer._backward(out.loss, out.group_losses, groups, torch.amp.GradScaler("cpu", enabled=False))
    # the expected gradients, one group at a time, by autograd.grad
    torch.manual_seed(0)
    again = model(rows(16))
    model_grads = torch.autograd.grad(again.loss, groups["model"], retain_graph=True)
    critic_grads = torch.autograd.grad(again.group_losses["discriminator"], groups["discriminator"])
    for p, g in zip([*groups["model"], *groups["discriminator"]], [*model_grads, *critic_grads]):
        torch.testing.assert_close(p.grad, g)


def test_aae_samples_decode_prior_draws():
    model = aekit.get_model("aae", input_shape=(12,), code_size=2, hidden=(8,)).eval()
    torch.manual_seed(0)
    samples = model.sample(5)
    torch.manual_seed(0)
    torch.testing.assert_close(samples, model.decode(torch.randn(5, 2)))


# -- VQ-VAE ----------------------------------------------------------------------------------------------


def vq_model(**options):
    return aekit.get_model("vqvae", input_shape=(1, 8, 8), channels=(4,), code_size=3, codebook_size=5, **options)


def test_vq_codes_are_the_nearest_codebook_vectors_and_pass_gradients_straight_through():
    model = vq_model().eval()
    h = torch.randn(2, 3, 4, 4, requires_grad=True)
    q = model.latent(h)
    rows_ = h.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    nearest = torch.cdist(rows_, model.codebook).argmin(1)  # brute force
    assert torch.equal(q.indices.flatten(), nearest)
    torch.testing.assert_close(q.sample().detach().permute(0, 2, 3, 1).reshape(-1, 3), model.codebook[nearest])
    q.sample().sum().backward()
    torch.testing.assert_close(h.grad, torch.ones_like(h))  # straight through: d z / d z_e = identity
    expected = (h.detach() - q.z_q).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(q.commitment(), expected)


def test_vq_codebook_follows_the_moving_averages():
    model = vq_model(decay=0.9, restart_below=0.0).train()
    model.latent(torch.randn(2, 3, 4, 4))  # the first batch initialises the codebook from its outputs
    counts, sums = model.code_counts.clone(), model.code_sums.clone()
    h = torch.randn(2, 3, 4, 4)
    flat = h.permute(0, 2, 3, 1).reshape(-1, 3)
    assigned = torch.cdist(flat, model.codebook).argmin(1)
    model.latent(h)
    one_hot = torch.nn.functional.one_hot(assigned, 5).double()
    new_counts = 0.9 * counts.double() + 0.1 * one_hot.sum(0)
    new_sums = 0.9 * sums.double() + 0.1 * one_hot.t() @ flat.double()
    total = new_counts.sum()
    smoothed = (new_counts + 1e-5) / (total + 5e-5) * total
    torch.testing.assert_close(model.codebook.double(), new_sums / smoothed[:, None], rtol=1e-5, atol=1e-6)


def test_vq_unused_codes_restart_at_encoder_outputs():
    model = vq_model(restart_below=0.5).train()
    h = torch.zeros(2, 3, 4, 4)  # every position the same: one code takes all, the others die
    model.latent(h)
    model.latent(h)
    assert torch.allclose(model.codebook, torch.zeros(5, 3), atol=1e-6)  # every code restarted at an output (0)


def test_codebook_perplexity_against_the_entropy():
    usage = torch.tensor([3.0, 1.0, 0.0, 4.0])
    p = usage / usage.sum()
    expected = math.exp(-sum(v * math.log(v) for v in p.tolist() if v > 0))
    assert codebook_perplexity(usage).item() == pytest.approx(expected)
    assert codebook_perplexity(torch.tensor([5.0, 5.0, 5.0])).item() == pytest.approx(3.0)


def test_vq_samples_follow_the_learnt_code_frequencies():
    model = vq_model()
    with pytest.raises(ConfigError, match="not been trained"):
        model.sample(3)
    model.position_counts.zero_()
    model.position_counts[..., 2] = 1.0  # every position always used code 2
    samples = model.eval().sample(4)
    z = model.codebook[2].reshape(1, 3, 1, 1).expand(4, 3, 4, 4)
    torch.testing.assert_close(samples, model.decode(z))


# -- the loop's hooks ------------------------------------------------------------------------------------


def test_kl_warmup_raises_beta_linearly_and_validation_uses_its_value():
    model = aekit.get_model("vae", input_shape=(12,), code_size=3, hidden=(8,), beta=2.0)
    seen = []

    class Spy(aekit.Callback):
        def on_step_start(self, loop):
            seen.append((loop.progress, loop.model.beta))

    history = aekit.fit(model, rows(40), epochs=4, batch_size=10, val_fraction=0.25, kl_warmup=2, progress=False, callbacks=[Spy()])
    for progress, beta in seen:  # Spy runs after the warm-up, which set beta for this step
        assert beta == pytest.approx(2.0 * min(1.0, progress / 2))
    assert history.column("beta") == pytest.approx([1.0, 2.0, 2.0, 2.0])  # the last step's value of each epoch
    assert model.beta == 2.0
    for record in history.records:  # validation with beta = 2, whatever the schedule
        assert record["val_loss"] == pytest.approx(record["val_reconstruction"] + record["val_kl"])
    model.eval()
    q = model.posterior(rows(40)[:10])
    assert model(rows(40)[:10]).losses["kl"].item() == pytest.approx(2.0 * kl_normal_standard(q.mean, q.logvar).mean().item(), rel=1e-5)


def test_a_schedule_needs_a_scalar_the_model_declares():
    with pytest.raises(ConfigError, match="no scalar 'beta'"):
        aekit.fit(aekit.get_model("ae", input_shape=(12,), code_size=3, hidden=(8,)), rows(), epochs=1, kl_warmup=2, progress=False)


def test_active_units_count_posterior_mean_variances_above_the_threshold():
    means = torch.tensor([[0.0, 1.0, 5.0], [0.05, -1.0, 5.0], [0.1, 0.5, 5.0]])
    variances = np.var(means.numpy(), axis=0, ddof=1)  # 0.0025, 1.08, 0
    assert active_units(means) == int((variances > 0.01).sum()) == 1


def test_weight_average_ends_with_the_moving_average_of_the_weights():
    model = aekit.get_model("ae", input_shape=(12,), code_size=3, hidden=(8,))
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    expected = {k: v.clone().double() for k, v in initial.items()}

    class Average(aekit.Callback):  # the formula by hand, after each step (it runs after the built-in one)
        def on_step_end(self, loop):
            for k, p in loop.model.named_parameters():
                expected[k] = 0.9 * expected[k] + 0.1 * p.detach().double()

        def on_train_epoch_end(self, loop):
            pass

    class Raw(aekit.Callback):  # the weights training continues from, before the average is swapped in
        def on_step_end(self, loop):
            self.raw = {k: p.detach().clone() for k, p in loop.model.named_parameters()}

    # the built-in average swaps in at epoch end: record the by-hand average from the raw weights
    raw = Raw()
    aekit.fit(model, rows(40), epochs=3, batch_size=10, val_fraction=0, ema=0.9, restore_best=False, progress=False, callbacks=[raw, Average()])
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.double(), expected[k], rtol=1e-5, atol=1e-6)
        assert not torch.equal(p, raw.raw[k])


def test_weight_average_resumes_exactly(tmp_path):
    def train(out, epochs, resume=False):
        aekit.seed_everything(0)
        model = aekit.get_model("ae", input_shape=(12,), code_size=3, hidden=(8,))
        aekit.fit(model, rows(40), epochs=epochs, batch_size=10, ema=0.8, out=out, resume=resume, progress=False)
        return model

    whole = train(tmp_path / "a", 4)
    train(tmp_path / "b", 2)
    resumed = train(tmp_path / "b", 4, resume=True)
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_max_grad_norm_clips_the_total_gradient_norm():
    norms = []

    class Norm(aekit.Callback):
        def on_step_end(self, loop):
            norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in loop.model.parameters()])).item())

    model = aekit.get_model("ae", input_shape=(12,), code_size=3, hidden=(8,))
    aekit.fit(model, rows(40) * 50, epochs=2, batch_size=10, lr=1e-4, max_grad_norm=0.01, val_fraction=0, progress=False, callbacks=[Norm()])
    assert max(norms) == pytest.approx(0.01, rel=1e-4)
    with pytest.raises(ConfigError, match="max_grad_norm"):
        aekit.Trainer(max_grad_norm=-1)


def test_every_trainer_setting_has_one_cli_flag_whose_help_shows_its_default():
    import dataclasses

    from aekit.cli import build_parser

    train = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    flags = {a.dest: a for a in train._actions}
    for f in dataclasses.fields(aekit.Trainer):
        if f.metadata.get("cli", True):
            assert f.name in flags and "default" in flags[f.name].help, f.name
            assert flags[f.name].default is None  # "not given": the Trainer's default applies


def test_metrics_csv_logs_beta_and_active_units_from_the_cli(tmp_path):
    assert main(["train", "--model", "vae", "--epochs", "3", "--kl-warmup", "2", "--quiet", "--out", str(tmp_path / "r")]) == 0
    records = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    assert [float(r["beta"]) for r in records] == pytest.approx([0.5, 1.0, 1.0])
    assert all(0 <= int(r["active_units"]) <= 16 for r in records)


# -- configs and checkpoints -------------------------------------------------------------------------------


def test_config_records_inherited_options_and_rebuilds_every_model():
    config = aekit.get_model("vae").config
    assert {"hidden", "activation", "code_size", "beta", "free_bits", "input_scaling"} <= set(config)
    for name in aekit.list_models():
        model = aekit.get_model(name, input_shape=(1, 8, 8), code_size=2)
        rebuilt = aekit.get_model(name, **model.config)
        assert rebuilt.config == model.config, name


def test_saving_an_unregistered_subclass_is_refused(tmp_path):
    class Quieter(aekit.Autoencoder):
        def regularizers(self, x, z, q):
            return {"l1": z.abs().mean()}

    with pytest.raises(CheckpointError, match="not registered"):
        aekit.save(Quieter(input_shape=(4,), code_size=2, hidden=()), tmp_path / "m")


def test_a_checkpoint_from_a_newer_format_is_refused(tmp_path):
    model = aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=())
    aekit.save(model, tmp_path / "m")
    config = model_config(model)
    (tmp_path / "m" / CONFIG).write_text(__import__("json").dumps({**config, "format": config["format"] + 1}))
    with pytest.raises(CheckpointError, match="upgrade aekit"):
        aekit.load(tmp_path / "m")


# -- the applications with the new families ------------------------------------------------------------


def test_applications_take_spatial_codes():
    from aekit.apps.common import encode
    from aekit.apps.generate import interpolate, traversal

    model = vq_model().eval()
    x = torch.rand(6, 1, 8, 8)
    assert encode(model, x).shape == (6, 3 * 4 * 4)  # one row per sample for embeddings and search
    line = interpolate(model, x[0], x[1], steps=5)
    z = model.encode(x[:2])
    torch.testing.assert_close(line[2], model.decode(0.5 * z[:1] + 0.5 * z[1:])[0])
    with pytest.raises(ConfigError, match="map of shape"):
        traversal(model, x[0], x)


def test_every_new_family_trains_and_samples_from_the_cli(tmp_path):
    for name in ("iwae", "beta-tcvae", "aae", "vqvae", "vae-gan"):
        run = tmp_path / name
        extra = ["--option", "channels=[8]"] if name in ("vqvae", "vae-gan") else []
        assert main(["train", "--model", name, "--epochs", "2", "--quiet", "--out", str(run), *extra]) == 0
        assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / f"{name}.png")]) == 0
        assert (tmp_path / f"{name}.png").stat().st_size > 0
