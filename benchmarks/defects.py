"""Defects in product photographs: the magnetic-tile images (Huang et al. 2018), trained on defect-free tiles only.

Lays the tiles out as MVTec AD does (80% of MT_Free trains; the rest of MT_Free and every defect kind test, with
their masks under ground_truth/), then, for aekit's default for photographs (``draem``) and a plain convolutional
autoencoder (the default for images before it), runs what a user runs:

    aekit train --dataset T/train/good --split all --out RUN [options]
    aekit detect RUN --dataset T/test --normal-class good --masks T/ground_truth --maps-npy -o scores.csv

and reports image-level ROC AUC, pixel-level ROC AUC and PRO per defect kind (each kind against the good test
tiles) and over all, with training and scoring times, beside published numbers (labelled as such), and a picture
of the maps. Results: benchmarks/results/defects.md.

    python benchmarks/defects.py [--data ../shared/data/magnetic-tile] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import roc_auc_score

from aekit.apps.segment import pixel_roc_auc, pro

HERE = Path(__file__).resolve().parent
AEKIT = [sys.executable, "-m", "aekit"]
#: Published image-level ROC AUC on these tiles (other protocols; for orientation only).
PUBLISHED = [
    ("GANomaly (Akcay et al. 2018), as reported by Rudolph et al. 2021", "76.6", "-"),
    ("DifferNet (Rudolph et al. 2021; ImageNet-pretrained features)", "97.7", "-"),
]


def layout(raw: Path, root: Path) -> None:
    """The acceptance check's layout: the same 80/20 permutation of MT_Free (seed 0)."""
    for d in ("train/good", "test/good"):
        (root / d).mkdir(parents=True)
    free = sorted(glob.glob(f"{raw}/MT_Free/Imgs/*.jpg"))
    order = np.random.default_rng(0).permutation(len(free))
    for i, k in enumerate(order):
        shutil.copy(free[k], root / ("test" if i < len(free) // 5 else "train") / "good")
    for kind_dir in sorted(glob.glob(f"{raw}/MT_*")):
        kind = os.path.basename(kind_dir)[3:].lower()
        if kind == "free":
            continue
        (root / "test" / kind).mkdir()
        (root / "ground_truth" / kind).mkdir(parents=True)
        for f in sorted(glob.glob(f"{kind_dir}/Imgs/*.jpg")):
            stem = Path(f).stem
            shutil.copy(f, root / "test" / kind)
            shutil.copy(f"{kind_dir}/Imgs/{stem}.png", root / "ground_truth" / kind / f"{stem}_mask.png")


def run(root: Path, name: str, options: list[str]) -> dict:
    """Train and detect with the CLI; per-kind measures from scores.csv and the written maps."""
    out = root / name
    start = time.perf_counter()
    subprocess.run([*AEKIT, "train", "--dataset", str(root / "train/good"), "--split", "all", "--out", str(out), "--no-progress", *options], check=True)
    trained = time.perf_counter()
    done = subprocess.run(
        [*AEKIT, "detect", str(out), "--dataset", str(root / "test"), "--normal-class", "good", "--masks", str(root / "ground_truth"),
         "--maps-npy", "-o", str(root / f"{name}.csv")], check=True, capture_output=True, text=True,
    )
    scored = time.perf_counter()
    said = json.loads(done.stdout)
    maps_dir = Path(next(p for p in said["wrote"] if p.endswith("-maps")))
    scores = pd.read_csv(root / f"{name}.csv")
    kinds = scores["id"].str.split("/").str[0]
    maps, masks = {}, {}
    for i in scores["id"]:
        maps[i] = np.load(maps_dir / Path(i).with_suffix(".npy"))
        mask = root / "ground_truth" / Path(i).parent / f"{Path(i).stem}_mask.png"
        masks[i] = np.asarray(Image.open(mask).convert("L")) > 127 if mask.exists() else np.zeros(maps[i].shape, bool)
    rows = {}
    for kind in [k for k in sorted(kinds.unique()) if k != "good"] + ["all"]:
        picked = scores[(kinds == kind) | (kinds == "good")] if kind != "all" else scores
        labels = (picked["id"].str.split("/").str[0] != "good").to_numpy()
        ids = list(picked["id"])
        rows[kind] = {
            "image_roc_auc": roc_auc_score(labels, picked["score"]),
            "pixel_roc_auc": pixel_roc_auc([maps[i] for i in ids], [masks[i] for i in ids]),
            "pro": pro([maps[i] for i in ids], [masks[i] for i in ids]),
            "images": int(labels.sum()),
        }
    assert abs(rows["all"]["pixel_roc_auc"] - said["pixel_roc_auc"]) < 1e-9  # the CLI's own number
    return {"rows": rows, "train_s": trained - start, "detect_s": scored - trained, "maps": maps_dir, "flagged": said["flagged"], "n_train": len(os.listdir(root / "train/good"))}


def picture(result: dict, scores: pd.DataFrame, path: Path, per_kind: int = 3, side: int = 224) -> None:
    """A grid of overlays, a row per kind (good last): its ``per_kind`` highest-scoring images."""
    kinds = scores["id"].str.split("/").str[0]
    rows = [k for k in sorted(kinds.unique()) if k != "good"] + ["good"]
    grid = Image.new("RGB", (side * per_kind, side * len(rows)), "white")
    for r, kind in enumerate(rows):
        top = scores[kinds == kind].sort_values("score", ascending=False)["id"][:per_kind]
        for c, i in enumerate(top):
            grid.paste(Image.open(result["maps"] / Path(i).with_suffix(".png")).convert("RGB").resize((side, side)), (side * c, side * r))
    grid.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/magnetic-tile"))
    parser.add_argument("--quick", action="store_true", help="a few epochs each: checks the script, not the numbers")
    parser.add_argument("--out", default=str(HERE / "results/defects.md"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="defects-"))
    layout(Path(args.data), root)
    epochs = ["--epochs", "2"] if args.quick else []
    methods = {
        "aekit default (draem)": ("draem", epochs),
        "plain conv autoencoder, 128x128": ("conv", ["--model", "conv", "--image-size", "128", *(epochs or ["--epochs", "30"])]),
    }
    results = {label: run(root, name, options) for label, (name, options) in methods.items()}
    figure = Path(args.out).with_name("defects_maps.png")
    picture(results["aekit default (draem)"], pd.read_csv(root / "draem.csv"), figure)
    kinds = list(next(iter(results.values()))["rows"])
    lines = [
        "# Defects in product photographs: magnetic tiles",
        "",
        f"`python benchmarks/defects.py{' --quick' if args.quick else ''}`, {time.strftime('%Y-%m-%d')}, 2-core CPU (no GPU). "
        f"Trained on {results['aekit default (draem)']['n_train']} defect-free tiles (80% of MT_Free); tested on the other 20% and every "
        "defect kind, each kind against the good test tiles. Image ROC AUC: the image's score; pixel ROC AUC: every pixel's map "
        "value against the hand-drawn masks, in each image's own grid; PRO: per-region overlap up to a false-positive rate of 0.3 "
        "(Bergmann et al.). Times: `aekit train` and `aekit detect` as a user runs them (detect writes every overlay).",
        "",
        "| method | kind | defect images | image ROC AUC | pixel ROC AUC | PRO |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, result in results.items():
        for kind in kinds:
            r = result["rows"][kind]
            lines.append(f"| {label} | {kind} | {r['images']} | {r['image_roc_auc']:.3f} | {r['pixel_roc_auc']:.3f} | {r['pro']:.3f} |")
    lines += ["", "| method | train (s) | detect (s) | flagged at a 5% false-alarm rate |", "| --- | --- | --- | --- |"]
    for label, result in results.items():
        lines.append(f"| {label} | {result['train_s']:.0f} | {result['detect_s']:.0f} | {result['flagged']} |")
    lines += ["", "Published image-level ROC AUC on the magnetic tiles (their own splits; not run here):", "", "| method | image ROC AUC | pixel ROC AUC |", "| --- | --- | --- |"]
    lines += [f"| {m} | {a} | {b} |" for m, a, b in PUBLISHED]
    lines += ["", f"![maps](./{figure.name})", "", "Overlays of aekit's default, a row per kind (blowhole, break, crack, good), its three highest-scoring test images: red = probability of a defect; green = the hand-drawn mask; yellow = the regions flagged at the run's conformal threshold (5% false alarms per good image)."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
