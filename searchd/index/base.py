"""The vector index contract, the shared filtered-search strategy, and the factory.

Every index is derived data: the object store is the source of truth, and an index
can always be rebuilt from it.  Approximate indexes share ``ApproximateIndex.search``,
which picks how to honour an allow-list (the seam ``where`` filters use) by its
selectivity: an exact scan over the allowed ids when few match, otherwise an
over-fetching approximate search, widened until ``k`` allowed hits are found.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from itertools import repeat
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from searchd.config.spec import Distance, IndexSpec, IndexType
from searchd.where import Filter

# A filtered search scans the allowed docs exactly when that costs less than walking the graph for them. A scan costs
# about n (allowed docs); the graph walk over-fetches about 20·total/n candidates, each about SCAN_TO_GRAPH times a
# scanned doc (60,000 MiniLM vectors, one BLAS thread: 0.8 µs a scanned doc, 4.5 µs a fetched candidate). So: a scan
# while n² ≤ SCAN_TO_GRAPH·20·total, always up to EXACT_SCAN_ALWAYS, never past EXACT_SCAN_MAX (Weaviate's
# flatSearchCutoff, as /v1/schema reports it).
EXACT_SCAN_MAX = 4096
EXACT_SCAN_ALWAYS = 1536
SCAN_TO_GRAPH = 5.6


def scans_exactly(allowed: int, total: int) -> bool:
    """Whether a search allowed ``allowed`` of ``total`` docs is cheaper as an exact scan than through the graph."""
    return allowed <= EXACT_SCAN_ALWAYS or (allowed <= EXACT_SCAN_MAX and allowed * allowed <= SCAN_TO_GRAPH * 20 * total)


class Hit(NamedTuple):
    """A doc and its distance; a tuple, so a search's hits turn into columns at C speed (``zip(*hits)``)."""

    id: int  # the doc
    distance: float


def hits_of(docs: Iterable[int], distances: Iterable[float]) -> list[Hit]:
    """Hits from parallel docs and distances, made in C (``tuple.__new__``, as ``Hit._make``): a Python-level
    ``Hit(doc, distance)`` per hit takes twice as long (30 µs at 100 hits)."""
    return list(map(tuple.__new__, repeat(Hit), zip(docs, distances)))


def columns(hits: Sequence[tuple[int, float, *tuple[object, ...]]]) -> tuple[np.ndarray, np.ndarray]:
    """Hits' docs and their numbers (distances or scores) as arrays: hits are tuples, so ``zip`` transposes them in C."""
    if not hits:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    transposed = tuple(zip(*hits, strict=False))
    return np.array(transposed[0], dtype=np.int64), np.array(transposed[1], dtype=np.float64)


