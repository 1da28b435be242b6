"""Loading data sets by name: ``aekit.load_dataset("mnist", split="test")``.

Scaling
-------
Images (MNIST, Fashion-MNIST, digits, image folders, ``uint8`` arrays) are
divided by their maximum pixel value (255, or 16 for digits) into [0, 1].
Tabular data (ODDS ``.mat``, ``.csv``, float ``.npy``/``.npz``) is min-max
scaled per feature to [0, 1] (``scaling="minmax"``, the default) with the
minimum and maximum of the rows returned, except that ``split="test"`` uses
those of the training rows (so it never sees test statistics and may leave
[0, 1] slightly). The fitted ``Dataset.scaling`` can be passed back in to scale
new data the same way; ``scaling=None`` keeps raw values.

Splits
------
MNIST and Fashion-MNIST use their official train/test files. Every other
source is split by a fixed random permutation (seed 0): 80% ``"train"``,
20% ``"test"``; ``"all"`` is every row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError, suggest
from .dataset import SPLITS, Dataset, RawData, Scaling, build, check_finite
from .files import IMAGE_SUFFIXES, parse_image_size, read_csv, read_image_folder, read_mat, read_npy, read_npz, read_parquet
from .idx import read_idx, write_idx
from .sources import FASHION_MNIST, MNIST, NEWSGROUPS, data_roots, find_file, read_digits, read_odds
from .text import Texts, Vocabulary, documents, is_text_archive, read_text_archive, read_text_folder, read_text_table, select

#: Named sources: name -> reader(split, roots, download).
NAMED = {
    "mnist": MNIST.read,
    "fashion-mnist": FASHION_MNIST.read,
    "digits": lambda split, roots, download: read_digits(),
    "20news": NEWSGROUPS.read,
}
_FILE_READERS = {".npy": read_npy, ".npz": read_npz, ".mat": read_mat}


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    *,
    scaling: Scaling | str | None = "minmax",
    label_column: str | int | None = None,
    id_column: str | None = None,
    ignore_columns: str | list[str] | None = None,
    image_size: str | int | tuple[int, int] | None = None,
    download: bool = True,
    text_column: str | None = None,
    vocabulary: list[str] | None = None,
    bag_length: int | None = None,
    channels: int | None = None,
    categories: dict[str, list[str]] | None = None,
) -> Dataset:
    """Load a data set by name or path.

    Parameters
    ----------
    name : str
        ``"mnist"``, ``"fashion-mnist"``, ``"digits"``, ``"20news"``, ``"odds:<name>"``
        (e.g. ``"odds:cardio"``), or a path to a ``.npy``, ``.npz``, ``.csv``
        or ``.mat`` file, to a folder of images, or to documents: a folder (or
        ``.tar.gz``) of text files with one sub-folder per class, or a CSV/parquet
        file with ``text_column``.
    split : {"train", "test", "all"}
        Which part to return (see the module docstring for how sets are split).
    data_dir : path, optional
        Where to look for (and download) data files first; then ``$AEKIT_DATA``,
        then ``~/.cache/aekit``.
    scaling : "minmax", None or Scaling
        Scaling of tabular data; pass a fitted :class:`Scaling` (a previous
        ``Dataset.scaling``) to scale new data like the training data.
    label_column : str or int, optional
        The label column of a CSV file (default: a column named label, y, target or class).
    id_column : str, optional
        A CSV column of row ids (names, keys): kept out of the features, in ``Dataset.ids``.
    ignore_columns : str or list of str, optional
        CSV or parquet columns to drop (non-numeric notes, timestamps, ...); one name, or a list.
    image_size : int, "H", "HxW" or (H, W), optional
        Resize every image of an image folder to this size (for folders of mixed sizes).
    download : bool
        Download MNIST / Fashion-MNIST / 20 Newsgroups when missing (checksums are verified).
    text_column : str, optional
        The column of a CSV or parquet file that holds documents (the rest are not read, but for
        ``label_column`` and ``id_column``).
    vocabulary : list of str, optional
        Documents: count these words (a trained model's, ``model.architecture.vocabulary``); by default
        the vocabulary is fitted on the documents returned (:class:`aekit.data.text.Vocabulary`).
    bag_length : int, optional
        Documents: distinct words kept per document (a trained model's ``input_shape[1]``); by default sized
        to the documents (:func:`aekit.data.text.bag_length`).
    channels : {1, 3}, optional
        Read an image folder's images grey (1) or RGB (3), converting those that are not (a trained model's
        ``input_shape[0]``); by default grey when every image is grey, else RGB.
    categories : dict of str to list of str, optional
        A table's category columns and their values (a trained run's ``Dataset.categories``): encode these
        columns against these values. By default, columns whose cells are mostly words are category columns,
        their values learnt from the rows read (:mod:`aekit.data.categories`).

    Returns
    -------
    Dataset
        ``x`` (float32, ``(n, *shape)``), ``y`` (int64 labels or None), ``shape``; documents are bags
        ``(n, 2, length)`` of word ids and counts with ``vocabulary``, ``texts`` and ``ids`` (their paths).

    Raises
    ------
    DataError
        Unknown name, missing or corrupt file, empty data, NaN or inf values.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}.{suggest(split, SPLITS)} Choose one of: {', '.join(SPLITS)}.")
    if isinstance(ignore_columns, str):
        ignore_columns = [ignore_columns]  # one column's name, not its letters
    path = Path(str(name)).expanduser()
    if (id_column or ignore_columns) and path.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"--id-column and --ignore-columns apply to CSV and parquet files; {name} is neither.")
    if text_column is not None and path.suffix.lower() not in (".csv", ".parquet"):
        raise DataError(f"--text-column names a column of a CSV or parquet file; {name} is neither.")
    raw = _read(str(name), split, data_dir, label_column, download, id_column, ignore_columns, parse_image_size(image_size), text_column, channels, categories)
    if isinstance(raw, Texts):  # counted after splitting: the vocabulary never sees the other split's documents
        raw = documents(select(raw, split), Vocabulary(list(vocabulary)) if vocabulary is not None else None, bag_length, str(name))
    return build(raw, str(name), split, scaling)


