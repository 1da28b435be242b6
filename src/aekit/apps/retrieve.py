"""Retrieval: nearest neighbours in code space, exact or through an approximate (FAISS) index."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import atomic_write, read_json
from ..errors import CheckpointError, ConfigError

#: From this many indexed codes on, ``approximate="auto"`` builds a FAISS IVF index.
APPROXIMATE_FROM = 50_000
METRICS = ("cosine", "l2")


@dataclass
class CodeIndex:
    """Codes of a collection, searchable by cosine similarity or L2 distance.

    Exact search is a brute-force matrix product (chunked); the approximate
    search is a FAISS inverted-file index (``IndexIVFFlat``: a k-means coarse
    quantiser with ``nlist`` cells, ``nprobe`` of them visited per query).
    """

    codes: np.ndarray  # (n, d) float32; unit length for cosine
    labels: np.ndarray | None = None
    metric: str = "cosine"
    info: dict[str, Any] = field(default_factory=dict)  # what was indexed (run, data set, split)
    faiss_index: Any = None
    nprobe: int = 16

    @classmethod
    def build(cls, codes: np.ndarray, labels: np.ndarray | None = None, metric: str = "cosine", approximate: bool | str = "auto", nlist: int | None = None, info: dict | None = None) -> "CodeIndex":
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; use 'cosine' or 'l2'.")
        codes = _prepare(np.asarray(codes, dtype=np.float32), metric)
        index = cls(codes, None if labels is None else np.asarray(labels), metric, dict(info or {}))
        if approximate == "auto":
            approximate = len(codes) >= APPROXIMATE_FROM
        if approximate:
            index.faiss_index = _build_faiss(codes, metric, nlist or max(1, int(4 * np.sqrt(len(codes)))))
        return index

    @property
    def approximate(self) -> bool:
        return self.faiss_index is not None

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query: (similarities or distances, indices), each (m, k), best first."""
        if not 1 <= k <= len(self.codes):
            raise ConfigError(f"k must be between 1 and the {len(self.codes)} indexed codes, got {k}.")
        queries = _prepare(np.asarray(queries, dtype=np.float32).reshape(len(queries), -1), self.metric)
        if queries.shape[1] != self.codes.shape[1]:
            raise ConfigError(f"queries have {queries.shape[1]} code units, the index {self.codes.shape[1]}.")
        if self.approximate:
            self.faiss_index.nprobe = self.nprobe
            scores, indices = self.faiss_index.search(queries, k)
            return (scores if self.metric == "cosine" else np.sqrt(np.maximum(scores, 0))), indices
        return _exact(self.codes, queries, k, self.metric)

    def save(self, path: str | Path) -> Path:
        """A folder with ``codes.npy``, ``labels.npy``, ``index.json`` and, if approximate, ``faiss.index``: no pickle."""
        path = Path(path)
        for name, array in (("codes.npy", self.codes), ("labels.npy", self.labels)):
            if array is not None:
                buffer = io.BytesIO()
                np.save(buffer, array, allow_pickle=False)
                atomic_write(path / name, buffer.getvalue())
        if self.approximate:
            import faiss

            atomic_write(path / "faiss.index", faiss.serialize_index(self.faiss_index).tobytes())
        meta = {"metric": self.metric, "approximate": self.approximate, "nprobe": self.nprobe, "size": len(self.codes), **self.info}
        atomic_write(path / "index.json", json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CodeIndex":
        path = Path(path)
        meta = read_json(path / "index.json", "not an aekit index folder (no index.json)")
        try:
            codes = np.load(path / "codes.npy", allow_pickle=False)
            labels = np.load(path / "labels.npy", allow_pickle=False) if (path / "labels.npy").exists() else None
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: the index arrays cannot be read ({exc}).") from None
        if not isinstance(meta, dict) or meta.get("metric") not in ("cosine", "l2"):
            raise CheckpointError(f"{path / 'index.json'} is not an aekit index description; rebuild the index with aekit index.")
        nprobe = meta.get("nprobe", 16)
        if not (isinstance(nprobe, int) and not isinstance(nprobe, bool) and 1 <= nprobe <= 1 << 20):
            raise CheckpointError(f"{path / 'index.json'}: nprobe must be a whole number from 1 to {1 << 20:,}, got {nprobe!r}; rebuild the index with aekit index.")
        for key in ("run", "dataset", "split", "data_dir"):
            if meta.get(key) is not None and not isinstance(meta[key], str):
                raise CheckpointError(f"{path / 'index.json'}: {key} must be text, got {meta[key]!r}; rebuild the index with aekit index.")
        info = {k: v for k, v in meta.items() if k not in ("metric", "approximate", "nprobe", "size")}
        index = cls(codes, labels, meta["metric"], info, nprobe=nprobe)
        if meta.get("approximate"):
            import faiss

            try:
                index.faiss_index = faiss.deserialize_index(np.frombuffer((path / "faiss.index").read_bytes(), dtype=np.uint8))
            except Exception as exc:  # FAISS raises RuntimeError for a corrupt file, OSError for a missing one
                raise CheckpointError(f"{path / 'faiss.index'} is missing or corrupt ({type(exc).__name__}); rebuild the index with aekit index.") from None
            if index.faiss_index.ntotal != len(codes) or index.faiss_index.d != codes.shape[1]:
                raise CheckpointError(f"{path / 'faiss.index'} does not match the index's codes; rebuild the index with aekit index.")
        return index


def precision_at_k(index: CodeIndex, queries: np.ndarray, query_labels: np.ndarray, k: int = 10, exclude_self: bool = False) -> float:
    """Mean share of each query's ``k`` neighbours that have the query's label.

    With ``exclude_self`` (queries drawn from the indexed set) the first hit, the query itself, is dropped.
    """
    if index.labels is None:
        raise ConfigError("precision@k needs labels on the indexed data.")
    _, hits = index.search(queries, k + 1 if exclude_self else k)
    hits = hits[:, 1:] if exclude_self else hits
    return float((index.labels[hits] == np.asarray(query_labels)[:, None]).mean())


def _prepare(codes: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        codes = codes / np.maximum(np.linalg.norm(codes, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(codes, dtype=np.float32)


def _exact(codes: np.ndarray, queries: np.ndarray, k: int, metric: str, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    base = torch.from_numpy(codes)
    norms = base.pow(2).sum(1)
    scores, indices = [], []
    for start in range(0, len(queries), chunk):
        q = torch.from_numpy(queries[start : start + chunk])
        if metric == "cosine":
            s, i = (q @ base.T).topk(k, dim=1)
        else:
            d2 = q.pow(2).sum(1, keepdim=True) - 2 * q @ base.T + norms
            s, i = d2.topk(k, dim=1, largest=False)
            s = s.clamp_min(0).sqrt()
        scores.append(s.numpy())
        indices.append(i.numpy())
    return np.concatenate(scores), np.concatenate(indices)


def _build_faiss(codes: np.ndarray, metric: str, nlist: int):
    try:
        import faiss
    except ImportError:
        raise ConfigError("an approximate index needs FAISS: pip install faiss-cpu (or aekit[ann]); or use exact search.") from None
    d = codes.shape[1]
    nlist = min(nlist, len(codes))
    quantizer = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2)
    index.train(codes)
    index.add(codes)
    return index
