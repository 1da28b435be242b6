"""Where training batches come from: a tensor in memory, or files streamed from disk.

Both sources answer ``len()`` and ``batch(indices)``, so the training loop
does not know which it has. In-memory data sits on the training device and a
batch is one indexing operation there; streamed data is read from disk per
batch, into pinned memory when it goes to a GPU.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..data.stream import StreamedDataset


class InMemory:
    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, indices: Tensor) -> Tensor:
        return self.x[indices.to(self.x.device)]


class OnDisk:
    def __init__(self, stream: StreamedDataset, positions: np.ndarray, device: torch.device) -> None:
        self.stream, self.positions, self.device = stream, positions, device

    def __len__(self) -> int:
        return len(self.positions)

    def batch(self, indices: Tensor) -> Tensor:
        x = self.stream.read(self.positions[indices.cpu().numpy()])
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x
