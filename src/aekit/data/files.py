"""Reading the user's own data: .npy, .npz, .csv, .mat and folders of images."""

from __future__ import annotations

import csv
import math
import sys
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import DataError
from .dataset import MAX_EXPANSION, RawData
from .categories import encode_columns, encode_frame, parses_as_number
from .matfile import read_mat_arrays

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
#: Column names taken as the label column of a CSV when none is given.
LABEL_NAMES = ("label", "labels", "y", "target", "class")
_X_KEYS = ("x", "X", "data", "images")
_Y_KEYS = ("y", "Y", "labels", "label", "targets", "target")


def check_samples(dtype: np.dtype, shape: tuple[int, ...], what: str | Path) -> None:
    """Refuse arrays that are not numeric samples of shape (n, features...)."""
    if dtype.kind not in "biuf":
        raise DataError(f"{what} holds {dtype} values; aekit needs a numeric array (int or float).")
    if len(shape) < 2:
        raise DataError(f"{what}: expected an array of samples, shape (n, features...), got shape {tuple(shape)}.")


def _numeric(array: np.ndarray, path: Path) -> np.ndarray:
    check_samples(array.dtype, array.shape, path)
    return array


def _array_as_raw(x: np.ndarray, y: np.ndarray | None, path: Path) -> RawData:
    x = _numeric(x, path)
    # 8-bit arrays are images; everything else is tabular and gets min-max scaling.
    return RawData(x, y, pixel_max=255.0 if x.dtype == np.uint8 else None)


