"""Training-loop speed: a plain PyTorch loop vs aekit (defaults, fastest options) vs pythae and PyOD.

Two jobs, each written as a section of benchmarks/results/speed.md:

- mlp: an MLP autoencoder 784-512-256-32-256-512-784 (ReLU, linear code,
  sigmoid output), squared error summed over pixels, Adam 1e-3, batch 128,
  5 epochs over the 60,000 MNIST training images; test error on the 10,000
  test images.
- conv: aekit's default `conv` autoencoder (1x28x28, 32/64 channels, ELU,
  30-d code) against the same network in a plain loop, in NCHW and
  channels-last layouts, fp32 and bf16; 1 epoch over 20,000 MNIST images,
  batch 128; the epoch's mean training loss and GFLOP/s (counted by
  torch.utils.flop_counter).

Every run is a fresh process (so each pays its own start-up, compilation
included), under glibc's default allocator settings and under the tuned ones
(aekit tunes them itself; the plain loops get them through glibc's
environment variables); the runners are interleaved round by round and the
tables report medians, with minor page faults and kernel (system) time.

    python benchmarks/speed.py [--quick] [--rounds 3] [--jobs mlp conv]

Peers run when importable: install them in the benchmark's own environment
without letting pip replace torch, e.g.
``pip install -c <(echo torch==2.13.0) pythae pyod``.
Writes benchmarks/results/speed.md (or speed_quick.md).
"""

from __future__ import annotations

import argparse
import os
import resource
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from common import DATA_DIR, machine, mnist, report, run_child, write

SIZES = (784, 512, 256, 32)
CONV_CHANNELS, CONV_CODE = (32, 64), 30
LR, BATCH = 1e-3, 128


def squared_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return ((x_hat - x) ** 2).flatten(1).sum(1).mean()


@torch.no_grad()
def error_of(reconstruct, x: torch.Tensor) -> float:
    return sum(squared_error(reconstruct(x[i : i + 1000]), x[i : i + 1000]).item() * len(x[i : i + 1000]) for i in range(0, len(x), 1000)) / len(x)


def plain_mlp() -> nn.Sequential:
    layers: list[nn.Module] = []
    widths = SIZES + SIZES[-2::-1]  # 784 512 256 32 256 512 784
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        layers.append(nn.Linear(a, b))
        if i != len(SIZES) - 2:  # the code layer stays linear
            layers.append(nn.ReLU() if i < len(widths) - 2 else nn.Sigmoid())
    return nn.Sequential(*layers)


class Meter:
    """Wall time, minor page faults and kernel time of the block it wraps (this process only)."""

    def __enter__(self) -> "Meter":
        self.usage, self.began = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        seconds = time.perf_counter() - self.began
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.result = {"seconds": seconds, "minor_faults": usage.ru_minflt - self.usage.ru_minflt, "system_s": usage.ru_stime - self.usage.ru_stime}


# -- the MLP job ---------------------------------------------------------------------------------------


