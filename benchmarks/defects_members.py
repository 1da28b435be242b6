"""Defects: how much one draem network's results vary from seed to seed, and what averaging two networks' maps gives.

On the magnetic tiles laid out as benchmarks/defects.py lays them out, trains aekit's default for photographs with
``members`` networks (1, then 2) for each seed, as a user would (``aekit train`` + ``aekit detect --masks``), and
reports per run and per member count image ROC AUC, pixel ROC AUC and PRO, with times. Results:
benchmarks/results/defects_members.md.

    python benchmarks/defects_members.py [--data ../shared/data/magnetic-tile] [--seeds 0,1,2] [--members 1,2] [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from defects import HERE, layout, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared/data/magnetic-tile"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--members", default="1,2")
    parser.add_argument("--device", default=None, help="e.g. cuda (the default: aekit's choice)")
    parser.add_argument("--quick", action="store_true", help="two epochs each: checks the script, not the numbers")
    parser.add_argument("--out", default=str(HERE / "results/defects_members.md"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="defects-members-"))
    layout(Path(args.data), root)
    extra = (["--epochs", "2"] if args.quick else []) + (["--device", args.device] if args.device else [])
    results = {}
    for members in [int(m) for m in args.members.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            name = f"m{members}s{seed}"
            results[members, seed] = run(root, name, ["--option", f"members={members}", "--seed", str(seed), *extra])
            r = results[members, seed]["rows"]["all"]
            print(f"members {members} seed {seed}: image {r['image_roc_auc']:.3f} pixel {r['pixel_roc_auc']:.3f} pro {r['pro']:.3f}", flush=True)
    where = args.device or ("a CUDA GPU" if torch.cuda.is_available() else f"the CPU ({torch.get_num_threads()} threads)")
    lines = [
        "# Defects: one network or two, seed by seed",
        "",
        f"`python benchmarks/defects_members.py{' --quick' if args.quick else ''} --seeds {args.seeds} --members {args.members}"
        f"{' --device ' + args.device if args.device else ''}`, {time.strftime('%Y-%m-%d')}, on {where}. The magnetic tiles as in "
        "[defects.md](defects.md) (all defect kinds against the good test tiles); aekit's default recipe but for `members` and `--seed`.",
        "",
        "| members | seed | image ROC AUC | pixel ROC AUC | PRO | blowhole / break / crack image ROC AUC | train (s) | detect (s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (members, seed), result in results.items():
        r = result["rows"]
        kinds = " / ".join(f"{r[k]['image_roc_auc']:.3f}" for k in r if k != "all")
        lines.append(f"| {members} | {seed} | {r['all']['image_roc_auc']:.3f} | {r['all']['pixel_roc_auc']:.3f} | {r['all']['pro']:.3f} | {kinds} | {result['train_s']:.0f} | {result['detect_s']:.0f} |")
    lines += ["", "| members | image ROC AUC: mean (min–max) | pixel ROC AUC: mean (min–max) | PRO: mean (min–max) |", "| --- | --- | --- | --- |"]
    for members in sorted({m for m, _ in results}):
        cells = []
        for measure in ("image_roc_auc", "pixel_roc_auc", "pro"):
            values = np.array([result["rows"]["all"][measure] for (m, _), result in results.items() if m == members])
            cells.append(f"{values.mean():.3f} ({values.min():.3f}–{values.max():.3f})")
        lines.append(f"| {members} | " + " | ".join(cells) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
