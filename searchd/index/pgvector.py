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

    def size(self) -> int: ...

    def contains(self, doc: int) -> bool: ...


class PgVectorIndex:
    def __init__(self, spec: IndexSpec, dimensions: int, database: DatabaseIndex) -> None:
        self.spec = spec  # ef and candidates are read per search: a reload changes them in place
        self.dimensions = dimensions
        self._database = database

    def upsert(self, doc: int, vector: np.ndarray) -> None:
        """Nothing to do: the store wrote the embedding with the object."""

    def upsert_many(self, docs: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        """Nothing to do: the store wrote the embeddings with the objects."""

    def delete(self, doc: int) -> None:
        """Nothing to do: the store's delete took the embedding with it."""

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
        return self._database.size()

    def __contains__(self, doc: object) -> bool:
        return isinstance(doc, (int, np.integer)) and self._database.contains(int(doc))

    def save(self, directory: Path) -> None:
        """Nothing to save: the index lives in the database."""

    def close(self) -> None:
        pass
