"""Data larger than memory: ``.npy`` files read in batches straight from disk.

A :class:`StreamedDataset` is one ``.npy`` file or a folder of ``.npy`` shards
(sorted by name, all with the same sample shape and dtype). Nothing is loaded
up front: each batch is read from the files in file order, one ``preadv``
call per run of consecutive rows, straight into the batch's buffer. So the
memory a training run holds is one batch, however large the files are. (A
memory map would be simpler, but the pages it touches count as the process's
resident memory, and the kernel maps up to hundreds of KiB around every row
read at random; reading keeps the process flat while the OS caches the files.)

Scaling follows :func:`aekit.load_dataset`: 8-bit data is divided by 255,
other data gets per-feature min-max scaling fitted on the training rows in
one chunked pass, which also refuses NaN and inf before training starts.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .dataset import SPLITS, Scaling, check_finite, fixed_split
from .files import check_npy_header, check_samples

CHUNK_BYTES = 8 * 2**20  # read per step of the scaling pass


@dataclass
class _Shard:
    path: Path
    rows: int
    offset: int  # where the array's bytes begin in the file


@dataclass
class StreamedDataset:
    """Samples on disk, read in batches; a drop-in for :class:`Dataset` in training.

    Attributes
    ----------
    shape : tuple of int
        The shape of one sample.
    name, split : str
        The path given and the part of its rows this object serves.
    scaling : Scaling or None
        Min-max scaling for non-8-bit data (None for 8-bit images, divided by 255).
    rows : ndarray of int64
        The file rows of this split (of the fixed 80/20 split), sorted.
    """

    name: str
    split: str
    shape: tuple[int, ...]
    dtype: np.dtype
    rows: np.ndarray
    scaling: Scaling | None = None
    shards: list[_Shard] = field(default_factory=list, repr=False)
    y = None  # streamed data carries no labels
    _files: dict[int, BinaryIO] = field(default_factory=dict, repr=False)
    _affine: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def read(self, indices: np.ndarray | Tensor) -> Tensor:
        """Samples ``indices`` (positions in this split) as a float32 tensor, in the order asked."""
        positions = np.asarray(indices.cpu() if isinstance(indices, Tensor) else indices, dtype=np.int64)
        return torch.from_numpy(self._scale(self._gather(self.rows[positions])))

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Raw file rows, read in file order with one ``preadv`` per run of consecutive rows."""
        out = np.empty((len(rows), *self.shape), dtype=self.dtype)
        starts = np.cumsum([0] + [s.rows for s in self.shards])
        shard_of = np.searchsorted(starts, rows, side="right") - 1
        for index in np.unique(shard_of):
            mine = np.flatnonzero(shard_of == index)
            local = rows[mine] - starts[index]
            order = np.argsort(local, kind="stable")  # ascending offsets read the file forwards
            out[mine[order]] = self._read_sorted(index, local[order])
        return out

    def _read_sorted(self, index: int, local: np.ndarray) -> np.ndarray:
        """Rows ``local`` (ascending) of shard ``index``, straight from the file into one buffer."""
        shard, size = self.shards[index], self.row_bytes
        if index not in self._files:  # opened once, closed with this object
            self._files[index] = open(shard.path, "rb", buffering=0)
        fd = self._files[index].fileno()
        buffer = np.empty((len(local), *self.shape), dtype=self.dtype)
        view = memoryview(buffer.reshape(-1).view(np.uint8))
        first = np.flatnonzero(np.diff(local, prepend=-2) != 1)  # where runs of consecutive rows begin
        ends = np.append(first[1:], len(local))
        for begin, end, row in zip(first.tolist(), ends.tolist(), local[first].tolist()):
            want = (end - begin) * size
            if os.preadv(fd, [view[begin * size : end * size]], shard.offset + row * size) != want:
                raise DataError(f"{shard.path} became shorter while being read; was it overwritten?")
        return buffer

    def _scale(self, x: np.ndarray) -> np.ndarray:
        """To float32, scaled; in float32 arithmetic, as this runs for every batch."""
        x = x.astype(np.float32)
        if self.dtype == np.uint8:
            x *= np.float32(1 / 255)
        elif self.scaling is not None:
            if self._affine is None:
                span = self.scaling.high - self.scaling.low
                self._affine = (self.scaling.low.astype(np.float32), (1 / np.where(span > 0, span, 1.0)).astype(np.float32))
            flat = x.reshape(len(x), -1)
            flat -= self._affine[0]
            flat *= self._affine[1]
        return x

    def __repr__(self) -> str:
        return f"StreamedDataset({self.name!r}, split={self.split!r}, n={len(self)}, shape={self.shape}, {len(self.shards)} shard(s))"


