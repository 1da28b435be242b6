"""What a run folder records about its data, and where applications leave their results."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write, read_json
from .data import Dataset, Scaling, load_dataset
from .data.categories import check_categories, parses_as_number
from .data.files import table_columns
from .data.stream import StreamedDataset, open_stream
from .errors import CheckpointError, DataError
from .runfiles import CONFIG, DATA, RESULTS
from .validation import finite_number



IN_MODEL = "in-model"  # data.json's scaling when the model scales raw rows itself (input_scaling)


TEXT_FIELDS = ("dataset", "path", "split", "data_dir", "label_column", "id_column", "image_size", "text_column")
LIST_FIELDS = ("ignore_columns", "columns")


def read_spec(run: Path) -> dict[str, Any]:
    """The run's ``data.json`` ({} when there is none), every field checked: a file edited by hand into
    another shape is refused with one line, instead of failing deep inside a loader."""
    if not (run / DATA).exists():
        return {}
    spec = read_json(run / DATA, "")
    problem = _spec_problem(spec)
    if problem:
        raise CheckpointError(f"{run / DATA} is not what aekit wrote ({problem}); restore it, or train a new run.")
    return spec


def _spec_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return f"expected an object, found {type(spec).__name__}"
    for key in TEXT_FIELDS:
        if spec.get(key) is not None and not isinstance(spec[key], str):
            return f"{key} must be text"
    for key in LIST_FIELDS:
        if spec.get(key) is not None and not (isinstance(spec[key], list) and all(isinstance(v, str) for v in spec[key])):
            return f"{key} must be a list of names"
    if not isinstance(spec.get("stream", False), bool):
        return "stream must be true or false"
    mark = spec.get("fingerprint")
    if mark is not None and not (isinstance(mark, dict) and isinstance(mark.get("bytes"), int) and isinstance(mark.get("sha256"), str)):
        return "fingerprint must hold bytes and sha256"
    if spec.get("categories") is not None:
        try:
            check_categories(spec["categories"])
        except DataError as exc:
            return str(exc).rstrip(".")
    scaling = spec.get("scaling")
    if scaling not in (None, IN_MODEL) and not (
        isinstance(scaling, dict) and all(isinstance(scaling.get(k), list) and all(finite_number(v) for v in scaling[k]) for k in ("low", "high"))
        and len(scaling["low"]) == len(scaling["high"])
    ):
        return "scaling must hold lists low and high of numbers"
    rows = spec.get("rows")
    if rows is not None:
        if not isinstance(rows, dict) or set(rows) - {"calibration_fraction", "members", "member_rows", "calibration_rows"}:
            return "rows must be an object of calibration_fraction, members, member_rows and calibration_rows"
        fraction = rows.get("calibration_fraction")
        if not (finite_number(fraction) and 0 <= fraction < 1):
            return "rows.calibration_fraction must be a number in [0, 1)"
        for key in ("members", "member_rows", "calibration_rows"):
            if rows.get(key) is not None and not (isinstance(rows[key], int) and not isinstance(rows[key], bool) and rows[key] >= 1):
                return f"rows.{key} must be a positive integer"
    return None


def run_data(
    run: Path, dataset: str | None, split: str | None, data_dir: str | None, default_split: str, *, stream: bool = False,
    id_column: str | None = None, ignore_columns: list[str] | None = None,
) -> Dataset | StreamedDataset:
    """Load ``dataset`` (or the run's own data set) the way the run's training data was loaded.

    With ``stream``, a run trained on streamed data gets its data streamed again
    (to resume training); other commands load it into memory. A data set other
    than the run's own is read whole (``split="all"``) unless a split is named;
    a CSV's id column defaults to the run's, and its ignored columns are the
    run's (those the new file has) and ``ignore_columns``. New rows whose columns
    differ from the training data's are refused, naming the difference.
    """
    spec = read_spec(run)
    name = dataset or spec.get("path") or spec.get("dataset")  # the run's own file wherever the command runs
    if name is None:
        raise DataError(f"{run} does not record its data set; name one with --dataset.")
    own = dataset is None or dataset == spec.get("dataset") or (spec.get("path") is not None and Path(dataset).expanduser().resolve() == Path(spec["path"]))
    if dataset is None and spec.get("fingerprint") is not None and fingerprint(Path(name), bool(spec.get("stream"))) != spec["fingerprint"]:
        raise DataError(
            f"{name} has changed since {run} was trained on it (its size or content differ); restore it, or name it "
            "with --dataset to use it as new data (a run cannot resume on changed data: train a new run)."
        )
    recorded = spec.get("scaling")
    scaling = None if recorded == IN_MODEL else Scaling.from_json(recorded) if recorded else "minmax"
    if stream and spec.get("stream") and dataset is None:
        return open_stream(name, split=split or default_split, scaling=scaling)
    table = str(name).lower().endswith((".csv", ".parquet"))
    vocabulary, bag_length = document_input(run)
    shape = model_input_shape(run)
    data = load_dataset(
        name, split=split or (default_split if own else "all"), data_dir=data_dir or spec.get("data_dir"), scaling=scaling,
        label_column=spec.get("label_column"),
        id_column=(id_column or spec.get("id_column")) if table else None,
        ignore_columns=_ignored(Path(str(name)), spec.get("ignore_columns"), ignore_columns) if table else None,
        image_size=spec.get("image_size"),
        text_column=spec.get("text_column") if table else None, vocabulary=vocabulary, bag_length=bag_length,
        channels=shape[0] if shape is not None and len(shape) == 3 and shape[0] in (1, 3) else None,  # images: the model's channels
        categories=(spec.get("categories") or {}) if table else None,  # a table's text columns encoded as in training
    )
    check_columns(spec.get("columns"), data.columns, name)
    return data


def data_path(dataset: str, stream: bool = False) -> tuple[str | None, dict[str, Any] | None]:
    """The resolved path of a data file or folder and its fingerprint, for the run's record; (None, None) for a
    named set (mnist, odds:cardio, ...)."""
    path = Path(str(dataset)).expanduser()
    if not path.exists():
        return None, None
    return str(path.resolve()), fingerprint(path.resolve(), stream)


def fingerprint(path: Path, stream: bool) -> dict[str, Any] | None:
    """Bytes and SHA-256 of a data file, or of a folder's files (their paths under it, sizes and contents);
    streamed data (often larger than memory) by paths and sizes alone. None when ``path`` is gone."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest, size = hashlib.sha256(), 0
    for file in files:
        size += file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix() if file != path else ''}\0{file.stat().st_size}\0".encode())
        if not stream:
            with open(file, "rb") as f:
                while chunk := f.read(2**20):
                    digest.update(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _ignored(path: Path, recorded: list[str] | None, given: list[str] | None) -> list[str] | None:
    """The columns to drop from a table: the ones the user names now, and those of the run's that the file has
    (new data need not carry a column that training ignored)."""
    present = table_columns(path) if recorded and path.is_file() else []
    names = [*(given or []), *(c for c in recorded or [] if c in present)]
    return list(dict.fromkeys(names)) or None


def _options(run: Path) -> dict[str, Any]:
    config = read_json(run / CONFIG, "") if (run / CONFIG).is_file() else {}
    options = config.get("options", {}) if isinstance(config, dict) else {}
    return options if isinstance(options, dict) else {}


def model_input_shape(run: Path) -> list[int] | None:
    """The shape of one sample the run's model reads (from its config), or None when it does not say."""
    shape = _options(run).get("input_shape")
    return shape if isinstance(shape, list) and all(isinstance(v, int) for v in shape) else None


def document_input(run: Path) -> tuple[list[str] | None, int | None]:
    """A document model's vocabulary and bag length (from its config), so new documents are counted alike; (None, None) otherwise."""
    options = _options(run)
    words, shape = options.get("vocabulary"), options.get("input_shape")
    if options.get("architecture") != "bow" or not isinstance(words, list) or not isinstance(shape, list) or len(shape) != 2:
        return None, None
    return words, int(shape[1])


def warn_duplicate_ids(data: Dataset) -> None:
    """Warn on stderr when ids repeat: outputs by id would be ambiguous, but the rows are still used."""
    if data.ids is not None and len(set(data.ids)) < len(data.ids):
        print(f"aekit: warning: {len(data.ids) - len(set(data.ids))} duplicate id(s) in {data.name}", file=sys.stderr)


def check_columns(trained: list[str] | None, given: list[str] | None, name: str) -> None:
    """Refuse rows whose feature columns are not the training data's, naming what differs."""
    if not trained or not given or list(trained) == list(given):
        return
    missing = [c for c in trained if c not in given]
    extra = [c for c in given if c not in trained]
    if missing or extra:
        parts = [f"missing {missing}" if missing else "", f"not in the training data {extra}" if extra else ""]
        raise DataError(f"{name}'s columns differ from the training data's: {'; '.join(p for p in parts if p)}; use the same columns (--ignore-columns drops extra ones).")
    raise DataError(f"{name} has the training data's columns in another order; reorder them as {list(trained)}.")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula (OWASP's CSV injection)


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would read as a formula, prefixed with ``'`` so it stays text; numbers such as
    ``-5`` and other cells as they are."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS) or parses_as_number(value):
        return value
    return "'" + value


def write_csv(path: Path, table) -> None:
    """Write a pandas DataFrame as CSV (atomically), every text cell and column name made spreadsheet-safe;
    nothing for ``os.devnull`` (the user's way to discard it)."""
    if Path(path) == Path(os.devnull):
        return
    table = table.rename(columns=spreadsheet_safe)
    for column in table.columns:
        if table[column].dtype.kind not in "biufcmM":  # text, in whichever dtype pandas keeps it
            table[column] = table[column].map(spreadsheet_safe)
    atomic_write(path, table.to_csv(index=False))


_reserved: list[Path] = []  # result files this process claimed and has not written yet


def result_stem(run: Path, name: str) -> str:
    """The name of this call's result, ``NAME-K`` with K one more than the last kept: results keep every call.

    In a run folder, the name is claimed at once by creating ``results/NAME-K.json`` (empty until the numbers
    are saved), so that two commands running at once never write the same files; a call that fails gives its
    claim back (:func:`release_unwritten`)."""
    taken = [int(m.group(1)) for p in (run / RESULTS).glob(f"{name}-*") if (m := re.fullmatch(rf"{re.escape(name)}-(\d+)(-.*)?", p.stem))]
    k = max(taken, default=0) + 1
    if not run.is_dir():
        return f"{name}-{k}"
    (run / RESULTS).mkdir(exist_ok=True)
    while True:
        claim = run / RESULTS / f"{name}-{k}.json"
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), 0o644))
        except FileExistsError:
            k += 1
            continue
        except OSError as exc:
            raise CheckpointError(f"cannot write in {run / RESULTS} ({exc.strerror or exc}); the run folder must be writable.") from None
        _reserved.append(claim)
        return f"{name}-{k}"


