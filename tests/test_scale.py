"""Beyond one process and beyond memory: torchrun/DDP, streamed .npy data, mixed precision, compile, schedules."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import aekit
from aekit.checkpoint import read_tensors
from aekit.cli import main
from aekit.data.dataset import fixed_split
from aekit.errors import ConfigError, DataError

from test_models import SMALL

MODELS = Path(__file__).with_name("test_models.py")


TEARDOWN_ABORT = "terminate called without an active exception"


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 ...`` on loopback, two CPU processes.

    Under load, gloo's teardown now and then aborts a process (std::terminate from a background thread,
    SIGABRT) after the work is done. A training run that ends so is continued once with ``--resume``,
    which is exact: it finishes what is left (nothing, if the run was complete) and must succeed; any
    other command is run once more.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    folder = next((args[i + 1] for i, a in enumerate(args) if a in ("--out", "--resume")), None)
    if done.returncode and TEARDOWN_ABORT in done.stderr:
        again = command
        if "train" in args and folder is not None:
            epochs = [a for i, a in enumerate(args) if i and args[i - 1] == "--epochs"]
            again = [*command[:6], "-m", "aekit", "train", "--resume", folder, "--quiet", *(["--epochs", *epochs] if epochs else [])]
        done = subprocess.run(again, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def table(n: int = 600, features: int = 20, seed: int = 0) -> np.ndarray:
    """Rows near a 3-dimensional manifold, so a small code fits them."""
    g = np.random.default_rng(seed)
    return (1 / (1 + np.exp(-g.normal(size=(n, 3)) @ g.normal(size=(3, features))))).astype(np.float32)


# -- streamed .npy data --------------------------------------------------------------------------


@pytest.fixture
def shards(tmp_path) -> tuple[np.ndarray, Path, Path]:
    x = table(1000).reshape(1000, 4, 5)
    np.save(tmp_path / "all.npy", x)
    (tmp_path / "parts").mkdir()
    for i, (a, b) in enumerate([(0, 300), (300, 301), (301, 700), (700, 1000)]):
        np.save(tmp_path / "parts" / f"{i:03d}.npy", x[a:b])
    return x, tmp_path / "all.npy", tmp_path / "parts"


def test_streamed_rows_equal_the_array(shards):
    x, file, folder = shards
    rows = np.random.default_rng(1).permutation(1000)[:300]  # unordered, with runs of neighbours below
    rows = np.concatenate([rows, np.arange(295, 310), [5, 5]])
    for path in (file, folder):
        stream = aekit.open_stream(path, "all", scaling=None)
        assert len(stream) == 1000 and stream.shape == (4, 5)
        assert np.array_equal(stream.read(rows).numpy(), x[rows])


@pytest.mark.parametrize("split", ["train", "test"])
def test_streamed_split_and_scaling_match_load_dataset(shards, split):
    _, file, folder = shards
    loaded = aekit.load_dataset(str(file), split)
    for path in (file, folder):
        stream = aekit.open_stream(path, split)
        positions = np.searchsorted(stream.rows, fixed_split(1000, split))  # load_dataset keeps the split's order
        assert np.allclose(stream.read(positions).numpy(), loaded.x.numpy(), atol=1e-6)
        assert np.allclose(stream.scaling.low, loaded.scaling.low) and np.allclose(stream.scaling.high, loaded.scaling.high)


def test_streamed_8_bit_images_are_divided_by_255(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(50, 1, 3, 3), dtype=np.uint8)
    np.save(tmp_path / "img.npy", x)
    stream = aekit.open_stream(tmp_path / "img.npy", "all")
    assert stream.is_image and stream.scaling is None
    assert np.allclose(stream.read(np.arange(50)).numpy(), x / 255.0)


def test_streamed_training_equals_in_memory_training(shards):
    _, file, _ = shards
    runs = []
    for data in (aekit.load_dataset(str(file), "all"), aekit.open_stream(file, "all")):
        aekit.seed_everything(0)
        model = aekit.get_model("ae", input_shape=(4, 5), code_size=3, hidden=(8,))
        history = aekit.fit(model, data, epochs=3, batch_size=64, progress=False)
        runs.append((model.state_dict(), history))
    (a, ha), (b, hb) = runs
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert ha.column("val_loss") == pytest.approx(hb.column("val_loss"), rel=1e-5)


def rss_file_bytes() -> int | None:
    """Resident file-backed memory of this process (mapped file pages), from /proc on Linux."""
    status = Path("/proc/self/status")
    if not status.exists():
        return None
    line = next((l for l in status.read_text().splitlines() if l.startswith("RssFile:")), None)
    return int(line.split()[1]) * 1024 if line else None


def test_streaming_holds_about_one_batch_not_the_file(tmp_path):
    n, features = 60_000, 400  # 96 MB of float32
    np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(n, features))[:] = 0.5
    model = aekit.get_model("ae", input_shape=(features,), code_size=2, hidden=(4,))
    aekit.fit(model, torch.rand(8, features), epochs=1, progress=False)  # the modules training imports lazily, before measuring
    before = rss_file_bytes()
    if before is None:
        pytest.skip("needs /proc/self/status (Linux)")
    tracemalloc.start()  # numpy reports its own buffers to tracemalloc
    data = aekit.open_stream(tmp_path / "big.npy", "all")
    aekit.fit(model, data, epochs=1, batch_size=256, val_fraction=0.01, progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB of numpy buffers for a 96 MB file"
    assert rss_file_bytes() - before < 16e6, "the file's pages stayed in the process"
    mapped = np.load(tmp_path / "big.npy", mmap_mode="r")  # the measurement does see a file read through a map
    assert float(mapped.sum()) > 0 and rss_file_bytes() - before > 80e6


def test_stream_errors_say_what_to_fix(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        aekit.open_stream(tmp_path / "missing.npy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .npy files"):
        aekit.open_stream(tmp_path / "empty")
    (tmp_path / "mixed").mkdir()
    np.save(tmp_path / "mixed" / "a.npy", np.zeros((5, 3), np.float32))
    np.save(tmp_path / "mixed" / "b.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(DataError, match="every shard must match"):
        aekit.open_stream(tmp_path / "mixed")
    np.save(tmp_path / "fortran.npy", np.asfortranarray(np.zeros((5, 3), np.float32)))
    with pytest.raises(DataError, match="Fortran order"):
        aekit.open_stream(tmp_path / "fortran.npy")
    bad = np.zeros((200, 3), np.float32)
    bad[150, 2] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(DataError, match="NaN or inf"):
        aekit.open_stream(tmp_path / "nan.npy", "all")
    with pytest.raises(DataError, match="numeric"):
        np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
        aekit.open_stream(tmp_path / "text.npy")


def test_cli_trains_and_resumes_on_streamed_shards(shards, tmp_path):
    _, _, folder = shards
    assert main(["train", "--dataset", str(folder), "--stream", "--hidden", "8", "--code-size", "3", "--epochs", "2", "--out", "s", "--no-progress"]) == 0
    assert json.loads((tmp_path / "s" / "data.json").read_text())["stream"] is True
    assert main(["train", "--resume", "s", "--epochs", "3", "--no-progress"]) == 0
    assert (tmp_path / "s" / "metrics.csv").read_text().count("\n") == 4


# -- torchrun / DistributedDataParallel -----------------------------------------------------------


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    np.save(tmp_path / "data.npy", table())
    common = ["--dataset", "data.npy", "--model", "ae", "--hidden", "16", "--code-size", "3", "--batch-size", "50", "--no-progress"]
    assert main(["train", *common, "--epochs", "4", "--out", "one"]) == 0
    torchrun("-m", "aekit", "train", *common, "--epochs", "4", "--out", "two", cwd=tmp_path)
    torchrun("-m", "aekit", "train", *common, "--epochs", "2", "--out", "resumed", cwd=tmp_path)
    torchrun("-m", "aekit", "train", "--resume", "resumed", "--epochs", "4", "--no-progress", cwd=tmp_path)
    one = read_tensors(tmp_path / "one" / "last.safetensors")
    for run in ("two", "resumed"):
        other = read_tensors(tmp_path / run / "last.safetensors")
        assert all(torch.allclose(one[k], other[k], atol=1e-5) for k in one), run
        losses = [[float(v) for v in line.split(",")[1:4]] for line in (tmp_path / run / "metrics.csv").read_text().splitlines()[1:]]
        expected = [[float(v) for v in line.split(",")[1:4]] for line in (tmp_path / "one" / "metrics.csv").read_text().splitlines()[1:]]
        assert np.allclose(losses, expected, rtol=1e-5), run
    first, last = expected[0][0], expected[-1][0]
    assert last < first  # and it learns


WORKER = """
import json, sys, torch, torch.distributed as dist, aekit
sys.path.insert(0, {tests!r})
from test_models import SMALL, batch
results = {{}}
for name in aekit.list_models():
    if name not in SMALL:
        continue
    aekit.seed_everything(0)
    model = aekit.get_model(name, **{{"code_size": 3, **SMALL[name]}})
    if len(model.parameter_groups()) > 1:  # an adversary's own group (aae): one process only, refused clearly
        try:
            aekit.fit(model, batch(name, 96), epochs=1, progress=False)
            results[name] = {{"refused": False}}
        except aekit.ConfigError as exc:
            results[name] = {{"refused": "one process" in str(exc)}}
        continue
    history = aekit.fit(model, batch(name, 96), epochs=3, batch_size=32, lr=1e-2, pretrain_epochs=1, val_fraction=0.25, progress=False)
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    # the reconstruction term: a KL or total-correlation estimate may rise in the first steps, as codes start to carry information
    results[name] = {{"first": history[0]["train_reconstruction"], "last": history[-1]["train_reconstruction"],
                      "same_weights": all(torch.equal(gathered[0], g) for g in gathered)}}
