"""The applications, each checked against an independent computation, and their CLI commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import average_precision_score, roc_auc_score

import aekit
from aekit.apps import CodeIndex, anomaly_scores, denoise, detect, embed, interpolate, precision_at_k, probe, sample, traversal
from aekit.cli import main
from aekit.errors import ConfigError


@pytest.fixture(scope="module")
def digits_model():
    train = aekit.load_dataset("digits", split="train")
    aekit.seed_everything(0)
    model = aekit.get_model("ae", input_shape=train.shape, code_size=8, hidden=(64,))
    aekit.fit(model, train, epochs=40, lr=3e-3, progress=False)
    return model.eval(), train, aekit.load_dataset("digits", split="test")


def test_anomaly_scores_are_the_squared_error_and_detection_metrics_match_sklearn(digits_model):
    model, train, test = digits_model
    with torch.no_grad():
        by_hand = ((model(test.x).x_hat - test.x) ** 2).flatten(1).sum(1).double().numpy()
    np.testing.assert_allclose(anomaly_scores(model, test.x), by_hand, rtol=1e-5)
    anomalous = (test.y != 1).numpy()
    result = detect(model, test.x, anomalous, reference=train.x, contamination=0.05)
    assert result.threshold == pytest.approx(np.percentile(anomaly_scores(model, train.x), 95))
    assert result.roc_auc == pytest.approx(roc_auc_score(anomalous, by_hand), abs=1e-4)
    assert result.average_precision == pytest.approx(average_precision_score(anomalous, by_hand), abs=1e-4)
    np.testing.assert_array_equal(result.predictions, by_hand > result.threshold)
    percentile = detect(model, test.x, contamination=None, percentile=80)
    assert percentile.predictions.sum() == pytest.approx(0.2 * len(test), abs=1)
    with pytest.raises(ConfigError, match="exactly one"):
        detect(model, test.x, contamination=0.1, percentile=90)


def test_vae_anomaly_scores_are_negative_elbos():
    model = aekit.get_model("vae", input_shape=(1, 8, 8), code_size=4, hidden=(16,)).eval()
    x = aekit.load_dataset("digits", split="test").x[:20]
    torch.manual_seed(0)
    expected = -model.elbo(x, samples=10).double().numpy()
    np.testing.assert_allclose(anomaly_scores(model, x, seed=0), expected, rtol=1e-5)


def test_denoising_psnr_matches_a_hand_computation(digits_model):
    model, _, test = digits_model
    result = denoise(model, test.x, noise="gaussian:0.3", seed=1)
    clean = test.x.flatten(1).numpy().astype(np.float64)
    noisy, denoised = result.noisy.flatten(1).numpy(), result.denoised.flatten(1).numpy()
    hand = lambda a: np.mean(10 * np.log10(1.0 / ((a - clean) ** 2).mean(1)))  # noqa: E731
    assert result.psnr_noisy == pytest.approx(hand(noisy), rel=1e-4)
    assert result.psnr_denoised == pytest.approx(hand(denoised), rel=1e-4)
    assert result.gain > 1  # an undercomplete autoencoder removes noise it never saw
    assert noisy.min() >= 0 and noisy.max() <= 1


def _trustworthiness_by_hand(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """Venna & Kaski (2001), computed from full rank matrices."""
    n = len(X)
    dx = ((X[:, None] - X[None]) ** 2).sum(-1)
    dy = ((Y[:, None] - Y[None]) ** 2).sum(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    rank_x = np.argsort(np.argsort(dx, axis=1), axis=1) + 1  # rank 1 = nearest
    penalty = 0.0
    for i in range(n):
        for j in np.argsort(dy[i])[:k]:
            penalty += max(rank_x[i, j] - k, 0)
    return 1 - 2 / (n * k * (2 * n - 3 * k - 1)) * penalty


def test_embedding_numbers_match_independent_computations(digits_model):
    model, _, test = digits_model
    result = embed(model, test, max_points=150, n_neighbors=5, seed=0)
    keep = np.sort(np.random.default_rng(0).choice(len(test), size=150, replace=False))
    raw = test.x[keep].flatten(1).numpy().astype(np.float64)
    assert result.trustworthiness["pca"] == pytest.approx(_trustworthiness_by_hand(raw, result.pca, 5), abs=1e-6)
    assert result.trustworthiness["autoencoder"] == pytest.approx(_trustworthiness_by_hand(raw, result.autoencoder, 5), abs=1e-6)
    np.testing.assert_allclose(np.abs(result.pca), np.abs(PCA(2).fit_transform(raw)), rtol=1e-3, atol=1e-4)
    assert 0.5 < result.knn_accuracy["autoencoder"] <= 1 and result.autoencoder.shape == (150, 2)


def test_probe_compares_codes_raw_and_pca(digits_model):
    model, train, test = digits_model
    accuracy = probe(model, train, test)
    assert set(accuracy) == {"codes", "raw", "pca"}
    assert accuracy["raw"] > 0.9 and accuracy["codes"] > 0.7 and accuracy["pca"] > 0.7


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_search_matches_brute_force_and_faiss_agrees(metric, tmp_path):
    rng = np.random.default_rng(0)
    codes, queries = rng.normal(size=(3000, 8)).astype(np.float32), rng.normal(size=(50, 8)).astype(np.float32)
    exact = CodeIndex.build(codes, metric=metric, approximate=False)
    _, hits = exact.search(queries, 10)
    if metric == "cosine":
        unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
        brute = np.argsort(-(unit(queries) @ unit(codes).T), axis=1)[:, :10]
    else:
        brute = np.argsort(((queries[:, None] - codes[None]) ** 2).sum(-1), axis=1)[:, :10]
    np.testing.assert_array_equal(hits, brute)

    approximate = CodeIndex.build(codes, metric=metric, approximate=True, nlist=32)
    approximate.nprobe = 32  # every cell visited: the approximate index becomes exhaustive
    np.testing.assert_array_equal(approximate.search(queries, 10)[1], brute)
    approximate.nprobe = 8
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approximate.search(queries, 10)[1], brute)])
    assert recall > 0.8
    approximate.save(tmp_path / "idx")
    restored = CodeIndex.load(tmp_path / "idx")
    assert restored.approximate and restored.metric == metric
    np.testing.assert_array_equal(restored.search(queries, 10)[1], approximate.search(queries, 10)[1])


def test_precision_at_k_by_hand():
    codes = np.array([[0.0, 1], [0, 2], [1, 0], [2, 0]], dtype=np.float32)
    index = CodeIndex.build(codes, labels=np.array([0, 0, 1, 1]), metric="l2", approximate=False)
    queries = np.array([[0.0, 1.5], [1.5, 0]], dtype=np.float32)
    assert precision_at_k(index, queries, np.array([0, 1]), k=2) == 1.0
    assert precision_at_k(index, queries, np.array([1, 1]), k=2) == 0.5
    assert precision_at_k(index, codes, np.array([0, 0, 1, 1]), k=1, exclude_self=True) == 1.0


def test_generation(digits_model):
    model, train, test = digits_model
    with pytest.raises(ConfigError, match="train a VAE"):
        sample(model, 4)
    vae = aekit.get_model("vae", input_shape=(1, 8, 8), code_size=3, hidden=(16,))
    assert sample(vae, 6, seed=1).shape == (6, 1, 8, 8) and torch.equal(sample(vae, 6, seed=1), sample(vae, 6, seed=1))
    path = interpolate(model, test.x[0], test.x[1], steps=5)
    with torch.no_grad():
        ends = model.decode(model.encode(test.x[:2]))
    torch.testing.assert_close(path[[0, -1]], ends)
    grid = traversal(model, test.x[0], train.x, dims=[0, 3], steps=5)
    assert grid.shape == (2, 5, 1, 8, 8)
    with torch.no_grad():
        z = model.encode(test.x[:1]).repeat(1, 1)
        z[0, 3] = model.encode(train.x)[:, 3].mean()
        torch.testing.assert_close(grid[1, 2], model.decode(z)[0])  # the middle step sits at the unit's mean
    with pytest.raises(ConfigError, match="do not exist"):
        traversal(model, test.x[0], train.x, dims=[8])


def test_mnist_one_class_and_odds_protocols(shared_data):
    from aekit.apps import mnist_one_class, odds

    trainer = aekit.Trainer(epochs=2, val_fraction=0.0, progress=False)
    result = mnist_one_class([0, 1], "ae", {"code_size": 16, "hidden": (128,)}, trainer, shared_data)
    assert set(result.roc_auc) == {"0", "1"} and result.mean_roc_auc > 0.9
    cardio = odds("cardio", seeds=2, options={"code_size": 4, "hidden": (16,)}, trainer=aekit.Trainer(epochs=30, val_fraction=0.0, progress=False), data_dir=shared_data)
    assert len(cardio.roc_auc) == 2 and cardio.mean_roc_auc > 0.7


def test_application_commands_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--code-size", "4", "--hidden", "16", "--no-progress", "--out", str(run)]) == 0
    commands = [
        ["embed", str(run), "-o", str(tmp_path / "e.png")],
        ["denoise", str(run), "--noise", "masking:0.3", "-o", str(tmp_path / "d.png")],
        ["detect", str(run), "--normal-class", "1", "--reference-split", "train", "-o", str(tmp_path / "h.png")],
        ["probe", str(run)],
        ["interpolate", str(run), "0", "5", "-o", str(tmp_path / "i.png")],
        ["traverse", str(run), "--dims", "0,1", "-o", str(tmp_path / "t.png")],
        ["index", str(run), "-o", str(tmp_path / "idx")],
        ["search", str(tmp_path / "idx"), "-k", "5", "-o", str(tmp_path / "s.png")],
        ["report", str(run), "-o", str(tmp_path / "report.html")],
    ]
    for argv in commands:
        assert main(argv) == 0, (argv, capsys.readouterr().err)
    capsys.readouterr()
    for name in ("e", "d", "h", "i", "t", "s"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
    detect_numbers = json.loads((run / "results" / "detect-1.json").read_text())
    assert 0 <= detect_numbers["roc_auc"] <= 1
    assert 0 < json.loads((run / "results" / "search-1.json").read_text())["precision_at_k"] <= 1
    # without -o, pictures go to RUN/results, one per call, and the command says where
    for _ in range(2):
        assert main(["embed", str(run)]) == 0
    printed = json.loads(capsys.readouterr().out.split("\n}\n")[-2] + "\n}")
    assert printed["wrote"][0] == str(run / "results" / "embed-3.png") and (run / "results" / "embed-2.png").exists()
    assert (run / "results" / "interpolate-1.png").exists() and (run / "results" / "traverse-1.json").exists()
    assert main(["sample", str(run)]) == 2 and "train a VAE" in capsys.readouterr().err
    assert main(["interpolate", str(run), "0", "100000"]) == 2


def test_sample_command_on_a_vae(tmp_path, capsys):
    run = tmp_path / "vae"
    assert main(["train", "--model", "vae", "--epochs", "2", "--code-size", "3", "--hidden", "16", "--no-progress", "--out", str(run)]) == 0
    assert main(["sample", str(run), "-n", "12", "--per-row", "6", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG" and (run / "results" / "sample-1.png").exists()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
def test_report_renders_in_headless_chromium(tmp_path):
    data = aekit.load_dataset("digits")
    aekit.seed_everything(0)
    model = aekit.get_model("vae", input_shape=data.shape, code_size=4, hidden=(32,))
    run = tmp_path / "run"
    aekit.fit(model, data, epochs=3, out=run, progress=False)
    (run / "data.json").write_text(json.dumps({"dataset": "digits"}))
    assert main(["embed", str(run), "-o", str(tmp_path / "e.png")]) == 0
    assert main(["detect", str(run), "--normal-class", "0", "-o", str(tmp_path / "h.png")]) == 0
    report = aekit.apps.write_report(run, tmp_path / "report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tempfile.mkdtemp()}"]  # fmt: skip
    dom = subprocess.run([_chromium(), *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120).stdout
    for element in ('id="title"', 'id="training-curves"', 'id="reconstructions"', 'id="latent-map"', 'id="samples"', 'id="result-detect-1"', "data:image/png;base64"):
        assert element in dom, element
    shot = tmp_path / "shot.png"
    subprocess.run([_chromium(), *flags, "--window-size=1200,1600", f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
    assert Path(report).read_text().count("<img") >= 5
