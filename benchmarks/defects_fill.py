"""Defects: what filling the map in (``draem``'s ``fill``, a grey-level closing) does, on trained runs.

``fill`` changes only how a trained ``draem`` run draws its map, so this script needs no training: it loads runs
trained on the magnetic tiles as benchmarks/defects.py lays them out (``aekit train --dataset T/train/good --split
all``, any seed or recipe), and scores the test tiles with each ``fill`` in turn: image ROC AUC, pixel ROC AUC and
PRO over all defect kinds, and per kind. A last column scores synthetic defects (``synthetic_defects``, seeded) pasted
into the good test tiles, the kind of defect the recipe's defaults are chosen on. Results:
benchmarks/results/defects_fill.md.

    python benchmarks/defects_fill.py T RUN [RUN ...] [--fills 0,0.25,0.45,0.65]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import aekit
from aekit.apps.common import batched
from aekit.apps.segment import find_masks, pixel_roc_auc, pro, read_mask, resize_map
from aekit.data.files import image_size
from aekit.models.defects import synthetic_defects
from defects import HERE


def measures(model, maps: torch.Tensor, sizes, truth, labels: np.ndarray, kinds: np.ndarray) -> dict[str, tuple[float, float, float]]:
    """Over all kinds (image ROC AUC, pixel ROC AUC, PRO), and per kind (image ROC AUC, pixel ROC AUC), of maps at
    the model's size."""
    scores = model.map_score(maps).numpy()
    grids = [resize_map(m, size) for m, size in zip(maps, sizes)]
    out = {"all": (roc_auc_score(labels, scores), pixel_roc_auc(grids, truth), pro(grids, truth))}
    for kind in [k for k in sorted(set(kinds)) if k != "good"]:
        picked = np.flatnonzero((kinds == kind) | (kinds == "good"))
        out[kind] = (roc_auc_score(labels[picked], scores[picked]), pixel_roc_auc([grids[i] for i in picked], [truth[i] for i in picked]))
    return out


def means(overall: dict[float, list[tuple[float, ...]]]) -> list[str]:
    """A table of each fill's means over the runs: (image ROC AUC, pixel ROC AUC, PRO, each kind's pixel ROC AUC,
    synthetic defects' pixel ROC AUC and PRO)."""
    lines = ["", "Means over the runs:", "", "| fill | image ROC AUC | pixel ROC AUC | PRO | pixel ROC AUC per kind | synthetic: pixel ROC AUC / PRO |", "| --- | --- | --- | --- | --- | --- |"]
    for fill, rows in overall.items():
        m = np.mean(rows, axis=0)
        lines.append(f"| {fill:g} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} | {' / '.join(f'{v:.3f}' for v in m[3:-2])} | {m[-2]:.3f} / {m[-1]:.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="the tiles laid out as MVTec AD (benchmarks/defects.py's layout)")
    parser.add_argument("runs", nargs="+", help="draem runs trained on ROOT/train/good")
    parser.add_argument("--fills", default="0,0.25,0.45,0.65")
    parser.add_argument("--out", default=str(HERE / "results/defects_fill.md"))
    args = parser.parse_args()
    root, fills = Path(args.root), [float(f) for f in args.fills.split(",")]
    lines = [
        "# Defects: filling the map in",
        "",
        f"`python benchmarks/defects_fill.py T RUN ... --fills {args.fills}`, {time.strftime('%Y-%m-%d')}, 2-core CPU. The magnetic tiles "
        "as in [defects.md](defects.md); each run trained by `aekit train --dataset T/train/good --split all` (the recipe and seed "
        "named), then its test maps drawn with each `fill` (0: the map as the networks draw it). Image ROC AUC / pixel ROC AUC / "
        "PRO over all kinds, then image / pixel ROC AUC per kind; the last column: pixel ROC AUC / PRO on synthetic defects pasted into the good test tiles.",
        "",
        "| run | fill (pixels) | all kinds | blowhole | break | crack | synthetic defects |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    overall: dict[float, list[tuple[float, ...]]] = {fill: [] for fill in fills}
    ids, sizes, truth, kinds, labels, read = None, None, None, None, None, {}  # the test tiles: masks once, pixels once per size
    for run in args.runs:
        model = aekit.load(run).eval()
        side = model.input_shape[1]
        if side not in read:
            read[side] = aekit.load_dataset(str(root / "test"), split="all", image_size=side)
        data = read[side]
        if ids is None:
            ids = list(data.ids)
            sizes = [image_size(root / "test" / i) for i in ids]
            found = find_masks(root / "ground_truth", root / "test", ids)
            truth = [read_mask(found[i], s, root / "test" / i) if i in found else np.zeros(s, bool) for i, s in zip(ids, sizes)]
            kinds = np.array([i.split("/")[0] for i in ids])
            labels = kinds != "good"
        good = data.x[torch.from_numpy(~labels)]
        with torch.random.fork_rng():
            torch.manual_seed(0)
            pasted, masks = synthetic_defects(good, share=1.0)
        raw, raw_synthetic = (batched(lambda b: model.member_maps(b).mean(1), x, 32) for x in (data.x, pasted))  # the maps unfilled
        masks = [m[0].numpy() > 0 for m in masks]
        for fill in fills:
            model.fill = fill
            with torch.no_grad():
                maps, synthetic = model.fill_map(raw), model.fill_map(raw_synthetic)
            r = measures(model, maps, sizes, truth, labels, kinds)
            cells = [" / ".join(f"{v:.3f}" for v in r[k]) for k in ["all", "blowhole", "break", "crack"] if k in r]
            on_synthetic = (pixel_roc_auc(list(synthetic.numpy()), masks), pro(list(synthetic.numpy()), masks))
            line = f"| {Path(run).name} | {fill:g} ({model.fill_pixels()}) | " + " | ".join(cells) + f" | {on_synthetic[0]:.3f} / {on_synthetic[1]:.3f} |"
            lines.append(line)
            print(line, flush=True)
            overall[fill].append((*r["all"], *[r[k][1] for k in r if k != "all"], *on_synthetic))
    lines += means(overall)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
