"""IDX parsing: the real MNIST files, and corrupt or truncated files giving DataError."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

import aekit
from aekit.data import read_idx, write_idx
from aekit.errors import DataError

# From ../shared/data/README.md: the training label counts of MNIST.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_mnist_train_and_test(shared_data):
    train = aekit.load_dataset("mnist", split="train", data_dir=shared_data)
    test = aekit.load_dataset("mnist", split="test", data_dir=shared_data)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.shape == test.shape == (1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert torch.bincount(train.y).tolist() == MNIST_TRAIN_COUNTS
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert train.classes == [str(d) for d in range(10)]


def test_real_mnist_bytes_match_published_checksums(shared_data):
    """The parsed pixels are exactly the decompressed file's payload (sha256 from SHA256SUMS)."""
    sums = {line.split()[1]: line.split()[0] for line in (shared_data / "SHA256SUMS").read_text().splitlines()}
    path = shared_data / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    assert hashlib.sha256(raw).hexdigest() == sums["mnist/t10k-images-idx3-ubyte.gz"]
    images = read_idx(path)
    assert images.shape == (10_000, 28, 28)
    assert images.tobytes() == raw[16:]


def test_all_split_concatenates(shared_data):
    data = aekit.load_dataset("mnist", split="all", data_dir=shared_data)
    assert len(data) == 70_000


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_read_round_trip(tmp_path, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress((tmp_path / "a.idx").read_bytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx.gz"), array)


def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda b: b"\x12\x34" + b[2:], "bad magic"),
        (lambda b: b[:2] + b"\x07" + b[3:], "bad magic"),  # unknown type byte
        (lambda b: b[:-10], "truncated"),
        (lambda b: b[:6], "truncated inside its header"),
        (lambda b: b + b"xx", "file holds"),
        (lambda b: b"", "bad magic"),
        (lambda b: b[:3] + b"\x00" + b[4:], "0 dimensions"),
        # a header that declares 4 billion images must fail before anything is allocated
        (lambda b: b[:4] + struct.pack(">I", 2**32 - 1) + b[8:], "header declares"),
    ],
)
def test_corrupt_files_raise_data_error(tmp_path, mangle, message):
    good = _idx_bytes(np.zeros((5, 4, 4), dtype=np.uint8))
    path = tmp_path / "bad.idx"
    path.write_bytes(mangle(good))
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_truncated_and_garbled_gzip_raise_data_error(tmp_path):
    compressed = gzip.compress(_idx_bytes(np.arange(4000, dtype=np.uint8).reshape(10, 20, 20) % 251))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DataError):
        read_idx(cut)
    garbled = tmp_path / "garbled.gz"
    garbled.write_bytes(compressed[:20] + bytes(200) + compressed[220:])
    with pytest.raises(DataError):
        read_idx(garbled)


def test_truncated_real_mnist_file(shared_data, tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    raw = gzip.decompress((shared_data / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    (folder / "t10k-images-idx3-ubyte").write_bytes(raw[: len(raw) - 784 * 3])
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes((shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DataError, match="truncated"):
        aekit.load_dataset("mnist", split="test", data_dir=tmp_path, download=False)


def test_images_and_labels_must_agree(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="disagree"):
        aekit.load_dataset("mnist", split="test", data_dir=tmp_path)
