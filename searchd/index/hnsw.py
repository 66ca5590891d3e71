"""HNSW graph index (hnswlib): incremental inserts, updates and deletes.

hnswlib keys items by integer label; we keep label ↔ id maps beside it.  An update
marks the old label deleted and adds a new one (hnswlib reuses deleted slots), so
a replaced vector is never returned.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import hnswlib
import numpy as np

from searchd.config.spec import Distance, IndexSpec
from searchd.index.base import ApproximateIndex, Hit
from searchd.index.flat import FlatIndex

SPACES: dict[Distance, Literal["cosine", "ip", "l2"]] = {Distance.COSINE: "cosine", Distance.DOT: "ip", Distance.L2_SQUARED: "l2"}
_INITIAL_CAPACITY = 1024


def _weaviate_distance(metric: Distance, raw: np.ndarray) -> np.ndarray:
    # hnswlib's 'ip' is 1 - dot; Weaviate's dot distance is -dot.  cosine and l2 already agree.
    return raw - 1.0 if metric is Distance.DOT else raw


class HnswIndex(ApproximateIndex):
    def __init__(self, spec: IndexSpec, dimensions: int, graph: hnswlib.Index | None = None) -> None:
        if spec.distance not in SPACES:
            raise ValueError(f"hnsw does not support {spec.distance.value} distance")
        self.spec = spec
        self.metric = spec.distance
        self.dimensions = dimensions
        self._lock = threading.RLock()
        self._labels: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._next_label = 0
        if graph is None:
            graph = hnswlib.Index(space=SPACES[spec.distance], dim=dimensions)
            graph.init_index(max_elements=_INITIAL_CAPACITY, ef_construction=spec.ef_construction, M=spec.max_connections, allow_replace_deleted=True)
        graph.set_num_threads(1)  # one request, one core: the server scales by requests
        self._graph = graph
        # A plain copy of the vectors: hnswlib's get_items is too slow for the exact scans of
        # selective filters (17 ms for 1,200 vectors), at the price of a second copy in memory.
        self._mirror = FlatIndex(spec.distance, dimensions)

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._labels

    def _reserve(self, extra: int) -> None:
        needed = self._graph.get_current_count() + extra
        capacity = self._graph.get_max_elements()
        if needed > capacity:
            self._graph.resize_index(max(needed, capacity * 2))

    def upsert(self, object_id: str, vector: np.ndarray) -> None:
        self.upsert_many([object_id], [vector])

    def upsert_many(self, object_ids: Sequence[str], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        if not len(object_ids):
            return
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(object_ids), self.dimensions)
        with self._lock:
            latest: dict[str, int] = {object_id: row for row, object_id in enumerate(object_ids)}  # last write wins
            for object_id in latest:
                self._forget(object_id)
            labels = np.arange(self._next_label, self._next_label + len(latest), dtype=np.int64)
            self._next_label += len(latest)
            self._reserve(len(latest))
            # One thread: a multi-threaded insert builds a different graph on every run, and
            # reproducible results (and tests) are worth more than a faster import here.
            self._graph.add_items(matrix[list(latest.values())], labels, num_threads=1, replace_deleted=True)
            for object_id, label in zip(latest, labels.tolist()):
                self._labels[object_id] = label
                self._ids[label] = object_id
            self._mirror.upsert_many(list(latest), matrix[list(latest.values())])

    def _forget(self, object_id: str) -> None:
        label = self._labels.pop(object_id, None)
        if label is not None:
            self._graph.mark_deleted(label)
            del self._ids[label]
            self._mirror.delete(object_id)

    def delete(self, object_id: str) -> None:
        with self._lock:
            self._forget(object_id)

    def _approximate(self, query: np.ndarray, k: int) -> list[Hit]:
        with self._lock:
            k = min(k, len(self._labels))
            if k == 0:
                return []
            self._graph.set_ef(max(self.spec.ef, k))
            try:
                labels, raw = self._graph.knn_query(query, k=k)
            except RuntimeError:
                # hnswlib cannot return k results when some nodes are unreachable from the entry
                # point (k close to the index size): answer exactly instead of failing.
                return self._exact(query, k)
            ids = [self._ids[int(label)] for label in labels[0]]
        return [Hit(object_id, float(d)) for object_id, d in zip(ids, _weaviate_distance(self.metric, raw[0]))]

    def save(self, directory: Path) -> None:
        with self._lock:
            self._graph.save_index(str(directory / "graph.bin"))
            self._mirror.save(directory)
            (directory / "labels.json").write_text(json.dumps({"next": self._next_label, "labels": self._labels}))

    @classmethod
    def restore(cls, spec: IndexSpec, dimensions: int, directory: Path) -> HnswIndex:
        meta = json.loads((directory / "labels.json").read_text())
        graph = hnswlib.Index(space=SPACES[spec.distance], dim=dimensions)
        graph.load_index(str(directory / "graph.bin"), allow_replace_deleted=True)
        index = cls(spec, dimensions, graph)
        index._labels = {k: int(v) for k, v in meta["labels"].items()}
        index._ids = {v: k for k, v in index._labels.items()}
        index._next_label = int(meta["next"])
        index._mirror = FlatIndex.restore(spec.distance, dimensions, directory)
        if len(index._mirror) != len(index._labels):
            raise ValueError("saved hnsw vectors do not match its labels")
        return index

    def close(self) -> None:
        pass