def run_plain(x: torch.Tensor, test: torch.Tensor, epochs: int) -> dict:
    """(a) The loop a PyTorch user writes by hand: tensors in memory, a shuffled index, Adam."""
    model = plain_mlp()
    with Meter() as meter:  # like every runner, timing includes building the optimiser (torch imports its compiler then)
        optimizer = torch.optim.Adam(model.parameters(), lr=LR)
        for _ in range(epochs):
            order = torch.randperm(len(x))
            for i in range(0, len(x), BATCH):
                batch = x[order[i : i + BATCH]]
                loss = squared_error(model(batch), batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return {**meter.result, "test_error": error_of(model.eval(), test)}


def run_aekit(x: torch.Tensor, test: torch.Tensor, epochs: int, **options) -> dict:
    """(b) aekit's Trainer with its defaults; (c) with the options given."""
    import aekit
    from aekit.apps.common import encode

    model = aekit.get_model("ae", input_shape=(784,), code_size=SIZES[-1], hidden=SIZES[1:-1])
    with Meter() as meter:
        aekit.fit(model, x, epochs=epochs, batch_size=BATCH, lr=LR, val_fraction=0.0, progress=False, **options)
    result = {**meter.result, "test_error": error_of(lambda b: model(b).x_hat, test)}
    times = []
    for _ in range(5):
        start = time.perf_counter()
        encode(model, test)
        times.append(time.perf_counter() - start)
    result["encode_per_s"] = len(test) / statistics.median(times)
    return result


def run_pythae(x: torch.Tensor, test: torch.Tensor, epochs: int) -> dict:
    """(d) pythae's AE with the same encoder and decoder, trained by its TrainingPipeline."""
    from pythae.models import AE, AEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    mlp = plain_mlp()
    cut = 2 * (len(SIZES) - 1) - 1  # the encoder's modules: Linear/ReLU pairs, then the code Linear

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = mlp[:cut]

        def forward(self, inputs):
            return ModelOutput(embedding=self.net(inputs.flatten(1)))

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = mlp[cut:]

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    model = AE(AEConfig(input_dim=(784,), latent_dim=SIZES[-1], reconstruction_loss="mse"), encoder=Encoder(), decoder=Decoder())
    with tempfile.TemporaryDirectory() as out:
        config = BaseTrainerConfig(
            output_dir=out, learning_rate=LR, per_device_train_batch_size=BATCH, num_epochs=epochs,
            optimizer_cls="Adam", steps_saving=None, no_cuda=True, seed=0,
        )
        with Meter() as meter:
            TrainingPipeline(training_config=config, model=model)(train_data=x.numpy())
    return {**meter.result, "test_error": error_of(mlp.eval(), test)}


def run_pyod(x: torch.Tensor, test: torch.Tensor, epochs: int) -> dict:
    """(d) PyOD's AutoEncoder, its architecture set to ours (no batch norm, no dropout, no scaling)."""
    from pyod.models.auto_encoder import AutoEncoder

    detector = AutoEncoder(
        hidden_neuron_list=list(SIZES[1:]), hidden_activation_name="relu", batch_norm=False, dropout_rate=0.0,
        preprocessing=False, epoch_num=epochs, batch_size=BATCH, lr=LR, optimizer_name="adam", device="cpu",
        random_state=0, verbose=0,
    )
    with Meter() as meter:
        detector.fit(x.numpy())
    net = detector.model.eval()
    return {**meter.result, "test_error": error_of(net, test)}


# -- the conv job ----------------------------------------------------------------------------------


def plain_conv() -> nn.Sequential:
    """aekit's default `conv` autoencoder for 1x28x28 images, written out in plain modules."""
    c1, c2 = CONV_CHANNELS
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ELU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ELU(), nn.MaxPool2d(2, ceil_mode=True),
        nn.Flatten(), nn.Linear(c2 * 7 * 7, CONV_CODE),
        nn.Linear(CONV_CODE, c2 * 7 * 7), nn.ELU(), nn.Unflatten(1, (c2, 7, 7)),
        nn.Upsample(size=(14, 14), mode="nearest"), nn.Conv2d(c2, c1, 3, padding=1), nn.ELU(),
        nn.Upsample(size=(28, 28), mode="nearest"), nn.Conv2d(c1, 1, 3, padding=1), nn.Sigmoid(),
    )


