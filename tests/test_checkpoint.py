"""Checkpoints: JSON + safetensors, refused clearly when truncated, tampered with or mismatched."""

from __future__ import annotations

import json

import pytest
import torch

import aekit
from aekit.errors import CheckpointError


@pytest.fixture
def saved(tmp_path):
    model = aekit.get_model("ae", input_shape=(10,), code_size=3, hidden=(6,))
    return model, aekit.save(model, tmp_path / "m")


def test_files_are_json_and_safetensors(saved):
    model, path = saved
    config = json.loads((path / "config.json").read_text())
    assert config["model"] == "ae" and config["options"]["hidden"] == [6]
    assert (path / "model.safetensors").read_bytes()[8:9] == b"{"  # safetensors: u64 header size, then JSON


def test_truncated_weights(saved):
    _, path = saved
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) - 20])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        aekit.load(path)


def test_garbage_header(saved):
    _, path = saved
    (path / "model.safetensors").write_bytes(b"\xff" * 8 + b"junk")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        aekit.load(path)


def test_weights_from_another_architecture(saved, tmp_path):
    _, path = saved
    other = aekit.get_model("ae", input_shape=(10,), code_size=4, hidden=(6,))
    aekit.save(other, tmp_path / "other")
    (path / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not fit this model's architecture.*wrong shape"):
        aekit.load(path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(model="nope"), "unknown model 'nope'"),
        (lambda c: c["options"].update(evil="__import__('os')"), "options do not match|does not accept"),
        (lambda c: c["options"].update(code_size=-1), "code_size"),
        (lambda c: c.pop("options"), "not an aekit model config"),
    ],
)
def test_tampered_config(saved, edit, message):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        aekit.load(path)


def test_broken_or_missing_config(saved, tmp_path):
    _, path = saved
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        aekit.load(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        aekit.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        aekit.load(tmp_path / "empty")


def test_load_a_named_weights_file(tmp_path):
    model = aekit.get_model("ae", input_shape=(6,), code_size=2, hidden=(4,))
    aekit.fit(model, torch.rand(30, 6), epochs=2, out=tmp_path / "run", progress=False, restore_best=False)
    last = aekit.load(tmp_path / "run" / "last.safetensors")
    x = torch.rand(3, 6)
    assert torch.equal(last(x).x_hat, model.eval()(x).x_hat)


def test_unregistered_models_cannot_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="not a registered aekit model"):
        aekit.save(torch.nn.Linear(2, 2), tmp_path / "x")