def distinct(docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(docs, return_inverse=True)``: the distinct docs, and each input's index among them.

    About 10 % faster than np.unique at a few hundred docs, and by a stable sort, which was measured faster than
    the default kind on BM25's postings.
    """
    order = np.argsort(docs, kind="stable")
    ordered = docs[order]
    starts = np.empty(len(docs), dtype=bool)
    starts[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    inverse = np.empty(len(docs), dtype=np.intp)
    inverse[order] = np.cumsum(starts) - 1
    return ordered[starts], inverse


# Reads stored vectors of some docs: (the docs that have one, one matrix or a list of vectors).
VectorReader = Callable[[Sequence[int]], tuple[list[int], "np.ndarray | list[np.ndarray]"]]


class AllowList:
    """The docs a filter lets through: a boolean mask over docs (from ``searchd.index.table``).

    It behaves as a collection of docs (``len``, ``in``, iteration), checks many
    candidates at once (``passes``), and can read the allowed docs' stored vectors
    (``vectors``, supplied by the engine) for an exact scan over a few of them.
    ``where`` is the filter it came from, for an index that filters inside the database (pgvector).
    """

    def __init__(self, mask: np.ndarray, vectors: VectorReader | None = None, where: Filter | None = None) -> None:
        self.mask = mask
        self.where = where
        self.count = int(np.count_nonzero(mask))
        self._docs: np.ndarray | None = None
        self._vectors = vectors

    @classmethod
    def of(cls, docs: Iterable[int], vectors: VectorReader | None = None, where: Filter | None = None) -> AllowList:
        listed = np.fromiter(docs, dtype=np.int64)
        mask = np.zeros(int(listed.max()) + 1 if len(listed) else 0, dtype=bool)
        mask[listed] = True
        return cls(mask, vectors, where)

    def __len__(self) -> int:
        return self.count

    @property
    def docs(self) -> np.ndarray:
        if self._docs is None:
            self._docs = np.flatnonzero(self.mask)
        return self._docs

    def __iter__(self) -> Iterator[int]:
        return iter(self.docs.tolist())

    def __contains__(self, doc: object) -> bool:
        return isinstance(doc, (int, np.integer)) and 0 <= int(doc) < len(self.mask) and bool(self.mask[doc])

    def passes(self, docs: np.ndarray) -> np.ndarray:
        inside = (docs >= 0) & (docs < len(self.mask))
        result = np.zeros(len(docs), dtype=bool)
        result[inside] = self.mask[docs[inside]]
        return result

    def vectors(self, docs: np.ndarray | None = None) -> tuple[list[int], np.ndarray | list[np.ndarray]] | None:
        """The allowed docs' stored vectors (or those of ``docs``, some of them), or None when nobody said how to read them."""
        return None if self._vectors is None else self._vectors((self.docs if docs is None else docs).tolist())


class VectorIndex(Protocol):
    """Ids → vectors (or, for multivector, matrices), searchable by distance.

    ``allowed`` restricts a search to a set of ids; a filtered search still
    returns ``k`` hits whenever that many allowed ids are indexed.
    """

    dimensions: int

    def upsert(self, doc: int, vector: np.ndarray) -> None: ...

    def upsert_many(self, docs: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None: ...

    def delete(self, doc: int) -> None: ...

    def search(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]: ...

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


def top_k(ids: Sequence[int], scores: np.ndarray, k: int) -> list[Hit]:
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
    return hits_of([ids[i] for i in order], scores[order].tolist())


class ApproximateIndex(abc.ABC):
    """Shared search logic for ANN indexes; subclasses provide the unfiltered search and the exact scan.

    An exact scan (a selective filter) reads the allowed docs' vectors from the store in one
    statement, through the allow-list (``_exact_from_store``): the libraries' own per-item
    lookups are too slow for it.  hnsw first narrows the allowed docs with its int8 scan codes
    (``searchd.index.codes``), so only the best few are read.
    """

    metric: Distance
    dimensions: int

    @abc.abstractmethod
    def _approximate(self, query: np.ndarray, k: int) -> list[Hit]:
        """Up to k nearest live ids, unfiltered, with Weaviate distances."""

    def _approximate_columns(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``_approximate`` as (docs, distances) arrays; an index that has arrays first gives them without making hits."""
        return columns(self._approximate(query, k))

    @abc.abstractmethod
    def __len__(self) -> int: ...

    def search_columns(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """An unfiltered ``search``'s docs and distances as arrays: for a caller that works on arrays (hybrid's fusion)."""
        if 0 < k < len(self):
            return self._approximate_columns(prepare(query, self.metric), k)
        return columns(self.search(query, k))

    def search(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]:
        q = prepare(query, self.metric)
        total = len(self)
        if k <= 0 or total == 0:
            return []
        if allowed is None:
            return self._approximate(q, min(k, total)) if k < total else self._exact(q, k)
        if scans_exactly(len(allowed), total):
            return self._exact(q, k, allowed)
        # Over-fetch by the filter's selectivity, and widen until k candidates pass.
        fetch = min(total, int(k * total / len(allowed) * 2) + k)
        while True:
            candidates = self._approximate(q, fetch)
            passed = allowed.passes(np.fromiter((h.id for h in candidates), dtype=np.int64, count=len(candidates)))
            kept = [h for h, ok in zip(candidates, passed.tolist()) if ok]
            if len(kept) >= k:
                return kept[:k]
            fetch *= 2
            if fetch >= total:
                # Widening would scan everything anyway: be exact rather than short.
                return self._exact(q, k, allowed)

    @abc.abstractmethod
    def _exact(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]:
        """The k nearest of the allowed live docs (all of them without a filter), exactly."""

    def _exact_from_store(self, query: np.ndarray, k: int, allowed: AllowList | None, live: AbstractSet[int], among: np.ndarray | None = None) -> list[Hit] | None:
        """An exact scan over the allowed docs' (or ``among``'s) stored vectors; None when the allow-list cannot read them as one matrix."""
        stored = allowed.vectors(among) if allowed is not None else None
        if stored is None or not isinstance(stored[1], np.ndarray) or stored[1].shape[1:] != (self.dimensions,):
            return None
        docs, matrix = stored[0], np.asarray(stored[1])
        if not (live.issuperset(docs) if isinstance(live, set) else live >= set(docs)):  # the store may be a write ahead of the index
            keep = [i for i, d in enumerate(docs) if d in live]
            docs, matrix = [docs[i] for i in keep], matrix[keep]
        if not docs:
            return []
        if self.metric is Distance.COSINE:
            # Scale the dot products, not the rows: the same distances without a normalised copy of the matrix.
            norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
            return top_k(docs, np.asarray(1.0 - (matrix @ query) / np.where(norms > 0, norms, 1.0), dtype=np.float32), k)
        return top_k(docs, distances(matrix, query, self.metric), k)


def build_index(spec: IndexSpec, dimensions: int) -> VectorIndex:
    """A new, empty index for a named vector (a pgvector index is the store's: ``Engine.new_index`` makes those)."""
    kind = spec.kind
    if kind is IndexType.PGVECTOR:
        raise ValueError("a pgvector index lives in the database: the engine asks the store for it")
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


def restore_index(spec: IndexSpec, dimensions: int, directory: Path, vectors: VectorReader | None = None) -> VectorIndex:
    """Load an index saved by ``save``; raises OSError/ValueError if the files are unusable.

    ``vectors`` reads stored vectors by doc: an hnsw graph is saved without them.
    """
    kind = spec.kind
    if kind is IndexType.FLAT:
        from searchd.index.flat import FlatIndex

        return FlatIndex.restore(spec.distance, dimensions, directory)
    if kind is IndexType.HNSW:
        from searchd.index.hnsw import HnswIndex

        return HnswIndex.restore(spec, dimensions, directory, vectors)
    if kind is IndexType.ANNOY:
        from searchd.index.annoy import AnnoyIndex

        return AnnoyIndex.restore(spec, dimensions, directory)
    from searchd.index.multivector import MultiVectorIndex

    return MultiVectorIndex.restore(spec, dimensions, directory)
