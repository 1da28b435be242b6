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

SHAPES = [(12,), (1, 4, 5)]


def small(name: str, shape=(12,), **options):
    return aekit.get_model(name, input_shape=shape, code_size=3, hidden=(8,), **options)


@pytest.fixture(params=aekit.list_models())
def name(request):
    return request.param


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes(name, shape):
    model = small(name, shape)
    x = torch.rand(5, *shape)
    out = model(x)
    assert out.x_hat.shape == x.shape and out.z.shape == (5, 3)
    assert model.encode(x).shape == (5, 3) and model.decode(out.z).shape == x.shape
    assert out.loss.dim() == 0 and set(out.losses) >= {"reconstruction"}
    assert torch.allclose(out.loss, sum(out.losses.values()))


def test_finite_loss_and_gradients_reach_every_parameter(name):
    model = small(name)
    model(torch.rand(7, 12)).loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_save_load_round_trip(name, tmp_path):
    model = small(name).eval()
    aekit.save(model, tmp_path / "m")
    loaded = aekit.load(tmp_path / "m")
    x = torch.rand(4, 12)
    assert type(loaded) is type(model) and model_config(loaded) == model_config(model)
    assert torch.equal(model(x).x_hat, loaded(x).x_hat)


def test_seeded_fits_are_identical(name):
    def run():
        aekit.seed_everything(3)
        model = small(name)
        aekit.fit(model, torch.rand(40, 12, generator=torch.Generator().manual_seed(0)), epochs=2, batch_size=8, seed=5, progress=False)
        return model.state_dict()

    first, second = run(), run()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_loss_goes_down_on_a_tiny_batch(name):
    model = small(name)
    x = torch.rand(16, 12)
    before = model(x).loss.item()
    aekit.fit(model, x, epochs=100, batch_size=16, lr=1e-2, val_fraction=0, progress=False)
    assert model.train()(x).loss.item() < 0.5 * before


def test_config_records_constructor_arguments():
    model = aekit.get_model("ae", input_shape=(1, 4, 5), code_size=2, hidden=[6, 5], loss="bce")
    assert model.config == {
        "input_shape": (1, 4, 5), "code_size": 2, "hidden": [6, 5], "activation": "relu",
        "code_activation": "identity", "output_activation": "sigmoid", "loss": "bce",
    }  # fmt: skip


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


def test_undercomplete_and_overcomplete_code_sizes():
    assert small("ae").code_size < 12
    over = aekit.get_model("ae", input_shape=(12,), code_size=40, hidden=(64,))
    assert over(torch.rand(2, 12)).z.shape == (2, 40)


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

        def regularizers(self, x, z):
            return {"l1": self.l1 * z.abs().sum(1).mean()}

    model = aekit.get_model("readme-l1-sparse", l1=0.5, input_shape=(12,), code_size=3, hidden=(8,))
    assert model.config == {"l1": 0.5, "input_shape": (12,), "code_size": 3, "hidden": (8,)}
    out = model(torch.rand(4, 12))
    assert torch.allclose(out.losses["l1"], 0.5 * out.z.abs().sum(1).mean())
    aekit.save(model, tmp_path / "m")
    loaded = aekit.load(tmp_path / "m")
    assert isinstance(loaded, L1Sparse) and loaded.l1 == 0.5
    with pytest.raises(ConfigError, match="does not accept"):
        aekit.get_model("readme-l1-sparse", l2=1.0)
