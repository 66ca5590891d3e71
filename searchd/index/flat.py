"""Exact search over a numpy matrix: the reference every ANN index is measured against."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from searchd.config.spec import Distance
from searchd.index.base import AllowList, Hit, distances, prepare, top_k


class FlatIndex:
    def __init__(self, metric: Distance, dimensions: int) -> None:
        self.metric = metric
        self.dimensions = dimensions
        self._matrix = np.zeros((16, dimensions), dtype=np.float32)
        self._ids: list[int] = []  # the doc of each row
        self._docs = np.zeros(16, dtype=np.int64)  # the same, as an array (for masks)
        self._rows: dict[int, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._rows

    def upsert(self, doc: int, vector: np.ndarray) -> None:
        self.upsert_many([doc], [vector])

    def upsert_many(self, docs: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        with self._lock:
            for doc, vector in zip(docs, vectors):
                row = self._rows.get(doc)
                if row is None:
                    row = len(self._ids)
                    if row == len(self._matrix):
                        self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
                        self._docs = np.concatenate([self._docs, np.zeros_like(self._docs)])
                    self._ids.append(doc)
                    self._docs[row] = doc
                    self._rows[doc] = row
                self._matrix[row] = prepare(vector, self.metric)

    def delete(self, doc: int) -> None:
        with self._lock:
            row = self._rows.pop(doc, None)
            if row is None:
                return
            last = len(self._ids) - 1
            if row != last:  # move the last row into the hole to stay dense
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._ids[row] = moved
                self._docs[row] = moved
                self._rows[moved] = row
            self._ids.pop()

    def items(self) -> tuple[list[int], np.ndarray]:
        """A copy of every id and its (prepared) vector."""
        with self._lock:
            return list(self._ids), self._matrix[: len(self._ids)].copy()

    def vectors(self, docs: Sequence[int]) -> tuple[list[int], np.ndarray]:
        with self._lock:
            found = [i for i in docs if i in self._rows]
            return found, self._matrix[[self._rows[i] for i in found]]

    def search(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]:
        q = prepare(query, self.metric)
        with self._lock:
            if allowed is None:
                ids = list(self._ids)
                scores = distances(self._matrix[: len(ids)], q, self.metric)
            else:
                rows = np.flatnonzero(allowed.passes(self._docs[: len(self._ids)]))
                ids = self._docs[rows].tolist()
                scores = distances(self._matrix[rows], q, self.metric)
        return top_k(ids, scores, k)

    def save(self, directory: Path) -> None:
        with self._lock:
            np.save(directory / "vectors.npy", self._matrix[: len(self._ids)])
            (directory / "ids.json").write_text(json.dumps(self._ids))

    @classmethod
    def restore(cls, metric: Distance, dimensions: int, directory: Path) -> FlatIndex:
        index = cls(metric, dimensions)
        matrix = np.load(directory / "vectors.npy")
        ids = json.loads((directory / "ids.json").read_text())
        if matrix.shape != (len(ids), dimensions):
            raise ValueError("saved flat index does not match its id list")
        index._matrix = np.concatenate([matrix.astype(np.float32), np.zeros((16, dimensions), np.float32)])
        index._ids = [int(d) for d in ids]
        index._docs = np.concatenate([np.asarray(index._ids, dtype=np.int64), np.zeros(16, np.int64)])
        index._rows = {doc: row for row, doc in enumerate(index._ids)}
        return index

    def close(self) -> None:
        pass
