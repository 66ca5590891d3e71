"""HNSW graph index (hnswlib): incremental inserts, updates and deletes, keyed by doc.

hnswlib labels are the store's docs, which are never reused.  An update rewrites
the label's vector in place; a delete marks the label deleted, and hnswlib reuses
deleted slots for new labels.  hnswlib keeps the only in-memory copy of the
vectors: an exact scan over a few allowed docs reads them from the store instead
(``AllowList.vectors``).

Searches release the GIL inside hnswlib and run side by side (a shared lock);
writes, resizes and saves take the lock exclusively.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import hnswlib
import numpy as np

from searchd.config.spec import Distance, IndexSpec
from searchd.index.base import AllowList, ApproximateIndex, Hit, distances, top_k

SPACES: dict[Distance, Literal["cosine", "ip", "l2"]] = {Distance.COSINE: "cosine", Distance.DOT: "ip", Distance.L2_SQUARED: "l2"}
_INITIAL_CAPACITY = 1024
_PARALLEL_FROM = 64  # batches at least this big are inserted on every core


def _weaviate_distance(metric: Distance, raw: np.ndarray) -> np.ndarray:
    # hnswlib's 'ip' is 1 - dot; Weaviate's dot distance is -dot.  cosine and l2 already agree.
    return raw - 1.0 if metric is Distance.DOT else raw


class SharedLock:
    """Many readers or one writer (searches share; writes are exclusive)."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            while self._writing:
                self._condition.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._condition:
                self._readers -= 1
                if not self._readers:
                    self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            while self._writing or self._readers:
                self._condition.wait()
            self._writing = True
        try:
            yield
        finally:
            with self._condition:
                self._writing = False
                self._condition.notify_all()


class HnswIndex(ApproximateIndex):
    def __init__(self, spec: IndexSpec, dimensions: int, graph: hnswlib.Index | None = None, live: set[int] | None = None) -> None:
        if spec.distance not in SPACES:
            raise ValueError(f"hnsw does not support {spec.distance.value} distance")
        self.metric = spec.distance
        self.dimensions = dimensions
        self._lock = SharedLock()
        if graph is None:
            graph = hnswlib.Index(space=SPACES[spec.distance], dim=dimensions)
            graph.init_index(max_elements=_INITIAL_CAPACITY, ef_construction=spec.ef_construction, M=spec.max_connections, allow_replace_deleted=True)
        graph.set_num_threads(1)  # one request, one core: queries scale by running side by side
        self._graph = graph
        self.spec = spec
        self._live: set[int] = live if live is not None else set()
        # Docs marked deleted whose label hnswlib may still hold (a re-insert must unmark it, not add it twice).
        self._deleted: set[int] = set(graph.get_ids_list()) - self._live if live is not None else set()
        self._threads = max(1, os.cpu_count() or 1)

    @property
    def spec(self) -> IndexSpec:
        return self._spec

    @spec.setter
    def spec(self, spec: IndexSpec) -> None:
        """Search-time settings change in place (a reload); ef is the only one hnswlib holds."""
        self._spec = spec
        self._graph.set_ef(spec.ef)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, doc: object) -> bool:
        return doc in self._live

    def _reserve(self, extra: int) -> None:
        needed = self._graph.get_current_count() + extra
        capacity = self._graph.get_max_elements()
        if needed > capacity:
            self._graph.resize_index(max(needed, capacity * 2))

    def upsert(self, doc: int, vector: np.ndarray) -> None:
        self.upsert_many([doc], [vector])

    def upsert_many(self, docs: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        if not len(docs):
            return
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(docs), self.dimensions)
        latest: dict[int, int] = {int(doc): row for row, doc in enumerate(docs)}  # last write wins
        with self._lock.exclusive():
            updates, inserts = [], []
            for doc in latest:
                if doc in self._live:
                    updates.append(doc)
                elif doc in self._deleted:
                    self._deleted.discard(doc)
                    try:
                        self._graph.unmark_deleted(doc)  # its slot was not reused yet: update it in place
                        updates.append(doc)
                    except RuntimeError:  # hnswlib gave its slot to another doc
                        inserts.append(doc)
                else:
                    inserts.append(doc)
            self._reserve(len(inserts))
            # An update must not take a vacant slot (the old one would stay live under the same label).
            for group, replace in ((updates, False), (inserts, True)):
                if group:
                    threads = self._threads if len(group) >= _PARALLEL_FROM else 1
                    self._graph.add_items(matrix[[latest[d] for d in group]], np.asarray(group, dtype=np.int64), num_threads=threads, replace_deleted=replace)
            self._live.update(latest)

    def delete(self, doc: int) -> None:
        with self._lock.exclusive():
            if doc in self._live:
                self._graph.mark_deleted(doc)
                self._live.discard(doc)
                self._deleted.add(doc)

    def _approximate(self, query: np.ndarray, k: int) -> list[Hit]:
        with self._lock.shared():
            k = min(k, len(self._live))
            if k == 0:
                return []
            try:
                labels, raw = self._graph.knn_query(query, k=k, num_threads=1)  # hnswlib searches with max(ef, k)
            except RuntimeError:
                # hnswlib cannot return k results when some nodes are unreachable from the entry
                # point (k close to the index size): answer exactly instead of failing.
                return self._exact(query, k)
        return [Hit(int(label), float(d)) for label, d in zip(labels[0].tolist(), _weaviate_distance(self.metric, raw[0]).tolist())]

    def _exact(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]:
        stored = allowed.vectors() if allowed is not None else None
        if stored is not None and isinstance(stored[1], np.ndarray) and stored[1].shape[1:] == (self.dimensions,):
            docs, read = stored[0], np.asarray(stored[1])
            keep = [i for i, d in enumerate(docs) if d in self._live]  # the store may be a write ahead of the index
            if not keep:
                return []
            matrix = read[keep]
            if self.metric is Distance.COSINE:
                norms = np.linalg.norm(matrix, axis=1, keepdims=True)
                matrix = matrix / np.where(norms > 0, norms, 1.0)
            return top_k([docs[i] for i in keep], distances(matrix, query, self.metric), k)
        with self._lock.shared():
            docs = sorted(self._live if allowed is None else (d for d in allowed if d in self._live))
            if not docs:
                return []
            matrix = self._graph.get_items(docs, return_type="numpy")
        return top_k(docs, distances(np.asarray(matrix, dtype=np.float32), query, self.metric), k)

    def save(self, directory: Path) -> None:
        with self._lock.exclusive():
            self._graph.save_index(str(directory / "graph.bin"))
            (directory / "live.json").write_text(json.dumps(sorted(self._live)))

    @classmethod
    def restore(cls, spec: IndexSpec, dimensions: int, directory: Path) -> HnswIndex:
        live = json.loads((directory / "live.json").read_text())
        graph = hnswlib.Index(space=SPACES[spec.distance], dim=dimensions)
        graph.load_index(str(directory / "graph.bin"), allow_replace_deleted=True)
        if graph.get_current_count() < len(live):
            raise ValueError("saved hnsw graph holds fewer items than its live list")
        return cls(spec, dimensions, graph, {int(d) for d in live})

    def close(self) -> None:
        pass
