"""The ensemble's neighbour term: distance to the k-th nearest of a member's own kept training rows."""

import numpy as np
import pytest
import torch
from sklearn.neighbors import NearestNeighbors

import aekit
from aekit.checkpoint import load_weights
from aekit.models.ensemble import kth_neighbour_distance


def test_kth_neighbour_distance_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    rows, bank = torch.randn(3, 7, 5, generator=g), torch.randn(3, 11, 5, generator=g)
    for k in (1, 4, 11):
        expected = torch.cdist(rows, bank).sort(-1).values[..., k - 1]
        torch.testing.assert_close(kth_neighbour_distance(rows, bank, k), expected, rtol=1e-4, atol=1e-4)


def test_kth_smallest_is_the_same_on_every_path():
    from aekit.models.ensemble import kth_smallest

    values = torch.randn(3, 9, 40, generator=torch.Generator().manual_seed(2))
    for k in (1, 16, 40):
        expected = values.sort(-1).values[..., k - 1]
        assert torch.equal(kth_smallest(values, k), expected)  # NumPy's selection (CPU, no gradient)
        graded = values.clone().requires_grad_()
        assert torch.equal(kth_smallest(graded, k).detach(), expected)  # topk, which autograd and ONNX run
        half = values.bfloat16()  # what a matrix product gives under CPU autocast: NumPy has no such dtype
        assert torch.equal(kth_smallest(half, k), half.sort(-1).values[..., k - 1])


def fitted(members=3, rows=40, **options):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(rows, members, 4, generator=g) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + 5
    model = aekit.get_model("ensemble", input_shape=(4,), code_size=2, hidden=(6,), members=members, input_scaling="standard", **options)
    aekit.fit(model, x, epochs=1, batch_size=16, val_fraction=0, progress=False)
    return model.eval(), x


def test_each_member_keeps_its_own_scaled_rows_and_their_leave_one_out_distance():
    model, x = fitted(bank_rows=32)
    assert int(model.bank_size) == 32
    for m in range(model.members):
        kept = ((x[:32, m] - model.input_center) / model.input_scale).numpy()
        np.testing.assert_allclose(model.kept_rows()[m].numpy(), kept, rtol=1e-5, atol=1e-5)
        distances, _ = NearestNeighbors(n_neighbors=model.neighbours + 1).fit(kept).kneighbors(kept)  # itself first
        assert float(model.neighbour_scale[m]) == pytest.approx(1 / distances[:, -1].mean(), rel=1e-4)


def test_score_adds_the_weighted_neighbour_distance_and_zero_neighbours_leaves_it_out():
    model, x = fitted()
    new = torch.randn(9, 4) * 3 + 5
    off = aekit.get_model("ensemble", **{**model.config, "neighbours": 0})
    off.load_state_dict(model.state_dict())
    rows = model.member_rows(new)
    term = model.neighbour_weight * kth_neighbour_distance(rows, model.kept_rows(), model.neighbours) * model.neighbour_scale.unsqueeze(1)
    with torch.no_grad():
        torch.testing.assert_close(model.anomaly_score(new), off.eval().anomaly_score(new) + term.mean(0))
        far = model.anomaly_score(torch.full((1, 4), 100.0))
    assert far > model.anomaly_score(x[:, 0]).max()


def test_a_checkpoint_from_before_the_term_loads_and_scores_as_it_did():
    model, _ = fitted()
    old = {k: v for k, v in model.state_dict().items() if not k.startswith(("bank", "neighbour_scale"))}
    reloaded = aekit.get_model("ensemble", **model.config)
    load_weights(reloaded, old, "old.safetensors")
    off = aekit.get_model("ensemble", **{**model.config, "neighbours": 0})
    load_weights(off, old, "old.safetensors")
    new = torch.randn(5, 4)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.eval().anomaly_score(new), off.eval().anomaly_score(new))


def test_neighbour_options_are_checked():
    for bad in (-1, 1.5, True):
        with pytest.raises(aekit.ConfigError, match="neighbours must be an integer, 0 or more"):
            aekit.get_model("ensemble", input_shape=(4,), neighbours=bad)
    with pytest.raises(aekit.ConfigError, match="neighbour_weight"):
        aekit.get_model("ensemble", input_shape=(4,), neighbour_weight=-1)
