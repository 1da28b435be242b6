"""One self-contained HTML page about a run: curves, reconstructions, latent map, samples, results."""

from __future__ import annotations

import base64
import csv
import html
import io
from pathlib import Path

from ..checkpoint import atomic_write, load, read_json
from ..errors import CheckpointError
from ..fileio import read_bounded
from ..runs import RESULTS
from ..runfiles import CALIBRATION, CONFIG, METRICS, RECONSTRUCTIONS, TRAINER


PNG = b"\x89PNG\r\n\x1a\n"


def _img(path_or_bytes: Path | bytes, alt: str, element_id: str) -> str:
    data = read_bounded(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    if not data.startswith(PNG):
        raise CheckpointError(f"{path_or_bytes} is not a PNG picture; aekit wrote it as one: remove it, or draw it again.")
    return f'<img id="{element_id}" alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def training_curves(rows: list[dict[str, str]]) -> bytes | None:
    """PNG of every loss column of ``metrics.csv`` (its rows) against the epoch."""
    import matplotlib.pyplot as plt

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


def _metrics(path: Path) -> list[dict[str, str]]:
    """The rows of ``metrics.csv``, each checked: an epoch number and numbers (or blanks) in every column."""
    if not path.exists() and not path.is_symlink():
        return []
    try:
        rows = list(csv.DictReader(io.StringIO(read_bounded(path).decode())))
        for row in rows:
            int(row["epoch"])
            for key, value in row.items():
                if key is None or value is None:
                    raise ValueError("a row of another width than the header")
                if value:
                    float(value)  # a number (NaN and inf included: a diverged epoch), or blank
        return rows
    except (UnicodeDecodeError, csv.Error, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not what aekit wrote (one row of numbers per epoch; {type(exc).__name__}: {str(exc)[:60]}); restore it, or remove it.") from None


def _number(text: str | None):
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return text


def run_summary(run: Path, config: dict, records: list[dict[str, str]]) -> str:
    """The data set, the model's options, the training settings and the evaluation numbers, as tables."""
    from ..runs import read_spec

    spec = read_spec(run)
    data = {key: spec.get(key) for key in ("dataset", "split", "label_column", "id_column", "ignore_columns", "image_size") if spec.get(key) is not None}
    if spec.get("columns"):
        data["feature columns"] = spec["columns"]
    scaling = spec.get("scaling")
    data["scaling"] = "inside the model (input_scaling)" if scaling == "in-model" else "min-max, from the training rows" if isinstance(scaling, dict) else "none: values in [0, 1]"
    if (run / CALIBRATION).exists():
        saved = read_json(run / CALIBRATION, "")
        if not isinstance(saved, dict) or not isinstance(saved.get("rows"), int) or isinstance(saved.get("rows"), bool):
            raise CheckpointError(f"{run / CALIBRATION} is not what aekit wrote (an object with the number of rows and their scores); restore it, or remove it.")
        data["rows held out to calibrate thresholds"] = saved["rows"]
    settings = read_json(run / TRAINER, "") if (run / TRAINER).exists() else {}
    settings = {k: v for k, v in settings.items() if k not in ("progress", "tune_allocator")} if isinstance(settings, dict) else {}
    numbers: dict = {}
    if records:
        best = min(records, key=lambda r: _number(r.get("val_loss") or r.get("train_loss")) or float("inf"))
        numbers[f"best epoch ({best['epoch']} of {records[-1]['epoch']})"] = {k: _number(v) for k, v in best.items() if k not in ("epoch", "lr", "seconds")}
        numbers["training time"] = f"{sum(_number(r.get('seconds')) or 0 for r in records):.1f} s"
    parts = [
        "<h2>Run</h2>",
        '<div id="run-data"><h3>Data set</h3>' + _table(data) + "</div>",
        f'<div id="model"><h3>Model <code>{html.escape(config["model"])}</code></h3>' + _table(config["options"]) + "</div>",
        '<div id="settings"><h3>Training settings</h3>' + _table(settings) + "</div>" if settings else "",
        '<div id="evaluation"><h3>Evaluation</h3>' + _table(numbers) + "</div>" if numbers else "",
    ]
    return "".join(parts)


def write_report(run: str | Path, out: str | Path, samples: int = 32) -> Path:
    """Write the report of ``run`` to ``out``; images are embedded, so the page stands alone."""
    run = Path(run)
    model = load(run)
    config = read_json(run / CONFIG, "")
    records = _metrics(run / METRICS)  # read once: the summary's numbers and the curves
    sections = [f'<h1 id="title">aekit run: {html.escape(run.name)}</h1>', run_summary(run, config, records)]
    if curves := training_curves(records):
        sections.append('<h2>Training curves</h2>' + _img(curves, "training curves", "training-curves"))
    if (run / RECONSTRUCTIONS).exists():
        sections.append("<h2>Reconstructions</h2>" + _img(run / RECONSTRUCTIONS, "inputs above reconstructions", "reconstructions"))
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
        if numbers.is_file() and numbers.stat().st_size == 0:  # claimed by a call still running (aekit.runs.result_stem)
            continue
        name, found = numbers.stem, read_json(numbers, "")
        if not isinstance(found, dict):
            raise CheckpointError(f"{numbers} is not what aekit wrote (an object of numbers); restore it, or remove it.")
        block = f'<section class="result" id="result-{html.escape(name)}"><h2>{html.escape(name)}</h2>' + _table(found)
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
