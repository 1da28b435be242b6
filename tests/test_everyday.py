"""Everyday use: piped logs, files others can read, the data people bring, one-line errors, one run per folder, ONNX."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import aekit
from aekit.cli import main

TINY = ["--code-size", "4", "--hidden", "16"]


def aekit_cli(*args: str, cwd, umask: int | None = None) -> subprocess.CompletedProcess:
    """The real command in a child process, its output piped (not a terminal)."""
    pre = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "aekit", *args], capture_output=True, text=True, cwd=cwd, preexec_fn=pre)


@pytest.mark.slow  # 8-20 s: the default suite stays under 4 minutes
def test_piped_log_is_one_plain_line_per_epoch_and_files_follow_the_umask(tmp_path):
    done = aekit_cli("train", "--epochs", "3", *TINY, "--out", "run", cwd=tmp_path, umask=0o022)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    epochs = [line for line in done.stderr.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 3 and "train_loss" in epochs[0] and "val_loss" in epochs[0] and epochs[0].endswith(" s")
    for name in ("config.json", "model.safetensors", "metrics.csv", "data.json"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name
    quiet = aekit_cli("train", "--epochs", "2", *TINY, "--quiet", "--out", "quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_parquet_tables_train(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 5)), columns=list("abcde"))
    frame.insert(0, "key", [f"k{i}" for i in range(120)])
    frame.to_parquet(tmp_path / "t.parquet")
    assert main(["train", "--dataset", str(tmp_path / "t.parquet"), "--id-column", "key", "--epochs", "2", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    data = aekit.load_dataset(str(tmp_path / "t.parquet"), split="all", id_column="key", scaling=None)
    assert data.ids[:2] == ["k0", "k1"] and data.columns == list("abcde")
    np.testing.assert_allclose(data.x.numpy(), frame[list("abcde")].to_numpy(), rtol=1e-6)
    with pytest.raises(aekit.DataError, match="key"):
        aekit.load_dataset(str(tmp_path / "t.parquet"))  # a text column that is not the id is named


def test_image_folders_of_mixed_sizes_are_resized_on_request(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    for i in range(12):
        h, w = rng.integers(10, 30, size=2)
        Image.fromarray(rng.integers(0, 255, size=(h, w), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    with pytest.raises(aekit.DataError, match="--image-size"):
        aekit.load_dataset(str(tmp_path / "imgs"))
    data = aekit.load_dataset(str(tmp_path / "imgs"), split="all", image_size="16x12")
    assert data.shape == (1, 16, 12)
    assert main(["train", "--dataset", str(tmp_path / "imgs"), "--image-size", "16", "--epochs", "1", *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert aekit.load(tmp_path / "run").input_shape == (1, 16, 16)


def test_four_dimensional_arrays_train_and_skip_the_picture(tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.random.default_rng(0).random((40, 2, 3, 4)).astype(np.float32))
    assert main(["train", "--dataset", str(tmp_path / "d.npy"), "--epochs", "1", *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "no reconstructions.png" in capsys.readouterr().err
    assert not (tmp_path / "run" / "reconstructions.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--epochs", "1", "--seed", str(2**70)], "seed must be an integer"),
        (["reconstruct", "RUN", "-n", "0"], "-n is the number of samples"),
        (["reconstruct", "RUN", "-n", "-3"], "-n is the number of samples"),
        (["train", "--resume", "RUN", "--lr", "10"], "remove --lr"),
        (["train", "--resume", "RUN", "--model", "vae", "--dataset", "x.csv"], "remove --model, --dataset"),
        (["train", "--epochs", "1", "--out", "A_FILE"], "is a file"),
        (["train", "--epochs", "1", "--out", "OTHER"], "not an aekit run"),
        (["train", "--epochs", "1", "--dataset", "no-such-file.csv"], "not found"),
        (["export", "RUN", "-o", "model.txt"], ".onnx"),
    ],
)
def test_more_mistakes_are_one_line_and_status_2(tmp_path, capsys, argv, message):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", *TINY, "--out", str(run), "--quiet"]) == 0
    (tmp_path / "A_FILE").write_text("x")
    (tmp_path / "OTHER").mkdir()
    (tmp_path / "OTHER" / "notes.txt").write_text("mine")
    capsys.readouterr()
    swap = {"RUN": str(run), "A_FILE": str(tmp_path / "A_FILE"), "OTHER": str(tmp_path / "OTHER")}
    assert main([swap.get(a, a) for a in argv] + ["--quiet"] * (argv[0] == "train")) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert (tmp_path / "OTHER" / "notes.txt").read_text() == "mine"


HOLD = """
import sys, time
from aekit.checkpoint import lock_run
with lock_run(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(30)
"""


def test_a_run_folder_in_use_refuses_a_second_training(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", "--epochs", "1", *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "another aekit process" in err
        assert not (tmp_path / "run" / "data.json").exists()  # nothing of the second run was written
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    assert main(["train", "--epochs", "1", *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 0  # released with its process


@pytest.mark.parametrize("options", [["--model", "ae"], ["--model", "conv", "--option", "channels=[4]", "--option", "score_smoothing=1"], []])
def test_onnx_export_matches_pytorch(tmp_path, capfd, options):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the dev extras")
    run = tmp_path / "run"
    if options:
        assert main(["train", "--epochs", "1", "--code-size", "4", *options, "--out", str(run), "--quiet"]) == 0
        x = aekit.load_dataset("digits", split="test").x[:50]
    else:  # rows of features: the ensemble, with its scaling inside the graph
        rows = np.random.default_rng(0).normal(size=(300, 6)) * 40 + 7
        np.save(tmp_path / "rows.npy", rows)
        assert main(["train", "--dataset", str(tmp_path / "rows.npy"), "--epochs", "2", "--out", str(run), "--quiet"]) == 0
        x = torch.tensor(rows[:50], dtype=torch.float32)
    capfd.readouterr()
    assert main(["export", str(run), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    said = capfd.readouterr().err.splitlines()
    assert all(line.startswith("aekit") for line in said), said  # the exporter's notes are nothing a user can act on
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"x": x.numpy()})))
    model = aekit.load(run)
    with torch.no_grad():
        reference = model(x)
    from aekit.apps import anomaly_scores

    np.testing.assert_allclose(outputs["x_hat"], reference.x_hat.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["z"], reference.z.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs["score"], anomaly_scores(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--option", "input_shape=[3]"], "input_shape comes from the data set"),
        (["--hidden", "100000000"], "more than this machine's"),
    ],
)
def test_model_options_that_cannot_work_are_one_line(tmp_path, capsys, argv, message):
    assert main(["train", "--epochs", "1", *argv, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_python_api_type_errors_are_aekit_errors():
    model = aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(4,))
    for setting in ({"lr": "a"}, {"seed": "a"}, {"weight_decay": "x"}, {"val_fraction": None}, {"seed": 2**70}):
        with pytest.raises(aekit.ConfigError):
            aekit.fit(model, torch.rand(10, 4), epochs=1, progress=False, **setting)
    with pytest.raises(aekit.CheckpointError, match="path"):
        aekit.load(None)


@pytest.mark.slow  # 8-20 s: the default suite stays under 4 minutes
def test_sigterm_stops_training_like_ctrl_c(tmp_path):
    import signal

    child = subprocess.Popen([sys.executable, "-m", "aekit", "train", "--epochs", "100000", *TINY, "--out", "run"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "run" / "resume.safetensors").exists() and time.time() < deadline:
        time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130 and "aekit train --resume RUN" in err and "Traceback" not in err


def test_evaluate_warns_about_data_outside_a_bce_models_range(tmp_path, capsys):
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.random((200, 4)), columns=list("abcd")).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(3 * rng.random((50, 4)), columns=list("abcd")).to_csv(tmp_path / "wide.csv", index=False)
    run = str(tmp_path / "run")
    assert main(["train", "--dataset", str(tmp_path / "train.csv"), "--model", "ae", "--loss", "bce", "--epochs", "1", "--out", run, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", run, "--dataset", str(tmp_path / "wide.csv")]) == 0  # scaled like the training rows: beyond [0, 1]
    assert "expects data in [0, 1]" in capsys.readouterr().err
    assert main(["evaluate", run]) == 0
    assert "expects data in [0, 1]" not in capsys.readouterr().err


def test_image_defaults_are_sized_from_the_image_and_said(tmp_path, capsys):
    assert main(["train", "--epochs", "4", "--no-progress", "--out", str(tmp_path / "run")]) == 0
    assert "hidden 256-128; code_size 16; activation elu" in capsys.readouterr().err
    model = aekit.load(tmp_path / "run")
    assert tuple(model.config["hidden"]) == (256, 128) and model.config["code_size"] == 16
    test = aekit.load_dataset("digits", split="test")
    with torch.no_grad():
        error = ((model(test.x).x_hat - test.x) ** 2).flatten(1).sum(1).mean().item()
    mean_image = ((test.x - aekit.load_dataset("digits").x.mean(0)) ** 2).flatten(1).sum(1).mean().item()
    assert error < 0.9 * mean_image  # after 4 epochs it is no longer the mean image


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda run: (run / "model.safetensors").unlink() or os.symlink("/dev/zero", run / "model.safetensors"), "impossible"),
        (lambda run: (run / "config.json").write_text("[" * 100_000 + "]" * 100_000), "not valid JSON"),
        (lambda run: (run / "config.json").write_text('{"model": "ae", "options": {"code_size": ' + "9" * 5000 + "}}"), "not valid JSON"),
        (lambda run: (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes() + b"\0" * 10), "beyond the tensors"),
    ],
)
def test_tampered_run_files_are_one_line(tmp_path, capsys, tamper, message):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", *TINY, "--out", str(run), "--quiet"]) == 0
    tamper(run)
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_weights_of_another_dtype_are_refused(tmp_path):
    from safetensors.torch import save_file

    model = aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(4,))
    aekit.save(model, tmp_path / "m")
    save_file({k: v.double() for k, v in model.state_dict().items()}, tmp_path / "m" / "model.safetensors")
    with pytest.raises(aekit.CheckpointError, match="dtype"):
        aekit.load(tmp_path / "m")


def test_an_idx_file_or_an_mnist_folder_is_a_data_set(shared_data):
    folder = aekit.load_dataset(str(shared_data / "mnist"), split="test")
    named = aekit.load_dataset("mnist", split="test", data_dir=shared_data)
    assert folder.shape == (1, 28, 28) and torch.equal(folder.x, named.x) and torch.equal(folder.y, named.y)
    one_file = aekit.load_dataset(str(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"), split="all")
    assert torch.equal(one_file.x, named.x) and torch.equal(one_file.y, named.y)  # the labels file beside it is found


def test_every_cli_option_has_help_that_states_its_default():
    import argparse

    from aekit.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, parser in commands.choices.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            states = action.default in (None, False, argparse.SUPPRESS) or "default" in (action.help or "")
            if not action.help or (action.option_strings and not states):
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, missing


def test_maps_and_probes_of_small_tables(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(14, 3)), columns=list("abc"))
    frame["label"] = [0, 1] * 7
    frame.to_csv(tmp_path / "small.csv", index=False)
    run = str(tmp_path / "run")
    assert main(["train", "--dataset", str(tmp_path / "small.csv"), "--split", "all", "--epochs", "2", "--out", run, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["embed", run]) == 2 and "at least 6 samples" in capsys.readouterr().err  # its test split has 3 rows
    for method in ("pca", "tsne"):
        assert main(["embed", run, "--split", "all", "--method", method]) == 0
    assert main(["probe", run]) == 0


def test_report_tables_are_formatted_for_people(tmp_path):
    import re

    from aekit.apps.report import _table, write_report

    cell = _table({"roc_auc": None, "threshold": 4.998015880584717, "trustworthiness": {"pca": 0.8123456789}, "queries": list(range(20)), "wrote": ["x"]})
    assert "None" not in cell and "4.998<" in cell and "trustworthiness · pca" in cell and "0.8123<" in cell and "(20 in all)" in cell and ">x<" not in cell
    run = tmp_path / "run"
    assert main(["train", "--epochs", "2", *TINY, "--out", str(run), "--quiet"]) == 0
    assert main(["detect", str(run)]) == 0 and main(["embed", str(run)]) == 0
    page = write_report(run, tmp_path / "r.html").read_text()
    tables = "".join(re.findall(r"<table>.*?</table>", page))
    assert "None" not in tables and not re.search(r"\d\.\d{6,}", tables)
    # the run itself: its data set, the model's options, the settings, the evaluation numbers
    for section, content in [("run-data", ">digits<"), ("model", ">code size<"), ("settings", ">kl warmup<"), ("evaluation", "best epoch (")]:
        block = re.search(rf'<div id="{section}">(.*?)</div>', page)
        assert block and content in block.group(1), section


def test_search_grids_set_the_query_apart_from_its_hits(tmp_path):
    from aekit.plotting import image_grid

    images = np.random.default_rng(0).random((4, 1, 8, 8))
    plain, framed = tmp_path / "plain.png", tmp_path / "framed.png"
    image_grid([("q", images)], plain)
    image_grid([("q", images)], framed, column_titles=["query", "hit 1", "hit 2", "hit 3"], frame_first=True)
    import matplotlib.image

    picture = matplotlib.image.imread(framed)
    orange = (np.abs(picture[..., 0] - 1.0) < 0.05) & (np.abs(picture[..., 1] - 0.5) < 0.05) & (picture[..., 2] < 0.1)
    columns = np.where(orange.any(0))[0]
    assert orange.sum() > 100 and columns.max() < 0.3 * picture.shape[1]  # a frame around the first of 4 images only
    assert not ((np.abs(matplotlib.image.imread(plain)[..., 1] - 0.5) < 0.05) & (matplotlib.image.imread(plain)[..., 2] < 0.1)).sum()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the full-disk case below runs for everyone")
def test_a_read_only_out_is_one_line(tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o555)
    assert main(["train", "--epochs", "1", *TINY, "--out", str(locked / "run"), "--quiet"]) == 2
    assert "choose a folder you can write to" in capsys.readouterr().err


def test_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    from aekit import checkpoint

    def full(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.os, "fsync", lambda fd: full(fd, None))
    assert main(["train", "--epochs", "1", *TINY, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and err.count("\n") == 1
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no half-written file left behind


def test_a_corrupt_faiss_index_is_one_line(tmp_path, capsys):
    pytest.importorskip("faiss")
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", *TINY, "--out", str(run), "--quiet"]) == 0
    assert main(["index", str(run), "--approximate", "yes", "-o", str(tmp_path / "idx")]) == 0
    (tmp_path / "idx" / "faiss.index").write_bytes(b"garbage" * 10)
    capsys.readouterr()
    assert main(["search", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert "faiss.index is missing or corrupt" in err and err.count("\n") == 1


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_same_start(tmp_path, monkeypatch):
    from aekit.checkpoint import read_tensors

    common = ["train", "--model", "ae", "--epochs", "2", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "straight")]) == 0

    class KilledAtStart(aekit.Callback):  # as if the process died before the first epoch ended
        def on_fit_start(self, loop):
            raise KeyboardInterrupt

    fit = aekit.Trainer.fit
    monkeypatch.setattr(aekit.Trainer, "fit", lambda self, *a, **k: fit(self, *a, **{**k, "callbacks": [KilledAtStart()]}))
    assert main([*common, "--out", str(tmp_path / "killed")]) == 130
    monkeypatch.undo()
    assert not (tmp_path / "killed" / "resume.safetensors").exists()
    assert main(["train", "--resume", str(tmp_path / "killed"), "--quiet"]) == 0
    a, b = read_tensors(tmp_path / "straight" / "last.safetensors"), read_tensors(tmp_path / "killed" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_stopped_by_a_non_finite_loss_leaves_a_loadable_finite_best_model(tmp_path):
    class Diverge(aekit.Callback):  # weights blow up in epoch 3, as with too high a learning rate
        def on_step_end(self, loop):
            if loop.epoch == 3:
                with torch.no_grad():
                    next(loop.model.parameters()).fill_(float("inf"))

    x = torch.rand(64, 6)
    model = aekit.get_model("ae", input_shape=(6,), code_size=2, hidden=(4,))
    with pytest.raises(aekit.TrainingError, match="non-finite.*intact"):
        aekit.fit(model, x, epochs=5, batch_size=16, out=tmp_path / "r", progress=False, callbacks=[Diverge()])
    loaded = aekit.load(tmp_path / "r")
    assert all(torch.isfinite(p).all() for p in loaded.parameters())
    assert torch.isfinite(loaded(x).x_hat).all()
    resumed = aekit.load(tmp_path / "r" / "last.safetensors")  # the last epoch that ended, 2: finite too
    assert all(torch.isfinite(p).all() for p in resumed.parameters())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", "--model", "ae", "--epochs", "2", "--hidden", "16", "--code-size", "4", "--quiet", "--out", str(run)]) == 0
    return run


def _tampered(finished_run, tmp_path, name: str, content) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    original = json.loads((run / name).read_text())
    changed = {**original, **content} if isinstance(content, dict) else content
    (run / name).write_text(json.dumps(changed))
    return run


@pytest.mark.parametrize("name, content, message", [
    ("data.json", [], "expected an object"),
    ("data.json", None, "expected an object"),
    ("data.json", {"rows": 7}, "rows must be"),
    ("data.json", {"rows": {"calibration_fraction": "a"}}, "calibration_fraction"),
    ("data.json", {"scaling": {"kind": 1}}, "scaling must"),
    ("data.json", {"dataset": 5}, "dataset must be text"),
    ("trainer.json", None, "expected an object"),
    ("trainer.json", {"lr": "x"}, "lr must"),
    ("trainer.json", {"bogus": 1}, "does not know"),
])
def test_a_tampered_run_file_is_one_clear_line(finished_run, tmp_path, capsys, name, content, message):
    run = _tampered(finished_run, tmp_path, name, content)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("change, message", [
    (lambda meta: meta["info"].update(epoch="x"), "epoch, since_best"),
    (lambda meta: meta["info"].update(records=5), "records"),
    (lambda meta: meta["info"].update(best="x"), "best must"),
    (lambda meta: meta["info"].update(best=float("nan")), "best must"),
    (lambda meta: meta["info"].update(epoch=10**12), "is beyond any run's"),
])
def test_a_tampered_resume_state_is_one_clear_line(finished_run, tmp_path, capsys, change, message):
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    path = run / "resume.safetensors"
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["aekit"])
    change(meta)
    save_file(load_file(path), path, metadata={"aekit": json.dumps(meta)})
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_optimizer_state_of_the_wrong_shape_is_refused_not_run(finished_run, tmp_path, capsys):
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    path = run / "resume.safetensors"
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    tensors.update({k: torch.zeros(2) for k in list(tensors) if k.endswith("exp_avg")})  # fused Adam would read past them
    save_file(tensors, path, metadata=metadata)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    assert "optimizer state exp_avg of shape (2,)" in capsys.readouterr().err


@pytest.fixture
def keeps_sigint():
    """SIGINT handled as in a user's terminal (Python's default handler: a suite started as a shell's background
    job inherits SIGINT ignored), and restored after: the launcher leaves it ignored once interrupted."""
    handler = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, handler)


def test_ctrl_c_while_the_command_starts_is_one_line(monkeypatch, capsys, keeps_sigint):
    import types

    import _aekit_launcher

    importing = types.ModuleType("aekit.cli")  # a Ctrl-C that lands while the CLI (torch and all) is imported

    def interrupted(name):
        raise KeyboardInterrupt

    importing.__getattr__ = interrupted
    monkeypatch.setitem(sys.modules, "aekit.cli", importing)
    assert _aekit_launcher.main() == 130
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # further Ctrl-Cs wait for the exit
    assert capsys.readouterr().err.strip() == "aekit: interrupted while starting; nothing was done"


def test_ctrl_c_during_the_import_is_noted_and_acted_on_after_it(monkeypatch, capsys, keeps_sigint):
    """A KeyboardInterrupt raised inside a C++ extension's import aborts the process, so none is raised then."""
    import types

    import _aekit_launcher

    importing = types.ModuleType("aekit.cli")

    def signalled(name):
        raised = []
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt:  # would be an abort in torch's import
            raised.append(name)
        assert not raised, "the Ctrl-C raised KeyboardInterrupt during the import"
        return lambda: 0

    importing.__getattr__ = signalled
    monkeypatch.setitem(sys.modules, "aekit.cli", importing)
    assert _aekit_launcher.main() == 130
    assert capsys.readouterr().err.strip() == "aekit: interrupted while starting; nothing was done"


def test_sigint_soon_after_start_ends_without_a_traceback(tmp_path):
    import shutil

    aekit_bin = shutil.which("aekit") or str(Path(sys.executable).parent / "aekit")
    # a shell's background job (as CI may run the suite) inherits SIGINT ignored; a user's terminal does not
    process = subprocess.Popen([aekit_bin, "train", "--epochs", "100000", "--out", str(tmp_path / "r")], stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.3)  # most likely still importing torch (noted, acted on when the import ends: seconds on a busy machine)
    for _ in range(6):  # an interrupt that lands where a library swallows it is sent again
        process.send_signal(signal.SIGINT)
        try:
            err = process.communicate(timeout=10)[1]
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        process.kill()
        raise AssertionError("aekit train did not stop on SIGINT")
    assert process.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("aekit: interrupted"), err


def test_image_batch_sizes_give_about_fifty_steps_per_epoch():
    from aekit.defaults import batch_size_for

    for n in (800, 1438, 3000, 6000):
        size = batch_size_for(n)
        assert size & (size - 1) == 0 and 50 / 2**0.5 <= n / size <= 50 * 2**0.5, (n, size)  # the nearest power of two
    assert batch_size_for(10) == 16 and batch_size_for(60_000) == 128  # within [16, 128]
