"""Exact search over a numpy matrix: the reference every ANN index is measured against."""

from __future__ import annotations

import threading
from collections.abc import Collection

import numpy as np

from searchd.config.spec import Distance
from searchd.index.base import Hit


def distances(matrix: np.ndarray, query: np.ndarray, metric: Distance) -> np.ndarray:
    """Weaviate's distance definitions (cosine expects unit rows and query)."""
    if metric is Distance.COSINE:
        return 1.0 - matrix @ query
    if metric is Distance.DOT:
        return -(matrix @ query)
    if metric is Distance.L2_SQUARED:
        diff = matrix - query
        return np.einsum("ij,ij->i", diff, diff)
    if metric is Distance.MANHATTAN:
        return np.abs(matrix - query).sum(axis=1)
    return (matrix != query).sum(axis=1).astype(np.float32)  # hamming


def prepare(vector: np.ndarray, metric: Distance) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    if metric is Distance.COSINE:
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector
    return vector


class FlatIndex:
    def __init__(self, metric: Distance, dimensions: int) -> None:
        self.metric = metric
        self.dimensions = dimensions
        self._matrix = np.zeros((16, dimensions), dtype=np.float32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    def upsert(self, object_id: str, vector: np.ndarray) -> None:
        row_vector = prepare(vector, self.metric)
        with self._lock:
            row = self._rows.get(object_id)
            if row is None:
                row = len(self._ids)
                if row == len(self._matrix):
                    self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
                self._ids.append(object_id)
                self._rows[object_id] = row
            self._matrix[row] = row_vector

    def delete(self, object_id: str) -> None:
        with self._lock:
            row = self._rows.pop(object_id, None)
            if row is None:
                return
            last = len(self._ids) - 1
            if row != last:  # move the last row into the hole to stay dense
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._ids[row] = moved
                self._rows[moved] = row
            self._ids.pop()

    def vector(self, object_id: str) -> np.ndarray | None:
        with self._lock:
            row = self._rows.get(object_id)
            return None if row is None else self._matrix[row].copy()

    def search(self, query: np.ndarray, k: int, allowed: Collection[str] | None = None) -> list[Hit]:
        q = prepare(query, self.metric)
        with self._lock:
            if allowed is None:
                ids = self._ids
                scores = distances(self._matrix[: len(ids)], q, self.metric)
            else:
                rows = [self._rows[i] for i in allowed if i in self._rows]
                ids = [self._ids[r] for r in rows]
                scores = distances(self._matrix[rows], q, self.metric)
        if not ids or k <= 0:
            return []
        k = min(k, len(ids))
        if k < len(ids):
            # Keep every row tied with the k-th so that ties are broken by id, deterministically.
            kth = np.partition(scores, k - 1)[k - 1]
            top = np.flatnonzero(scores <= kth)
        else:
            top = np.arange(len(ids))
        order = sorted(top, key=lambda i: (float(scores[i]), ids[i]))[:k]
        return [Hit(ids[i], float(scores[i])) for i in order]