def default_split(name: str) -> str:
    """The split a command trains on by default: ``"train"`` for named sets and sources with their own train/test
    division (an MNIST-style folder, a ``.tar.gz`` of documents), ``"all"`` for the user's own file or folder, whose
    rows should all count (a share is still held out to calibrate thresholds)."""
    path = Path(str(name)).expanduser()
    if name in NAMED or str(name).startswith("odds:") or not path.exists() or is_text_archive(path):
        return "train"
    if path.is_dir() and find_file([path], "", "train-images-idx3-ubyte.gz") is not None:
        return "train"
    return "all"


def read_idx_images(path: Path) -> RawData:
    """An IDX file of images ``(n, rows, cols)`` (or ``(n, features)``), with the labels file beside it when there
    is one (``...-images-idx3-ubyte`` -> ``...-labels-idx1-ubyte``)."""
    x = read_idx(path)
    labels_file = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    y = read_idx(labels_file) if labels_file != path and labels_file.is_file() else None
    if y is not None and (y.ndim != 1 or len(y) != len(x)):
        raise DataError(f"{labels_file} does not hold one label per image of {path}.")
    if x.ndim == 3:
        x = x[:, None]  # (n, 1, rows, cols)
    return RawData(x, y, pixel_max=255.0 if x.dtype == np.uint8 else None)


def _read(name: str, split: str, data_dir, label_column, download: bool, id_column=None, ignore_columns=None, image_size=None, text_column=None, channels=None, categories=None) -> RawData | Texts:
    roots = data_roots(data_dir)
    if name in NAMED:
        return NAMED[name](split, roots, download)
    if name.startswith("odds:"):
        return read_odds(name.removeprefix("odds:"), roots)
    path = Path(name).expanduser()
    if path.is_dir() and find_file([path], "", "train-images-idx3-ubyte.gz") is not None:  # an MNIST-style folder
        return MNIST.read(split, [path], allow_download=False)
    if path.is_dir():
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*")):
            return read_image_folder(path, image_size, channels)
        return read_text_folder(path)
    if is_text_archive(path):
        return read_text_archive(path)
    if text_column is not None and path.is_file():
        return read_text_table(path, text_column, label_column, id_column)
    if path.is_file() and "idx" in path.name and path.suffix.lower() not in _FILE_READERS and path.suffix.lower() != ".csv":
        return read_idx_images(path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return read_csv(path, label_column, id_column, ignore_columns, categories)
        if path.suffix.lower() == ".parquet":
            return read_parquet(path, label_column, id_column, ignore_columns, categories)
        reader = _FILE_READERS.get(path.suffix.lower())
        if reader is None:
            raise DataError(f"cannot read {path}: use a .npy, .npz, .csv, .parquet or .mat file, a folder of images, or a folder or .tar.gz of text files.")
        return reader(path)
    if path.suffix or "/" in name:
        raise DataError(f"{path} not found: no such file or folder.")
    raise DataError(
        f"unknown data set {name!r}.{suggest(name, NAMED)} Use one of {', '.join(NAMED)}, "
        "'odds:<name>', or the path of a .npy/.npz/.csv/.mat file, an image folder or a folder of text files."
    )


__all__ = ["Dataset", "Scaling", "check_finite", "data_roots", "default_split", "load_dataset", "read_idx", "write_idx"]
