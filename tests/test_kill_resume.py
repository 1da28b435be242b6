"""A real training process killed with SIGKILL mid-run resumes to exactly the uninterrupted weights."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import aekit
from aekit.checkpoint import read_tensors

ARGS = ["--epochs", "30", "--code-size", "8", "--hidden", "256,128", "--no-progress", "--seed", "7"]


def train(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aekit", "train", *argv], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "aekit", "train", *ARGS, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        metrics = killed / "metrics.csv"
        if metrics.exists() and metrics.read_text().count("\n") >= 4:  # header + 3 epochs done
            break
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be killed: " + process.stderr.read().decode()
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL

    # whatever the moment of the kill, every file left is whole (a kill mid-write leaves only a temporary file)
    for name in ("model.safetensors", "last.safetensors", "resume.safetensors"):
        assert read_tensors(killed / name)
    done = (killed / "metrics.csv").read_text().count("\n") - 1
    assert 3 <= done < 30

    resumed = train("--resume", str(killed), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert not [p.name for p in killed.iterdir() if p.name.endswith(".tmp")]  # resuming clears them
    straight = train(*ARGS, "--out", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    for name in ("last.safetensors", "model.safetensors"):
        a, b = read_tensors(killed / name), read_tensors(tmp_path / "straight" / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (killed / "metrics.csv").read_text().count("\n") == 31
    assert aekit.load(killed) is not None
