"""Every registered variant on MNIST under one short budget, and what each costs per training step.

    python benchmarks/model_zoo.py [--quick]

- Test reconstruction error (squared error summed over pixels, mean over the
  10,000 test images) after the same budget for every variant.
- Milliseconds per training step (batch 128, forward + backward + Adam step,
  median of repeats) and the ratio to the plain `ae` of the same layers.
- `stacked`: greedy pretraining then fine-tuning vs the same network from a
  random initialisation with the same fine-tuning budget.
- `vae` on dynamically binarised MNIST (784-200-200-50, Bernoulli decoder):
  test ELBO and importance-weighted log-likelihood, in nats.

Writes benchmarks/results/model_zoo.md (model_zoo_quick.md with --quick).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import aekit
from common import DATA_DIR, machine, median_seconds, mnist, test_error, write

MLP = {"code_size": 32, "hidden": (512, 256)}
CONV = {"code_size": 32, "channels": (32, 64)}
VARIANTS = {  # name -> (registered model, options, trainer settings)
    "ae": ("ae", MLP, {}),
    "linear": ("linear", {"code_size": 32}, {}),
    "tied": ("tied", MLP, {}),
    "sparse (L1)": ("sparse", {**MLP, "penalty": "l1", "weight": 1e-2}, {}),
    "sparse (KL, rho 0.05)": ("sparse", {**MLP, "penalty": "kl", "weight": 0.1}, {}),
    "denoising (gaussian 0.3)": ("denoising", {**MLP, "noise": "gaussian:0.3"}, {}),
    "denoising (masking 0.25)": ("denoising", {**MLP, "noise": "masking:0.25"}, {}),
    "contractive (deep, exact Jacobian)": ("contractive", {**MLP, "weight": 0.01}, {}),
    "contractive (deep, Hutchinson estimate, 1 probe)": ("contractive", {**MLP, "weight": 0.01, "jacobian": "estimate"}, {}),
    "contractive (1 sigmoid layer, closed form)": ("contractive", {"code_size": 32, "hidden": (), "code_activation": "sigmoid", "weight": 0.01}, {}),
    "ae (1 sigmoid layer, same as above)": ("ae", {"code_size": 32, "hidden": (), "code_activation": "sigmoid"}, {}),
    "vae (bernoulli)": ("vae", MLP, {}),
    "stochastic (gaussian, code noise 0.1)": ("stochastic", MLP, {}),
    "conv": ("conv", CONV, {}),
    "conv-denoising": ("conv-denoising", CONV, {}),
    "conv-vae": ("conv-vae", CONV, {}),
    "stacked (pretrained)": ("stacked", MLP, {"pretrain_epochs": 1}),
    "recirculation (SGD, lr 0.5)": ("recirculation", {"code_size": 32}, {"optimizer": "sgd", "lr": 0.5}),
}
BASELINE = {"contractive (1 sigmoid layer, closed form)": "ae (1 sigmoid layer, same as above)"}


def build(name: str, options: dict) -> torch.nn.Module:
    aekit.seed_everything(0)
    return aekit.get_model(name, input_shape=(1, 28, 28), **options)


def step_seconds(model: torch.nn.Module, x: torch.Tensor, optimizer: str = "adam") -> float:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3) if optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=1e-3)

    def steps() -> None:
        for _ in range(10):
            out = model(x)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()

    return median_seconds(steps, repeats=5) / 10


def zoo(train: torch.Tensor, test: torch.Tensor, epochs: int) -> list[str]:
    batch = train[:128]
    models = {label: build(name, options) for label, (name, options, _) in VARIANTS.items()}
    rounds = {label: [] for label in VARIANTS}
    for _ in range(3):  # interleaved rounds, so a slow moment of the machine does not land on one variant
        for label, (_, _, settings) in VARIANTS.items():
            rounds[label].append(step_seconds(models[label], batch, settings.get("optimizer", "adam")))
    costs = {label: statistics.median(times) for label, times in rounds.items()}
    rows = []
    for label, (name, options, settings) in VARIANTS.items():
        model = build(name, options)
        began = time.perf_counter()
        aekit.fit(model, train, epochs=epochs, batch_size=128, val_fraction=0, progress=False, **{"lr": 1e-3, **settings})
        seconds = time.perf_counter() - began
        rows.append((label, test_error(model, test), costs[label], seconds))
        print(f"{label}: {rows[-1][1]:.2f} ({seconds:.0f} s)", flush=True)
    lines = [
        f"| variant | test error | ms / step | cost vs `ae` | training time ({epochs} epoch{'s' if epochs > 1 else ''}) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, error, cost, seconds in rows:
        base = costs[BASELINE.get(label, "ae")]
        lines.append(f"| {label} | {error:.2f} | {1000 * cost:.1f} | {cost / base:.2f}x | {seconds:.0f} s |")
    return lines


def stacked_vs_random(train: torch.Tensor, test: torch.Tensor, epochs: int, pretrain_epochs: int) -> list[str]:
    options = {"code_size": 30, "hidden": (1000, 500, 250)}
    results = {}
    for label, name, pretrain in (("greedy pretraining, then fine-tuning", "stacked", pretrain_epochs), ("random initialisation", "ae", 0)):
        model = build(name, options)
        began = time.perf_counter()
        aekit.fit(model, train, epochs=epochs, val_fraction=0, pretrain_epochs=pretrain, progress=False)
        results[label] = (test_error(model, test), time.perf_counter() - began)
    lines = [
        f"| 784-1000-500-250-30, {epochs} fine-tuning epoch{'s' if epochs > 1 else ''} | test error | wall time |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {label} ({pretrain_epochs} pretraining epoch{'s' if pretrain_epochs > 1 else ''} per layer) | {e:.2f} | {s:.0f} s |" if "greedy" in label else f"| {label} | {e:.2f} | {s:.0f} s |" for label, (e, s) in results.items()]
    return lines


def vae_likelihood(train: torch.Tensor, test: torch.Tensor, epochs: int, k: int, schedule: str = "constant") -> list[str]:
    aekit.seed_everything(0)
    model = aekit.get_model("vae", input_shape=(784,), code_size=50, hidden=(200, 200), activation="tanh")
    began = time.perf_counter()
    aekit.fit(model, train, epochs=epochs, batch_size=100, lr=1e-3, schedule=schedule, val_fraction=0, binarize=True, progress=False)
    seconds = time.perf_counter() - began
    torch.manual_seed(123)
    binary_test = torch.bernoulli(test)  # one fixed stochastic binarisation of the test set
    model.eval()
    with torch.no_grad():
        elbo = torch.cat([model.elbo(binary_test[i : i + 500], samples=10) for i in range(0, len(test), 500)]).mean().item()
        began_ll = time.perf_counter()
        ll = torch.cat([model.log_likelihood(binary_test[i : i + 100], k=k) for i in range(0, len(test), 100)]).mean().item()
        ll_seconds = time.perf_counter() - began_ll
    return [
        "| 784-200-200-50 VAE, dynamically binarised MNIST | nats |",
        "| --- | --- |",
        f"| test ELBO (10 samples per image) | {elbo:.2f} |",
        f"| test log-likelihood, importance-weighted, k = {k} | {ll:.2f} |",
        "| Burda et al. 2016, VAE, k = 5000 (published, 3,280 epochs) | -86.76 |",
        "| Burda et al. 2016, IWAE, k = 50 (published) | -84.78 |",
        "",
        f"Trained {epochs} epoch{'s' if epochs > 1 else ''} (batch 100, Adam 1e-3 {schedule}, tanh) in {seconds:.0f} s; the k = {k} estimate took {ll_seconds:.0f} s.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 training images, 1 epoch, k = 100")
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    args = parser.parse_args()
    train, test = mnist(args.data_dir)
    if args.quick:
        train, test = train[:5000], test[:2000]
    epochs, k = (1, 100) if args.quick else (3, 1000)

    began = time.perf_counter()
    lines = [
        "# The model zoo on MNIST",
        "",
        f"Every variant trained for {epochs} epoch{'s' if epochs > 1 else ''} on {len(train):,} MNIST images (batch 128, Adam 1e-3 unless noted), "
        f"tested on {len(test):,}: squared error summed over pixels, mean over test images (VAEs decode the posterior mean). "
        "MLP variants use 784-512-256-32; conv variants two blocks of 32 and 64 channels and a 32-d code. "
        "Cost per step: batch 128, forward + backward + optimiser step, median of 5 x 10 steps, relative to the plain `ae` "
        "with the same layers.",
        "",
        *zoo(train, test, epochs),
        "",
        "## Greedy layer-wise pretraining",
        "",
        *stacked_vs_random(train, test, epochs, pretrain_epochs=1),
        "",
        "## VAE likelihood",
        "",
        *vae_likelihood(train.flatten(1), test.flatten(1), 2 * epochs if not args.quick else 1, k),
        "",
        f"Machine: {machine()}. Total wall time {time.perf_counter() - began:.0f} s. "
        f"Command: `python benchmarks/model_zoo.py{' --quick' if args.quick else ''}`",
    ]
    write("model_zoo_quick.md" if args.quick else "model_zoo.md", lines)


if __name__ == "__main__":
    main()
