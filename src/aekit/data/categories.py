"""Category columns of a table (``protocol = tcp | udp``): one indicator column per value seen in training.

A column is a category column when most of its cells are not numbers (a
numeric column with a stray word is a mistake, refused naming the cell) and
it has few distinct values (more than 20 and than half the rows: ids or free
text, refused with the flags that drop them).
Its values are learnt from the training rows and kept in the run
(``data.json``) or the fitted estimator; new rows are encoded against them.
A value never seen in training sets none of its column's indicators: the
row then matches no training row in that column, which the detectors score
as unusual (an anomaly signal, never an error). Indicators are named
``column=value``; :func:`group_features` sums a row's per-feature shares back
to its columns, so that ``top_features`` names ``protocol``, not ``protocol=tcp``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..errors import DataError

#: A column of words with more distinct values than this and than half its rows holds ids or free text, not categories.
MOST_CATEGORIES = 20


def parses_as_number(cell: object) -> bool:
    """True for a cell that reads as a number (``"1.5"``, ``"-3"``, ``"nan"`` are; ``"tcp"`` and ``""`` are not)."""
    try:
        float(cell)  # type: ignore[arg-type]
        return True
    except (TypeError, ValueError):
        return False


def looks_categorical(cells: Sequence[str]) -> bool:
    """True when most of a column's non-empty cells are not numbers (a few words in numbers are mistakes)."""
    filled = [c for c in cells if str(c).strip()]
    words = sum(not parses_as_number(c) for c in filled)
    return bool(filled) and words * 2 > len(filled)


def values_of(cells: Sequence[str]) -> list[str]:
    """A category column's distinct values, sorted: ``["icmp", "tcp", "udp"]``."""
    return sorted({str(c).strip() for c in cells})


def check_categories(categories: object, what: str = "categories") -> dict[str, list[str]]:
    """``categories`` if it maps column names to lists of distinct strings (as a run or an estimator saves them)."""
    if not isinstance(categories, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v) and len(set(v)) == len(v) for k, v in categories.items()
    ):
        raise DataError(f"{what} must map each category column to a list of its distinct values (strings).")
    return categories


def indicators(values: list[str], cells: Sequence[str]) -> np.ndarray:
    """``(n, len(values))`` indicators of ``cells`` among ``values``; an unseen value sets none."""
    lookup = {v: i for i, v in enumerate(values)}
    out = np.zeros((len(cells), len(values)), dtype=np.float64)
    rows = [(r, lookup[str(c).strip()]) for r, c in enumerate(cells) if str(c).strip() in lookup]
    if rows:
        r, j = np.array(rows).T
        out[r, j] = 1.0
    return out


def feature_names(column: str, values: list[str]) -> list[str]:
    return [f"{column}={v}" for v in values]


def encode_columns(
    columns: list[str], cells: Callable[[str], Sequence], categories: dict[str, list[str]] | None, where: Callable[[int, str], str],
) -> tuple[np.ndarray, list[str], dict[str, list[str]]]:
    """A table's feature columns as numbers: ``(x, feature names, categories)``.

    ``cells(column)`` gives a column's cells; ``categories`` are the trained ones (None: learn them from these rows:
    a column whose cells are mostly not numbers). Numeric cells that do not parse are refused naming the cell
    (``where(row, column)``); an empty numeric cell likewise.
    """
    learning = categories is None
    found: dict[str, list[str]] = {}
    blocks, names = [], []
    for column in columns:
        values = cells(column)
        numbers = as_numbers(values)
        text = [str(v) for v in values] if numbers is None or not learning else []
        if (numbers is None and learning and looks_categorical(text)) or (not learning and column in categories):
            known = values_of(text) if learning else categories[column]
            if learning and len(known) > max(MOST_CATEGORIES, len(text) / 2):
                raise DataError(
                    f"column {column!r} holds {len(known)} different words in {len(text)} rows: ids or free text, not categories; "
                    "pass --id-column / --ignore-columns (id_column= / ignore_columns=) for it."
                )
            found[column] = known
            blocks.append(indicators(known, text))
            names += feature_names(column, known)
            continue
        if numbers is None:
            refuse_cell(values, column, where)
        blocks.append(numbers[:, None])
        names.append(column)
    x = np.concatenate(blocks, axis=1) if blocks else np.empty((0, 0))
    return x, names, found


def encode_frame(frame, categories: dict[str, list[str]] | None, where: Callable[[int, str], str]) -> tuple[np.ndarray, list[str], dict[str, list[str]]]:
    """:func:`encode_columns` over every column of a pandas DataFrame (named by strings): numeric columns as they are,
    the others cell by cell."""
    return encode_columns(
        list(frame.columns), lambda c: frame[c].to_numpy(dtype=np.float64) if frame[c].dtype.kind in "biuf" else frame[c].tolist(), categories, where,
    )


def as_numbers(values: Sequence) -> np.ndarray | None:
    """A column's cells as float64, or None when some cell is not a number (or is empty)."""
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None


def refuse_cell(values: Sequence, column: str, where: Callable[[int, str], str]) -> None:
    """Raise a :class:`DataError` naming the first cell of a column of numbers that is not one."""
    for r, cell in enumerate(values):
        if not parses_as_number(cell):
            if not str(cell).strip():
                raise DataError(f"{where(r, column)} is empty; fill in or impute the value, or drop the row.")
            raise DataError(
                f"{where(r, column)}: {str(cell)!r} is not a number, in a column of numbers; fix the cell, or if the column "
                "holds names or ids, pass --id-column / --ignore-columns (id_column= / ignore_columns=)."
            )


def group_features(names: list[str], categories: dict[str, list[str]] | None) -> tuple[list[str], np.ndarray]:
    """The table's columns for feature ``names`` (a category's indicators share their column) and, per feature, its
    column's index: ``shares @ one_hot(index)`` sums a row's per-feature shares by column."""
    owner = {name: column for column, values in (categories or {}).items() for name in feature_names(column, values)}
    columns = list(dict.fromkeys(owner.get(n, n) for n in names))
    position = {c: i for i, c in enumerate(columns)}
    return columns, np.array([position[owner.get(n, n)] for n in names], dtype=np.int64)


def by_column(shares: np.ndarray, names: list[str], categories: dict[str, list[str]] | None) -> tuple[list[str], np.ndarray]:
    """``shares`` ``(n, features)`` summed by the table's columns: ``(columns, (n, columns))``."""
    columns, index = group_features(names, categories)
    return columns, shares @ np.eye(len(columns))[index]