def run_plain_conv(x: torch.Tensor, epochs: int, layout: str, precision: str) -> dict:
    """The conv net in a hand-written loop: fused Adam, NCHW (PyTorch's default) or channels-last, fp32 or bf16 autocast."""
    model = plain_conv()
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    total = seen = 0.0
    with Meter() as meter:
        optimizer = torch.optim.Adam(model.parameters(), lr=LR, fused=True)
        for _ in range(epochs):
            total = seen = 0.0
            order = torch.randperm(len(x))
            for i in range(0, len(x), BATCH):
                batch = x[order[i : i + BATCH]].contiguous(memory_format=fmt)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    loss = squared_error(model(batch).float(), batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, seen = total + loss.item() * len(batch), seen + len(batch)
    return {**meter.result, "train_loss": total / seen}


def run_aekit_conv(x: torch.Tensor, epochs: int, **options) -> dict:
    """aekit's `conv` model through `aekit.fit`, defaults otherwise (the acceptance check's call)."""
    import aekit

    model = aekit.get_model("conv", input_shape=(1, 28, 28), code_size=CONV_CODE, channels=CONV_CHANNELS)
    with Meter() as meter:
        history = aekit.fit(model, x, epochs=epochs, batch_size=BATCH, lr=LR, val_fraction=0.0, progress=False, **options)
    return {**meter.result, "train_loss": history[-1]["train_loss"]}


def conv_flops_per_sample() -> float:
    """Floating-point operations of one training sample (forward + backward), counted by PyTorch."""
    from torch.utils.flop_counter import FlopCounterMode

    model, batch = plain_conv(), torch.rand(BATCH, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        squared_error(model(batch), batch).backward()
    return counter.get_total_flops() / BATCH


# Tuned like aekit's own setting (aekit/training/allocator.py), but through glibc's environment variables.
TUNED_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}
UNTUNED_AEKIT = {"AEKIT_TUNE_ALLOCATOR": "0"}

# job -> runner -> (label, allocator, function(x, test, epochs), peer module or None, environment)
RUNNERS: dict[str, dict[str, tuple]] = {
    "mlp": {
        "plain": ("(a) plain PyTorch loop (in the script)", "default", run_plain, None, {}),
        "plain-tuned": ("(a) plain PyTorch loop (in the script)", "tuned", run_plain, None, TUNED_ENV),
        "aekit": ("(b) aekit, defaults", "tuned", run_aekit, None, {}),
        "aekit-untuned": ("(b) aekit, defaults", "default", run_aekit, None, UNTUNED_AEKIT),
        "aekit-bf16": ("(c) aekit, `precision='bf16'`", "tuned", lambda x, t, e: run_aekit(x, t, e, precision="bf16"), None, {}),
        "aekit-compile-bf16": ("(c) aekit, `compile=True, precision='bf16'`", "tuned", lambda x, t, e: run_aekit(x, t, e, compile=True, precision="bf16"), None, {}),
        "pythae": ("(d) pythae 0.1.2 `AE` + `TrainingPipeline`", "default", run_pythae, "pythae", {}),
        "pyod": ("(d) PyOD `AutoEncoder`", "default", run_pyod, "pyod", {}),
    },
    "conv": {
        **{
            f"plain-{layout}-{precision}{suffix}": (
                f"plain loop, {'NCHW' if layout == 'nchw' else 'channels-last'}, {precision}", alloc,
                lambda x, t, e, layout=layout, precision=precision: run_plain_conv(x, e, "channels_last" if layout == "cl" else "nchw", precision),
                None, env,
            )
            for precision in ("fp32", "bf16")
            for layout in ("nchw", "cl")
            for suffix, alloc, env in (("", "default", {}), ("-tuned", "tuned", TUNED_ENV))
        },
        "aekit": ("aekit, defaults (channels-last, fp32)", "tuned", lambda x, t, e: run_aekit_conv(x, e), None, {}),
        "aekit-untuned": ("aekit, defaults (channels-last, fp32)", "default", lambda x, t, e: run_aekit_conv(x, e), None, UNTUNED_AEKIT),
        "aekit-bf16": ("aekit, `precision='bf16'`", "tuned", lambda x, t, e: run_aekit_conv(x, e, precision="bf16"), None, {}),
        "aekit-bf16-untuned": ("aekit, `precision='bf16'`", "default", lambda x, t, e: run_aekit_conv(x, e, precision="bf16"), None, UNTUNED_AEKIT),
    },
}
JOBS = {  # job -> (epochs, training images) for the full and the quick run
    "mlp": ((5, 60_000), (1, 10_000)),
    "conv": ((1, 20_000), (1, 4_000)),
}


def child(job: str, name: str, epochs: int, n_train: int, data_dir: str) -> None:
    torch.manual_seed(0)
    train, test = mnist(data_dir, flat=job == "mlp")
    result = RUNNERS[job][name][2](train[:n_train], test, epochs)
    report(result)


def run_job(job: str, names: list[str], epochs: int, n_train: int, rounds: int, data_dir: str) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {n: [] for n in names}
    for round_ in range(rounds):
        for name in names:  # interleaved: every runner once per round
            env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "AEKIT_TUNE_ALLOCATOR"}
            command = [sys.executable, __file__, "--child", name, "--job", job, "--epochs", str(epochs), "--n-train", str(n_train), "--data-dir", data_dir]
            results[name].append(run_child(command, env={**env, **RUNNERS[job][name][4]}, cwd=Path(__file__).parent, replace_env=True))
            print(f"{job} round {round_ + 1} {name}: {results[name][-1]}", flush=True)
    return results


