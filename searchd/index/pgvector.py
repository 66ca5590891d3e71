"""The ``pgvector`` index type: HNSW inside PostgreSQL, searched through the object store.

The index is the database's (``searchd.storage.pgvector``): the store fills it in the same
transaction as each object write, so this side has nothing to insert, delete or save; it
turns searches into one SQL statement each and hands back ``Hit``s.  A filter reaches the
database as the filter tree (``AllowList.where``), compiled there; a narrow one (few allowed
docs, known from the in-memory mask) is an exact scan over those docs.  If an iterative
index scan stops short of ``k`` (its tuple budget), the search is repeated exactly over the
allowed docs, so ``k`` hits come back whenever that many allowed docs have a vector.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from searchd.config.spec import IndexSpec
from searchd.index.base import AllowList, Hit
from searchd.where import Filter

# An iterative scan reads about k / selectivity index tuples (~0.1-0.15 ms each through the join and the filter); an exact
# scan reads every allowed doc (~0.011 ms each).  They cost the same near sqrt(k * objects * 9) allowed docs: 1,300 of
# 20,000 objects at k = 10 (measured: 1 % of 20k, iterative 83-118 ms against exact 2.2 ms; 30 %, 5 ms against 61 ms).
EXACT_FACTOR = 3.0


def narrow(allowed: int, k: int, objects: int) -> bool:
    """Whether a filter letting ``allowed`` of ``objects`` through is cheaper as an exact scan over those docs."""
    return allowed <= EXACT_FACTOR * math.sqrt(max(k, 1) * max(objects, 1))


class DatabaseIndex(Protocol):
    """What the store offers for one named vector's pgvector index (``searchd.storage.pgvector.DatabaseVectors``)."""

    def search(self, query: np.ndarray, k: int, ef: int, where: Filter | None = None, docs: Sequence[int] | None = None, candidates: int = 0) -> list[tuple[int, float]]: ...

    def docs(self) -> np.ndarray: ...

    def contains(self, doc: int) -> bool: ...


class PgVectorIndex:
    def __init__(self, spec: IndexSpec, dimensions: int, database: DatabaseIndex) -> None:
        self.spec = spec  # ef and candidates are read per search: a reload changes them in place
        self.dimensions = dimensions
        self._database = database
        self._lock = threading.Lock()
        self._present = np.zeros(0, dtype=bool)  # by doc: whether the database indexes a vector of it
        self._count = 0
        self._mark(database.docs(), True)

    def _mark(self, docs: np.ndarray, present: bool) -> None:
        with self._lock:
            if len(docs) and int(docs.max()) >= len(self._present):
                grown = np.zeros(max(int(docs.max()) + 1, 2 * len(self._present)), dtype=bool)
                grown[: len(self._present)] = self._present
                self._present = grown
            docs = np.unique(docs)
            self._count += int(np.count_nonzero(self._present[docs] != present)) * (1 if present else -1)
            self._present[docs] = present

    def _indexed(self, vector: np.ndarray) -> bool:
        """Whether the store gives this vector an embedding (or token rows): it has this index's length (and one row, unless tokens)."""
        shape = np.shape(vector)
        return bool(shape) and shape[-1] == self.dimensions and (math.prod(shape) > 0 if self.spec.multivector else math.prod(shape) == self.dimensions)

    def upsert(self, doc: int, vector: np.ndarray) -> None:
        """The store wrote the embedding with the object: only count it."""
        self.upsert_many([doc], [vector])

    def upsert_many(self, docs: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        """The store wrote the embeddings with the objects: only count them (a vector of another length has none)."""
        indexed = [self._indexed(v) for v in vectors]
        self._mark(np.asarray([d for d, i in zip(docs, indexed) if i], dtype=np.int64), True)
        self._mark(np.asarray([d for d, i in zip(docs, indexed) if not i], dtype=np.int64), False)

    def delete(self, doc: int) -> None:
        """The store's delete took the embedding with it: only count it."""
        self._mark(np.asarray([doc], dtype=np.int64), False)

    def search(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]:
        if k <= 0:
            return []
        spec = self.spec
        candidates = max(spec.candidates, 2 * k) if spec.multivector else 0
        if allowed is None:
            found = self._database.search(query, k, spec.ef, candidates=candidates)
        elif allowed.where is None or narrow(len(allowed), k, len(allowed.mask)):
            found = self._database.search(query, k, spec.ef, docs=allowed.docs.tolist()) if len(allowed) else []
        else:
            found = self._database.search(query, k, spec.ef, where=allowed.where, candidates=candidates)
            if len(found) < min(k, len(allowed)):  # the scan's budget ran out (or the token candidates were too few)
                found = self._database.search(query, k, spec.ef, docs=allowed.docs.tolist())
        return [Hit(doc, distance) for doc, distance in found]

    def __len__(self) -> int:
        return self._count

    def __contains__(self, doc: object) -> bool:
        return isinstance(doc, (int, np.integer)) and self._database.contains(int(doc))

    def save(self, directory: Path) -> None:
        """Nothing to save: the index lives in the database."""

    def close(self) -> None:
        pass
