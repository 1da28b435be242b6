"""Objectives x architectures: every objective on every network, the old conv names, earlier runs, a user's variant."""

from __future__ import annotations

import copy
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
import aekit.apps
from aekit.cli import main
from aekit.errors import ConfigError
from aekit.models.prior import CodePrior
from aekit.registry import model_class

IMAGE = (1, 6, 5)
# the options that keep each objective tiny (and legal) on a 6 x 5 image; none are architecture-specific
OPTIONS = {"beta-tcvae": {"beta": 1.0}, "aae": {"discriminator": (8,)}, "vqvae": {"codebook_size": 8, "prior_width": 16, "positions": 4}, "ensemble": {"members": 2}}
ARCHITECTURE_OPTIONS = {"mlp": {}, "conv": {"channels": (4,)}}
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "checks" / "fixtures" / "runs-1be1f9d"


def build(name: str, architecture: str, **options):
    if architecture == "mlp" and "hidden" not in getattr(model_class(name), "fixed_options", {}):
        options.setdefault("hidden", (8,))
    return aekit.get_model(name, architecture=architecture, input_shape=IMAGE, code_size=3, **ARCHITECTURE_OPTIONS[architecture], **OPTIONS.get(name, {}), **options)


@pytest.mark.parametrize("name, architecture", list(itertools.product([n for n in aekit.list_models() if not n.startswith("readme")], ["mlp", "conv"])))
def test_every_objective_builds_on_every_architecture_or_says_why(name, architecture):
    allowed = model_class(name).architectures
    if allowed is not None and architecture not in allowed:
        with pytest.raises(ConfigError, match=f"builds on the {allowed[0]} architecture only, not '{architecture}'"):
            build(name, architecture)
        return
    model = build(name, architecture)
    assert model.architecture.name == architecture and model.config["architecture"] == architecture
    x = torch.rand(7, *IMAGE)
    out = model.train()(x)
    assert out.x_hat.shape == x.shape and torch.isfinite(out.loss)
    sum(out.group_losses.values(), out.loss).backward()
    assert all(p.grad is not None for params in model.parameter_groups().values() for p in params)
    assert model.eval().encode(x).shape[0] == 7


@pytest.mark.parametrize("old, objective", [("conv", "ae"), ("conv-vae", "vae"), ("conv-denoising", "denoising")])
def test_the_conv_names_are_their_objective_on_the_conv_architecture(old, objective):
    models = []
    for name, extra in ((old, {}), (objective, {"architecture": "conv"})):
        aekit.seed_everything(0)
        models.append(aekit.get_model(name, input_shape=IMAGE, code_size=3, channels=(4,), **extra).eval())
    first, second = (m.state_dict() for m in models)
    assert list(first) == list(second) and all(torch.equal(first[k], second[k]) for k in first)
    x = torch.rand(4, *IMAGE)
    torch.testing.assert_close(models[0](x).x_hat, models[1](x).x_hat, rtol=0, atol=0)
    assert models[0].hidden == () and models[0].activation == "elu"  # the conv architecture's defaults


def test_layers_are_built_after_the_objectives_constructor():
    """A variant may set what its layers read after calling the base constructor (no ordering trap)."""

    class Wider(aekit.Autoencoder):
        def __init__(self, extra: int = 2, **options):
            super().__init__(**options)
            self.extra = extra

        def make_decoder(self):
            return torch.nn.Sequential(torch.nn.Linear(self.code_size, self.extra), torch.nn.Linear(self.extra, self.n_features))

    model = Wider(extra=5, input_shape=(12,), code_size=3, hidden=(8,))
    assert model.decoder[0].out_features == 5 and model.config["extra"] == 5


def test_unknown_architecture_or_option_says_what_exists():
    with pytest.raises(ConfigError, match="unknown architecture 'cnn'.*conv, mlp"):
        aekit.get_model("vae", architecture="cnn", input_shape=IMAGE)
    with pytest.raises(ConfigError, match="does not accept option.*chanels.*Did you mean 'channels'"):
        aekit.get_model("vae", architecture="conv", input_shape=IMAGE, chanels=(4,))
    with pytest.raises(ConfigError, match="needs image samples"):
        aekit.get_model("sparse", architecture="conv", input_shape=(30,))


