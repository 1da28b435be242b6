"""What a run folder records about its data, and where applications leave their results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write, read_json
from .data import Dataset, Scaling, load_dataset
from .data.stream import StreamedDataset, open_stream
from .errors import DataError

DATA = "data.json"  # how the run's data was loaded, so later commands can load it the same way
RESULTS = "results"  # numbers (JSON) and pictures (PNG) of the application commands, for the report


def run_data(run: Path, dataset: str | None, split: str | None, data_dir: str | None, default_split: str, *, stream: bool = False) -> Dataset | StreamedDataset:
    """Load ``dataset`` (or the run's own data set) the way the run's training data was loaded.

    With ``stream``, a run trained on streamed data gets its data streamed again
    (to resume training); other commands load it into memory.
    """
    spec = read_json(run / DATA, "") if (run / DATA).exists() else {}
    name = dataset or spec.get("dataset")
    if name is None:
        raise DataError(f"{run} does not record its data set; name one with --dataset.")
    scaling = Scaling.from_json(spec["scaling"]) if spec.get("scaling") else "minmax"
    if stream and spec.get("stream") and dataset is None:
        return open_stream(name, split=split or default_split, scaling=scaling)
    return load_dataset(name, split=split or default_split, data_dir=data_dir or spec.get("data_dir"), scaling=scaling, label_column=spec.get("label_column"))


def save_result(run: Path, name: str, numbers: dict[str, Any], figure: Path | None = None) -> None:
    """Keep an application's numbers (and picture) in the run folder, where ``aekit report`` finds them."""
    if not run.is_dir():
        return
    atomic_write(run / RESULTS / f"{name}.json", json.dumps(numbers, indent=2))
    if figure is not None and figure.exists() and figure.resolve() != (run / RESULTS / f"{name}.png").resolve():
        shutil.copyfile(figure, run / RESULTS / f"{name}.png")
