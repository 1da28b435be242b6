"""A reader for MATLAB v5 .mat files holding numeric arrays, safe on any input.

scipy's ``loadmat`` is written in C and can crash the interpreter on a
malformed file (found by fuzzing); this reader is pure Python over ``bytes``:
every size is checked against the bytes really present, and decompression is
bounded, so any file gives arrays or a :class:`DataError`. Layout: MathWorks,
*MAT-File Format* (2019), chapter 1: a 128-byte header, then tagged data
elements, each ``miMATRIX`` (14), possibly inside ``miCOMPRESSED`` (15).
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import MAX_EXPANSION

MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
MI_INT8, MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 1, 5, 6, 14, 15
NUMERIC_CLASSES = set(range(6, 16))  # double, single, int8 ... uint64
COMPLEX_FLAG = 0x0800


def read_mat_arrays(path: Path) -> dict[str, np.ndarray]:
    """The numeric arrays of a v5 .mat file by name (other variables are skipped)."""
    data = path.read_bytes()
    if len(data) < 128 or not data[:10].startswith(b"MATLAB"):
        raise DataError(f"{path} is not a MATLAB .mat file (no MAT-file header).")
    if data[:10] == b"MATLAB 7.3":
        raise DataError(f"{path} is a MATLAB 7.3 (HDF5) file; save it with save(..., '-v7') or as .npz.")
    endian = {b"IM": "<", b"MI": ">"}.get(data[126:128])
    if endian is None:
        raise DataError(f"{path} has no valid endian indicator; the file is corrupt.")
    arrays: dict[str, np.ndarray] = {}
    budget = MAX_EXPANSION * len(data)
    position = 128
    while position + 8 <= len(data):
        kind, payload, position = _element(data, position, endian, path)
        if kind == MI_COMPRESSED:
            inflater = zlib.decompressobj()
            try:
                inner = inflater.decompress(payload, budget)
            except zlib.error as exc:
                raise DataError(f"{path}: a compressed variable is corrupt ({exc}).") from None
            if inflater.unconsumed_tail:
                raise DataError(f"{path}: a compressed variable expands beyond what the file can hold; it is forged or corrupt.")
            kind, payload, _ = _element(inner, 0, endian, path)
        if kind == MI_MATRIX:
            name, array = _matrix(payload, endian, path)
            if array is not None:
                arrays[name] = array
    return arrays


def _element(data: bytes, at: int, endian: str, path: Path) -> tuple[int, bytes, int]:
    """One tagged data element at ``at``: (type, payload, offset of the next element)."""
    if at + 8 > len(data):
        raise DataError(f"{path} is truncated inside a data element's tag.")
    kind, size = struct.unpack_from(endian + "II", data, at)
    if kind >> 16:  # the small format: size in the upper half, payload in the tag's second word
        size, kind = kind >> 16, kind & 0xFFFF
        if size > 4:
            raise DataError(f"{path}: a small data element claims {size} bytes; the file is corrupt.")
        return kind, data[at + 4 : at + 4 + size], at + 8
    if at + 8 + size > len(data):
        raise DataError(f"{path} is truncated: an element declares {size} bytes, {len(data) - at - 8} remain.")
    padded = size if kind == MI_COMPRESSED else -(-size // 8) * 8
    return kind, data[at + 8 : at + 8 + size], at + 8 + padded


def _matrix(body: bytes, endian: str, path: Path) -> tuple[str, np.ndarray | None]:
    """Parse an miMATRIX: array flags, dimensions, name, real part."""
    parts, at = [], 0
    while at + 8 <= len(body) and len(parts) < 4:
        kind, payload, at = _element(body, at, endian, path)
        parts.append((kind, payload))
    if len(parts) < 3 or parts[0][0] != MI_UINT32 or len(parts[0][1]) < 4 or parts[1][0] != MI_INT32 or parts[2][0] != MI_INT8:
        raise DataError(f"{path}: a variable's header is malformed; the file is corrupt.")
    flags = struct.unpack_from(endian + "I", parts[0][1])[0]
    dims = np.frombuffer(parts[1][1][: len(parts[1][1]) // 4 * 4], dtype=endian + "i4")
    name = parts[2][1].decode("latin-1")
    if (flags & 0xFF) not in NUMERIC_CLASSES:
        return name, None  # cells, structs, chars, sparse: not data aekit reads
    if flags & COMPLEX_FLAG:
        raise DataError(f"{path}: variable {name!r} is complex; aekit reads real numeric arrays.")
    if len(parts) < 4 or parts[3][0] not in MI_TYPES or len(dims) < 1 or (dims < 0).any():
        raise DataError(f"{path}: variable {name!r} is malformed; the file is corrupt.")
    dtype = np.dtype(MI_TYPES[parts[3][0]]).newbyteorder(endian)
    shape = tuple(int(d) for d in dims)
    if math.prod(shape) * dtype.itemsize != len(parts[3][1]):
        raise DataError(f"{path}: variable {name!r} declares shape {shape} but holds {len(parts[3][1])} bytes; the file is corrupt.")
    return name, np.frombuffer(parts[3][1], dtype=dtype).astype(np.float64).reshape(shape, order="F")
