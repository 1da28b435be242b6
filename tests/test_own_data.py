"""The user's own tables and images as they bring them, and runs that survive whatever happens to them."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import aekit
from aekit.checkpoint import read_tensors
from aekit.cli import main
from aekit.errors import CheckpointError, DataError
from aekit.runs import spreadsheet_safe, write_csv


def table(path, rows: int = 120, seed: int = 0, site: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 2)) @ rng.normal(size=(2, 5))
    frame = pd.DataFrame(x, columns=["mean radius", "b", "c", "d", "e"])  # a name with a space
    frame.insert(0, "id", [f"P{i:04d}" for i in range(seed * 1000, seed * 1000 + rows)])
    if site:
        frame.insert(1, "site", rng.choice(["north", "south"], rows))
    frame.to_csv(path, index=False)
    return frame


def test_own_file_trains_on_every_row_and_says_where_they_go(tmp_path, capsys):
    table(tmp_path / "t.csv", rows=120)
    assert main(["train", "--dataset", str(tmp_path / "t.csv"), "--id-column", "id", "--ignore-columns", "site", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    said = capsys.readouterr().err
    assert "120 rows (all): 96 train, 24 calibration" in said  # 20% held out to calibrate, none kept out silently
    assert json.loads((tmp_path / "run" / "data.json").read_text())["split"] == "all"
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "digits"), "--no-progress"]) == 0
    assert "(its train split; --split all for every row)" in capsys.readouterr().err  # a named set keeps its split


def test_new_rows_need_not_carry_the_ignored_column_and_ignore_adds_to_the_run(tmp_path, capsys):
    table(tmp_path / "t.csv")
    run = str(tmp_path / "run")
    assert main(["train", "--dataset", str(tmp_path / "t.csv"), "--id-column", "id", "--ignore-columns", "site", "--epochs", "1", "--out", run, "--quiet"]) == 0
    new = table(tmp_path / "new.csv", rows=30, seed=1, site=False)
    new.iloc[0, 1] *= 50  # a broken row
    new.to_csv(tmp_path / "new.csv", index=False)
    capsys.readouterr()
    assert main(["detect", run, "--dataset", str(tmp_path / "new.csv"), "-o", str(tmp_path / "s.csv")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["flagged_ids"][0] == "P1000" and printed["flagged_list"] == str(tmp_path / "s.csv")
    scores = pd.read_csv(tmp_path / "s.csv")
    top = json.loads(scores["top_features"][0])  # [[column, share], ...]: names with spaces parse
    assert top[0][0] == "mean radius" and top[0][1] > 0.5

    with_note = table(tmp_path / "note.csv", rows=30, seed=1)
    with_note.insert(2, "note", "x")
    with_note.to_csv(tmp_path / "note.csv", index=False)
    assert main(["detect", run, "--dataset", str(tmp_path / "note.csv"), "--ignore-columns", "note", "-o", str(tmp_path / "n.csv")]) == 0  # site still ignored
    assert len(pd.read_csv(tmp_path / "n.csv")) == 30


def test_load_dataset_takes_one_ignored_column_by_name(tmp_path):
    table(tmp_path / "t.csv")
    data = aekit.load_dataset(tmp_path / "t.csv", id_column="id", ignore_columns="site")
    assert data.columns == ["mean radius", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    "cell, written",
    [("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1+2", "'+1+2"), ("@SUM(A1)", "'@SUM(A1)"), ("-1+cmd", "'-1+cmd"),
     ("\tx", "'\tx"), ("-5", "-5"), ("1e3", "1e3"), ("P0001", "P0001"), (3.5, 3.5)],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_kept_text(cell, written):
    assert spreadsheet_safe(cell) == written


def test_every_csv_aekit_writes_is_spreadsheet_safe(tmp_path):
    write_csv(tmp_path / "s.csv", pd.DataFrame({"id": ["=1+1", "ok"], "=col": [1.0, -2.0]}))
    back = pd.read_csv(tmp_path / "s.csv")
    assert list(back.columns) == ["id", "'=col"] and list(back["id"]) == ["'=1+1", "ok"] and list(back["'=col"]) == [1.0, -2.0]
    write_csv(os.devnull, pd.DataFrame({"a": [1]}))  # the user's way to discard it: nothing written, no error


def grey_and_colour_folders(tmp_path) -> None:
    rng = np.random.default_rng(0)
    for folder in ("grey/a", "grey/b", "colour/a"):
        (tmp_path / folder).mkdir(parents=True)
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(tmp_path / "grey" / "ab"[i % 2] / f"g{i}.png")
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "colour" / "a" / f"c{i}.png")


def test_images_are_read_with_the_run_s_channels_and_named_by_path(tmp_path, capsys):
    grey_and_colour_folders(tmp_path)
    run = str(tmp_path / "run")
    assert main(["train", "--dataset", str(tmp_path / "grey"), "--model", "conv", "--epochs", "1", "--out", run, "--quiet"]) == 0
    assert main(["detect", run, "--dataset", str(tmp_path / "colour"), "-o", str(tmp_path / "s.csv")]) == 0
    assert "4 of 4 images converted to grey" in capsys.readouterr().err
    assert list(pd.read_csv(tmp_path / "s.csv")["id"]) == [f"a/c{i}.png" for i in range(4)]
    assert main(["detect", run, "--dataset", str(tmp_path / "grey"), "--normal-class", "a", "-o", os.devnull]) == 0
    assert json.loads(capsys.readouterr().out)["roc_auc"] is not None


# -- runs that survive anything ------------------------------------------------------------------


def digits(out, *extra: str) -> list[str]:
    return ["train", "--dataset", "digits", "--epochs", "2", "--seed", "3", "--hidden", "16", "--code-size", "4", "--out", str(out), "--quiet", *extra]


def same_weights(a, b) -> bool:
    x, y = read_tensors(a / "model.safetensors"), read_tensors(b / "model.safetensors")
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def test_a_run_killed_before_its_settings_were_written_restarts_from_its_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(digits("straight", "--split", "all")) == 0
    early = tmp_path / "early"
    early.mkdir()  # as a kill just after the command was recorded leaves it
    (early / "command.json").write_text(json.dumps({"argv": digits("early", "--split", "all"), "cwd": str(tmp_path)}))
    monkeypatch.chdir(tmp_path / "early")  # resumed from elsewhere
    assert main(["train", "--resume", str(early), "--quiet"]) == 0
    assert same_weights(tmp_path / "straight", early)
    assert json.loads((early / "data.json").read_text())["split"] == "all"


def test_resume_keeps_the_recorded_split(tmp_path):
    assert main(digits(tmp_path / "straight", "--split", "all")) == 0
    assert main([*digits(tmp_path / "half", "--split", "all")[:4], "1", *digits(tmp_path / "half", "--split", "all")[5:]]) == 0
    assert main(["train", "--resume", str(tmp_path / "half"), "--epochs", "2", "--quiet"]) == 0
    assert same_weights(tmp_path / "straight", tmp_path / "half")


def test_a_failed_train_leaves_nothing_behind_and_a_resume_that_fails_changes_nothing(tmp_path, capsys):
    assert main(["train", "--dataset", str(tmp_path / "no.csv"), "--out", str(tmp_path / "failed"), "--quiet"]) == 2
    assert not (tmp_path / "failed").exists()
    run = tmp_path / "run"
    assert main(digits(run)) == 0
    before = (run / "trainer.json").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "1", "--quiet"]) == 2
    assert "has trained 2 epochs already" in capsys.readouterr().err and (run / "trainer.json").read_bytes() == before
    (run / "resume.safetensors").write_bytes(b"garbage")
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    assert (run / "trainer.json").read_bytes() == before


def test_a_lock_file_linked_outside_the_run_is_never_written_through(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(digits(run)) == 0
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(outside)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 2
    assert outside.read_text() == "keep me" and "symbolic link" in capsys.readouterr().err


def test_two_runs_started_at_once_never_share_a_folder(tmp_path, monkeypatch):
    from aekit.commands import _free_run_dir

    monkeypatch.chdir(tmp_path)
    assert _free_run_dir("ae", "digits") != _free_run_dir("ae", "digits")  # each made, not only looked for


def test_non_finite_weights_are_refused_on_load(tmp_path):
    run = tmp_path / "run"
    assert main(digits(run)) == 0
    from safetensors.torch import save_file

    tensors = read_tensors(run / "model.safetensors")
    key = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[key][0] = float("nan")
    save_file(tensors, run / "model.safetensors")
    with pytest.raises(CheckpointError, match=f"non-finite weights .* in {key}"):
        aekit.load(run)


def test_a_run_reads_its_own_file_wherever_it_runs_and_refuses_it_changed(tmp_path, monkeypatch, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    frame = table(tmp_path / "a" / "data.csv")
    monkeypatch.chdir(tmp_path / "a")
    assert main(["train", "--dataset", "data.csv", "--id-column", "id", "--ignore-columns", "site", "--epochs", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    monkeypatch.chdir(tmp_path / "b")
    table(tmp_path / "b" / "data.csv", seed=5)  # another file by the same name in another folder
    assert main(["detect", str(tmp_path / "run"), "-o", "s.csv"]) == 0
    assert set(pd.read_csv("s.csv")["id"]) <= set(frame["id"])  # the run's own file (P0...), not this folder's (P5...)
    frame.assign(b=frame["b"] * 1000).to_csv(tmp_path / "a" / "data.csv", index=False)
    capsys.readouterr()
    assert main(["detect", str(tmp_path / "run"), "-o", "s.csv"]) == 2
    assert "has changed since" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "--quiet"]) == 2
