"""Data-parallel training across processes, as launched by ``torchrun``.

``torchrun`` starts one process per worker and tells each its place through
environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``
...). The Trainer reads them here: with more than one process it joins the
process group (``gloo`` on the CPU, ``nccl`` on GPUs), wraps the model in
:class:`~torch.nn.parallel.DistributedDataParallel`, gives each process its
share of every global batch, and lets rank 0 alone write files and draw the
progress bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import ConfigError


@dataclass(frozen=True)
class Workers:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def share(self, batch: Tensor) -> tuple[Tensor, float]:
        """This process's part of a global batch of indices, and its loss weight.

        The batch is cut into ``world`` near-equal parts. DistributedDataParallel
        averages gradients over processes, so each part's mean loss is weighted
        by ``world * len(part) / len(batch)``: the average is then exactly the
        gradient of the whole batch's mean loss, as in one process. A process
        whose part is empty (a last batch smaller than ``world``) computes one
        sample with weight 0, since every process must take part in each step.
        """
        if not self.distributed:
            return batch, 1.0
        part = torch.tensor_split(batch, self.world)[self.rank]
        if len(part) == 0:
            return batch[:1], 0.0
        return part, self.world * len(part) / len(batch)

    def sum(self, values: Tensor) -> Tensor:
        """Sum ``values`` over all processes (identity in one process)."""
        if self.distributed:
            values = values.clone()
            dist.all_reduce(values)
        return values


def workers(device: torch.device) -> Workers:
    """Join the process group when ``torchrun`` started several processes; else a single worker."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Workers()
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; train in one process.")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Workers(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes, as torchrun announces them (0 and 1 alone)."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, each process on a machine takes the GPU of its ``LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def finish(wait: bool = False) -> None:
    """Leave the process group, if this process joined one.

    With ``wait``, first wait for every process to get here: rank 0 may still be writing (the run's
    calibration scores), and a process that leaves while its peers still use the group can abort.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
