"""Beyond memory and beyond one process: peak memory and throughput of streamed training, and torchrun.

1. Synthetic float32 data, 256 features, at 1x (0.2 GB) and 10x (2 GB), as one
   ``.npy`` file and as a folder of ten shards. One epoch of an `ae`
   (256-512-256-32, the speed benchmark's MLP on 256 features) trained (a) from memory (``load_dataset``) and (b) streamed
   from disk (``open_stream``); each in a fresh process, reporting peak
   resident memory (VmHWM) and training throughput. The files sit in
   the page cache (the machine has more RAM than 2 GB), so this measures
   aekit's reading path, not the disk.
2. The same 1x job on 1 process with 2 threads vs 2 processes (``torchrun``,
   gloo) with 1 thread each.
3. CPU vs GPU samples per second for the speed benchmark's MLP, when a GPU is
   present.

    python benchmarks/scale.py [--quick] [--dir /tmp/aekit-scale]

Writes benchmarks/results/scale.md (scale_quick.md with --quick).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import machine, report, run_child, write

FEATURES = 256
ROWS_1X = 200_000  # 256 float32 features: 0.2 GB


def make_data(folder: Path, rows: int) -> tuple[Path, Path]:
    """One .npy file and a folder of ten shards, written in chunks (never all in memory)."""
    file, shards = folder / f"x{rows}.npy", folder / f"x{rows}-shards"
    if not file.exists():
        folder.mkdir(parents=True, exist_ok=True)
        array = np.lib.format.open_memmap(file.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(rows, FEATURES))
        g = np.random.default_rng(0)
        basis = g.normal(size=(8, FEATURES)).astype(np.float32)
        for start in range(0, rows, 50_000):
            n = min(50_000, rows - start)
            array[start : start + n] = 1 / (1 + np.exp(-(g.normal(size=(n, 8)).astype(np.float32) @ basis)))
        array.flush()
        del array
        file.with_suffix(".tmp.npy").rename(file)
    if not shards.exists():
        tmp = shards.with_name(shards.name + ".tmp")
        tmp.mkdir(exist_ok=True)
        source = np.load(file, mmap_mode="r")
        for i, part in enumerate(np.array_split(np.arange(rows), 10)):
            np.save(tmp / f"{i:02d}.npy", np.ascontiguousarray(source[part[0] : part[-1] + 1]))
        del source
        tmp.rename(shards)
    return file, shards


def peak_rss() -> int:
    """This process's peak resident memory: VmHWM on Linux (ru_maxrss would include the launching
    parent's peak, which survives fork and exec), else ru_maxrss."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def child(mode: str, path: str) -> None:
    import aekit

    began = time.perf_counter()
    data = aekit.open_stream(path, "all") if mode == "stream" else aekit.load_dataset(path, "all")
    load_seconds = time.perf_counter() - began
    aekit.seed_everything(0)
    model = aekit.get_model("ae", input_shape=(FEATURES,), code_size=32, hidden=(512, 256))
    history = aekit.fit(model, data, epochs=1, batch_size=256, val_fraction=0.0, progress=False)
    seconds = history[-1]["seconds"]
    peak = peak_rss()
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return
    report({"samples_per_s": len(data) / seconds, "peak_bytes": peak, "load_seconds": load_seconds, "loss": history[-1]["train_loss"]})


def launch(*args: str, launcher: list[str] | None = None, env: dict | None = None) -> dict:
    return run_child([*(launcher or [sys.executable]), __file__, "--child", *args], env=env)


