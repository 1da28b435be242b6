"""Anomaly detection: input scaling inside the model, the ensemble's maths, one scoring path, conformal thresholds,
explanations, and the default detector against IsolationForest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import mahalanobis
from sklearn.preprocessing import RobustScaler, StandardScaler

import aekit
from aekit.apps import anomaly_scores, conformal_pvalues, conformal_threshold, detect, feature_contributions
from aekit.losses import gaussian_blur, smoothed_squared_error, squared_error
from aekit.models.ensemble import member_subsamples
from aekit.sklearn import AutoencoderOutlierDetector


def low_rank(n: int = 600, d: int = 8, seed: int = 0) -> np.ndarray:
    """Rows near a 2-dimensional plane, in raw units far from 0 and 1."""
    rng = np.random.default_rng(seed)
    return 50 + 10 * rng.normal(size=(n, 2)) @ rng.normal(size=(2, d)) + 0.3 * rng.normal(size=(n, d))


# -- input scaling -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind, reference", [("standard", StandardScaler()), ("robust", RobustScaler(quantile_range=(25, 75)))])
def test_input_scaling_matches_scikit_learn(kind, reference):
    x = low_rank()
    x[:, 3] = 7.0  # a constant feature keeps scale 1
    model = aekit.get_model("ae", input_shape=(8,), code_size=2, hidden=(8,), input_scaling=kind)
    model.adapt(torch.tensor(x, dtype=torch.float32))
    reference.fit(x)
    expected_scale = reference.scale_ / (1.349 if kind == "robust" else 1.0)
    expected_scale[3] = 1.0
    center = reference.mean_ if kind == "standard" else reference.center_
    np.testing.assert_allclose(model.input_center.numpy(), center, rtol=1e-4)
    np.testing.assert_allclose(model.input_scale.numpy(), expected_scale, rtol=1e-4)


def test_a_model_with_scaling_takes_raw_rows_and_ignores_the_units():
    """Trained on x or on 1000 x + 5, with the same seed, the scaled model gives the same scores: the scaling is inside."""
    x = low_rank()
    scores = []
    for data in (x, 1000 * x + 5):
        aekit.seed_everything(0)
        model = aekit.get_model("ae", input_shape=(8,), code_size=2, hidden=(16,), input_scaling="standard")
        aekit.fit(model, torch.tensor(data, dtype=torch.float32), epochs=5, progress=False, val_fraction=0.0)
        scores.append(anomaly_scores(model, data))
        reconstruction = model.eval()(torch.tensor(data[:4], dtype=torch.float32)).x_hat
        assert abs(reconstruction.mean().item() - data[:4].mean()) < data.std()  # in raw units, not standardised
    np.testing.assert_allclose(scores[0], scores[1], rtol=2e-3, atol=1e-4)


def test_scaling_is_saved_with_the_model(tmp_path):
    x = low_rank()
    model = aekit.get_model("ensemble", input_shape=(8,), code_size=2, hidden=(16,), members=3, input_scaling="robust")
    aekit.fit(model, x.astype(np.float32), epochs=3, progress=False, val_fraction=0.0)
    aekit.save(model, tmp_path / "m")
    loaded = aekit.load(tmp_path / "m")
    np.testing.assert_array_equal(anomaly_scores(loaded, x), anomaly_scores(model, x))
    assert loaded.input_center.abs().sum() > 0


def test_scaling_refuses_a_loss_for_data_in_the_unit_interval():
    with pytest.raises(aekit.ConfigError, match="input_scaling"):
        aekit.get_model("ae", input_shape=(4,), loss="bce", input_scaling="standard")
    with pytest.raises(aekit.ConfigError, match="unknown input_scaling"):
        aekit.get_model("ae", input_shape=(4,), input_scaling="zscore")


# -- the ensemble ---------------------------------------------------------------------------------


def test_each_member_learns_only_from_its_own_rows():
    model = aekit.get_model("ensemble", input_shape=(5,), code_size=2, hidden=(6,), members=3)
    rows = torch.randn(4, 3, 5)
    other = rows.clone()
    other[:, 1] += 3.0  # change member 1's rows only
    grads = []
    for batch in (rows, other):
        model.zero_grad()
        model(batch).loss.backward()
        grads.append({k: p.grad[0].clone() for k, p in model.named_parameters()})  # member 0's slice
    for key in grads[0]:
        torch.testing.assert_close(grads[0][key], grads[1][key])


def test_member_subsamples_are_distinct_rows_per_member():
    picks = member_subsamples(50, 4, 20, torch.Generator().manual_seed(0))
    assert picks.shape == (20, 4)
    for m in range(4):
        assert len(set(picks[:, m].tolist())) == 20
    assert member_subsamples(10, 2, 20, torch.Generator().manual_seed(0)).shape == (10, 2)


def test_calibration_rows_are_held_out_unused_by_members_and_capped():
    from aekit.defaults import RowPlan

    calibration, training = RowPlan(0.2, members=4, member_rows=30).split(1000, seed=3)
    trained = set(training.ravel().tolist())
    assert not trained & set(calibration.tolist()) and len(calibration) == 1000 - len(trained)  # every row the members left
    capped, same_training = RowPlan(0.2, members=4, member_rows=30, calibration_rows=150).split(1000, seed=3)
    assert torch.equal(same_training, training) and capped.tolist() == calibration[:150].tolist()
    plain, _ = RowPlan(0.3, calibration_rows=50).split(1000, seed=3)
    assert len(plain) == 50


def test_running_statistics_and_score_match_numpy():
    """After one training step the running statistics are that batch's; the score is the formula in the docstring."""
    model = aekit.get_model("ensemble", input_shape=(6,), code_size=3, hidden=(8,), members=2)
    x = torch.randn(40, 6)
    model.train()(x)
    model.eval()
    with torch.no_grad():
        rows, codes, logits = model.member_forward(x)
    for m in range(2):
        z = codes[m].double().numpy()
        np.testing.assert_allclose(model.code_mean[m].numpy(), z.mean(0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(model.code_cov[m].numpy(), np.cov(z, rowvar=False), rtol=1e-4, atol=1e-6)
        errors = ((model.output_activation(logits[m]) - rows[m]) ** 2).sum(1).double().numpy()
        assert model.error_mean[m].item() == pytest.approx(errors.mean(), rel=1e-5)
    # the score of sample 0, by hand
    expected = 0.0
    for m in range(2):
        z = codes[m].double().numpy()
        precision = np.linalg.inv(np.cov(z, rowvar=False) + 1e-3 * np.eye(3))
        error = ((model.output_activation(logits[m, 0]) - rows[m, 0]) ** 2).sum().item()
        expected += error / model.error_mean[m].item() + mahalanobis(z[0], z.mean(0), precision) ** 2 / 3
    assert anomaly_scores(model, x[:1])[0] == pytest.approx(expected / 2, rel=1e-4)


def test_ensemble_codes_and_reconstructions():
    model = aekit.get_model("ensemble", input_shape=(6,), code_size=2, hidden=(8,), members=4).eval()
    x = torch.rand(5, 6)
    z = model.encode(x)
    assert z.shape == (5, 8)
    torch.testing.assert_close(model.decode(z), model(x).x_hat)
    with pytest.raises(aekit.DataError, match="decodes codes"):
        model.decode(torch.zeros(5, 3))


# -- one scoring path ---------------------------------------------------------------------------


def test_scores_accept_numpy_pandas_and_any_float_tensor():
    model = aekit.get_model("ensemble", input_shape=(8,), code_size=2, hidden=(8,), members=2, input_scaling="standard")
    x = low_rank(100)
    aekit.fit(model, x.astype(np.float32), epochs=2, progress=False, val_fraction=0.0)
    reference = anomaly_scores(model, torch.tensor(x, dtype=torch.float32))
    for form in (x, pd.DataFrame(x, columns=list("abcdefgh")), torch.tensor(x, dtype=torch.float64), torch.tensor(x).to(torch.float16)):
        got = anomaly_scores(model, form)
        assert got.shape == (100,) and got.dtype == np.float64
        half = isinstance(form, torch.Tensor) and form.dtype == torch.float16  # 50 +- 0.03 in float16
        np.testing.assert_allclose(got, reference, rtol=5e-2 if half else 1e-6, atol=1e-2 if half else 0)
    frame = pd.DataFrame(x, columns=list("abcdefgh"))
    frame["kind"] = "x"
    with pytest.raises(aekit.DataError, match="kind"):
        anomaly_scores(model, frame)


def test_cli_apps_and_estimator_give_the_same_scores(tmp_path):
    x = low_rank(300)
    detector = AutoencoderOutlierDetector(random_state=0, steps=20).fit(x)
    detector.save(tmp_path / "det")
    loaded = aekit.load(tmp_path / "det")
    np.testing.assert_allclose(-detector.score_samples(x), anomaly_scores(loaded, x), rtol=1e-6)
    result = detect(loaded, x, calibration=detector.calibration_scores_, false_alarm_rate=0.05)
    np.testing.assert_array_equal(result.predictions == 1, detector.predict(x) == -1)
    np.testing.assert_allclose(result.pvalues, detector.pvalues(x))


# -- conformal thresholds --------------------------------------------------------------------------


def test_conformal_pvalues_match_brute_force_and_the_threshold_agrees():
    rng = np.random.default_rng(0)
    calibration = np.round(rng.normal(size=57), 1)  # ties included
    scores = np.round(rng.normal(size=200) * 1.5, 1)
    brute = np.array([(1 + np.sum(calibration >= s)) / (len(calibration) + 1) for s in scores])
    np.testing.assert_allclose(conformal_pvalues(calibration, scores), brute)
    for alpha in (0.01, 0.05, 0.2, 0.5):
        threshold = conformal_threshold(calibration, alpha)
        np.testing.assert_array_equal(brute <= alpha, scores > threshold)
    assert conformal_threshold(calibration, 0.01) == np.inf  # with 57 scores no p-value reaches 1/100


def test_false_alarms_stay_at_the_asked_rate_monte_carlo():
    """Normal samples exchangeable with the calibration ones: the false-alarm rate is at most alpha, and close to it."""
    rng = np.random.default_rng(1)
    alpha, n = 0.05, 199
    rates = []
    for _ in range(400):
        calibration, fresh = rng.standard_exponential(n), rng.standard_exponential(500)
        rates.append(np.mean(fresh > conformal_threshold(calibration, alpha)))
    assert alpha - 1 / (n + 1) - 0.005 <= np.mean(rates) <= alpha + 0.005


def test_detector_false_alarm_rate_on_held_out_normal_rows():
    x = low_rank(4000, seed=2)
    detector = AutoencoderOutlierDetector(random_state=0, false_alarm_rate=0.05).fit(x[:2000])
    rate = np.mean(detector.predict(x[2000:]) == -1)
    assert 0.02 <= rate <= 0.08, rate
    assert len(detector.calibration_scores_) >= 400  # the held-out rows and those no member drew


# -- explanations ----------------------------------------------------------------------------------


def test_feature_contributions_point_at_the_perturbed_feature():
    rng = np.random.default_rng(1)
    x = low_rank(2000, d=10, seed=3)
    detector = AutoencoderOutlierDetector(random_state=0).fit(x[100:])
    odd = x[:100].copy()
    j = rng.integers(0, 10, size=100)
    odd[np.arange(100), j] += 6 * x.std(0)[j]
    shares = detector.feature_contributions(odd)
    assert shares.shape == (100, 10)
    np.testing.assert_allclose(shares.sum(1), 1.0, rtol=1e-6)
    assert np.mean(shares.argmax(1) == j) >= 0.9


def test_image_models_give_per_pixel_maps():
    model = aekit.get_model("conv", input_shape=(1, 8, 8), code_size=4, channels=(4,)).eval()
    maps = feature_contributions(model, torch.rand(3, 1, 8, 8))
    assert maps.shape == (3, 1, 8, 8)
    np.testing.assert_allclose(maps.reshape(3, -1).sum(1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("sigma", [0.3, 0.75, 1.0, 1.7])
def test_gaussian_blur_matches_scipy(sigma):
    images = torch.rand(3, 2, 9, 11, dtype=torch.float64)
    radius = max(1, int(3 * sigma + 0.5))
    reference = [[gaussian_filter(image.numpy(), sigma, mode="constant", truncate=radius / sigma) for image in sample] for sample in images]
    np.testing.assert_allclose(gaussian_blur(images, sigma).numpy(), np.array(reference), atol=1e-12)


@pytest.mark.parametrize("name, shape, options", [("ae", (1, 8, 8), {"hidden": (16,)}), ("conv", (3, 8, 8), {"channels": (4,)}), ("denoising", (8, 8), {"hidden": (16,)})])
def test_smoothed_score_is_the_squared_error_of_the_blurred_residual(name, shape, options):
    torch.manual_seed(0)
    model = aekit.get_model(name, input_shape=shape, code_size=4, score_smoothing=1.0, **options).eval()
    x = torch.rand(5, *shape)
    with torch.no_grad():
        residual = (model(x).x_hat - x).reshape(5, -1, *shape[-2:]).numpy()
    reference = [sum((gaussian_filter(channel, 1.0, mode="constant", truncate=3.0) ** 2).sum() for channel in sample) for sample in residual]
    np.testing.assert_allclose(anomaly_scores(model, x), reference, rtol=1e-5)
    plain = aekit.get_model(name, input_shape=shape, code_size=4, **options).eval()
    plain.load_state_dict(model.state_dict())
    np.testing.assert_allclose(anomaly_scores(plain, x), ((residual**2).reshape(5, -1).sum(1)), rtol=1e-5)  # 0: the loss itself


def test_smoothing_keeps_a_blob_and_averages_slivers_away():
    """Two residuals of equal squared error: a 2x2 blob (a part the model cannot draw) and single-pixel
    slivers of alternating sign along a stroke (a normal image's near miss)."""
    blob, slivers = torch.zeros(1, 1, 12, 12), torch.zeros(1, 1, 12, 12)
    blob[..., 5:7, 5:7] = 0.5
    slivers[..., 6:8, 2:10] = 0.25 * (-1) ** torch.arange(16).view(2, 8).add(torch.arange(2).view(2, 1))  # 16 pixels of 0.25^2 = 4 of 0.5^2
    assert squared_error(blob, 0 * blob) == squared_error(slivers, 0 * slivers)
    assert smoothed_squared_error(blob, 0 * blob, 1.0) > 4 * smoothed_squared_error(slivers, 0 * slivers, 1.0)


@pytest.mark.parametrize(
    "name, shape, smoothing, message",
    [("ae", (64,), 1.0, "needs an image input_shape"), ("vae", (1, 8, 8), 1.0, "scores anomalies its own way"), ("ae", (1, 8, 8), -1.0, "score_smoothing must be")],
)
def test_score_smoothing_refuses_what_it_cannot_do(name, shape, smoothing, message):
    with pytest.raises(aekit.ConfigError, match=message):
        aekit.get_model(name, input_shape=shape, score_smoothing=smoothing)


# -- the command line -------------------------------------------------------------------------------


def write_csv(path, rows: np.ndarray, ids: list[str], columns: str = "abcdef", sep: str = ",") -> None:
    frame = pd.DataFrame(rows, columns=list(columns))
    frame.insert(0, "id", ids)
    frame.to_csv(path, sep=sep, index=False)


def test_cli_trains_on_rows_with_ids_and_scores_new_rows_by_id(tmp_path, capsys):
    from aekit.cli import main

    rng = np.random.default_rng(0)
    x = rng.normal(size=(700, 2)) @ rng.normal(size=(2, 6)) + 0.05 * rng.normal(size=(700, 6))
    write_csv(tmp_path / "train.csv", x[:600], [f"c{i}" for i in range(600)], sep=";")  # a semicolon file
    new = x[600:].copy()
    new[:5] += 8.0
    write_csv(tmp_path / "new.csv", new, [f"n{i}" for i in range(100)])
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "train.csv"), "--id-column", "id", "--split", "all", "--out", str(run), "--no-progress"]) == 0
    chosen = capsys.readouterr().err
    assert "model ensemble" in chosen and "code_size 3" in chosen and "hidden 12" in chosen
    saved = json.loads((run / "calibration.json").read_text())
    assert saved["rows"] >= 120 and len(saved["scores"]) == saved["rows"]

    # the loaded model takes raw rows: the CLI's scores equal the Python function's
    assert main(["detect", str(run), "--dataset", str(tmp_path / "new.csv"), "-o", str(tmp_path / "scores.csv")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["wrote"][0] == str(tmp_path / "scores.csv") and printed["wrote"][1].endswith("results/detect-1.json")
    table = pd.read_csv(tmp_path / "scores.csv")
    assert list(table.columns) == ["id", "score", "pvalue", "flagged", "top_features"]
    assert list(table["id"][:3]) == ["n0", "n1", "n2"] and len(table) == 100  # the whole new file, not a split of it
    np.testing.assert_allclose(table["score"], anomaly_scores(aekit.load(run), new), rtol=1e-5)
    np.testing.assert_allclose(table["pvalue"], conformal_pvalues(np.asarray(saved["scores"]), table["score"].to_numpy()), rtol=1e-6)
    assert table["flagged"][:5].all() and table["flagged"].sum() <= 15  # the saved threshold, not 10% of the new file
    top = json.loads(table["top_features"][0])  # [[column, share], ...], largest share first
    assert len(top) == 3 and {name for name, _ in top} <= set("abcdef") and top[0][1] >= top[1][1] >= top[2][1]

    assert main(["detect", str(run), "--dataset", str(tmp_path / "new.csv"), "-o", str(tmp_path / "hist.png")]) == 0
    assert (tmp_path / "hist.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["encode", str(run), "--dataset", str(tmp_path / "new.csv"), "-o", str(tmp_path / "codes.csv")]) == 0
    codes = pd.read_csv(tmp_path / "codes.csv")
    assert list(codes["id"][:2]) == ["n0", "n1"] and codes.shape == (100, 1 + 8 * 3)


@pytest.mark.parametrize(
    "columns, message",
    [("abcdeg", "missing \\['f'\\]; not in the training data \\['g'\\]"), ("bacdef", "another order")],
)
def test_cli_refuses_new_rows_with_other_columns(tmp_path, capsys, columns, message):
    from aekit.cli import main

    x = low_rank(200, d=6)
    write_csv(tmp_path / "train.csv", x, [f"c{i}" for i in range(200)])
    write_csv(tmp_path / "new.csv", x[:20], [f"n{i}" for i in range(20)], columns=columns)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tmp_path / "train.csv"), "--id-column", "id", "--epochs", "2", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["detect", str(run), "--dataset", str(tmp_path / "new.csv"), "-o", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "columns" in err
    import re

    assert re.search(message, err), err


def test_cli_names_a_text_column_and_the_fix(tmp_path, capsys):
    from aekit.cli import main

    write_csv(tmp_path / "train.csv", low_rank(50, d=6), [f"c{i}" for i in range(50)])
    assert main(["train", "--dataset", str(tmp_path / "train.csv"), "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "column 'id'" in err and "--id-column" in err and err.count("\n") == 1


def test_cli_detect_on_images_draws_anomaly_maps_for_the_report(tmp_path, capsys):
    from aekit.cli import main

    run = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--code-size", "4", "--hidden", "16", "--out", str(run), "--no-progress"]) == 0
    assert json.loads((run / "calibration.json").read_text())["rows"] == round(0.05 * 1438)
    capsys.readouterr()
    assert main(["detect", str(run), "--normal-class", "3", "-o", str(tmp_path / "hist.png")]) == 0
    printed = json.loads(capsys.readouterr().out)
    maps = run / "results" / "detect-1-maps.png"
    assert str(maps) in printed["wrote"] and maps.read_bytes()[:4] == b"\x89PNG"
    assert printed["roc_auc"] is not None and "conformal" in printed["rule"]
    assert main(["report", str(run), "-o", str(tmp_path / "report.html")]) == 0
    assert 'id="anomaly-maps"' in (tmp_path / "report.html").read_text()


def test_cli_warns_about_duplicate_ids(tmp_path, capsys):
    from aekit.cli import main

    x = low_rank(120, d=6)
    write_csv(tmp_path / "train.csv", x, [f"c{i % 100}" for i in range(120)])  # 20 ids appear twice
    run = str(tmp_path / "run")
    assert main(["train", "--dataset", str(tmp_path / "train.csv"), "--id-column", "id", "--split", "all", "--epochs", "1", "--out", run, "--quiet"]) == 0
    assert "20 duplicate id(s)" in capsys.readouterr().err
    assert main(["detect", run, "--split", "all", "-o", str(tmp_path / "s.csv")]) == 0
    assert "20 duplicate id(s)" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "s.csv")) == 120  # every row is still scored


@pytest.mark.parametrize("argv, smoothing", [([], 1.0), (["--option", "score_smoothing=0"], 0.0), (["--model", "conv", "--option", "channels=[4]"], 1.0), (["--model", "vae"], None)])
def test_cli_scores_images_by_the_blurred_residual_unless_told(tmp_path, capsys, argv, smoothing):
    from aekit.cli import main

    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--code-size", "4", *argv, "--out", str(run), "--no-progress"]) == 0
    config = aekit.load(run).config
    assert config.get("score_smoothing") == smoothing or (smoothing is None and not config.get("score_smoothing"))
    assert ("residual blurred by 1 pixel" in capsys.readouterr().err) == (smoothing == 1.0)  # said when chosen, not when asked
