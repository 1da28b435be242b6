"""Documents: folders and archives of text files, text columns of tables, and their bags of words.

A document becomes a *bag*: the ids of its distinct vocabulary words and how
often each occurs, as a ``(2, length)`` float array (row 0 the word ids, row 1
the counts; unused slots are word 0 with count 0, which adds nothing). A corpus
is then an ordinary ``(n, 2, length)`` tensor that every part of aekit can
batch, shuffle and move, while no ``(documents x vocabulary)`` matrix is ever
formed; the ``bow`` architecture reads bags with an ``nn.EmbeddingBag``.
``length`` is sized to the corpus (:func:`bag_length`): a longer document keeps
its ``length`` most frequent words.

Tokenisation and counting are scikit-learn's ``CountVectorizer`` (lower case,
words of two or more letters or digits, its English stop words removed); the
vocabulary, the words kept, is a list saved in the model's config (JSON).
"""

from __future__ import annotations

import csv
import io
import math
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dataset import RawData, fixed_split
from .files import parquet_frame

#: The most words a vocabulary keeps, and the fewest documents a kept word must appear in.
MAX_WORDS, MIN_DOCUMENTS = 20_000, 2
#: A word in more than this share of the documents says little about any of them.
MAX_DOCUMENT_SHARE = 0.5
#: Bag lengths: the 99.5th percentile of distinct words per document, rounded up to a multiple of 16, at most 1024.
BAG_QUANTILE, LONGEST_BAG = 99.5, 1024
#: File names skipped in document folders and archives.
SKIPPED = ("README", "LICENSE", ".DS_Store")
TABLE_SUFFIXES = (".csv", ".parquet")


@dataclass
class Texts:
    """Documents as read, before counting: their texts, ids (paths under the folder, or a table's ids), classes."""

    texts: list[str]
    ids: list[str]
    labels: list[str] | None = None
    #: How many files were not UTF-8 and were read as latin-1.
    latin1: int = 0
    #: The archive's own train/test division, when it has one (``20news-bydate-train/``, ``-test/``).
    parts: list[str] | None = field(default=None, repr=False)


def decode(data: bytes, what: str) -> tuple[str, bool]:
    """``data`` as text: UTF-8, else latin-1 (True when the fallback was needed); binary data is refused."""
    if b"\x00" in data[:8192]:
        raise DataError(f"{what} is not a text file (it holds binary data); remove it from the documents.")
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("latin-1"), True


def _is_document(name: str) -> bool:
    return not name.startswith(".") and name not in SKIPPED


def _class_and_part(relative: Path) -> tuple[str, str | None]:
    """A file's class (its folder) and, inside an archive like 20news-bydate's, its part (``train``/``test``)."""
    folders = relative.parent.parts
    part = next((p for p in ("train", "test") for f in folders[:-1] if f == p or f.endswith(f"-{p}")), None)
    return (folders[-1] if folders else "."), part


def _collect(files: list[tuple[str, bytes]], where: str) -> Texts:
    """Documents from ``(relative path, bytes)`` pairs, classes from their folders."""
    if not files:
        raise DataError(f"{where} holds no text documents (and no images); aekit reads a folder of images, or a folder (or .tar.gz) of text files, one sub-folder per class.")
    texts, ids, labels, parts, latin1 = [], [], [], [], 0
    for name, data in sorted(files):
        text, fallback = decode(data, f"{where}: {name}")
        latin1 += fallback
        label, part = _class_and_part(Path(name))
        texts.append(text)
        ids.append(name)
        labels.append(label)
        parts.append(part)
    if latin1:
        print(f"aekit: {latin1} of {len(texts)} documents in {where} were not UTF-8 and were read as latin-1", file=sys.stderr)
    return Texts(texts, ids, labels if set(labels) != {"."} else None, latin1, parts if all(parts) else None)


def read_text_folder(path: Path) -> Texts:
    """Every text file under ``path`` (any suffix but images'); the sub-folder names are the classes."""
    files = [p for p in path.rglob("*") if p.is_file() and _is_document(p.name) and not any(part.startswith(".") for part in p.relative_to(path).parts)]
    return _collect([(p.relative_to(path).as_posix(), p.read_bytes()) for p in files], str(path))