if dist.get_rank() == 0:
    json.dump(results, open("results.json", "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow  # 8-20 s: the default suite stays under 4 minutes
def test_every_registered_model_trains_under_torchrun(tmp_path):
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER.format(tests=str(MODELS.parent))))
    torchrun("worker.py", cwd=tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == set(SMALL)  # every model aekit registers (see test_models)
    for name, r in results.items():
        if "refused" in r:
            assert r["refused"], name
            continue
        assert r["same_weights"], f"{name}: the two processes' weights differ"
        assert math.isfinite(r["last"]) and r["last"] < r["first"], (name, r)


def test_several_processes_need_a_named_run_folder(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--epochs", "1"]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_process_share_weights_its_loss_to_the_global_mean():
    from aekit.training.distributed import Workers

    batch = torch.arange(7)
    parts = [Workers(rank, 3).share(batch) for rank in range(3)]
    assert torch.equal(torch.cat([p for p, _ in parts]), batch)
    values = torch.rand(7)
    # DDP averages the processes' gradients; the weighted part means then average to the batch mean.
    mean = sum(w * values[p].mean() for p, w in parts) / 3
    assert mean == pytest.approx(values.mean().item(), rel=1e-6)
    part, weight = Workers(3, 4).share(torch.arange(3))  # more processes than samples
    assert len(part) == 1 and weight == 0.0


# -- precision, compile, schedules -----------------------------------------------------------------


def test_bf16_autocast_runs_the_layers_in_bf16_on_the_cpu():
    data = torch.from_numpy(table(256))
    seen = []
    losses = {}
    for precision in ("fp32", "bf16"):
        aekit.seed_everything(0)
        model = aekit.get_model("ae", input_shape=(20,), code_size=3, hidden=(16,))
        handle = model.encoder[1].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        history = aekit.fit(model, data, epochs=5, batch_size=32, precision=precision, lr=3e-3, progress=False)
        handle.remove()
        losses[precision] = history[-1]["val_loss"]
        assert next(model.parameters()).dtype == torch.float32  # master weights stay fp32
    assert torch.bfloat16 in seen and torch.float32 in seen
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_fp16_needs_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match="bf16"):
        aekit.fit(aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(4,)), torch.rand(8, 4), precision="fp16", device="cpu", progress=False)
    with pytest.raises(ConfigError, match="Choose one of"):
        aekit.Trainer(precision="fp8")


