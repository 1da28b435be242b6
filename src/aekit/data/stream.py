"""Data larger than memory: ``.npy`` files read in batches straight from disk.

A :class:`StreamedDataset` is one ``.npy`` file or a folder of ``.npy`` shards
(sorted by name, all with the same sample shape and dtype). Nothing is loaded
up front: each batch is gathered from memory-mapped files, row by row in one
C loop, so the memory a training run holds is one batch, however large the
files are. Pages read are mapped into the process only until
``RELEASE_BYTES`` more have been read; then they are released
(``madvise(MADV_DONTNEED)``): the operating system keeps them in its cache,
but the process's resident memory stays flat.

Scaling follows :func:`aekit.load_dataset`: 8-bit data is divided by 255,
other data gets per-feature min-max scaling fitted on the training rows in
one chunked pass, which also refuses NaN and inf before training starts.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .dataset import SPLITS, Scaling, check_finite, fixed_split
from .files import check_npy_header

CHUNK_BYTES = 8 * 2**20  # read per step of the scaling pass
RELEASE_BYTES = 64 * 2**20  # pages read before they are unmapped from the process again


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
        The file rows of this split, in the order of the fixed split.
    """

    name: str
    split: str
    shape: tuple[int, ...]
    dtype: np.dtype
    rows: np.ndarray
    scaling: Scaling | None = None
    shards: list[_Shard] = field(default_factory=list, repr=False)
    y = None  # streamed data carries no labels
    _maps: dict[int, mmap.mmap] = field(default_factory=dict, repr=False)
    _arrays: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _touched: int = field(default=0, repr=False)

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
        """Raw file rows, gathered from memory-mapped shards in file order (one C loop per shard)."""
        out = np.empty((len(rows), *self.shape), dtype=self.dtype)
        starts = np.cumsum([0] + [s.rows for s in self.shards])
        shard_of = np.searchsorted(starts, rows, side="right") - 1
        for index in np.unique(shard_of):
            mine = np.flatnonzero(shard_of == index)
            local = rows[mine] - starts[index]
            order = np.argsort(local, kind="stable")  # ascending offsets read the file forwards
            out[mine[order]] = self._array(index)[local[order]]
        self._touched += out.nbytes
        if self._touched > RELEASE_BYTES:
            self._release()
        return out

    def _array(self, index: int) -> np.ndarray:
        """Shard ``index`` as a read-only array over a memory map (opened once)."""
        if index not in self._maps:
            shard = self.shards[index]
            with open(shard.path, "rb") as f:
                mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            if len(mapped) < shard.offset + shard.rows * self.row_bytes:
                raise DataError(f"{shard.path} became shorter after it was opened; was it overwritten?")
            self._maps[index] = mapped
            self._arrays[index] = np.frombuffer(mapped, self.dtype, shard.rows * math.prod(self.shape), shard.offset).reshape(shard.rows, *self.shape)
        return self._arrays[index]

    def _release(self) -> None:
        """Unmap the pages read so far from this process (the OS keeps them cached): memory stays flat."""
        self._touched = 0
        if hasattr(mmap, "MADV_DONTNEED"):
            for mapped in self._maps.values():
                mapped.madvise(mmap.MADV_DONTNEED)

    def _scale(self, x: np.ndarray) -> np.ndarray:
        if self.dtype == np.uint8:
            return x.astype(np.float32) / np.float32(255.0)
        if self.scaling is not None:
            return self.scaling.apply(x)
        return x.astype(np.float32)

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
        check_npy_header(f, file.stat().st_size, str(file))
        f.seek(0)
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if dtype.kind not in "biuf":
        raise DataError(f"{file} holds {dtype} values; aekit needs a numeric array (int or float).")
    if len(shape) < 2:
        raise DataError(f"{file}: expected an array of samples, shape (n, features...), got shape {shape}.")
    if fortran:
        raise DataError(f"{file} is stored in Fortran order; save it with np.save(np.ascontiguousarray(x)) to stream it.")
    return shape[0], tuple(shape[1:]), dtype, offset
