"""Named data sources (MNIST, Fashion-MNIST, digits, ODDS) and where their files live."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError, DownloadError
from .dataset import RawData
from .download import download
from .files import read_mat
from .text import Texts, read_text_archive
from .idx import read_idx


def data_roots(data_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for data files, in order: ``data_dir``, ``$AEKIT_DATA``, ``~/.cache/aekit``."""
    roots = [Path(data_dir)] if data_dir is not None else []
    if os.environ.get("AEKIT_DATA"):
        roots.append(Path(os.environ["AEKIT_DATA"]))
    roots.append(Path.home() / ".cache" / "aekit")
    return roots


def find_file(roots: list[Path], folder: str, filename: str) -> Path | None:
    """The first ``root/folder/filename`` or ``root/filename`` that exists (gzipped or not)."""
    stem = filename.removesuffix(".gz")
    for root in roots:
        for base in (root / folder, root):
            for candidate in (base / filename, base / stem):
                if candidate.is_file():
                    return candidate
    return None


@dataclass(frozen=True)
class IdxSet:
    """An MNIST-style data set: four IDX files on a few mirrors, each with its published md5."""

    folder: str
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    classes: tuple[str, ...]

    def files(self, split: str) -> tuple[str, str]:
        prefix = "train" if split == "train" else "t10k"
        return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"

    def locate(self, filename: str, roots: list[Path], allow_download: bool) -> Path:
        found = find_file(roots, self.folder, filename)
        if found is not None:
            return found
        target = roots[0] / self.folder / filename
        searched = ", ".join(str(r / self.folder) for r in roots)
        if not allow_download:
            raise DataError(f"{filename} not found (searched {searched}); put the file in one of these folders.")
        try:
            return download([m + filename for m in self.mirrors], target, self.md5[filename])
        except DownloadError as exc:
            raise DownloadError(
                f"{filename} is not on this machine and could not be downloaded ({exc}). "
                f"Put the {self.folder} IDX files ({', '.join(self.md5)}) in {roots[0] / self.folder}, "
                "or pass data_dir= / set AEKIT_DATA to the folder that holds them."
            ) from None

    def read(self, split: str, roots: list[Path], allow_download: bool = True) -> RawData:
        parts = ["train", "test"] if split == "all" else [split]
        xs, ys = [], []
        for part in parts:
            images_name, labels_name = self.files(part)
            images = read_idx(self.locate(images_name, roots, allow_download))
            labels = read_idx(self.locate(labels_name, roots, allow_download))
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise DataError(
                    f"{self.folder} {part} files disagree: images {images.shape}, labels {labels.shape}; "
                    "expected (n, rows, cols) and (n,)."
                )
            xs.append(images[:, None])  # add the channel axis: (n, 1, rows, cols)
            ys.append(labels)
        return RawData(np.concatenate(xs), np.concatenate(ys), pixel_max=255.0, classes=list(self.classes), presplit=True)


MNIST = IdxSet(
    folder="mnist",
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    classes=tuple(str(d) for d in range(10)),
)

FASHION_MNIST = IdxSet(
    folder="fashion-mnist",
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
)


@dataclass(frozen=True)
class TextArchive:
    """A corpus published as one archive of text files (one sub-folder per class), with its sha256."""

    folder: str
    filename: str
    url: str
    sha256: str

    def read(self, split: str, roots: list[Path], allow_download: bool = True) -> Texts:
        found = find_file(roots, self.folder, self.filename)
        if found is None:
            target = roots[0] / self.folder / self.filename
            if not allow_download:
                raise DataError(f"{self.filename} not found (searched {', '.join(str(r / self.folder) for r in roots)}).")
            try:
                found = download([self.url], target, self.sha256, algorithm="sha256")
            except DownloadError as exc:
                raise DownloadError(
                    f"{self.filename} is not on this machine and could not be downloaded ({exc}). "
                    f"Put it in {target.parent}, or pass data_dir= / set AEKIT_DATA to the folder that holds {self.folder}/{self.filename}."
                ) from None
        return read_text_archive(found)


#: 20 Newsgroups, "bydate" (18,846 posts; 20news-bydate-train/ and -test/ are its train and test splits), as scikit-learn fetches it.
NEWSGROUPS = TextArchive(
    folder="20news",
    filename="20news-bydate.tar.gz",
    url="https://ndownloader.figshare.com/files/5975967",
    sha256="8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610",
)


def read_digits() -> RawData:
    """scikit-learn's bundled 8x8 digits (1,797 images, pixel values 0-16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return RawData(bunch.images[:, None], bunch.target, pixel_max=16.0, classes=[str(d) for d in range(10)])


def read_odds(name: str, roots: list[Path]) -> RawData:
    """An ODDS outlier-detection set ``name.mat`` (``X`` features, ``y`` 1 = outlier)."""
    path = find_file(roots, "odds", f"{name}.mat")
    if path is None:
        searched = ", ".join(str(r / "odds") for r in roots)
        raise DataError(
            f"ODDS set {name!r} not found: put {name}.mat (from the ODDS library) in one of {searched}, "
            "or pass data_dir= / set AEKIT_DATA."
        )
    return read_mat(path)
