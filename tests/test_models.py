"""Contract tests, written once and run for every registered model, and the loss formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, Laplace, Normal

import aekit
from aekit.checkpoint import model_config
from aekit.errors import ConfigError, DataError
from aekit.losses import absolute_error, bernoulli_nll, squared_error

# A small configuration of every registered model; a new model must add itself here to be contract-tested.
SMALL = {
    "ae": {"input_shape": (12,), "hidden": (8,)},
    "linear": {"input_shape": (12,)},
    "tied": {"input_shape": (12,), "hidden": (8,)},
    "sparse": {"input_shape": (12,), "hidden": (8,), "penalty": "kl", "weight": 0.1},
    "denoising": {"input_shape": (12,), "hidden": (8,), "noise": "masking:0.2"},
    "contractive": {"input_shape": (12,), "hidden": (8,)},
    "vae": {"input_shape": (12,), "hidden": (8,)},
    "iwae": {"input_shape": (12,), "hidden": (8,), "samples": 3},
    "beta-tcvae": {"input_shape": (12,), "hidden": (8,), "beta": 1.0},  # the default 6 closes every unit of this tiny model
    "aae": {"input_shape": (12,), "hidden": (8,), "discriminator": (8,)},
    "stochastic": {"input_shape": (12,), "hidden": (8,)},
    "conv": {"input_shape": (1, 6, 5), "channels": (4,)},
    "conv-denoising": {"input_shape": (1, 6, 5), "channels": (4,)},
    "conv-vae": {"input_shape": (1, 6, 5), "channels": (4,)},
    "vqvae": {"input_shape": (1, 6, 5), "channels": (4,), "codebook_size": 8, "prior_width": 16},  # codes of shape (3, 3, 3)
    "vae-gan": {"input_shape": (1, 6, 5), "channels": (4,), "hidden": (8,)},
    "stacked": {"input_shape": (12,), "hidden": (8,)},
    "recirculation": {"input_shape": (12,)},
    "ensemble": {"input_shape": (12,), "hidden": (8,), "members": 1},
    "hashing": {"input_shape": (12,), "hidden": (8,)},  # one member: its code is (batch, code_size)
    "draem": {"input_shape": (1, 6, 5), "channels": (4,), "segmentation_channels": (4, 8)},  # codes of shape (6, 3, 3): two members
}


def small(name: str, **options):
    return aekit.get_model(name, **{"code_size": 3, **SMALL[name], **options})


def batch(name: str, n: int = 5) -> torch.Tensor:
    """``n`` samples in [0, 1] that lie near a 3-dimensional manifold, so a code of size 3 can fit them."""
    shape = SMALL[name]["input_shape"]
    g = torch.Generator().manual_seed(n)
    factors, loadings = torch.randn(n, 3, generator=g), torch.randn(3, math.prod(shape), generator=g)
    return torch.sigmoid(5 * factors @ loadings).reshape(n, *shape)


@pytest.fixture(params=aekit.list_models())
def name(request):
    return request.param


def test_every_registered_model_has_a_contract_configuration():
    assert set(aekit.list_models()) <= set(SMALL) | {"readme-l1-sparse"}


def test_shapes(name):
    model = small(name)
    x = batch(name)
    out = model(x)
    code = (5, *getattr(model, "code_shape", (3,)))  # flat, or spatial (channels, h, w)
    assert out.x_hat.shape == x.shape and out.z.shape == code
    assert model.encode(x).shape == code and model.decode(out.z).shape == x.shape
    assert model.encode(x.flatten(1)).shape == code  # flat samples are accepted too
    assert out.loss.dim() == 0 and set(out.losses) >= {"reconstruction"}
    # every term is minimised once: by the model's own parameters, or by its group's (an adversary's)
    assert torch.allclose(out.loss + sum(out.group_losses.values(), torch.tensor(0.0)), sum(out.losses.values()))


def test_finite_loss_and_gradients_reach_every_parameter(name):
    model = small(name)
    out = model(batch(name, 7))
    assert torch.isfinite(out.loss)
    sum(out.group_losses.values(), out.loss).backward()  # each group's parameters get its own loss's gradient
    trained = {id(p) for params in model.parameter_groups().values() for p in params}  # a VQ-VAE's prior is fitted afterwards
    for pname, p in model.named_parameters():
        if id(p) not in trained:
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_save_load_round_trip(name, tmp_path):
    model = small(name).eval()
    aekit.save(model, tmp_path / "m")
    loaded = aekit.load(tmp_path / "m")
    x = batch(name, 4)
    assert type(loaded) is type(model) and model_config(loaded) == model_config(model)
    assert torch.equal(model(x).x_hat, loaded(x).x_hat)
    assert torch.equal(model(x).loss, loaded(x).loss)


def test_seeded_fits_are_identical(name):
    def run():
        aekit.seed_everything(3)
        model = small(name)
        aekit.fit(model, batch(name, 40), epochs=2, batch_size=8, seed=5, pretrain_epochs=1, progress=False)
        return model.state_dict()

    first, second = run(), run()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_loss_goes_down_on_a_small_batch(name):
    aekit.seed_everything(3)  # the same start whatever ran before
    model = small(name)
    x = batch(name, 64)
    # A likelihood loss has a floor above zero (the data's own entropy, a Gaussian's constant): the
    # loss of a perfect reconstruction. Progress is measured above it.
    perfect = torch.logit(x.clamp(1e-6, 1 - 1e-6)) if model.reconstruction.from_logits else x
    floor = model.reconstruction.fn(perfect, x).mean().item()
    before = aekit.training.evaluate_losses(model, x)["loss"] - floor
    aekit.fit(model, x, epochs=100, batch_size=16, lr=1e-2, val_fraction=0, pretrain_epochs=0, progress=False)
    after = aekit.training.evaluate_losses(model, x)["loss"] - floor
    assert 0 < after < 0.8 * before, (before, after)


def test_config_records_constructor_arguments():
    model = aekit.get_model("ae", input_shape=(1, 4, 5), code_size=2, hidden=[6, 5], loss="bce")
    assert model.config == {
        "input_shape": (1, 4, 5), "code_size": 2, "hidden": [6, 5], "activation": "relu",
        "code_activation": "identity", "output_activation": None, "loss": "bce", "input_scaling": None, "score_smoothing": 0.0,
        "architecture": "mlp",
    }  # fmt: skip
    assert type(model.output_activation).__name__ == "Sigmoid"


@pytest.mark.parametrize(
    "options, message",
    [
        ({"code_size": 0}, "code_size"),
        ({"code_size": -3}, "code_size"),
        ({"hidden": (8, 0)}, "hidden"),
        ({"hidden": "big"}, "hidden"),
        ({"input_shape": ()}, "input_shape"),
        ({"activation": "rleu"}, "Did you mean 'relu'"),
        ({"loss": "mae"}, "unknown loss"),
        ({"loss": "bce", "output_activation": "identity"}, "needs output_activation='sigmoid'"),
        ({"dropout": 0.5}, "does not accept"),
    ],
)
def test_invalid_options_raise_config_error(options, message):
    kwargs = {"input_shape": (12,), **options}
    with pytest.raises(ConfigError, match=message):
        aekit.get_model("ae", **kwargs)


def test_unknown_model_name_suggests_closest():
    with pytest.raises(ConfigError, match="Did you mean 'ae'"):
        aekit.get_model("aee")


def test_wrong_input_shape_is_a_clear_error():
    with pytest.raises(DataError, match=r"expects samples of shape \(12,\)"):
        small("ae")(torch.rand(3, 13))


# -- the loss formulas, against torch.distributions ----------------------------------------------


def test_squared_error_is_twice_the_unit_gaussian_nll_minus_its_constant():
    x, x_hat = torch.rand(6, 10), torch.rand(6, 10)
    nll = -Normal(x_hat, 1.0).log_prob(x).sum(1)
    assert torch.allclose(squared_error(x_hat, x), 2 * (nll - 10 * 0.5 * math.log(2 * math.pi)), atol=1e-5)
    assert torch.allclose(squared_error(x_hat, x), ((x_hat - x) ** 2).sum(1))


def test_absolute_error_is_the_unit_laplace_nll_minus_its_constant():
    x, x_hat = torch.rand(6, 10), torch.rand(6, 10)
    nll = -Laplace(x_hat, 1.0).log_prob(x).sum(1)
    assert torch.allclose(absolute_error(x_hat, x), nll - 10 * math.log(2), atol=1e-5)


def test_bernoulli_nll_matches_torch_distributions_even_when_saturated():
    logits = torch.tensor([[-40.0, -3.0, 0.0, 2.5, 40.0]])
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    expected = -Bernoulli(logits=logits).log_prob(x).sum(1)
    assert torch.allclose(bernoulli_nll(logits, x), expected)
    assert torch.isfinite(bernoulli_nll(logits, x)).all() and bernoulli_nll(logits, x).item() > 79


def test_bce_model_loss_is_the_bernoulli_nll_of_its_output():
    model = small("ae", loss="bce").eval()
    x = torch.rand(5, 12).round()
    out = model(x)
    expected = -Bernoulli(probs=out.x_hat.double()).log_prob(x.double()).sum(1).mean()
    assert torch.allclose(out.losses["reconstruction"].double(), expected, rtol=1e-5)


def test_a_variant_defined_as_in_the_readme_saves_and_loads(tmp_path):
    @aekit.register_model("readme-l1-sparse")
    class L1Sparse(aekit.Autoencoder):
        def __init__(self, l1: float = 1e-3, **options):
            super().__init__(**options)
            self.l1 = l1

        def regularizers(self, x, z, q):
            return {"l1": self.l1 * z.abs().sum(1).mean()}

    model = aekit.get_model("readme-l1-sparse", l1=0.5, input_shape=(12,), code_size=3, hidden=(8,))
    given = {"l1": 0.5, "input_shape": (12,), "code_size": 3, "hidden": (8,)}
    assert model.config == {**aekit.get_model("ae").config, **given}  # inherited defaults recorded too
    out = model(torch.rand(4, 12))
    assert torch.allclose(out.losses["l1"], 0.5 * out.z.abs().sum(1).mean())
    aekit.save(model, tmp_path / "m")
    loaded = aekit.load(tmp_path / "m")
    assert isinstance(loaded, L1Sparse) and loaded.l1 == 0.5
    with pytest.raises(ConfigError, match="does not accept"):
        aekit.get_model("readme-l1-sparse", l2=1.0)
