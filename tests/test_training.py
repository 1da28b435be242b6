"""The training loop: learning, resume, early stopping, faults, run folders."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

import aekit
from aekit.checkpoint import atomic_write
from aekit.errors import CheckpointError, ConfigError, DataError, TrainingError
from aekit.runfiles import RESUME


def digits_model(**options):
    aekit.seed_everything(0)
    return aekit.get_model("ae", input_shape=(1, 8, 8), code_size=8, hidden=(64,), **options)


def test_ae_on_digits_beats_the_mean_image_by_far():
    train, test = aekit.load_dataset("digits", split="train"), aekit.load_dataset("digits", split="test")
    baseline = ((test.x - train.x.mean(0)) ** 2).flatten(1).sum(1).mean().item()  # predict the mean image
    pca = PCA(8).fit(train.x.flatten(1).numpy())  # the best linear code of the same size
    pca_error = ((pca.inverse_transform(pca.transform(test.x.flatten(1).numpy())) - test.x.flatten(1).numpy()) ** 2).sum(1).mean()
    model = digits_model()
    history = aekit.fit(model, train, epochs=60, lr=3e-3, progress=False)
    with torch.no_grad():
        error = ((model(test.x).x_hat - test.x) ** 2).flatten(1).sum(1).mean().item()
    assert error < 0.3 * baseline and error < pca_error, (error, baseline, pca_error)
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    data = aekit.load_dataset("digits")
    aekit.fit(digits_model(), data, epochs=4, seed=1, out=tmp_path / "straight", progress=False)
    aekit.fit(digits_model(), data, epochs=2, seed=1, out=tmp_path / "split", progress=False)
    history = aekit.fit(digits_model(), data, epochs=4, seed=1, out=tmp_path / "split", resume=True, progress=False)
    assert [r["epoch"] for r in history.records] == [1, 2, 3, 4]
    for name in ("last.safetensors", "model.safetensors"):
        a = aekit.checkpoint.read_tensors(tmp_path / "straight" / name)
        b = aekit.checkpoint.read_tensors(tmp_path / "split" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (tmp_path / "straight" / "metrics.csv").read_text().count("\n") == 5


def test_early_stopping_restores_the_best_epoch():
    train = torch.zeros(64, 10)  # learning to output zeros makes the all-ones validation set worse
    model = aekit.get_model("ae", input_shape=(10,), code_size=2, hidden=(8,))
    history = aekit.fit(model, train, val_data=torch.ones(16, 10), epochs=50, patience=3, lr=1e-2, progress=False)
    assert history.stopped_early and len(history) == history.best_epoch + 3
    best = min(history.column("val_loss"))
    assert history[history.best_epoch - 1]["val_loss"] == best
    assert aekit.training.evaluate_losses(model, torch.ones(16, 10))["loss"] == pytest.approx(best, rel=1e-5)


def test_non_finite_loss_stops_with_epoch_and_step(tmp_path):
    model = aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(4,), output_activation="identity")
    huge = torch.full((32, 4), 1e30)  # finite data whose squared error overflows float32
    with pytest.raises(TrainingError, match="epoch 1 at or before step 1"):
        aekit.fit(model, huge, epochs=3, batch_size=8, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_an_existing_run_is_never_overwritten(tmp_path):
    aekit.fit(digits_model(), aekit.load_dataset("digits"), epochs=1, out=tmp_path / "run", progress=False)
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(CheckpointError, match="already holds"):
        aekit.fit(digits_model(), aekit.load_dataset("digits"), epochs=1, out=tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before


def test_run_folder_contents(tmp_path):
    history = aekit.fit(digits_model(), aekit.load_dataset("digits"), epochs=3, out=tmp_path / "run", progress=False)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert names == {"config.json", "trainer.json", "model.safetensors", "last.safetensors", RESUME, "metrics.csv", "reconstructions.png", ".lock"}
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,train_reconstruction,val_loss") and len(lines) == 4
    assert float(lines[-1].split(",")[1]) == pytest.approx(history[-1]["train_loss"])
    assert (tmp_path / "run" / "reconstructions.png").read_bytes()[:4] == b"\x89PNG"


def test_fit_accepts_numpy_and_tensors_and_refuses_bad_data():
    model = aekit.get_model("ae", input_shape=(6,), code_size=2, hidden=(4,))
    aekit.fit(model, np.random.default_rng(0).random((20, 6)), epochs=1, progress=False)
    aekit.fit(model, torch.rand(20, 6), epochs=1, progress=False)
    bad = torch.rand(20, 6)
    bad[3, 2] = float("nan")
    with pytest.raises(DataError, match=r"1 non-finite value.*\(3, 2\)"):
        aekit.fit(model, bad, progress=False)
    with pytest.raises(DataError, match="at least one sample"):
        aekit.fit(model, torch.rand(0, 6), progress=False)
    with pytest.raises(DataError, match=r"expects samples of shape \(6,\)"):
        aekit.fit(model, torch.rand(20, 7), progress=False)
    with pytest.raises(DataError, match="must be numeric"):
        aekit.fit(model, np.array([["a"] * 6] * 2), progress=False)


def test_bce_refuses_data_outside_the_unit_interval():
    model = aekit.get_model("ae", input_shape=(3,), code_size=2, hidden=(4,), loss="bce")
    with pytest.raises(DataError, match=r"needs data in \[0, 1\]"):
        aekit.fit(model, torch.rand(10, 3) * 5, progress=False)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": -0.1}, "lr"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"optimizer": "adma"}, "Did you mean 'adam'"),
        ({"patience": 0}, "patience"),
        ({"epoch": 3}, "unknown training setting"),
        ({"device": "tpu"}, "unknown device"),
    ],
)
def test_invalid_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        aekit.fit(aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(4,)), torch.rand(8, 4), progress=False, **settings)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown when CUDA is absent")
def test_asking_for_cuda_without_a_gpu():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        aekit.fit(aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(4,)), torch.rand(8, 4), device="cuda", progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_matches_the_cpu_closely():
    data = torch.rand(64, 12)
    results = []
    for device in ("cpu", "cuda"):
        aekit.seed_everything(0)
        model = aekit.get_model("ae", input_shape=(12,), code_size=3, hidden=(8,))
        aekit.fit(model, data, epochs=3, device=device, progress=False)
        results.append(aekit.training.evaluate_losses(model.cpu(), data)["loss"])
    assert results[0] == pytest.approx(results[1], rel=1e-3)


def test_atomic_write_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write(target, b"old")

    def crash(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_dynamic_binarisation_draws_fresh_binary_batches():
    seen = []

    class Spy(aekit.Autoencoder):
        def forward(self, x):
            seen.append(x.clone())
            return super().forward(x)

    model = Spy(input_shape=(50,), code_size=2, hidden=(4,))
    x = torch.full((64, 50), 0.3)
    aekit.fit(model, x, epochs=2, batch_size=64, val_fraction=0, binarize=True, progress=False)
    first, second = seen[0], seen[1]
    assert set(first.unique().tolist()) == {0.0, 1.0} and not torch.equal(first, second)
    assert (first.mean() - 0.3).abs() < 0.03  # Bernoulli(0.3): 3,200 draws, standard error 0.008
    with pytest.raises(DataError, match="binarize"):
        aekit.fit(model, x * 4, binarize=True, progress=False)


def test_skip_policy_skips_a_non_finite_batch_and_halves_the_learning_rate(capsys):
    x = torch.rand(64, 4)
    x[5] = 1e30  # finite data whose squared error overflows: the batch that holds it has an infinite loss
    model = aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(4,), output_activation="identity")
    history = aekit.fit(model, x, epochs=2, batch_size=8, lr=1e-2, val_fraction=0, on_nonfinite="skip", progress=False)
    assert [r["lr"] for r in history.records] == [5e-3, 2.5e-3]  # one skipped batch per epoch
    assert all(np.isfinite(r["train_loss"]) for r in history.records)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(TrainingError, match="on_nonfinite='skip'"):
        aekit.fit(model, x, epochs=1, batch_size=8, val_fraction=0, progress=False)


def test_resume_removes_temporary_files_left_by_a_killed_write(tmp_path):
    data = aekit.load_dataset("digits")
    aekit.fit(digits_model(), data, epochs=1, out=tmp_path / "run", progress=False)
    (tmp_path / "run" / ".resume.safetensors.abc123.tmp").write_bytes(b"half a checkpoint")
    aekit.fit(digits_model(), data, epochs=2, out=tmp_path / "run", resume=True, progress=False)
    assert not list((tmp_path / "run").glob("*.tmp")) and not list((tmp_path / "run").glob(".*.tmp"))


def test_a_warm_up_restores_beta_when_training_raises():
    model = aekit.get_model("vae", input_shape=(12,), code_size=2, hidden=(8,), beta=2.0)

    class Fails(aekit.Callback):
        def on_step_end(self, loop):
            raise RuntimeError("a failure mid-epoch")

    with pytest.raises(RuntimeError, match="mid-epoch"):
        aekit.fit(model, torch.rand(32, 12), epochs=2, kl_warmup=2, callbacks=[Fails()], progress=False)
    assert model.beta == 2.0  # the warm-up had set it near 0 for the step that failed


def test_callback_state_is_saved_under_its_key_not_its_position(tmp_path):
    from aekit.training.state import load_state, save_state

    class Counter(aekit.Callback):
        def __init__(self, key, value):
            self.key, self.value = key, torch.tensor(float(value))

        @property
        def state_key(self):
            return self.key

        def state_dict(self):
            return {"value": self.value}

        def load_state_dict(self, state):
            self.value = state["value"]

    model = aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=())
    optimizer = torch.optim.Adam(model.parameters())
    info = {"epoch": 1, "best": 1.0, "since_best": 0, "best_epoch": 1, "records": [{"epoch": 1, "train_loss": 1.0}]}
    save_state(tmp_path / RESUME, model, optimizer, torch.Generator(), info, [Counter("a", 1), Counter("b", 2)])
    restored = [Counter("b", 0), Counter("a", 0)]  # the other order: a list position would swap them
    load_state(tmp_path / RESUME, model, optimizer, torch.Generator(), restored)
    assert [c.value.item() for c in restored] == [2.0, 1.0]


def test_fit_documents_every_trainer_setting_and_every_setting_has_a_check():
    import dataclasses

    for f in dataclasses.fields(aekit.Trainer):
        assert f"``{f.name}``" in aekit.fit.__doc__, f.name
        assert callable(f.metadata["check"]) and f.metadata["help"], f.name
    with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
        aekit.Trainer(batch_size=True)  # a bool is not a size