def test_compiled_training_matches_eager():
    data = torch.from_numpy(table(128))
    states = []
    for compile in (False, True):
        aekit.seed_everything(0)
        model = aekit.get_model("ae", input_shape=(20,), code_size=3, hidden=(16,))
        aekit.fit(model, data, epochs=2, batch_size=32, compile=compile, progress=False)
        states.append(model.state_dict())
    assert all(torch.allclose(states[0][k], states[1][k], atol=1e-5) for k in states[0])


def test_cosine_schedule_follows_the_formula_and_resumes(tmp_path, monkeypatch):
    data, lr, epochs, steps = torch.from_numpy(table(64)), 1e-2, 4, 4  # 64 samples, batch 16: 4 steps per epoch

    def model():
        aekit.seed_everything(0)
        return aekit.get_model("ae", input_shape=(20,), code_size=3, hidden=(8,))

    history = aekit.fit(model(), data, epochs=epochs, batch_size=16, lr=lr, schedule="cosine", val_fraction=0, out=tmp_path / "a", progress=False)
    for epoch, lr_seen in enumerate(history.column("lr"), start=1):
        last_step = epoch * steps - 1  # the lr of an epoch's last step is recorded
        assert lr_seen == pytest.approx(lr * 0.5 * (1 + math.cos(math.pi * last_step / (epochs * steps))))
    class InterruptAfterEpoch2(aekit.Callback):  # after epoch 2's checkpoint, as Ctrl-C would
        def on_epoch_start(self, loop):
            if loop.epoch == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        aekit.fit(model(), data, epochs=4, batch_size=16, lr=lr, schedule="cosine", val_fraction=0, out=tmp_path / "b", progress=False, callbacks=[InterruptAfterEpoch2()])
    aekit.fit(model(), data, epochs=4, batch_size=16, lr=lr, schedule="cosine", val_fraction=0, out=tmp_path / "b", resume=True, progress=False)
    a, b = read_tensors(tmp_path / "a" / "last.safetensors"), read_tensors(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_the_gpu_matches_fp32(precision):
    data = torch.from_numpy(table(512))
    losses = {}
    for p in ("fp32", precision):
        aekit.seed_everything(0)
        model = aekit.get_model("ae", input_shape=(20,), code_size=3, hidden=(16,))
        losses[p] = aekit.fit(model, data, epochs=5, batch_size=64, lr=3e-3, precision=p, device="cuda", progress=False)[-1]["val_loss"]
    assert losses[precision] == pytest.approx(losses["fp32"], rel=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_streamed_batches_reach_the_gpu(shards):
    _, file, _ = shards
    model = aekit.get_model("ae", input_shape=(4, 5), code_size=3, hidden=(8,))
    history = aekit.fit(model, aekit.open_stream(file), epochs=2, device="cuda", progress=False)
    assert next(model.parameters()).is_cuda and history[-1]["train_loss"] < history[0]["train_loss"]
