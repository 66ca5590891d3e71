"""Late-interaction (ColBERT / ColPali style) index: one matrix per object, scored by MaxSim.

score(Q, D) = Σ_q max_d q·d; the distance reported is its negative, as in Weaviate
(Σ_q min_d -q·d).  Candidates come from an HNSW index over every token vector
(each token remembers its object); the candidates are then rescored exactly.
Small collections and selective filters skip the token index and score exactly.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Sequence
from pathlib import Path

import hnswlib
import numpy as np

from searchd.config.spec import Distance, IndexSpec
from searchd.index.base import EXACT_SCAN_MAX, AllowList, Hit, top_k

_INITIAL_TOKENS = 4096


def as_matrix(value: np.ndarray, dimensions: int, metric: Distance) -> np.ndarray:
    matrix = np.asarray(value, dtype=np.float32).reshape(-1, dimensions)
    if metric is Distance.COSINE:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return np.asarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)
    return matrix


def maxsim_distances(query: np.ndarray, documents: Sequence[np.ndarray]) -> np.ndarray:
    """Negative MaxSim of the query against each document (lower is closer)."""
    if not documents:
        return np.zeros(0, np.float32)
    tokens = np.vstack(documents)
    starts = np.cumsum([0] + [len(d) for d in documents[:-1]])
    best = np.maximum.reduceat(query @ tokens.T, starts, axis=1)  # (query tokens, documents)
    return np.asarray(-best.sum(axis=0), dtype=np.float32)


class MultiVectorIndex:
    def __init__(self, spec: IndexSpec, dimensions: int) -> None:
        if spec.distance not in (Distance.COSINE, Distance.DOT):
            raise ValueError(f"multivector does not support {spec.distance.value} distance")
        self.spec = spec
        self.metric = spec.distance
        self.dimensions = dimensions
        self._lock = threading.RLock()
        self._documents: dict[int, np.ndarray] = {}
        self._token_labels: dict[int, np.ndarray] = {}
        self._owner: dict[int, int] = {}
        self._next_label = 0
        self._tokens = hnswlib.Index(space="ip", dim=dimensions)
        self._tokens.init_index(max_elements=_INITIAL_TOKENS, ef_construction=spec.ef_construction, M=spec.max_connections, allow_replace_deleted=True)
        self._tokens.set_num_threads(1)

    def __len__(self) -> int:
        return len(self._documents)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._documents

    def upsert(self, object_id: int, vector: np.ndarray) -> None:
        self.upsert_many([object_id], [vector])

    def upsert_many(self, object_ids: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        with self._lock:
            for object_id, value in zip(object_ids, vectors):
                matrix = as_matrix(value, self.dimensions, self.metric)
                if object_id in self._documents and np.array_equal(self._documents[object_id], matrix):
                    continue  # a re-import: replacing deleted hnsw tokens costs ~20x a first insert
                self._forget(object_id)
                labels = np.arange(self._next_label, self._next_label + len(matrix), dtype=np.int64)
                self._next_label += len(matrix)
                needed = self._tokens.get_current_count() + len(matrix)
                if needed > self._tokens.get_max_elements():
                    self._tokens.resize_index(max(needed, 2 * self._tokens.get_max_elements()))
                self._tokens.add_items(matrix, labels, replace_deleted=True)
                self._documents[object_id] = matrix
                self._token_labels[object_id] = labels
                self._owner.update({int(label): object_id for label in labels})

    def _forget(self, object_id: int) -> None:
        self._documents.pop(object_id, None)
        for label in self._token_labels.pop(object_id, np.zeros(0, np.int64)).tolist():
            self._tokens.mark_deleted(label)
            del self._owner[label]

    def delete(self, object_id: int) -> None:
        with self._lock:
            self._forget(object_id)

    def _rescore(self, query: np.ndarray, object_ids: Sequence[int], k: int) -> list[Hit]:
        ids = [i for i in object_ids if i in self._documents]
        return top_k(ids, maxsim_distances(query, [self._documents[i] for i in ids]), k)

    def search(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]:
        q = as_matrix(query, self.dimensions, self.metric)
        with self._lock:
            total = len(self._documents)
            if k <= 0 or total == 0:
                return []
            wanted = max(self.spec.candidates, 2 * k)
            if allowed is not None and len(allowed) <= EXACT_SCAN_MAX:
                return self._rescore(q, list(allowed), k)
            allow = None if allowed is None else set(allowed)
            if total <= wanted:
                return self._rescore(q, list(self._documents if allow is None else allow), k)
            # Nearest tokens may crowd into a few documents: widen until enough documents are candidates.
            per_token = min(len(self._owner), wanted)  # _owner holds exactly the live tokens
            while True:
                candidates = self._token_candidates(q, per_token)
                if allow is not None:
                    candidates &= allow
                if len(candidates) >= wanted or per_token >= len(self._owner):
                    break
                per_token = min(len(self._owner), per_token * 4)
            if len(candidates) < k:
                return self._rescore(q, list(self._documents if allow is None else allow), k)
            return self._rescore(q, list(candidates), k)

    def _token_candidates(self, query: np.ndarray, per_token: int) -> set[int]:
        self._tokens.set_ef(max(self.spec.ef, per_token))
        try:
            labels, _ = self._tokens.knn_query(query, k=per_token)
        except RuntimeError:  # hnswlib cannot return that many: every document is a candidate
            return set(self._documents)
        return {self._owner[int(label)] for label in labels.ravel()}

    def save(self, directory: Path) -> None:
        with self._lock:
            ids = list(self._documents)
            np.save(directory / "tokens.npy", np.vstack([self._documents[i] for i in ids]) if ids else np.zeros((0, self.dimensions), np.float32))
            (directory / "documents.json").write_text(json.dumps({"ids": ids, "rows": [len(self._documents[i]) for i in ids]}))

    @classmethod
    def restore(cls, spec: IndexSpec, dimensions: int, directory: Path) -> MultiVectorIndex:
        # Token vectors are saved, the token graph is rebuilt from them (cheaper than a second format).
        meta = json.loads((directory / "documents.json").read_text())
        tokens = np.load(directory / "tokens.npy")
        if tokens.shape != (sum(meta["rows"]), dimensions):
            raise ValueError("saved multivector tokens do not match their documents")
        index = cls(spec, dimensions)
        offsets = np.cumsum([0, *meta["rows"]])
        index.upsert_many(meta["ids"], [tokens[a:b] for a, b in itertools.pairwise(offsets)])
        return index

    def close(self) -> None:
        pass