def release_unwritten() -> None:
    """Remove the results this process claimed but never wrote (its command failed)."""
    while _reserved:
        claim = _reserved.pop()
        if claim.is_file() and not claim.is_symlink() and claim.stat().st_size == 0:
            claim.unlink(missing_ok=True)


def result_output(run: Path, stem: str, output: str | None, suffix: str = ".png") -> Path:
    """Where a command writes: the ``-o`` the user gave, else ``RUN/results/STEM.png``."""
    return Path(output) if output else run / RESULTS / f"{stem}{suffix}"


def save_result(run: Path, stem: str, numbers: dict[str, Any], figure: Path | None = None) -> list[Path]:
    """Keep an application's numbers (and picture) in the run folder as ``results/STEM.json`` (``.png``),
    where ``aekit report`` finds them; returns the files written there."""
    if not run.is_dir():
        return []
    written = [run / RESULTS / f"{stem}.json"]
    atomic_write(written[0], json.dumps(numbers, indent=2))
    if written[0] in _reserved:
        _reserved.remove(written[0])
    if figure is not None and figure.exists():
        kept = run / RESULTS / f"{stem}{figure.suffix}"
        if figure.resolve() != kept.resolve():
            atomic_write(kept, figure.read_bytes())  # never through a link at the destination
        written.append(kept)
    return written
