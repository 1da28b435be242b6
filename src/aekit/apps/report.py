"""One self-contained HTML page about a run: curves, reconstructions, latent map, samples, results."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

from ..checkpoint import atomic_write, load, read_json
from ..runs import RESULTS


def _img(path_or_bytes: Path | bytes, alt: str, element_id: str) -> str:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return f'<img id="{element_id}" alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def training_curves(metrics: Path) -> bytes | None:
    """PNG of every loss column of ``metrics.csv`` against the epoch."""
    import matplotlib.pyplot as plt

    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    columns = [c for c in rows[0] if c.endswith("loss") or c.startswith(("train_", "val_"))]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [int(r["epoch"]) for r in rows]
    drawn: list[list[float]] = []
    for column in columns:
        values = [float(r[column]) for r in rows if r.get(column) not in (None, "")]
        if len(values) == len(epochs) and values not in drawn:  # the only term equals the loss: draw it once
            drawn.append(values)
            ax.plot(epochs, values, label=column, linestyle="--" if column.startswith("val_") else "-")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _shown(value) -> str:
    """A number or value as a person reads it: 4 significant digits, no ``None``, short lists."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value[:8]) + (f", … ({len(value)} in all)" if len(value) > 8 else "")
    return str(value)


def _flat(numbers: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for key, value in numbers.items():
        name = f"{prefix}{key}"
        rows += _flat(value, name + " · ") if isinstance(value, dict) else [(name, value)]
    return rows


def _table(numbers: dict) -> str:
    """The numbers as a two-column table; nested ones (``trustworthiness · pca``) get a row each; paths are left out."""
    rows = [f"<tr><th>{html.escape(key.replace('_', ' '))}</th><td>{html.escape(_shown(value))}</td></tr>" for key, value in _flat(numbers) if key != "wrote"]
    return "<table>" + "".join(rows) + "</table>"


def _call_order(path: Path) -> tuple[str, int]:
    """``embed-10`` after ``embed-9``: results sort by name, then by call number."""
    name, _, rest = path.stem.partition("-")
    number = rest.split("-")[0]
    return name, int(number) if number.isdigit() else 0


def write_report(run: str | Path, out: str | Path, samples: int = 32) -> Path:
    """Write the report of ``run`` to ``out``; images are embedded, so the page stands alone."""
    run = Path(run)
    model = load(run)
    config = read_json(run / "config.json", "")
    sections = [f'<h1 id="title">aekit run: {html.escape(run.name)}</h1>', f'<p id="model">model <code>{html.escape(config["model"])}</code>, options <code>{html.escape(json.dumps(config["options"]))}</code></p>']
    if (run / "metrics.csv").exists() and (curves := training_curves(run / "metrics.csv")):
        sections.append('<h2>Training curves</h2>' + _img(curves, "training curves", "training-curves"))
    if (run / "reconstructions.png").exists():
        sections.append("<h2>Reconstructions</h2>" + _img(run / "reconstructions.png", "inputs above reconstructions", "reconstructions"))
    results = run / RESULTS
    kept = sorted(results.glob("*.json"), key=_call_order) if results.is_dir() else []
    maps = [p.with_suffix(".png") for p in kept if p.stem.startswith("embed-") and p.with_suffix(".png").exists()]
    if maps:  # the latest map; every call's stays in its own section below
        sections.append("<h2>Latent map</h2>" + _img(maps[-1], "latent map", "latent-map"))
    if hasattr(model, "sample") and len(model.input_shape) == 3:
        from ..plotting import image_grid
        from .generate import grid_rows, sample

        buffer_path = run / RESULTS / "samples.png"
        image_grid(grid_rows(sample(model, samples), 8), buffer_path)
        sections.append("<h2>Samples from the prior</h2>" + _img(buffer_path, "samples", "samples"))
    anomaly = [p for p in sorted(results.glob("detect-*-maps.png"), key=_call_order)] if results.is_dir() else []
    if anomaly:
        sections.append("<h2>Anomaly maps</h2>" + _img(anomaly[-1], "most anomalous images, reconstructions and per-pixel error maps", "anomaly-maps"))
    for numbers in kept:
        name = numbers.stem
        block = f'<section class="result" id="result-{html.escape(name)}"><h2>{html.escape(name)}</h2>' + _table(read_json(numbers, ""))
        picture = results / f"{name}.png"
        if picture.exists() and not (maps and picture == maps[-1]):
            block += _img(picture, name, f"figure-{name}")
        sections.append(block + "</section>")
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>aekit report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{max-width:100%;border:1px solid #ddd}"
        "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
        "</style></head><body>" + "\n".join(sections) + "</body></html>"
    )
    atomic_write(Path(out), page)
    return Path(out)
