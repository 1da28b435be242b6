"""CPU threads chosen for the work: one for a small network of rows, the free cores for large ones."""

import os
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import aekit
from aekit.training import threads


@pytest.mark.parametrize("name, options", [("ae", {"hidden": (16, 8)}), ("ensemble", {"hidden": (12,), "members": 3}), ("vae", {"hidden": (10,)})])
def test_row_flops_match_pytorchs_own_count(name, options):
    model = aekit.get_model(name, input_shape=(20,), code_size=4, **options).eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(8, 20))
    # PyTorch counts the matrix products (2 per weight and row); biases and activations are a rounding error
    assert threads.row_flops(model) * 8 == pytest.approx(counter.get_total_flops(), rel=0.1)


def test_images_and_documents_keep_every_thread():
    assert threads.row_flops(aekit.get_model("conv", input_shape=(1, 8, 8), code_size=2, channels=(4,))) is None


def test_small_work_takes_one_thread_and_large_work_the_free_cores_up_to_the_set_count(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "others_running", lambda: 0)
    assert threads.threads_for(threads.SMALL_WORK - 1, most=8) == 1
    assert threads.threads_for(threads.SMALL_WORK, most=8) == 4
    assert threads.threads_for(10 * threads.SMALL_WORK, most=1) == 1
    monkeypatch.setattr(threads, "others_running", lambda: 3)  # another process keeps three cores busy
    assert threads.threads_for(threads.SMALL_WORK, most=8) == 1


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="reads Linux's count of running threads")
def test_a_busy_process_is_counted_and_this_ones_own_threads_are_not():
    idle = threads.others_running()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert max(threads.others_running() for _ in range(5)) >= min(idle + 1, 1)
    finally:
        spin.kill()
        spin.wait()


def test_the_callers_thread_count_is_restored_even_when_the_block_raises():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with threads.cpu_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError
    assert torch.get_num_threads() == before


class CountThreads(aekit.Callback):
    def __init__(self):
        self.seen = set()

    def on_step_end(self, loop):
        self.seen.add(torch.get_num_threads())


@pytest.mark.parametrize("setting, hidden, expected", [("auto", (8,), 1), (1, (8,), 1), ("auto", (3000, 3000), None)])
def test_training_runs_on_the_threads_chosen_and_restores_the_count(setting, hidden, expected):
    before = torch.get_num_threads()
    spy = CountThreads()
    model = aekit.get_model("ae", input_shape=(16,), code_size=2, hidden=hidden)
    aekit.fit(model, torch.rand(64, 16), epochs=1, batch_size=32, val_fraction=0, threads=setting, progress=False, callbacks=[spy])
    assert torch.get_num_threads() == before and len(spy.seen) == 1  # one choice for the whole fit
    assert spy.seen == {expected} if expected else 1 <= spy.seen.pop() <= before  # large: the cores free when it starts


def test_threads_setting_is_checked():
    for bad in (0, "many", True, -2):
        with pytest.raises(aekit.ConfigError, match="threads must be 'auto' or a positive number"):
            aekit.Trainer(threads=bad)
    assert aekit.Trainer(threads="2").threads == "2"
