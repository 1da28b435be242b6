"""Training-loop speed: a plain PyTorch loop vs aekit (defaults, fastest options) vs pythae and PyOD.

The job: an MLP autoencoder 784-512-256-32-256-512-784 (ReLU, linear code,
sigmoid output), squared error summed over pixels, Adam 1e-3, batch 128,
5 epochs over the 60,000 MNIST training images; test error on the 10,000
test images. Every run is a fresh process (so each pays its own start-up,
compilation included); the runners are interleaved round by round and the
table reports medians.

    python benchmarks/speed.py [--quick] [--rounds 3] [--epochs 5]

Peers run when importable: install them in the benchmark's own environment
without letting pip replace torch, e.g.
``pip install -c <(echo torch==2.13.0) pythae pyod``.
Writes benchmarks/results/speed.md (or speed_quick.md).
"""

from __future__ import annotations

import argparse
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


def run_plain(x: torch.Tensor, test: torch.Tensor, epochs: int) -> dict:
    """(a) The loop a PyTorch user writes by hand: tensors in memory, a shuffled index, Adam."""
    model = plain_mlp()
    began = time.perf_counter()  # like every runner, timing includes building the optimiser (torch imports its compiler then)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), BATCH):
            batch = x[order[i : i + BATCH]]
            loss = squared_error(model(batch), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "test_error": error_of(model.eval(), test)}


def run_aekit(x: torch.Tensor, test: torch.Tensor, epochs: int, **options) -> dict:
    """(b) aekit's Trainer with its defaults; (c) with the options given."""
    import aekit
    from aekit.apps.common import encode

    model = aekit.get_model("ae", input_shape=(784,), code_size=SIZES[-1], hidden=SIZES[1:-1])
    began = time.perf_counter()
    aekit.fit(model, x, epochs=epochs, batch_size=BATCH, lr=LR, val_fraction=0.0, progress=False, **options)
    seconds = time.perf_counter() - began
    result = {"seconds": seconds, "test_error": error_of(lambda b: model(b).x_hat, test)}
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
        began = time.perf_counter()
        TrainingPipeline(training_config=config, model=model)(train_data=x.numpy())
        seconds = time.perf_counter() - began
    return {"seconds": seconds, "test_error": error_of(mlp.eval(), test)}


def run_pyod(x: torch.Tensor, test: torch.Tensor, epochs: int) -> dict:
    """(d) PyOD's AutoEncoder, its architecture set to ours (no batch norm, no dropout, no scaling)."""
    from pyod.models.auto_encoder import AutoEncoder

    detector = AutoEncoder(
        hidden_neuron_list=list(SIZES[1:]), hidden_activation_name="relu", batch_norm=False, dropout_rate=0.0,
        preprocessing=False, epoch_num=epochs, batch_size=BATCH, lr=LR, optimizer_name="adam", device="cpu",
        random_state=0, verbose=0,
    )
    began = time.perf_counter()
    detector.fit(x.numpy())
    seconds = time.perf_counter() - began
    net = detector.model.eval()
    return {"seconds": seconds, "test_error": error_of(net, test)}


RUNNERS = {
    "plain": ("(a) plain PyTorch loop (in the script)", run_plain, None),
    "aekit": ("(b) aekit, defaults (fused Adam)", run_aekit, None),
    "aekit-bf16": ("(c) aekit, `precision='bf16'`", lambda x, t, e: run_aekit(x, t, e, precision="bf16"), None),
    "aekit-compile-bf16": ("(c) aekit, `compile=True, precision='bf16'`", lambda x, t, e: run_aekit(x, t, e, compile=True, precision="bf16"), None),
    "pythae": ("(d) pythae 0.1.2 `AE` + `TrainingPipeline`", run_pythae, "pythae"),
    "pyod": ("(d) PyOD `AutoEncoder`", run_pyod, "pyod"),
}


def child(name: str, epochs: int, n_train: int, data_dir: str) -> None:
    torch.manual_seed(0)
    train, test = mnist(data_dir, flat=True)
    result = RUNNERS[name][1](train[:n_train], test, epochs)
    report(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch on 10,000 images, 1 round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    parser.add_argument("--only", nargs="*", help="run only these runners")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n-train", type=int, default=60_000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.epochs, args.n_train, args.data_dir)

    epochs, rounds, n_train = (1, 1, 10_000) if args.quick else (args.epochs, args.rounds, 60_000)
    names = [n for n in (args.only or RUNNERS) if RUNNERS[n][2] is None or importlib.util.find_spec(RUNNERS[n][2])]
    missing = [n for n in RUNNERS if n not in names and not args.only]
    results: dict[str, list[dict]] = {n: [] for n in names}
    began = time.perf_counter()
    for round_ in range(rounds):
        for name in names:  # interleaved: every runner once per round
            command = [sys.executable, __file__, "--child", name, "--epochs", str(epochs), "--n-train", str(n_train), "--data-dir", args.data_dir]
            results[name].append(run_child(command, cwd=Path(__file__).parent))
            print(f"round {round_ + 1} {name}: {results[name][-1]}", flush=True)
    wall = time.perf_counter() - began

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    base = median("plain", "seconds") if "plain" in results else float("nan")
    samples = epochs * n_train
    lines = [
        "# Training-loop speed",
        "",
        f"MLP autoencoder 784-512-256-32-256-512-784 (ReLU, sigmoid output), squared error, Adam {LR:g}, batch {BATCH}, "
        f"{epochs} epoch(s) over {n_train:,} MNIST images, CPU. Each run is a fresh process; runners interleaved, "
        f"median of {rounds} round(s). Seconds count training only (not start-up or data loading); compilation is included.",
        "",
        "| runner | wall time (s) | samples / s | speed vs (a) | test error |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name in names:
        seconds = median(name, "seconds")
        lines.append(f"| {RUNNERS[name][0]} | {seconds:.1f} | {samples / seconds:,.0f} | {base / seconds:.2f}x | {median(name, 'test_error'):.2f} |")
    lines += ["", "All runs (seconds): " + "; ".join(f"{n} " + ", ".join(f"{r['seconds']:.1f}" for r in results[n]) for n in names)]
    if "aekit" in results:
        lines += ["", f"Inference: `encode` on the 10,000 test images, {median('aekit', 'encode_per_s'):,.0f} images / s (median of 5)."]
    if missing:
        lines += ["", f"Not installed, so not run: {', '.join(missing)}."]
    lines += [
        "",
        "Per-step cost of every variant relative to `ae`: see [model_zoo.md](model_zoo.md).",
        "",
        f"Machine: {machine()}. Benchmark wall time {wall / 60:.1f} min.",
        "",
        "Command: `python benchmarks/speed.py" + (" --quick" if args.quick else f" --rounds {rounds} --epochs {epochs}") + "`",
    ]
    write("speed_quick.md" if args.quick else "speed.md", lines)


if __name__ == "__main__":
    main()