def check_npy_header(f: BinaryIO, available: int, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Check a .npy header against the bytes that follow it, before any array is allocated.

    Returns the header's shape, Fortran-order flag and dtype, with ``f`` left
    at the first byte of the array. Raises :class:`DataError` for a bad header,
    an object dtype (which would need pickle) or a declared size that differs
    from ``available`` bytes.
    """
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(f)
    except Exception as exc:  # numpy's header parser raises many types (ValueError, TokenError, ...)
        raise DataError(f"{what} is not a readable .npy array ({type(exc).__name__}: {exc}).") from None
    if dtype.hasobject:
        raise DataError(f"{what} holds Python objects ({dtype}); aekit never unpickles data: save a numeric array.")
    declared = math.prod(shape) * dtype.itemsize
    body = available - (f.tell() - start)
    if declared != body:
        raise DataError(f"{what} declares shape {shape} ({declared} bytes) but holds {body}; the file is truncated or corrupt.")
    return shape, fortran, dtype


def read_npy(path: Path) -> RawData:
    with open(path, "rb") as f:
        check_npy_header(f, path.stat().st_size, str(path))
    try:
        x = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({exc}).") from None
    return _array_as_raw(x, None, path)


def read_npz(path: Path) -> RawData:
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                if member.file_size > MAX_EXPANSION * max(member.compress_size, 1) + 1024:
                    raise DataError(f"{path}: member {member.filename} claims to expand {member.file_size} bytes from {member.compress_size}; the archive is forged or corrupt.")
                with archive.open(member) as f:
                    check_npy_header(f, member.file_size, f"{path} ({member.filename})")
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({exc}).") from None
    x_key = next((k for k in _X_KEYS if k in arrays), None)
    if x_key is None and len(arrays) == 1:
        x_key = next(iter(arrays))
    if x_key is None:
        raise DataError(f"{path} holds arrays {sorted(arrays)}; name the samples 'x' (and the labels 'y').")
    y_key = next((k for k in _Y_KEYS if k in arrays), None)
    return _array_as_raw(arrays[x_key], arrays[y_key] if y_key else None, path)


def read_mat(path: Path) -> RawData:
    """A MATLAB v5 file with ``X`` (n x d) and optionally ``y`` (n x 1), as ODDS ships them."""
    try:
        content = read_mat_arrays(path)
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc}).") from None
    if "X" not in content:
        raise DataError(f"{path} has no numeric 'X' variable (it has {sorted(content)}).")
    x = _numeric(content["X"], path)
    y = content["y"].reshape(-1) if "y" in content else None
    return RawData(x, y)


def _sniff_delimiter(path: Path) -> str:
    """The CSV's delimiter: comma, semicolon, tab or pipe, guessed from its first lines (comma when unsure)."""
    with open(path, newline="") as f:
        sample = f.read(64 * 1024)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def read_csv(
    path: Path, label_column: str | int | None = None, id_column: str | None = None, ignore_columns: list[str] | None = None,
    categories: dict[str, list[str]] | None = None,
) -> RawData:
    """Numeric and category columns, an optional header row, an optional label column and an optional id column.

    The delimiter (comma, semicolon, tab or pipe) is sniffed. The label column
    is ``label_column`` (a header name or a 0-based index) or, if that is
    None, the first header named one of :data:`LABEL_NAMES`. Labels may be
    numbers or names (names become ``classes``). The ``id_column``'s values
    are kept as strings in ``ids``, out of the features; ``ignore_columns``
    are dropped. Columns of words are category columns (:mod:`.categories`):
    learnt from these rows, or the trained ``categories``.
    """
    try:
        delimiter = _sniff_delimiter(path)
        with open(path, newline="") as f:
            rows = [row for row in csv.reader(f, delimiter=delimiter) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file ({exc}).") from None
    if not rows:
        raise DataError(f"{path} is empty.")
    header = rows[0] if not all(parses_as_number(c) for c in rows[0]) else None
    body = rows[1:] if header else rows
    columns = [c.strip() for c in header] if header else [str(i) for i in range(len(rows[0]))]
    label_index = _label_index(columns, label_column, header is not None, path)
    _require_columns(path, columns, id_column, ignore_columns)
    named = {columns.index(name) for name in (id_column, *(ignore_columns or [])) if name is not None}
    id_index = columns.index(id_column) if id_column is not None else None
    if not len(body):
        raise DataError(f"{path} has a header but no data rows.")
    width = len(columns)
    first_line = 2 if header else 1
    for r, row in enumerate(body):
        if len(row) != width:
            raise DataError(f"{path}, line {first_line + r}: {len(row)} cells, but the file has {width} columns.")
    features = [i for i in range(width) if i != label_index and i not in named]
    position = {columns[i]: i for i in features}
    x, names, found = encode_columns(
        [columns[i] for i in features], lambda column: [row[position[column]] for row in body], categories,
        lambda r, column: f"{path}, line {first_line + r}, column {column!r}",
    )
    _check_float32(x, lambda r, c: f"{path}, line {first_line + r}, column {names[c]!r}")
    labels = [row[label_index].strip() for row in body] if label_index is not None else []
    y, classes = _encode_labels(labels) if label_index is not None else (None, None)
    ids = [row[id_index].strip() for row in body] if id_index is not None else None
    return RawData(x, y, classes=classes, ids=ids, columns=names if header else None, categories=found or None)


def table_columns(path: Path) -> list[str]:
    """The column names of a CSV (its header row; none without one) or parquet file, read without the rows."""
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow.parquet as pq

            return [str(c) for c in pq.read_schema(path).names]
        except ImportError:
            raise DataError("reading parquet files needs pandas and pyarrow: pip install 'aekit[parquet]'.") from None
        except Exception as exc:  # pyarrow raises its own types for corrupt files
            raise DataError(f"{path} is not a readable parquet file ({type(exc).__name__}: {str(exc)[:120]}).") from None
    try:
        with open(path, newline="") as f:
            first = next(csv.reader(f, delimiter=_sniff_delimiter(path)), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file ({exc}).") from None
    return [] if all(parses_as_number(c) for c in first) else [c.strip() for c in first]


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_float32(x: np.ndarray, where) -> None:
    """Refuse a value that 32-bit floats (what the model computes in) cannot hold, naming its cell (``where(row, col)``)."""
    big = np.argwhere(np.isfinite(x) & (np.abs(x) > FLOAT32_MAX))
    if len(big):
        row, col = big[0]
        raise DataError(f"{where(row, col)}: {x[row, col]:.4g} is beyond what 32-bit floats hold (±3.4e38); rescale the column (e.g. its logarithm) or fix the cell.")
    bad = np.argwhere(~np.isfinite(x))
    if len(bad):
        row, col = bad[0]
        raise DataError(f"{where(row, col)} holds {x[row, col]}; fill in or impute the value, or drop the row.")


def _require_columns(path: Path, columns: list[str], id_column: str | None, ignore_columns: list[str] | None, label_column: str | None = None) -> None:
    """A clear error for a named column that the table does not have."""
    for role, name in (("label", label_column), ("id", id_column), *(("ignored", c) for c in ignore_columns or [])):
        if name is not None and name not in columns:
            raise DataError(f"{path} has no column {name!r} (the {role} column); its columns are {columns}.")


def parquet_frame(path: Path):
    """A parquet file as a pandas DataFrame, with one-line errors for missing packages and corrupt files."""
    try:
        import pandas as pd

        return pd.read_parquet(path)
    except ImportError:
        raise DataError("reading parquet files needs pandas and pyarrow: pip install 'aekit[parquet]'.") from None
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        raise DataError(f"{path} is not a readable parquet file ({type(exc).__name__}: {str(exc)[:120]}).") from None


def read_parquet(
    path: Path, label_column: str | None = None, id_column: str | None = None, ignore_columns: list[str] | None = None,
    categories: dict[str, list[str]] | None = None,
) -> RawData:
    """A parquet table (through pandas and pyarrow): numeric and category feature columns (as :func:`read_csv`),
    optional label, id and ignored columns."""
    frame = parquet_frame(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    label = label_column if label_column is not None else next((c for c in columns if c.lower() in LABEL_NAMES), None)
    _require_columns(path, columns, id_column, ignore_columns, label_column)
    skip = {label, id_column, *(ignore_columns or [])}
    features = [c for c in columns if c not in skip]
    x, names, found = encode_frame(frame[features], categories, lambda r, c: f"{path}, row {r}, column {c!r}")
    missing = np.argwhere(np.isnan(x))
    if len(missing):
        row, col = missing[0]
        raise DataError(f"{path}, row {row}, column {names[col]!r} is empty; fill in or impute the value, or drop the row.")
    _check_float32(x, lambda r, c: f"{path}, row {r}, column {names[c]!r}")
    y, classes = _encode_labels([str(v) for v in frame[label]]) if label is not None else (None, None)
    ids = [str(v) for v in frame[id_column]] if id_column is not None else None
    return RawData(x, y, classes=classes, ids=ids, columns=names, categories=found or None)


def _label_index(columns: list[str], label_column: str | int | None, has_header: bool, path: Path) -> int | None:
    if label_column is None:
        if not has_header:
            return None
        return next((i for i, c in enumerate(columns) if c.lower() in LABEL_NAMES), None)
    if isinstance(label_column, int) or str(label_column).lstrip("-").isdigit():
        index = int(label_column)
        if not -len(columns) <= index < len(columns):
            raise DataError(f"{path} has {len(columns)} columns; label column {index} does not exist.")
        return index % len(columns)
    if label_column not in columns:
        raise DataError(f"{path} has no column {label_column!r}; its columns are {columns}.")
    return columns.index(label_column)


def _encode_labels(labels: list[str]) -> tuple[np.ndarray, list[str] | None]:
    if all(parses_as_number(v) and float(v).is_integer() for v in labels):
        return np.array([int(float(v)) for v in labels], dtype=np.int64), None
    classes = sorted(set(labels))
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[v] for v in labels], dtype=np.int64), classes


def parse_image_size(text: str | int | tuple[int, int] | None) -> tuple[int, int] | None:
    """``16`` or ``"16"`` -> (16, 16); ``"28x32"`` -> (28, 32) (height x width); None stays None."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        parts = [int(p) for p in str(text).lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1 or max(parts) > 4096:
        raise DataError(f"image size must be H or HxW in pixels (1 to 4096), e.g. 16 or 28x32, got {text!r}.")
    return (parts[0], parts[-1])


GREY_MODES = ("1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
DEEP_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")  # more than 8 bits a pixel


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, from its header (nothing decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except Exception as exc:  # noqa: BLE001 - any unreadable file, in one line
        raise DataError(f"cannot read image {path} ({exc}); remove or replace it.") from None


def image_folder_sizes(path: Path) -> list[tuple[int, int]]:
    """The (height, width) of every image under ``path`` (:func:`image_size`); [] for a folder without images. An
    unreadable file is left to :func:`read_image_folder` to name."""
    sizes = []
    for file in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        try:
            sizes.append(image_size(file))
        except DataError:  # read_image_folder says which, in one line
            continue
    return sizes


def read_image_folder(path: Path, image_size: tuple[int, int] | None = None, channels: int | None = None) -> RawData:
    """Every image under ``path``; images in sub-folders are labelled by the sub-folder's name, and every image's
    id is its path under ``path``.

    All images must have one size, unless ``image_size`` (height, width) is
    given: then each is resized to it (bilinear, aspect ratio not kept). They
    are read with ``channels`` (1: grey, 3: RGB; a trained model's), else grey
    when every one is grey (an RGB file whose three channels are equal counts as
    grey), otherwise RGB; what was converted is said on stderr. Pixels become
    [0, 1] by their type's range: 8-bit by 255, 16-bit by 65535; 32-bit integer
    pixels above 65535 and floating-point pixels outside [0, 1] are refused.
    Shape ``(n, channels, height, width)``.
    """
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    masks = masks_beside(files)
    if masks:
        files = [f for f in files if f not in masks]
        print(f"aekit: {path}: {len(masks)} defect masks beside their images left out (<stem>.png beside <stem>.jpg, or <stem>_mask.png)", file=sys.stderr)
    if not files:
        raise DataError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                images.append(image.copy())
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot read image {file} ({exc}); remove or replace it.") from None
    if channels not in (None, 1, 3):
        raise DataError(f"images are read with 1 (grey) or 3 (RGB) channels, not {channels}.")
    grey = [_is_grey(image) for image in images]
    mode = "L" if channels == 1 or (channels is None and all(grey)) else "RGB"
    converted = sum(g != (mode == "L") for g in grey)
    if converted:
        print(f"aekit: {path}: {converted} of {len(files)} images converted to {'grey' if mode == 'L' else 'RGB'} "
              f"({'the model reads grey images' if channels == 1 else 'the model reads RGB images' if channels == 3 else 'some are in colour'})", file=sys.stderr)
    deep = any(image.mode in DEEP_MODES for image in images)
    size = images[0].size if image_size is None else (image_size[1], image_size[0])  # PIL sizes are (width, height)
    arrays = []
    for file, image in zip(files, images):
        array = _pixels(image, mode, file, size if image_size is not None else None) if deep else np.asarray(_resized(image.convert(mode), size if image_size is not None else None), dtype=np.uint8)
        if array.shape[:2] != (size[1], size[0]):
            raise DataError(
                f"{file} is {array.shape[1]}x{array.shape[0]} but {files[0].name} is {size[0]}x{size[1]}; "
                "resize the images to one size, or pass --image-size H[xW] (image_size=) to have them resized."
            )
        arrays.append(array[None] if mode == "L" else array.transpose(2, 0, 1))
    folders = [f.parent.relative_to(path).as_posix() for f in files]
    classes = sorted(set(folders))
    y = np.array([classes.index(f) for f in folders]) if classes != ["."] else None
    ids = [f.relative_to(path).as_posix() for f in files]
    return RawData(np.stack(arrays), y, pixel_max=1.0 if deep else 255.0, classes=classes if y is not None else None, ids=ids)


#: Defect-mask files, most specific first: the MVTec AD name (``<stem>_mask.png``), else the image's own stem in a
#: lossless format (``<stem>.png`` beside ``<stem>.jpg``: the magnetic-tile layout).
MASK_SUFFIXES = ("_mask.png", ".png", "_mask.bmp", ".bmp", "_mask.tif", ".tif")
MASK_FORMATS = {".png", ".bmp", ".tif"}


def masks_beside(files: list[Path]) -> set[Path]:
    """The files among ``files`` that are defect masks of other images beside them (:data:`MASK_SUFFIXES`):
    ``<stem>_mask.png`` beside an image ``<stem>.*``, or ``<stem>.png`` beside ``<stem>.jpg`` (an image of the same
    stem in a format masks are not saved in)."""
    stems: dict[Path, list[str]] = {}
    for f in files:
        stems.setdefault(f.with_suffix(""), []).append(f.suffix.lower())
    masks = set()
    for f in files:
        if f.suffix.lower() not in MASK_FORMATS:
            continue
        stem = f.with_suffix("")
        if stem.name.endswith("_mask") and stem.with_name(stem.name.removesuffix("_mask")) in stems:
            masks.add(f)
        elif any(suffix not in MASK_FORMATS for suffix in stems[stem]):
            masks.add(f)
    return masks


def _is_grey(image) -> bool:
    """Grey by its mode, or a colour image whose channels are all equal (a grey photo saved as RGB)."""
    if image.mode in GREY_MODES:
        return True
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _resized(image, size: tuple[int, int] | None):
    from PIL import Image

    return image if size is None or image.size == size else image.resize(size, Image.Resampling.BILINEAR)


def _pixels(image, mode: str, file: Path, size: tuple[int, int] | None) -> np.ndarray:
    """An image of a folder that holds 16-bit or 32-bit ones, as float32 in [0, 1] scaled by its type's range."""
    from PIL import Image

    if image.mode not in DEEP_MODES:
        values = np.asarray(image.convert(mode), dtype=np.float32) / 255
    else:
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
                raise DataError(f"{file} holds floating-point pixels outside [0, 1]; scale it to [0, 1] or save it as an 8- or 16-bit image.")
        elif values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(f"{file} holds 32-bit pixels (from {values.min():.0f} to {values.max():.0f}); save it as an 8- or 16-bit image.")
        else:
            values = values / 65535  # 16-bit (PIL reads some 16-bit files as 32-bit "I")
        values = values.astype(np.float32)
        if mode == "RGB":
            values = np.repeat(values[..., None], 3, axis=-1)
    if size is None or (values.shape[1], values.shape[0]) == size:
        return values
    planes = values[..., None] if values.ndim == 2 else values
    resized = [np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c]), mode="F").resize(size, Image.Resampling.BILINEAR)) for c in range(planes.shape[-1])]
    return np.stack(resized, -1) if values.ndim == 3 else resized[0]
