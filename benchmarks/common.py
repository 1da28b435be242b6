"""Helpers shared by the benchmark scripts: data, timing and the results table header."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

import torch

import aekit

ROOT = Path(__file__).resolve().parent
DATA_DIR = ROOT.parent.parent / "shared" / "data"


def mnist(data_dir: str | Path = DATA_DIR, flat: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    train = aekit.load_dataset("mnist", split="train", data_dir=data_dir).x
    test = aekit.load_dataset("mnist", split="test", data_dir=data_dir).x
    return (train.flatten(1), test.flatten(1)) if flat else (train, test)


@torch.no_grad()
def test_error(model: torch.nn.Module, x: torch.Tensor, batch: int = 1000) -> float:
    """Squared error summed over pixels, averaged over images, with the model in evaluation mode."""
    model.eval()
    total = sum(((model(x[i : i + batch]).x_hat - x[i : i + batch]) ** 2).flatten(1).sum().item() for i in range(0, len(x), batch))
    return total / len(x)


def median_seconds(fn: Callable[[], None], repeats: int = 5, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


RESULT = "RESULT "  # how a benchmark's child process reports its numbers on stdout


def report(result: dict) -> None:
    """In a child process: hand ``result`` to the parent (see :func:`run_child`)."""
    print(RESULT + json.dumps(result), flush=True)


def run_child(command: list[str], env: dict | None = None, cwd: Path | None = None, replace_env: bool = False) -> dict:
    """Run a benchmark in a fresh process and return what it reported; stop with its stderr if it failed.

    ``env`` is added to this process's environment, or replaces it with ``replace_env``.
    """
    done = subprocess.run(command, capture_output=True, text=True, env=env if replace_env else {**os.environ, **(env or {})}, cwd=cwd)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode or not lines:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[0][len(RESULT) :])


def machine() -> str:
    return (
        f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def write(name: str, lines: list[str]) -> None:
    (ROOT / "results").mkdir(exist_ok=True)
    (ROOT / "results" / name).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