USER_VARIANT = '''
import torch, aekit

@aekit.register_model("wae-mmd-test")
class WassersteinAutoencoder(aekit.Autoencoder):
    """WAE-MMD (Tolstikhin et al. 2018): the codes pulled to N(0, I) by an MMD penalty."""

    def __init__(self, weight: float = 10.0, **options):
        super().__init__(**options)
        self.weight = weight

    def regularizers(self, x, z, q):
        p = torch.randn_like(z)
        c = 2.0 * z.shape[1]
        k = lambda a, b: (c / (c + torch.cdist(a, b) ** 2)).mean()
        return {"mmd": self.weight * (k(z, z) + k(p, p) - 2 * k(z, p))}
'''


def test_a_user_variant_in_one_file_composes_with_every_architecture(tmp_path, monkeypatch):
    (tmp_path / "user_wae.py").write_text(USER_VARIANT)
    monkeypatch.syspath_prepend(str(tmp_path))
    __import__("user_wae")
    monkeypatch.delitem(sys.modules, "user_wae")
    try:
        train_and_reload_the_user_variant(tmp_path)
    finally:  # other tests count the registered models
        aekit.registry._MODELS.pop("wae-mmd-test")


def train_and_reload_the_user_variant(tmp_path):
    x = torch.rand(64, *IMAGE)
    for architecture in ("mlp", "conv"):
        model = build("wae-mmd-test", architecture, weight=3.0)
        aekit.fit(model, x, epochs=1, batch_size=16, progress=False)
        aekit.save(model, tmp_path / architecture)
        loaded = aekit.load(tmp_path / architecture)
        assert loaded.weight == 3.0 and loaded.architecture.name == architecture
        torch.testing.assert_close(model.eval().encode(x[:5]), loaded.encode(x[:5]), rtol=0, atol=0)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="the earlier runs live in ../shared/checks/fixtures")
@pytest.mark.parametrize("run", sorted(os.listdir(FIXTURES)) if FIXTURES.is_dir() else [])
def test_runs_of_an_earlier_aekit_load_with_the_same_codes_and_scores(run):
    expected = np.load(FIXTURES / run / "expected.npz")
    model = aekit.load(FIXTURES / run)
    with torch.no_grad():
        z = model.encode(torch.from_numpy(expected["x"])).reshape(len(expected["x"]), -1).numpy()
    np.testing.assert_allclose(z, expected["z"], atol=1e-5)
    np.testing.assert_allclose(aekit.apps.anomaly_scores(model, expected["x"]), expected["score"], rtol=1e-4)


def test_the_cli_trains_any_objective_on_a_named_architecture(tmp_path):
    assert main(["train", "--model", "sparse", "--architecture", "conv", "--option", "channels=[4]", "--epochs", "1", "--quiet", "--out", str(tmp_path / "r")]) == 0
    loaded = aekit.load(tmp_path / "r")
    assert type(loaded).model_name == "sparse" and loaded.architecture.name == "conv"
    assert main(["train", "--model", "tied", "--architecture", "conv", "--epochs", "1", "--quiet", "--out", str(tmp_path / "t")]) == 2


# -- the VQ-VAE's commitment and prior ------------------------------------------------------------------------


def test_the_vq_commitment_term_pulls_the_encoder_and_only_the_encoder():
    model = build("vqvae", "conv", commitment=0.5).train()
    x = torch.rand(6, *IMAGE)
    model(x)  # the first training batch initialises the codebook
    out = model.eval()(x)
    q = model.latent(model.encoder(x))
    brute = 0.5 * ((q.z_e - q.z_q) ** 2).flatten(1).sum(1).mean()
    torch.testing.assert_close(out.losses["commitment"], brute)
    grads = torch.autograd.grad(out.losses["commitment"], [*model.encoder.parameters(), *model.decoder.parameters()], allow_unused=True)
    n_encoder = len(list(model.encoder.parameters()))
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:n_encoder])  # reaches the encoder
    assert all(g is None for g in grads[n_encoder:])  # and nothing else
    torch.testing.assert_close(out.loss, out.losses["reconstruction"] + out.losses["commitment"])