def read_text_archive(path: Path) -> Texts:
    """Every regular file of a ``.tar.gz`` (``.tgz``, ``.tar``) archive, as :func:`read_text_folder` reads a folder."""
    try:
        with tarfile.open(path) as archive:
            files = []
            for member in archive:
                name = Path(member.name)
                if member.isfile() and _is_document(name.name) and not name.is_absolute() and ".." not in name.parts:
                    files.append((name.as_posix(), archive.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable tar archive ({exc}).") from None
    return _collect(files, str(path))


def is_text_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith((".tar.gz", ".tgz", ".tar"))


def read_text_table(path: Path, text_column: str, label_column: str | None = None, id_column: str | None = None) -> Texts:
    """The ``text_column`` of a CSV or parquet file as documents, with optional label and id columns."""
    if path.suffix.lower() == ".parquet":
        frame = parquet_frame(path)
        columns = [str(c) for c in frame.columns]
        table = {c: ["" if v is None else str(v) for v in frame[c]] for c in frame.columns.astype(str)}
    else:
        try:
            raw, fallback = decode(path.read_bytes(), str(path))
            rows = list(csv.reader(io.StringIO(raw, newline="")))
        except (OSError, csv.Error) as exc:
            raise DataError(f"{path} is not a readable CSV file ({exc}).") from None
        if len(rows) < 2:
            raise DataError(f"{path} has no rows of documents under its header.")
        columns = [c.strip() for c in rows[0]]
        table = {c: [row[i] if i < len(row) else "" for row in rows[1:] if row] for i, c in enumerate(columns)}
    for role, name in (("text", text_column), ("label", label_column), ("id", id_column)):
        if name is not None and name not in table:
            raise DataError(f"{path} has no column {name!r} (the {role} column); its columns are {columns}.")
    texts = table[text_column]
    ids = table[id_column] if id_column else [str(i) for i in range(len(texts))]
    return Texts(texts, ids, table[label_column] if label_column else None)


@dataclass
class Vocabulary:
    """The words a model reads, and how text is cut into them (scikit-learn's ``CountVectorizer``)."""

    words: list[str]

    def vectorizer(self):
        from sklearn.feature_extraction.text import CountVectorizer

        return CountVectorizer(vocabulary=self.words, **TOKENS)

    @classmethod
    def fit(cls, texts: list[str], max_words: int | None = None) -> "Vocabulary":
        """The words of ``texts`` that say most (in at least 2 documents, in at most half; the most frequent
        ``max_words``: by default as many as there are documents, between 2,000 and 20,000)."""
        from sklearn.feature_extraction.text import CountVectorizer

        n = len(texts)
        size = max_words or min(MAX_WORDS, max(2000, n))
        for min_df, max_df in ((MIN_DOCUMENTS, MAX_DOCUMENT_SHARE), (1, 1.0)):  # a tiny corpus keeps every word
            try:
                counter = CountVectorizer(max_features=size, min_df=min_df if n > 2 else 1, max_df=max_df if n > 2 else 1.0, **TOKENS)
                counter.fit(texts)
                return cls(list(counter.get_feature_names_out()))
            except ValueError:  # no word left at these bounds
                continue
        raise DataError("the documents hold no words (every one is empty, or only stop words and single letters).")

    def counts(self, texts: list[str]):
        """A scipy CSR matrix ``(documents, words)`` of word counts."""
        return self.vectorizer().transform(texts)


TOKENS = {"lowercase": True, "stop_words": "english", "token_pattern": r"(?u)\b\w\w+\b", "dtype": np.float32}


def bag_length(counts) -> int:
    """The bag length for a corpus of word ``counts`` (CSR): the 99.5th percentile of distinct words per document,
    rounded up to a multiple of 16, between 16 and 1024."""
    distinct = np.diff(counts.indptr)
    return int(min(LONGEST_BAG, max(16, math.ceil(np.percentile(distinct, BAG_QUANTILE) / 16) * 16)))


def as_bags(counts, length: int) -> tuple[np.ndarray, int]:
    """Word ``counts`` (CSR ``(n, words)``) -> bags ``(n, 2, length)`` float32, and how many documents had
    more distinct words than fit (they keep their most frequent)."""
    counts = counts.tocsr()
    bags = np.zeros((counts.shape[0], 2, length), dtype=np.float32)
    cut = 0
    for i in range(counts.shape[0]):
        start, end = counts.indptr[i], counts.indptr[i + 1]
        ids, values = counts.indices[start:end], counts.data[start:end]
        if len(ids) > length:
            keep = np.argsort(-values, kind="stable")[:length]
            ids, values, cut = ids[keep], values[keep], cut + 1
        bags[i, 0, : len(ids)], bags[i, 1, : len(ids)] = ids, values
    return bags, cut


def select(texts: Texts, split: str) -> Texts:
    """The documents of ``split``: the archive's own division when it has one (``20news-bydate-train/``,
    ``-test/``), else the fixed 80/20 split of every source without one."""
    if split == "all":
        return texts
    rows = np.flatnonzero(np.asarray(texts.parts) == split) if texts.parts is not None else fixed_split(len(texts.texts), split)
    if not len(rows):
        raise DataError(f"the {split!r} part of the documents is empty; use split='all'.")
    pick = lambda values: None if values is None else [values[i] for i in rows]  # noqa: E731
    return Texts(pick(texts.texts), pick(texts.ids), pick(texts.labels), texts.latin1, pick(texts.parts))


def documents(texts: Texts, vocabulary: Vocabulary | None = None, length: int | None = None, where: str = "the documents") -> RawData:
    """``texts`` (one split's) as bags of words over ``vocabulary`` (fitted on them when None), ``length``
    words per bag (sized to them when None). An empty document is refused, naming it."""
    for i, text in enumerate(texts.texts):
        if not text.strip():
            raise DataError(f"{where}: document {texts.ids[i]!r} is empty; remove it, or give it text.")
    vocabulary = vocabulary or Vocabulary.fit(texts.texts)
    counts = vocabulary.counts(texts.texts)
    length = length or bag_length(counts)
    bags, cut = as_bags(counts, length)
    if cut:
        print(f"aekit: {cut} of {len(bags)} documents have more than {length} distinct words; each keeps its {length} most frequent", file=sys.stderr)
    classes = sorted(set(texts.labels)) if texts.labels is not None else None
    y = np.array([classes.index(label) for label in texts.labels]) if classes is not None else None
    return RawData(bags, y, classes=classes, presplit=True, ids=texts.ids, vocabulary=vocabulary.words, texts=texts.texts)
