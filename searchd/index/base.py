"""The vector index contract, the shared filtered-search strategy, and the factory.

Every index is derived data: the object store is the source of truth, and an index
can always be rebuilt from it.  Approximate indexes share ``ApproximateIndex.search``,
which picks how to honour an allow-list (the seam ``where`` filters use) by its
selectivity: an exact scan over the allowed ids when few match, otherwise an
over-fetching approximate search, widened until ``k`` allowed hits are found.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from searchd.config.spec import Distance, IndexSpec, IndexType

if TYPE_CHECKING:
    from searchd.index.flat import FlatIndex

# Below this many allowed ids (or 5% of the index), a filtered search is an exact scan.
EXACT_SCAN_MAX = 4096
EXACT_SCAN_FRACTION = 0.05


@dataclass(frozen=True)
class Hit:
    id: str
    distance: float


@runtime_checkable
class CheckedIds(Protocol):
    """An allow-list too large to list: it knows its size and can tell which of some ids it allows."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[str]: ...

    def __contains__(self, object_id: object) -> bool: ...

    def retain(self, object_ids: Sequence[str]) -> set[str]: ...


class VectorIndex(Protocol):
    """Ids → vectors (or, for multivector, matrices), searchable by distance.

    ``allowed`` restricts a search to a set of ids; a filtered search still
    returns ``k`` hits whenever that many allowed ids are indexed.
    """

    dimensions: int

    def upsert(self, object_id: str, vector: np.ndarray) -> None: ...

    def upsert_many(self, object_ids: Sequence[str], vectors: Sequence[np.ndarray] | np.ndarray) -> None: ...

    def delete(self, object_id: str) -> None: ...

    def search(self, query: np.ndarray, k: int, allowed: Collection[str] | None = None) -> list[Hit]: ...

    def __len__(self) -> int: ...

    def __contains__(self, object_id: object) -> bool: ...

    def save(self, directory: Path) -> None: ...

    def close(self) -> None: ...


def distances(matrix: np.ndarray, query: np.ndarray, metric: Distance) -> np.ndarray:
    """Weaviate's distance definitions (cosine expects unit rows and query)."""
    if metric is Distance.COSINE:
        result = 1.0 - matrix @ query
    elif metric is Distance.DOT:
        result = -(matrix @ query)
    elif metric is Distance.L2_SQUARED:
        diff = matrix - query
        result = np.einsum("ij,ij->i", diff, diff)
    elif metric is Distance.MANHATTAN:
        result = np.abs(matrix - query).sum(axis=1)
    else:  # hamming
        result = (matrix != query).sum(axis=1)
    return np.asarray(result, dtype=np.float32)


def prepare(vector: np.ndarray, metric: Distance) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    if metric is Distance.COSINE:
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector
    return vector


def top_k(ids: Sequence[str], scores: np.ndarray, k: int) -> list[Hit]:
    """The k smallest scores; ties broken by id, so results are deterministic."""
    if not len(ids) or k <= 0:
        return []
    k = min(k, len(ids))
    if k < len(ids):
        kth = np.partition(scores, k - 1)[k - 1]
        candidates = np.flatnonzero(scores <= kth)  # keep every row tied with the k-th
    else:
        candidates = np.arange(len(ids))
    order = sorted(candidates.tolist(), key=lambda i: (float(scores[i]), ids[i]))[:k]
    return [Hit(ids[i], float(scores[i])) for i in order]


class ApproximateIndex(abc.ABC):
    """Shared search logic for ANN indexes; subclasses provide the unfiltered search.

    Subclasses keep ``_mirror``, a plain copy of every live vector: the libraries' own
    per-item lookups are too slow for the exact scans that selective filters need.
    """

    metric: Distance
    dimensions: int
    _mirror: FlatIndex

    @abc.abstractmethod
    def _approximate(self, query: np.ndarray, k: int) -> list[Hit]:
        """Up to k nearest live ids, unfiltered, with Weaviate distances."""

    @abc.abstractmethod
    def __len__(self) -> int: ...


    def search(self, query: np.ndarray, k: int, allowed: Collection[str] | None = None) -> list[Hit]:
        q = prepare(query, self.metric)
        total = len(self)
        if k <= 0 or total == 0:
            return []
        if allowed is None:
            return self._approximate(q, min(k, total)) if k < total else self._exact(q, k)
        if len(allowed) <= EXACT_SCAN_MAX or len(allowed) < EXACT_SCAN_FRACTION * total:
            return self._exact(q, k, allowed)
        allow: Collection[str] = allowed if isinstance(allowed, (set, frozenset, CheckedIds)) else set(allowed)
        fetch = min(total, int(k * total / len(allow) * 2) + k)
        while True:
            candidates = self._approximate(q, fetch)
            passed = allow.retain([h.id for h in candidates]) if isinstance(allow, CheckedIds) else allow
            kept = [h for h in candidates if h.id in passed]
            if len(kept) >= k:
                return kept[:k]
            fetch *= 2
            if fetch >= total:
                # Widening would scan everything anyway: be exact rather than short.
                return self._exact(q, k, allow)

    def _exact(self, query: np.ndarray, k: int, allowed: Collection[str] | None = None) -> list[Hit]:
        return self._mirror.search(query, k, allowed)


def build_index(spec: IndexSpec, dimensions: int) -> VectorIndex:
    """A new, empty index for a named vector."""
    kind = spec.kind
    if kind is IndexType.FLAT:
        from searchd.index.flat import FlatIndex

        return FlatIndex(spec.distance, dimensions)
    if kind is IndexType.HNSW:
        from searchd.index.hnsw import HnswIndex

        return HnswIndex(spec, dimensions)
    if kind is IndexType.ANNOY:
        from searchd.index.annoy import AnnoyIndex

        return AnnoyIndex(spec, dimensions)
    from searchd.index.multivector import MultiVectorIndex

    return MultiVectorIndex(spec, dimensions)


def restore_index(spec: IndexSpec, dimensions: int, directory: Path) -> VectorIndex:
    """Load an index saved by ``save``; raises OSError/ValueError if the files are unusable."""
    kind = spec.kind
    if kind is IndexType.FLAT:
        from searchd.index.flat import FlatIndex

        return FlatIndex.restore(spec.distance, dimensions, directory)
    if kind is IndexType.HNSW:
        from searchd.index.hnsw import HnswIndex

        return HnswIndex.restore(spec, dimensions, directory)
    if kind is IndexType.ANNOY:
        from searchd.index.annoy import AnnoyIndex

        return AnnoyIndex.restore(spec, dimensions, directory)
    from searchd.index.multivector import MultiVectorIndex

    return MultiVectorIndex.restore(spec, dimensions, directory)