def test_the_code_prior_is_a_normalised_causal_distribution():
    torch.manual_seed(0)
    prior = CodePrior(codebook_size=3, positions=3, width=16, layers=1).eval()
    every = torch.tensor(list(itertools.product(range(3), repeat=3)))
    with torch.no_grad():
        total = torch.exp(-prior.nll(every)).sum()  # brute force over all 27 maps
        torch.testing.assert_close(total, torch.tensor(1.0))
        changed = every.clone()
        changed[:, 2] = (changed[:, 2] + 1) % 3  # the last code cannot change what comes before it
        torch.testing.assert_close(prior.logits(every)[:, :2], prior.logits(changed)[:, :2])


def test_the_code_prior_samples_its_own_distribution():
    torch.manual_seed(1)
    prior = CodePrior(codebook_size=3, positions=2, width=16, layers=1).eval()
    with torch.no_grad():
        draws = prior.sample(20000, generator=torch.Generator().manual_seed(0))
        every = torch.tensor(list(itertools.product(range(3), repeat=2)))
        p = torch.exp(-prior.nll(every))
    frequencies = torch.bincount(draws[:, 0] * 3 + draws[:, 1], minlength=9).float() / len(draws)
    assert (frequencies - p).abs().max() < 4 * (p * (1 - p) / len(draws)).sqrt().max()  # Monte Carlo: within 4 sigma


def test_a_trained_vq_vae_samples_from_its_prior_fitted_on_its_final_codes(tmp_path):
    torch.manual_seed(0)
    model = build("vqvae", "conv")
    x = torch.rand(64, *IMAGE)
    fresh = copy.deepcopy(model.prior)  # the prior before it is fitted
    aekit.fit(model, x, epochs=2, prior_epochs=3, batch_size=16, progress=False, out=tmp_path / "run")
    codes = model.code_indices(x)
    with torch.no_grad():
        assert bool(model.prior.fitted) and model.prior.nll(codes).mean() < fresh.nll(codes).mean()
    assert bool(aekit.load(tmp_path / "run").prior.fitted)  # the run's weights hold the fitted prior
    torch.manual_seed(3)
    samples = model.sample(5)
    torch.manual_seed(3)
    indices = model.prior.sample(5)
    h, w = model.code_shape[1:]
    torch.testing.assert_close(samples, model.decode(model.codebook[indices].reshape(5, h, w, -1).permute(0, 3, 1, 2)))


# -- VAE-GAN ---------------------------------------------------------------------------------------------


def test_vae_gan_terms_reach_the_parameters_larsen_et_al_assign_them():
    torch.manual_seed(0)
    model = build("vae-gan", "conv").train()
    out = model(torch.rand(6, *IMAGE))
    parts = {"encoder": list(model.encoder.parameters()), "decoder": list(model.decoder.parameters()), "discriminator": list(model.discriminator.parameters())}

    def reaches(term):
        return {part for part, params in parts.items() if any(g is not None and g.abs().sum() > 0 for g in torch.autograd.grad(out.losses[term], params, retain_graph=True, allow_unused=True))}

    assert reaches("adversarial") >= {"decoder"} and "encoder" not in reaches("adversarial")  # prior draws: the decoder only
    assert reaches("feature_reconstruction") >= {"encoder", "decoder"}
    # the discriminator's term is its own group's: the trainer applies it to the discriminator's parameters only
    assert set(out.group_losses) == {"discriminator"} and torch.equal(out.group_losses["discriminator"], out.losses["discriminator"])
    assert "discriminator" in reaches("discriminator")
    assert set(out.group_losses) == {"discriminator"} and model.parameter_groups()["discriminator"] == parts["discriminator"]
    feats_real, _ = model.judge(torch.rand(2, *IMAGE))
    assert feats_real.shape == (2, 512)  # the discriminator's last hidden layer: on conv, 512 units unless hidden is given


def test_a_cold_code_prior_draws_its_most_likely_codes():
    torch.manual_seed(2)
    prior = CodePrior(codebook_size=4, positions=3, width=16, layers=1).eval()
    with torch.no_grad():
        draws = prior.sample(5, temperature=1e-4)
        greedy = torch.zeros(1, 0, dtype=torch.long)
        for _ in range(3):  # each position's most likely code given the ones before it
            nxt = prior.logits(torch.cat([greedy, greedy.new_zeros(1, 1)], dim=1))[:, -1].argmax(-1, keepdim=True)
            greedy = torch.cat([greedy, nxt], dim=1)
    assert torch.equal(draws, greedy.expand(5, 3))
