"""Settings that change speed only: the channels-last layout and the tuned allocator give the same numbers."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest
import torch

import aekit
from aekit.training import allocator

CONV_MODELS = ["conv", "conv-denoising", "conv-vae"]


@pytest.mark.parametrize("name", CONV_MODELS)
def test_channels_last_gives_the_nchw_numbers(name):
    """The same weights in both layouts: equal outputs, losses and gradients, up to float rounding."""
    options = dict(input_shape=(3, 13, 10), code_size=6, channels=(8, 16))
    torch.manual_seed(0)
    nchw = aekit.get_model(name, channels_last=False, **options)
    last = aekit.get_model(name, channels_last=True, **options)
    last.load_state_dict(nchw.state_dict())
    x = torch.rand(5, 3, 13, 10)
    results = []
    for model in (nchw, last):
        torch.manual_seed(1)  # the same corruption and latent noise for both
        out = model.train()(x)
        out.loss.backward()
        results.append((out, {k: p.grad for k, p in model.named_parameters()}))
    (a, grads_a), (b, grads_b) = results
    # the option really changes the layout: the reconstruction comes out channels-last
    assert b.x_hat.is_contiguous(memory_format=torch.channels_last) and not b.x_hat.is_contiguous()
    assert a.x_hat.is_contiguous()
    torch.testing.assert_close(b.x_hat, a.x_hat, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.loss, a.loss, rtol=1e-5, atol=1e-5)
    for key in grads_a:
        torch.testing.assert_close(grads_b[key], grads_a[key], rtol=1e-4, atol=1e-6)


def test_channels_last_keeps_checkpoint_names_and_is_the_default(tmp_path):
    model = aekit.get_model("conv", input_shape=(1, 8, 8), code_size=4, channels=(4,))
    assert model.config["channels_last"] is True
    old_layout = aekit.get_model("conv", input_shape=(1, 8, 8), code_size=4, channels=(4,), channels_last=False)
    assert list(model.state_dict()) == list(old_layout.state_dict())  # checkpoints from before the option still load
    aekit.save(model, tmp_path / "m")
    loaded = aekit.load(tmp_path / "m")
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).x_hat, model.eval()(x).x_hat)


def test_channels_last_option_is_checked():
    with pytest.raises(aekit.ConfigError, match="channels_last"):
        aekit.get_model("conv", input_shape=(1, 8, 8), channels_last="yes")


HEAP = """
import ctypes, json, sys
from aekit.training import allocator
status = allocator.tune_allocator()
libc = ctypes.CDLL(None)

class MallInfo2(ctypes.Structure):  # glibc's struct mallinfo2 (<malloc.h>, glibc 2.33 and later)
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = int(sys.argv[1])
before = libc.mallinfo2()
block = libc.malloc(size)
during = libc.mallinfo2()
libc.free(block)
after = libc.mallinfo2()
print(json.dumps({"status": status, "mapped": during.hblkhd - before.hblkhd, "kept": after.arena - before.arena}))
"""


def _heap(size: int, **env: str) -> dict:
    """Where glibc puts one block of ``size`` bytes in a fresh process, and what stays after it is freed."""
    clean = {k: v for k, v in os.environ.items() if not (k.startswith("MALLOC_") or k == allocator.OFF)}
    done = subprocess.run([sys.executable, "-c", HEAP, str(size)], capture_output=True, text=True, env={**clean, **env}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(allocator.glibc_version() is None or not _has_mallinfo2(), reason="glibc 2.33 or later reports its heap with mallinfo2")
@pytest.mark.parametrize("mib", [8, 30])
def test_tuned_allocator_keeps_large_blocks_on_the_heap(mib):
    """A training step's large buffer: mapped afresh (and unmapped on free) by default, kept on the heap once tuned.

    Counted with glibc's own bookkeeping (mallinfo2), not page faults: fault counts depend on glibc's dynamic
    threshold and on what else the process did, and were not reproducible across machines.
    (benchmarks/speed.py measures the faults and the time they cost.)"""
    size = mib * 2**20
    tuned, untuned = _heap(size), _heap(size, **{allocator.OFF: "0"})
    assert tuned["status"] == "tuned" and untuned["status"] == f"turned off by {allocator.OFF}"
    assert untuned["mapped"] >= size and untuned["kept"] == 0  # glibc's default: its own mapping, returned on free
    assert tuned["mapped"] == 0 and tuned["kept"] >= size  # tuned: from the heap, and still there for the next step


def test_allocator_is_left_alone_when_the_user_chose(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert allocator.why_not_tuned() is not None
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert allocator.why_not_tuned() == "a caching allocator is preloaded"
    monkeypatch.delenv("LD_PRELOAD")
    monkeypatch.setenv(allocator.OFF, "0")
    assert allocator.why_not_tuned() == f"turned off by {allocator.OFF}"


def test_channels_last_run_resumes_to_the_same_weights(tmp_path):
    """Resume restores the optimiser's moments in the kernels' channels-last layout (fused Adam reads memory order).

    On the CPU, where the kernels are deterministic, so that the weights can be compared bit for bit."""
    x = torch.rand(96, 1, 12, 12)

    def model():
        aekit.seed_everything(0)
        return aekit.get_model("conv", input_shape=(1, 12, 12), code_size=4, channels=(4, 8))

    straight = model()
    aekit.fit(straight, x, epochs=3, batch_size=32, seed=3, out=tmp_path / "straight", progress=False, restore_best=False, device="cpu")
    aekit.fit(model(), x, epochs=1, batch_size=32, seed=3, out=tmp_path / "split", progress=False, restore_best=False, device="cpu")
    resumed = model()
    aekit.fit(resumed, x, epochs=3, batch_size=32, seed=3, out=tmp_path / "split", resume=True, progress=False, restore_best=False, device="cpu")
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_channels_last_on_cuda_trains_like_nchw(precision):
    x = torch.rand(512, 1, 28, 28)
    losses = {}
    for layout in (False, True):
        aekit.seed_everything(0)
        model = aekit.get_model("conv", input_shape=(1, 28, 28), code_size=16, channels_last=layout)
        history = aekit.fit(model, x, epochs=3, device="cuda", precision=precision, progress=False, val_fraction=0.0)
        losses[layout] = [r["train_loss"] for r in history]
    assert losses[True] == pytest.approx(losses[False], rel=2e-2 if precision == "bf16" else 1e-3)
