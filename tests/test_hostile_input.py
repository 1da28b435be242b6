"""Hostile and odd input: one line, exit status 2, nothing lost, nothing outside the run touched."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

import aekit
from aekit.cli import main
from aekit.errors import AekitError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    run = folder / "base"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--hidden", "16", "--code-size", "4", "--out", str(run), "--quiet"]) == 0
    return run


def copy(base, tmp_path, change=None):
    run = tmp_path / "run"
    shutil.copytree(base, run)
    if change:
        change(run)
    return run


def one_line(capsys, argv) -> str:
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own refusals (a bad argument type) exit 2 themselves
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def write(name, text):
    return lambda run: (run / name).write_text(text)


def relink(name, target):
    def change(run):
        path = run / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.symlink(target, path)
    return change


def folder_instead(name):
    def change(run):
        (run / name).unlink()
        (run / name).mkdir()
    return change


@pytest.mark.parametrize(
    "change, command, message",
    [
        (write("metrics.csv", "garbage\x00\x01,,\n1,2"), "report", "metrics.csv is not what aekit wrote"),
        (relink("metrics.csv", "/dev/zero"), "report", "metrics.csv is not a regular file"),
        (write("metrics.csv", "epoch,train_loss\n1,abc\n"), "report", "metrics.csv is not what aekit wrote"),
        (write("calibration.json", "[1, 2]"), "report", "calibration.json is not what aekit wrote"),
        (write("calibration.json", '{"rows": 2, "scores": ["a", "b"]}'), "detect", "holds no usable calibration scores"),
        (folder_instead("reconstructions.png"), "report", "reconstructions.png is not a regular file"),
        (write("reconstructions.png", "not a picture"), "report", "reconstructions.png is not a PNG"),
        (write("config.json", "[1]"), "resume", "is not an aekit model config"),
        (write("config.json", '{"options": {}}'), "resume", "is not an aekit model config"),
    ],
)
def test_a_tampered_run_file_is_one_line(base, tmp_path, capsys, change, command, message):
    run = copy(base, tmp_path, change)
    argv = {"report": ["report", str(run), "-o", str(tmp_path / "r.html")], "detect": ["detect", str(run), "-o", str(tmp_path / "d.csv")],
            "resume": ["train", "--resume", str(run), "--epochs", "3", "--quiet"]}[command]
    assert message in one_line(capsys, argv)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--calibration-fraction", "nan"], "--calibration-fraction must be in [0, 1)"),
        (["train", "--calibration-fraction", "1"], "--calibration-fraction must be in [0, 1)"),
        (["train", "--device", "meta"], "device 'meta' cannot train"),
        (["train", "--out", "a" * 300], "choose a shorter folder name"),
        (["train", "--option", "hidden=" + "[" * 30000 + "]" * 30000], "is not valid JSON"),
        (["train", "--option", "hidden=[16"], "is not valid JSON"),
        (["train", "--model", "ensemble", "--option", "members=0"], "members must be a positive integer"),
        (["train", "--option", "code_size=NaN"], "code_size must be a positive integer"),
        (["sample", "RUN", "-n", "0"], "expected 1 to 10,000"),
        (["sample", "RUN", "-n", "1000000000"], "expected 1 to 10,000"),
        (["traverse", "RUN", "--index", "99999"], "sample 99999 does not exist"),
        (["traverse", "RUN", "--span", "nan"], "expected a finite number above 0"),
        (["embed", "RUN", "--max-points", "0"], "expected 1 to 1,000,000"),
        (["denoise", "RUN", "-n", "0"], "expected 1 to 10,000"),
    ],
)
def test_odd_arguments_are_one_line(base, tmp_path, capsys, argv, message):
    argv = [str(base) if a == "RUN" else a for a in argv]
    if argv[0] == "train":
        argv = [*argv, "--epochs", "1", "--quiet"] + ([] if "--out" in argv else ["--out", str(tmp_path / "x")])
    assert message in one_line(capsys, argv)
    assert not (tmp_path / "x").exists()  # a refused train leaves no folder


@pytest.mark.parametrize("nprobe", ["x", -5, 10**11])
def test_a_tampered_index_is_one_line(base, tmp_path, capsys, nprobe):
    assert main(["index", str(base), "-o", str(tmp_path / "idx")]) == 0
    meta = json.loads((tmp_path / "idx" / "index.json").read_text())
    (tmp_path / "idx" / "index.json").write_text(json.dumps({**meta, "nprobe": nprobe}))
    capsys.readouterr()
    assert "nprobe must be a whole number" in one_line(capsys, ["search", str(tmp_path / "idx")])
    (tmp_path / "idx" / "index.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "run"}))
    assert "does not name the run" in one_line(capsys, ["search", str(tmp_path / "idx")])


def test_a_failed_command_gives_back_the_result_name_it_claimed(base, tmp_path, capsys):
    run = copy(base, tmp_path)
    from aekit.runs import result_stem

    assert result_stem(run, "detect") == "detect-1" and result_stem(run, "detect") == "detect-2"  # claimed at once
    assert (run / "results" / "detect-1.json").read_bytes() == b""
    saved = (run / "calibration.json").read_text()
    (run / "calibration.json").write_text("{}")
    assert main(["detect", str(run), "-o", str(tmp_path / "d.csv")]) == 2
    assert not (run / "results" / "detect-3.json").exists()  # the failed call's claim was given back
    (run / "calibration.json").write_text(saved)
    result_stem(run, "detect")  # a claim still open, as while another detect runs
    assert main(["report", str(run), "-o", str(tmp_path / "r.html")]) == 0  # unwritten claims are skipped


def model():
    return aekit.get_model("ae", input_shape=(6,), code_size=2, hidden=(4,))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: aekit.fit("ae", torch.rand(20, 6), epochs=1), "fit trains an aekit model object"),
        (lambda: aekit.fit(model(), torch.rand(20, 6), epochs=1, out=3), "out is the run folder's path"),
        (lambda: aekit.fit(model(), torch.rand(20, 6), epochs=1, callbacks=[object()]), "callbacks must be a list of aekit.Callback"),
        (lambda: aekit.fit(model(), np.ones((20, 6), dtype=complex), epochs=1), "must be numeric"),
        (lambda: aekit.Trainer(batch_size=True), "batch_size must be a positive integer"),
        (lambda: aekit.export_onnx(3, "m.onnx"), "export_onnx takes a fitted aekit model"),
    ],
)
def test_python_misuse_is_a_clear_error(call, message):
    with pytest.raises(AekitError, match=message):
        call()


def test_detector_settings_and_a_tampered_saved_estimator_are_refused(tmp_path):
    from aekit.sklearn import AutoencoderOutlierDetector

    with pytest.raises(AekitError, match="steps must be a positive integer"):
        AutoencoderOutlierDetector(steps=0).fit(np.random.default_rng(0).random((50, 4)))
    detector = AutoencoderOutlierDetector(random_state=0).fit(np.random.default_rng(0).random((80, 4)))
    detector.save(tmp_path / "est")
    state = json.loads((tmp_path / "est" / "estimator.json").read_text())
    for key, value in (("threshold_", "x"), ("n_features_in_", "4"), ("calibration_scores_", ["a"])):
        broken = json.loads(json.dumps(state))
        broken["fitted"][key] = value
        (tmp_path / "est" / "estimator.json").write_text(json.dumps(broken))
        with pytest.raises(AekitError, match="estimator.json is not what aekit wrote"):
            AutoencoderOutlierDetector.load(tmp_path / "est")
