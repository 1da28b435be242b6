"""Reading IDX files, the format of MNIST and Fashion-MNIST.

Layout (LeCun et al.): two zero bytes, a type byte, the number of dimensions,
then each dimension's size as a big-endian uint32, then the values in C order.
The declared size is checked against what the file holds *before* the data
is read, so a corrupt header cannot make aekit allocate unbounded memory.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import MAX_EXPANSION

#: IDX type byte -> numpy dtype (big-endian where it matters).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzipped or not, into a numpy array.

    Raises
    ------
    DataError
        When the file is not IDX, its header is malformed, or it holds fewer
        or more bytes than its header declares.
    """
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
        size = path.stat().st_size
        opener = gzip.open if gzipped else open
        with opener(path, "rb") as f:
            # DEFLATE expands at most ~1032:1, so a gzipped file can hold no more than this
            return _parse(f, path, None if gzipped else size, MAX_EXPANSION * size if gzipped else size)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path} is not a readable IDX file ({exc}); delete it and download it again.") from None


def _parse(f, path: Path, file_size: int | None, max_bytes: int) -> np.ndarray:
    header = f.read(4)
    if len(header) < 4 or header[:2] != b"\x00\x00" or header[2] not in IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {header.hex() or 'empty'}); check the file.")
    dtype, ndim = IDX_DTYPES[header[2]], header[3]
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions; the file is corrupt.")
    dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DataError(f"{path} is truncated inside its header; download it again.")
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    n_bytes = math.prod(dims) * dtype.itemsize
    if file_size is not None and file_size != 4 + 4 * ndim + n_bytes:
        raise DataError(
            f"{path}: header declares shape {dims} ({n_bytes} data bytes) but the file holds "
            f"{file_size - 4 - 4 * ndim}; it is truncated or corrupt, download it again."
        )
    if n_bytes > max_bytes:
        raise DataError(f"{path}: header declares shape {dims} ({n_bytes} bytes), more than the file can hold; it is corrupt.")
    body = _read_at_most(f, n_bytes + 1)  # one extra byte reveals trailing garbage
    if len(body) != n_bytes:
        what = "truncated" if len(body) < n_bytes else "longer than its header says"
        raise DataError(f"{path} is {what} (header declares shape {dims}); download it again.")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def _read_at_most(f, n: int, chunk: int = 1 << 22) -> bytes:
    """Read up to ``n`` bytes in chunks, so memory follows what the file really holds, not what it claims."""
    parts, left = [], n
    while left > 0:
        part = f.read(min(chunk, left))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an uncompressed IDX file (used by tests and for exporting data)."""
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    array = np.ascontiguousarray(array)
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}; use one of uint8, int8, int16, int32, float32, float64.")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + array.astype(IDX_DTYPES[code], copy=False).tobytes())
