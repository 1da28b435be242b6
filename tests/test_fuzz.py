"""Property-based fuzzing of every file parser: any bytes give a result or aekit's own error.

Never another exception type, a hang (each example has a deadline) or a crash. The number of cases
per parser is AEKIT_FUZZ_EXAMPLES (default 150 in the test suite; the closing note of issue 7 reports
a deeper run).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.io import savemat

import aekit
from aekit.data import read_idx, write_idx
from aekit.errors import AekitError

EXAMPLES = int(os.environ.get("AEKIT_FUZZ_EXAMPLES", "150"))
fuzz = settings(max_examples=EXAMPLES, deadline=5000, suppress_health_check=list(HealthCheck), derandomize=True)


def _bytes_of(write) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f"
        write(path)
        return path.read_bytes()


VALID_IDX = _bytes_of(lambda p: write_idx(p, np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)))
VALID_NPY = _bytes_of(lambda p: np.save(open(p, "wb"), np.arange(12, dtype=np.float32).reshape(4, 3)))
VALID_NPZ = _bytes_of(lambda p: np.savez(open(p, "wb"), x=np.arange(12.0).reshape(4, 3), y=np.arange(4)))
VALID_MAT = _bytes_of(lambda p: savemat(p, {"X": np.arange(12.0).reshape(4, 3), "y": np.array([[0], [1], [0], [1]])}))
VALID_CSV = b"a,b,label\n1,2,x\n3,4.5,y\n-1,0,x\n"
_MODEL = aekit.get_model("ae", input_shape=(4,), code_size=2, hidden=(3,))
VALID_WEIGHTS = aekit.checkpoint.weights_bytes(_MODEL)
VALID_CONFIG = json.dumps(aekit.checkpoint.model_config(_MODEL)).encode()


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """``valid`` with a few bytes flipped, inserted or deleted, or cut short."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite-int"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[at:]
        elif op == "overwrite-int" and len(data) >= at + 4:
            data[at : at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x00\x10\x00"]))
    return bytes(data)


def inputs(valid: bytes):
    return st.one_of(st.binary(max_size=512), mutated(valid))


def outcome(fn) -> str:
    """'ok' or 'error' (aekit's own); any other exception fails the test."""
    try:
        fn()
        return "ok"
    except AekitError:
        return "error"


def with_file(name: str, data: bytes, fn):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        return outcome(lambda: fn(path))


@fuzz
@given(data=inputs(VALID_IDX), compress=st.booleans())
def test_fuzz_idx(data, compress):
    with_file("f.idx", gzip.compress(data) if compress else data, read_idx)


@fuzz
@given(data=inputs(gzip.compress(VALID_IDX)))
def test_fuzz_gzipped_idx(data):
    with_file("f.idx.gz", data, read_idx)


@fuzz
@given(data=st.one_of(inputs(VALID_CSV), st.text(max_size=300).map(str.encode)))
def test_fuzz_csv(data):
    with_file("f.csv", data, lambda p: aekit.load_dataset(p, split="all"))


@fuzz
@given(data=inputs(VALID_NPY))
def test_fuzz_npy(data):
    with_file("f.npy", data, lambda p: aekit.load_dataset(p, split="all"))


@fuzz
@given(data=inputs(VALID_NPZ))
def test_fuzz_npz(data):
    with_file("f.npz", data, lambda p: aekit.load_dataset(p, split="all"))


@fuzz
@given(data=inputs(VALID_MAT))
def test_fuzz_mat(data):
    with_file("f.mat", data, lambda p: aekit.load_dataset(p, split="all"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=12,
)
config_like = st.fixed_dictionaries(
    {"model": st.sampled_from(["ae", "vae", "conv", "linear", "nope"]) | st.text(max_size=8)},
    optional={"options": st.dictionaries(st.sampled_from(["input_shape", "code_size", "hidden", "loss", "activation", "beta", "channels", "x"]), json_values, max_size=5), "format": json_values},
)


def load_checkpoint(config: bytes, weights: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "config.json").write_bytes(config)
        Path(folder, "model.safetensors").write_bytes(weights)
        outcome(lambda: aekit.load(folder))


@fuzz
@given(config=st.one_of(inputs(VALID_CONFIG), json_values.map(lambda v: json.dumps(v).encode()), config_like.map(lambda v: json.dumps(v).encode())))
def test_fuzz_config_json(config):
    load_checkpoint(config, VALID_WEIGHTS)


@fuzz
@given(weights=inputs(VALID_WEIGHTS))
def test_fuzz_checkpoint_weights(weights):
    load_checkpoint(VALID_CONFIG, weights)


def test_a_forged_npy_header_cannot_allocate_unbounded_memory(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 10**6)})
    (tmp_path / "huge.npy").write_bytes(header.getvalue() + b"\x00" * 64)  # declares 8e18 bytes, holds 64
    with pytest.raises(aekit.DataError, match="declares shape"):
        aekit.load_dataset(tmp_path / "huge.npy")


def test_a_forged_mat_cannot_allocate_unbounded_memory(tmp_path):
    savemat(tmp_path / "small.mat", {"X": np.zeros((3, 2))})
    data = bytearray((tmp_path / "small.mat").read_bytes())
    # the v5 array-dimensions sub-element of X follows its name; raise its row count to 2^31 - 1
    at = data.index(np.array([3, 2], dtype="<i4").tobytes())
    data[at : at + 4] = np.array([2**31 - 1], dtype="<i4").tobytes()
    (tmp_path / "forged.mat").write_bytes(bytes(data))
    with pytest.raises(aekit.DataError, match=r"declares shape \(2147483647, 2\)"):
        aekit.load_dataset(tmp_path / "forged.mat")
