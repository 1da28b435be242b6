"""CPU threads chosen for the work and the machine: one thread for tiny networks or a busy machine, the free cores otherwise.

PyTorch runs each operation on all its threads (by default one per core) and
waits at the end of each for the slowest. A small network's operations take
microseconds, so the split gains nothing, and when another process holds a
core the waiting thread is descheduled for a whole time slice (milliseconds)
at every operation: measured on ADBench's tables with one core kept busy,
training and scoring took 13x IsolationForest's time with two threads and
far less with one (benchmarks/results/detection_adbench.md). Only an
operation that takes longer than a time slice gains from more threads, and
only on a core that no other process is using: large work takes the cores
that are free when it starts (Linux's count of running threads).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

#: Floating-point operations of one forward pass of a batch below which one thread is used (about 0.1 ms of one core:
#: on ADBench's tables two free cores were faster than one for every detector but the smallest, e.g. cardio's fit and
#: score 0.35 s against 0.59 s, mnist's 0.82 s against 1.29 s; pima's 0.28 s against 0.26 s).
SMALL_WORK = 1_000_000


def row_flops(model: nn.Module) -> int | None:
    """Floating-point operations of one forward pass of one row through a model of rows (input shape ``(d,)``): each
    weight is one multiply-add, as in fully connected layers, plus what the model's ``extra_row_flops()`` says
    (the ensemble's neighbour search); None for a model of images or documents, whose
    convolutions and lookups reuse their weights (their work is not counted here: they keep every thread)."""
    shape = getattr(model, "input_shape", None)
    if shape is None or len(shape) != 1:
        return None
    return 2 * sum(p.numel() for p in model.parameters()) + getattr(model, "extra_row_flops", lambda: 0)()


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def others_running() -> int:
    """Threads of other processes running or waiting for a core right now (Linux: ``/proc/loadavg``'s running count,
    less this process's own running threads); 0 where it cannot be read."""
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = 0
        for task in Path("/proc/self/task").iterdir():
            stat = (task / "stat").read_text()
            own += stat[stat.rindex(")") + 2] == "R"
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, running - max(own, 1))


def threads_for(flops: int, most: int | None = None) -> int:
    """The threads for operations of ``flops`` in all: 1 below :data:`SMALL_WORK`, else the cores that no other
    process is using now (at most ``most``, by default the threads PyTorch is set to use; at least 1)."""
    most = torch.get_num_threads() if most is None else most
    return 1 if flops < SMALL_WORK else max(1, min(most, cores() - others_running()))


@contextlib.contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """Run the block with PyTorch on ``threads`` threads, then restore the caller's count."""
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def threads_for_model(model: nn.Module, batch_size: int, device: torch.device) -> contextlib.AbstractContextManager:
    """:func:`cpu_threads` for the forward passes of a model of rows on batches of ``batch_size`` rows, on the CPU;
    nothing (PyTorch's threads as they are) on another device or for images and documents (:func:`row_flops`)."""
    flops = row_flops(model)
    if device.type != "cpu" or flops is None:
        return contextlib.nullcontext()
    return cpu_threads(threads_for(flops * batch_size))