def gpu_rates(quick: bool) -> list[str]:
    if not torch.cuda.is_available():
        return ["No GPU on this machine: the GPU rows are measured where one is lent (`python benchmarks/scale.py` there)."]
    import aekit

    x = torch.rand(20_000 if quick else 200_000, 784)
    rows = ["| device, precision | samples / s (1 epoch, batch 128, 784-512-256-32 MLP) |", "| --- | --- |"]
    for device, precision in [("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "bf16"), ("cuda", "fp16")]:
        model = aekit.get_model("ae", input_shape=(784,), code_size=32, hidden=(512, 256))
        aekit.fit(model, x[:2048], epochs=1, device=device, precision=precision, val_fraction=0, progress=False)  # warm-up
        history = aekit.fit(model, x, epochs=1, device=device, precision=precision, val_fraction=0, progress=False)
        rows.append(f"| {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'this machine'}), {precision} | {len(x) / history[-1]['seconds']:,.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="0.02 GB and 0.2 GB instead of 0.2 GB and 2 GB")
    parser.add_argument("--dir", default="/tmp/aekit-scale", help="where the synthetic data is written (not the repository)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    began = time.perf_counter()
    base = ROWS_1X // 10 if args.quick else ROWS_1X
    rounds = 1 if args.quick else args.rounds
    sets = {f"1x ({base * FEATURES * 4 / 1e9:.2f} GB)": make_data(Path(args.dir), base), f"10x ({10 * base * FEATURES * 4 / 1e9:.2f} GB)": make_data(Path(args.dir), 10 * base)}
    lines = [
        "# Scale: data larger than memory, several processes",
        "",
        f"`ae` 256-512-256-32, batch 256, 1 epoch, float32 data with {FEATURES} features. Each run is a fresh process; "
        f"median of {rounds} round(s), interleaved (10x: one round). Peak memory is the process's peak resident set (VmHWM).",
        "",
        "| data | how | peak memory | samples / s | vs in memory (same data) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, (file, shards) in sets.items():
        cases = {"in memory (`load_dataset`)": ("memory", file), "streamed, one .npy (`open_stream`)": ("stream", file), "streamed, 10 shards": ("stream", shards)}
        results: dict[str, list[dict]] = {name: [] for name in cases}
        for _ in range(rounds if label.startswith("1x") else 1):  # 10x: one round (an epoch takes minutes)
            for name, (mode, path) in cases.items():
                results[name].append(launch(mode, str(path)))
        memory_rate = statistics.median(r["samples_per_s"] for r in results["in memory (`load_dataset`)"])
        for name, runs in results.items():
            rate = statistics.median(r["samples_per_s"] for r in runs)
            peak = max(r["peak_bytes"] for r in runs)
            lines.append(f"| {label} | {name} | {peak / 1e9:.2f} GB | {rate:,.0f} | {rate / memory_rate:.2f}x |")
            print(lines[-1], flush=True)

    file, _ = sets[next(iter(sets))]
    one = [launch("memory", str(file), env={"OMP_NUM_THREADS": "2"}) for _ in range(rounds)]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = [launch("memory", str(file), launcher=torchrun, env={"OMP_NUM_THREADS": "1"}) for _ in range(rounds)]
    lines += [
        "",
        "## One process vs two (torchrun, gloo, this machine's 2 cores)",
        "",
        "| launch | samples / s | final training loss |",
        "| --- | --- | --- |",
        f"| 1 process, 2 threads | {statistics.median(r['samples_per_s'] for r in one):,.0f} | {one[0]['loss']:.4f} |",
        f"| `torchrun --nproc_per_node 2`, 1 thread each | {statistics.median(r['samples_per_s'] for r in two):,.0f} | {two[0]['loss']:.4f} |",
        "",
        "Same seed and global batch, so the same training up to floating-point rounding, which differs with the "
        f"thread count and the all-reduce and drifts over {-(-base // 256)} steps (tests/test_scale.py compares 40 steps to 1e-5). "
        "On one machine with 2 cores, data parallelism cannot beat intra-op threading; it pays across machines and GPUs.",
        "",
        "## GPU",
        "",
        *gpu_rates(args.quick),
        "",
        f"Machine: {machine()}. Total wall time {(time.perf_counter() - began) / 60:.1f} min.",
        "",
        "Command: `python benchmarks/scale.py" + (" --quick" if args.quick else f" --rounds {rounds}") + "`",
    ]
    write("scale_quick.md" if args.quick else "scale.md", lines)


if __name__ == "__main__":
    main()
