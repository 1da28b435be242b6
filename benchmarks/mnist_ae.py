"""Deep autoencoder on MNIST (784-1000-500-250-30) against PCA-30, the foundation's reference job.

Metric: squared error summed over the 784 pixels, averaged over the 10,000
test images (pixels in [0, 1]), as in Hinton & Salakhutdinov (2006).

    python benchmarks/mnist_ae.py [--quick] [--epochs 150] [--schedule cosine] [--data-dir ../shared/data]

The recipe is fixed in advance (no tuning on the test split): Adam 1e-3 with
cosine decay to 0, batch 128, no validation hold-out, the last epoch's weights.

Writes benchmarks/results/mnist_ae.md (or mnist_ae_quick.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA

import aekit
from common import DATA_DIR, machine, test_error, write

REFERENCE = {"autoencoder (Hinton & Salakhutdinov 2006)": 3.00, "logistic PCA (ibid.)": 8.01, "PCA (ibid.)": 13.87}


def pca_error(x_hat: np.ndarray, x: np.ndarray) -> float:
    return float(((x_hat - x) ** 2).sum(1).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 epoch on 10,000 training images")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--schedule", default="cosine", help="learning-rate schedule: cosine (default) or constant")
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs

    train = aekit.load_dataset("mnist", split="train", data_dir=args.data_dir)
    test = aekit.load_dataset("mnist", split="test", data_dir=args.data_dir)
    x_train = train.x[:10_000] if args.quick else train.x
    flat_train, flat_test = x_train.flatten(1).numpy(), test.x.flatten(1).numpy()

    began = time.perf_counter()
    pca = PCA(30, random_state=0).fit(flat_train)
    pca_err = pca_error(pca.inverse_transform(pca.transform(flat_test)), flat_test)
    pca_seconds = time.perf_counter() - began

    aekit.seed_everything(0)
    model = aekit.get_model("ae", input_shape=(784,), code_size=30, hidden=(1000, 500, 250))
    began = time.perf_counter()
    history = aekit.fit(model, x_train.flatten(1), epochs=epochs, batch_size=128, lr=1e-3, schedule=args.schedule, val_fraction=0.0, restore_best=False, seed=0)
    seconds = time.perf_counter() - began
    ae_error = test_error(model, test.x.flatten(1))

    name = "mnist_ae_quick.md" if args.quick else "mnist_ae.md"
    lines = [
        "# Deep autoencoder on MNIST (784-1000-500-250-30)",
        "",
        f"Test error: squared error summed over pixels, mean over the 10,000 test images. Trained on {len(x_train):,} images.",
        "",
        "| method | test error | training budget | wall time |",
        "| --- | --- | --- | --- |",
        f"| aekit `ae` (ReLU, linear code, sigmoid output, MSE, Adam 1e-3 {args.schedule}, batch 128) | **{ae_error:.2f}** | {epochs} epochs | {seconds:.0f} s |",
        f"| PCA, 30 components (scikit-learn, same split, live) | {pca_err:.2f} | - | {pca_seconds:.1f} s |",
        *(f"| {k} (published) | {v:.2f} | - | - |" for k, v in REFERENCE.items()),
        "",
        f"Final training loss {history[-1]['train_loss']:.3f}. Machine: {machine()}.",
        "",
        "Command: `python benchmarks/mnist_ae.py" + (" --quick" if args.quick else f" --epochs {epochs} --schedule {args.schedule}") + "`",
    ]
    write(name, lines)


if __name__ == "__main__":
    main()
