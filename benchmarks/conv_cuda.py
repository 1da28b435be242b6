"""The conv path on a CUDA GPU: aekit's `conv` model in NCHW and channels-last, fp32 and bf16.

    python benchmarks/conv_cuda.py [--images 60000] [--epochs 3]

Random images stand in for MNIST (speed does not depend on the pixels; the
GPU machine cannot reach the data sets). Each setting trains a fresh model
in this process after one warm-up epoch; seconds per epoch, the median of
the timed epochs. Writes benchmarks/results/conv_cuda.md.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import aekit
from common import machine, write


def epoch_seconds(x: torch.Tensor, channels_last: bool, precision: str, epochs: int, batch: int) -> tuple[float, float]:
    aekit.seed_everything(0)
    model = aekit.get_model("conv", input_shape=(1, 28, 28), code_size=30, channels_last=channels_last)
    history = aekit.fit(model, x, epochs=epochs + 1, batch_size=batch, device="cuda", precision=precision, val_fraction=0.0, progress=False)
    return statistics.median(r["seconds"] for r in history.records[1:]), history[-1]["train_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, nargs="*", default=[128, 512])
    args = parser.parse_args()
    x = torch.rand(args.images, 1, 28, 28)
    began = time.perf_counter()
    lines = [
        "# The conv model on a CUDA GPU",
        "",
        f"aekit's default `conv` model (1x28x28, 32/64 channels, 30-d code), {args.images:,} random images, `aekit.fit` on "
        f"`device='cuda'`; seconds per epoch (median of {args.epochs} after a warm-up epoch) and the last epoch's training loss.",
        "",
        "| batch | layout | precision | s / epoch | images / s | speed vs NCHW fp32 | train loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for batch in args.batch_size:
        base = None
        for precision in ("fp32", "bf16"):
            for channels_last in (False, True):
                seconds, loss = epoch_seconds(x, channels_last, precision, args.epochs, batch)
                base = base or seconds
                lines.append(f"| {batch} | {'channels-last' if channels_last else 'NCHW'} | {precision} | {seconds:.2f} | {args.images / seconds:,.0f} | {base / seconds:.2f}x | {loss:.2f} |")
                print(lines[-1], flush=True)
    lines += ["", f"Device: {torch.cuda.get_device_name()}; {machine()}. Wall time {(time.perf_counter() - began) / 60:.1f} min.",
              "", f"Command: `python benchmarks/conv_cuda.py --images {args.images} --epochs {args.epochs}`"]
    write("conv_cuda.md", lines)


if __name__ == "__main__":
    main()