def section(job: str, results: dict[str, list[dict]], epochs: int, n_train: int, rounds: int) -> list[str]:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    base_name = "plain" if job == "mlp" else "plain-nchw-fp32"
    base = median(base_name, "seconds") if base_name in results else float("nan")
    samples = epochs * n_train
    quality = "test error" if job == "mlp" else "train loss"
    flops = conv_flops_per_sample() if job == "conv" else None
    if job == "mlp":
        lines = [
            "## MLP",
            "",
            f"MLP autoencoder 784-512-256-32-256-512-784 (ReLU, sigmoid output), squared error, Adam {LR:g}, batch {BATCH}, "
            f"{epochs} epoch(s) over {n_train:,} MNIST images, CPU.",
        ]
    else:
        lines = [
            "## Convolutional",
            "",
            f"aekit's default `conv` model (1x28x28, channels {CONV_CHANNELS[0]}/{CONV_CHANNELS[1]}, ELU, {CONV_CODE}-d code; "
            f"{flops / 1e6:.1f} MFLOP per sample forward + backward, counted by `torch.utils.flop_counter`), squared error, "
            f"fused Adam {LR:g}, batch {BATCH}, {epochs} epoch(s) over {n_train:,} MNIST images, CPU. The plain loops are the same network "
            "in hand-written modules; `train loss` is the epoch's mean training loss.",
        ]
    lines += [
        f"Each run is a fresh process; runners interleaved, median of {rounds} round(s). Seconds count training only "
        "(not start-up or data loading); compilation is included. Allocator `default`: glibc as it comes; `tuned`: large "
        "buffers kept between steps (aekit does it itself, `AEKIT_TUNE_ALLOCATOR=0` turns it off; the plain loops get "
        "`MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647`). Faults: minor page faults during training.",
        "",
        f"| runner | allocator | seconds | samples / s |{' GFLOP/s |' if flops else ''} speed vs plain default | minor faults | system s | {quality} |",
        f"| --- | --- | --- | --- |{' --- |' if flops else ''} --- | --- | --- | --- |",
    ]
    for name in results:
        label, alloc = RUNNERS[job][name][:2]
        seconds = median(name, "seconds")
        gflops = f" {flops * samples / seconds / 1e9:.0f} |" if flops else ""
        error = median(name, "test_error" if job == "mlp" else "train_loss")
        lines.append(
            f"| {label} | {alloc} | {seconds:.1f} | {samples / seconds:,.0f} |{gflops} {base / seconds:.2f}x | "
            f"{median(name, 'minor_faults'):,.0f} | {median(name, 'system_s'):.2f} | {error:.2f} |"
        )
    lines += ["", "All runs (seconds): " + "; ".join(f"{n} " + ", ".join(f"{r['seconds']:.1f}" for r in results[n]) for n in results)]
    if job == "mlp" and "aekit" in results:
        lines += ["", f"Inference: `encode` on the 10,000 test images, {median('aekit', 'encode_per_s'):,.0f} images / s (median of 5)."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short epoch per job, 1 round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", nargs="*", choices=list(JOBS), default=list(JOBS))
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--only", nargs="*", help="run only these runners")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.job, args.child, args.epochs, args.n_train, args.data_dir)

    rounds = 1 if args.quick else args.rounds
    lines = ["# Training-loop speed", ""]
    missing: list[str] = []
    began = time.perf_counter()
    for job in args.jobs:
        epochs, n_train = JOBS[job][1 if args.quick else 0]
        runners = RUNNERS[job]
        names = [n for n in (args.only or runners) if n in runners and (runners[n][3] is None or importlib.util.find_spec(runners[n][3]))]
        missing += [n for n in runners if runners[n][3] and n not in names and not args.only]
        results = run_job(job, names, epochs, n_train, rounds, args.data_dir)
        lines += section(job, results, epochs, n_train, rounds) + [""]
    wall = time.perf_counter() - began
    if missing:
        lines += [f"Not installed, so not run: {', '.join(missing)}.", ""]
    lines += [
        "Per-step cost of every variant relative to `ae`: see [model_zoo.md](model_zoo.md).",
        "",
        f"Machine: {machine()}. Benchmark wall time {wall / 60:.1f} min.",
        "",
        "Command: `python benchmarks/speed.py" + (" --quick" if args.quick else f" --rounds {rounds}") + f" --jobs {' '.join(args.jobs)}`",
    ]
    write("speed_quick.md" if args.quick else "speed.md", lines)


if __name__ == "__main__":
    main()
