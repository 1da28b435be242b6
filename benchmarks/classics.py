"""Two classic results on MNIST: the VAE's test likelihood, and a linear autoencoder against PCA.

- VAE 784-200-200-50 (tanh), Bernoulli decoder, dynamically binarised training
  images; test log-likelihood estimated by importance sampling with k = 5000
  samples per test image (Burda et al. 2016: VAE -86.76, IWAE k = 50 -84.78).
- Linear autoencoder with a 30-d code and MSE against PCA-30: the largest
  principal angle between the decoder's column space and the PCA subspace,
  and the ratio of their test errors.

    python benchmarks/classics.py [--quick] [--vae-epochs 100] [--k 5000]

Writes benchmarks/results/classics.md (classics_quick.md with --quick).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

import aekit
from common import DATA_DIR, machine, mnist, test_error, write
from model_zoo import vae_likelihood


def linear_vs_pca(train: torch.Tensor, test: torch.Tensor, epochs: int, code: int = 30) -> list[str]:
    began = time.perf_counter()
    pca = PCA(code, random_state=0).fit(train.numpy())
    pca_seconds = time.perf_counter() - began
    pca_error = float(((pca.inverse_transform(pca.transform(test.numpy())) - test.numpy()) ** 2).sum(1).mean())
    aekit.seed_everything(0)
    model = aekit.get_model("linear", input_shape=(784,), code_size=code)
    began = time.perf_counter()
    aekit.fit(model, train, epochs=epochs, batch_size=128, lr=1e-3, schedule="cosine", val_fraction=0, progress=False)
    seconds = time.perf_counter() - began
    error = test_error(model, test)
    angles = np.degrees(subspace_angles(model.decoder[0].weight.detach().numpy(), pca.components_.T))
    return [
        f"| method ({code}-d code) | test error | largest / median principal angle to PCA | time |",
        "| --- | --- | --- | --- |",
        f"| PCA (scikit-learn, live) | {pca_error:.2f} | - | {pca_seconds:.1f} s |",
        f"| aekit `linear` (MSE, Adam 1e-3 cosine, batch 128, {epochs} epochs) | {error:.2f} ({error / pca_error:.3f}x PCA) | "
        f"{angles.max():.1f}° / {np.median(angles):.2f}° | {seconds:.0f} s |",
        "",
        "A linear autoencoder trained with squared error spans the principal subspace (Baldi & Hornik 1989); "
        "the angles measure how close SGD gets. Where the test error "
        "matches PCA's while an angle remains, the remaining difference lies in directions of little variance.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 training images, 1 epoch, k = 100 on 1,000 test images")
    parser.add_argument("--vae-epochs", type=int, default=100)
    parser.add_argument("--linear-epochs", type=int, default=30)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--data-dir", default=str(DATA_DIR))
    args = parser.parse_args()
    train, test = mnist(args.data_dir, flat=True)
    vae_epochs, linear_epochs, k = args.vae_epochs, args.linear_epochs, args.k
    if args.quick:
        train, test, vae_epochs, linear_epochs, k = train[:5000], test[:1000], 1, 1, 100

    began = time.perf_counter()
    lines = [
        "# Classic results on MNIST",
        "",
        f"{len(train):,} training and {len(test):,} test images.",
        "",
        "## VAE likelihood (Kingma & Welling 2014; Burda et al. 2016)",
        "",
        *vae_likelihood(train, test, vae_epochs, k, schedule="cosine"),
        "",
        "## Linear autoencoder vs PCA",
        "",
        *linear_vs_pca(train, test, linear_epochs),
        "",
        f"Machine: {machine()}. Total wall time {(time.perf_counter() - began) / 60:.1f} min. "
        f"Command: `python benchmarks/classics.py{' --quick' if args.quick else f' --vae-epochs {vae_epochs} --k {k}'}`",
    ]
    write("classics_quick.md" if args.quick else "classics.md", lines)


if __name__ == "__main__":
    main()
