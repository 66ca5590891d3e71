"""HNSW graph index (hnswlib): incremental inserts, updates and deletes, keyed by doc.

hnswlib labels are the store's docs, which are never reused.  An update rewrites
the label's vector in place; a delete marks the label deleted, and hnswlib reuses
deleted slots for new labels.  hnswlib keeps the only float copy of the vectors in
memory; an exact scan over a few allowed docs ranks them by their int8 scan codes
(``searchd.index.codes``) and reads the best candidates' floats from the store
(``AllowList.vectors``) for exact distances.

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
from typing import Any, Literal, cast

import hnswlib
import numpy as np

from searchd.config.spec import Distance, IndexSpec
from searchd.index.base import AllowList, ApproximateIndex, Hit, VectorReader, columns, distances, hits_of, top_k
from searchd.index.codes import ScanCodes, rerank_count

SPACES: dict[Distance, Literal["cosine", "ip", "l2"]] = {Distance.COSINE: "cosine", Distance.DOT: "ip", Distance.L2_SQUARED: "l2"}
_INITIAL_CAPACITY = 1024
_PARALLEL_FROM = 64  # batches at least this big are inserted on every core
_FORMAT = 1  # of a saved graph (graph.json + graph.npz)
_STATE_ARRAYS = ("label_lookup_external", "label_lookup_internal", "element_levels", "link_lists")


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
    def __init__(self, spec: IndexSpec, dimensions: int, graph: hnswlib.Index | None = None, codes: ScanCodes | None = None) -> None:
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
        # The live docs are the docs with a scan code (ScanCodes is also their set).
        self._codes = codes if codes is not None else ScanCodes(dimensions, spec.distance)
        self.spec = spec
        # Docs marked deleted whose label hnswlib may still hold (a re-insert must unmark it, not add it twice).
        self._deleted: set[int] = set(graph.get_ids_list()) - set(self._codes) if codes is not None else set()
        self.saved_size = len(self._codes)  # restored: how many docs the save held (its manifest's count)
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
        return len(self._codes)

    def __contains__(self, doc: object) -> bool:
        return doc in self._codes

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
        coded = self._comparable(matrix[list(latest.values())])
        with self._lock.exclusive():
            updates, inserts = [], []
            for doc in latest:
                if doc in self._codes:
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
                    # Updates on one thread: hnswlib's in-place updates run side by side can leave an updated node
                    # unreachable: its new vector no longer finds it (tests/test_indexes.py, updated ids; ~7% of runs on 2 cores).
                    # Inserts that may reuse a deleted slot are updates inside hnswlib: one thread too.
                    threads = self._threads if replace and not self._deleted and len(group) >= _PARALLEL_FROM else 1
                    self._graph.add_items(matrix[[latest[d] for d in group]], np.asarray(group, dtype=np.int64), num_threads=threads, replace_deleted=replace)
            self._codes.put(np.fromiter(latest, dtype=np.int64, count=len(latest)), coded)

    def delete(self, doc: int) -> None:
        with self._lock.exclusive():
            if doc in self._codes:
                self._graph.mark_deleted(doc)
                self._codes.remove(doc)
                self._deleted.add(doc)

    def _approximate(self, query: np.ndarray, k: int) -> list[Hit]:
        found = self._nearest(query, k)
        return self._exact(query, k) if found is None else hits_of(found[0].tolist(), found[1].tolist())

    def _approximate_columns(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        found = self._nearest(query, k)
        return columns(self._exact(query, k)) if found is None else found

    def _nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The graph's k nearest (docs, Weaviate distances); None when it cannot give k (the caller scans exactly)."""
        with self._lock.shared():
            k = min(k, len(self._codes))
            if k == 0:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
            try:
                labels, raw = self._graph.knn_query(query, k=k, num_threads=1)  # hnswlib searches with max(ef, k)
            except RuntimeError:
                # hnswlib cannot return k results when some nodes are unreachable from the entry
                # point (k close to the index size): answer exactly instead of failing.
                return None
        return labels[0].astype(np.int64), _weaviate_distance(self.metric, raw[0])

    def _comparable(self, rows: np.ndarray) -> np.ndarray:
        """Rows as hnswlib compares them (it keeps cosine vectors normalised)."""
        if self.metric is not Distance.COSINE:
            return rows
        unit: np.ndarray = rows / (np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None] + 1e-30)
        return unit

    def _exact(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]:
        candidates = None
        if allowed is not None:
            with self._lock.shared():
                candidates = self._codes.nearest(query, self._codes.held(allowed.docs), rerank_count(k))
            found = self._exact_from_store(query, k, allowed, self._codes, candidates)
            if found is not None:
                return found
        with self._lock.shared():
            docs = list(self._codes) if candidates is None else [d for d in candidates.tolist() if d in self._codes]
            if not docs:
                return []
            matrix = self._graph.get_items(docs, return_type="numpy")
        return top_k(docs, distances(np.asarray(matrix, dtype=np.float32), query, self.metric), k)

    def save(self, directory: Path) -> None:
        """The graph without its vectors (the store has them): links, labels and levels, in .npy arrays and a JSON header.

        Only deleted slots keep their vectors (the store no longer has them, and searches still walk through them).
        """
        with self._lock.exclusive():
            state: dict[str, Any] = dict(cast(Any, self._graph).__getstate__()[0])  # hnswlib's own arrays; written below as .npz and JSON
            live = list(self._codes)  # ascending
        count, width = int(state["cur_element_count"]), int(state["size_data_per_element"])
        level0 = np.asarray(state.pop("data_level0")).reshape(count, width)
        start, end = int(state["offset_data"]), int(state["offset_data"]) + 4 * self.dimensions
        labels = level0[:, int(state["label_offset"]) : int(state["label_offset"]) + 8].copy().view(np.uint64).ravel()
        dead = np.flatnonzero(~np.isin(labels, np.asarray(live, dtype=np.uint64)))
        arrays = {name: np.asarray(state.pop(name)) for name in _STATE_ARRAYS}
        arrays["links0"] = np.ascontiguousarray(np.concatenate([level0[:, :start], level0[:, end:]], axis=1))
        arrays["dead_slots"] = dead.astype(np.int64)
        arrays["dead_vectors"] = np.ascontiguousarray(level0[dead, start:end]).view(np.float32).reshape(len(dead), self.dimensions)
        cast(Any, np.savez)(directory / "graph.npz", **arrays)
        (directory / "graph.json").write_text(json.dumps({"format": _FORMAT, "state": state, "live": live}))

    @classmethod
    def restore(cls, spec: IndexSpec, dimensions: int, directory: Path, vectors: VectorReader | None = None) -> HnswIndex:
        """Load a saved graph, taking its vectors from ``vectors`` (the store); ValueError when it cannot be done."""
        header = json.loads((directory / "graph.json").read_text())
        if header.get("format") != _FORMAT:
            raise ValueError(f"saved hnsw graph has format {header.get('format')!r}, not {_FORMAT}")
        if vectors is None:
            raise ValueError("a saved hnsw graph needs the stored vectors to load")
        state, live = dict(header["state"]), [int(d) for d in header["live"]]
        # Our own file object: np.load leaves the file it opened unclosed when the archive is damaged.
        with open(directory / "graph.npz", "rb") as file, np.load(file, allow_pickle=False) as saved:
            arrays = {name: saved[name] for name in saved.files}
        count, width = int(state["cur_element_count"]), int(state["size_data_per_element"])
        start, end = int(state["offset_data"]), int(state["offset_data"]) + 4 * dimensions
        links = arrays.pop("links0")
        if links.shape != (count, width - (end - start)) or int(state["dim"]) != dimensions:
            raise ValueError("saved hnsw graph does not match its header")
        level0 = np.empty((count, width), dtype=np.int8)
        level0[:, :start], level0[:, end:] = links[:, :start], links[:, start:]
        data = np.zeros((count, dimensions), dtype=np.float32)
        data[arrays.pop("dead_slots")] = arrays.pop("dead_vectors")
        labels = level0[:, int(state["label_offset"]) : int(state["label_offset"]) + 8].copy().view(np.uint64).ravel().astype(np.int64)
        slot_of = {int(label): slot for slot, label in enumerate(labels.tolist())}
        found, read = vectors(live)
        rows = np.asarray(read, dtype=np.float32) if len(found) else np.zeros((0, dimensions), np.float32)
        if rows.shape != (len(found), dimensions):
            raise ValueError("stored vectors do not fit the saved hnsw graph")
        if spec.distance is Distance.COSINE:  # hnswlib keeps cosine vectors normalised
            rows = rows / (np.sqrt((rows * rows).sum(axis=1, keepdims=True)) + 1e-30)
        data[[slot_of[d] for d in found]] = rows
        codes = ScanCodes(dimensions, spec.distance)
        codes.put(np.asarray(found, dtype=np.int64), rows)
        level0[:, start:end] = data.view(np.int8)
        state["data_level0"] = level0.ravel()
        state.update(arrays)
        graph = hnswlib.Index.__new__(hnswlib.Index)
        cast(Any, graph).__setstate__((state,))
        index = cls(spec, dimensions, graph, codes)
        index.saved_size = len(live)  # the docs below are no longer live
        for doc in set(live) - set(found):  # deleted from the store since the save: the catch-up would find it gone
            graph.mark_deleted(doc)
            index._deleted.add(doc)
        return index

    def close(self) -> None:
        pass