def open_stream(path: str | Path, split: str = "train", *, scaling: Scaling | str | None = "minmax") -> StreamedDataset:
    """Open a ``.npy`` file or a folder of ``.npy`` shards for training in batches.

    Parameters
    ----------
    path : path
        One ``.npy`` file, or a folder whose ``*.npy`` files (sorted by name)
        are consecutive blocks of rows.
    split : {"train", "test", "all"}
        The fixed 80/20 split of the rows, as :func:`aekit.load_dataset` makes it.
    scaling : "minmax", None or Scaling
        For data that is not 8-bit: fit min-max scaling on the training rows
        (one chunked pass, which also checks every value is finite), use a
        given :class:`Scaling`, or None to use the values as stored.

    Raises
    ------
    DataError
        Missing files, a bad header, object or non-numeric dtypes, shards that
        disagree in shape or dtype, NaN or inf values.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}.")
    path = Path(path).expanduser()
    files = sorted(path.glob("*.npy")) if path.is_dir() else [path]
    if not path.exists():
        raise DataError(f"cannot stream {str(path)!r}: there is no such file or folder (streaming reads a .npy file or a folder of .npy shards).")
    if not files:
        raise DataError(f"{path} holds no .npy files to stream.")
    shards, shape, dtype = [], None, None
    for file in files:
        rows, sample_shape, file_dtype, offset = _npy_layout(file)
        if shape is None:
            shape, dtype = sample_shape, file_dtype
        elif (sample_shape, file_dtype) != (shape, dtype):
            raise DataError(f"{file} holds samples of shape {sample_shape} ({file_dtype}) but {files[0]} holds {shape} ({dtype}); every shard must match.")
        shards.append(_Shard(file, rows, offset))
    total = sum(s.rows for s in shards)
    if total == 0:
        raise DataError(f"{path} holds no samples.")
    stream = StreamedDataset(str(path), split, shape, dtype, np.sort(fixed_split(total, split)), shards=shards)
    if dtype != np.uint8:
        if scaling == "minmax":
            stream.scaling = _fit_scaling(stream if split != "test" else _with_rows(stream, np.sort(fixed_split(total, "train"))))
        elif isinstance(scaling, Scaling) or scaling is None:
            stream.scaling = scaling
            if scaling is None:
                _fit_scaling(stream)  # still refuse NaN and inf up front
        else:
            raise DataError(f"scaling must be 'minmax', None or a Scaling object, got {scaling!r}.")
    return stream


def _with_rows(stream: StreamedDataset, rows: np.ndarray) -> StreamedDataset:
    return StreamedDataset(stream.name, stream.split, stream.shape, stream.dtype, rows, None, stream.shards)


def _fit_scaling(stream: StreamedDataset) -> Scaling:
    """Per-feature minimum and maximum over the stream's rows, read in chunks; checks finiteness."""
    low = high = None
    rows = max(1, CHUNK_BYTES // stream.row_bytes)
    for start in range(0, len(stream), rows):
        chunk = stream._gather(stream.rows[start : start + rows]).reshape(-1, math.prod(stream.shape))
        check_finite(chunk, f"{stream.name} (rows {start}-{start + len(chunk) - 1} of the {stream.split} split)")
        low = chunk.min(0) if low is None else np.minimum(low, chunk.min(0))
        high = chunk.max(0) if high is None else np.maximum(high, chunk.max(0))
    return Scaling(low=low.astype(np.float64), high=high.astype(np.float64))


def _npy_layout(file: Path) -> tuple[int, tuple[int, ...], np.dtype, int]:
    """Rows, sample shape, dtype and data offset of a C-ordered numeric ``.npy`` file."""
    if file.suffix.lower() != ".npy" or not file.is_file():
        raise DataError(f"cannot stream {file}: streaming reads .npy files or folders of them.")
    with open(file, "rb") as f:
        shape, fortran, dtype = check_npy_header(f, file.stat().st_size, str(file))
        offset = f.tell()
    check_samples(dtype, shape, file)
    if fortran:
        raise DataError(f"{file} is stored in Fortran order; save it with np.save(np.ascontiguousarray(x)) to stream it.")
    return shape[0], tuple(shape[1:]), dtype, offset
