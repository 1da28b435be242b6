"""Sample quality of the generative models on MNIST, as the architectures-and-objectives acceptance check measures it.

Each model trains from the command line for the same number of epochs on MNIST's training set (defaults, as
`aekit train --model NAME --epochs 3`); 2,000 samples are compared with 2,000 test images by the Frechet distance
in the hidden layer of a classifier trained here on 20,000 training images (an MLP, as FID uses Inception features),
and by the entropy of the classifier's predicted classes (1 = every class equally often). Two references for the
VQ-VAE: its codes drawn uniformly, and each position's code drawn from its own frequency (the prior of aekit
before the learnt one). Writes results/samples.md.

    python benchmarks/samples.py [--epochs 3] [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import linalg
from sklearn.neural_network import MLPClassifier

import aekit
from common import DATA_DIR, machine, write

RUNS = [  # label, aekit train arguments
    ("VAE (mlp, sized from the images)", ["--model", "vae"]),
    ("VQ-VAE, learnt prior", ["--model", "vqvae"]),
    ("VAE-GAN (conv)", ["--model", "vae-gan", "--architecture", "conv"]),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 epoch")
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    train = aekit.load_dataset("mnist", split="train", data_dir=DATA_DIR)
    test = aekit.load_dataset("mnist", split="test", data_dir=DATA_DIR)
    x, y = np.asarray(train.x[:20000]).reshape(20000, -1), np.asarray(train.y[:20000])
    classifier = MLPClassifier(hidden_layer_sizes=(256,), max_iter=30, random_state=0).fit(x, y)
    real = np.asarray(test.x[:2000]).reshape(2000, -1)

    def features(v: np.ndarray) -> np.ndarray:
        return np.maximum(v @ classifier.coefs_[0] + classifier.intercepts_[0], 0)

    def judge(samples: torch.Tensor) -> tuple[float, float]:
        s = samples.reshape(len(samples), -1).float().clamp(0, 1).numpy()
        fa, fb = features(s), features(real)
        c1, c2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
        fd = float(((fa.mean(0) - fb.mean(0)) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real))
        h = np.bincount(classifier.predict(s), minlength=10) / len(s)
        return fd, float(-(h[h > 0] * np.log(h[h > 0])).sum() / np.log(10))

    torch.manual_seed(0)
    rows = [f"| real test images 2,000-4,000 | {judge(test.x[2000:4000])[0]:.1f} | — | — |"]
    aekit_bin = str(Path(sys.executable).with_name("aekit"))
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in RUNS:
            run = Path(tmp) / label.split()[0].lower()
            began = time.perf_counter()
            subprocess.run([aekit_bin, "train", "--dataset", "mnist", "--data-dir", str(DATA_DIR), "--epochs", str(epochs), "--quiet", "--out", str(run), *extra], check=True)
            seconds = time.perf_counter() - began
            model = aekit.load(run).eval()
            with torch.no_grad():
                torch.manual_seed(0)
                fd, entropy = judge(model.sample(2000))
                rows.append(f"| {label} | {fd:.1f} | {entropy:.2f} | {seconds / 60:.1f} |")
                if "vqvae" in extra:
                    h, w, k = model.position_counts.shape
                    for name, indices in (
                        ("VQ-VAE, codes drawn uniformly", torch.randint(k, (2000, h * w))),
                        ("VQ-VAE, each position from its own frequencies", torch.multinomial(model.position_counts.reshape(h * w, k) + 1e-12, 2000, replacement=True).t()),
                    ):
                        z = model.codebook[indices].reshape(2000, h, w, -1).permute(0, 3, 1, 2)
                        fd, entropy = judge(model.decode(z))
                        rows.append(f"| {name} | {fd:.1f} | {entropy:.2f} | (same model) |")
    write("samples.md", [
        "# Sample quality on MNIST",
        "",
        f"`python benchmarks/samples.py --epochs {epochs}`; {machine()}.",
        f"Each model: `aekit train --dataset mnist --epochs {epochs}` with its defaults, then 2,000 samples against 2,000 test images.",
        "Frechet distance in the hidden layer of an MLP classifier trained on 20,000 training images (lower is closer to real images);",
        "class entropy of the classifier's predictions over the samples (1 = every digit equally often).",
        "",
        "| samples | Frechet distance | class entropy | training minutes |",
        "| --- | --- | --- | --- |",
        *rows,
    ])


if __name__ == "__main__":
    main()
