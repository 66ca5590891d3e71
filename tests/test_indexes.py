"""Vector indexes: recall against the exact reference, updates and deletes, filtered search,
persistence, MaxSim and the distance definitions.

Indexes are keyed by the store's docs (non-negative ints): test data uses its row numbers as docs,
and docs from GHOST on for ids an allow-list lets through but that were never indexed.

Everything is generated from fixed seeds and annoy builds with one job, so the annoy recall numbers
quoted next to each bound are reproducible.  HnswIndex inserts batches of 64 or more on every core, so
an hnsw graph (and its approximate results) may differ from run to run: hnsw results are held to recall
bounds against the flat index, to "a doc is found by its own (new) vector, never by a stale one", or
compared with a save/restore of the very same graph, never with another build; the bounds keep a
margin below the measured numbers.  Annoy tests that need an exact answer set search_k beyond the
segment size, which makes annoy exhaustive.  An hnsw exact scan (a filtered search over few docs) reads
the allowed docs' vectors through the allow-list's callback, as the engine supplies one over the store,
or, without one, from hnswlib itself: the tests of that path cover both.  A few white-box assertions on
AnnoyIndex._segments / _delta only check that a scenario (sealed segments, tombstones, a pending delta,
a compaction) really is the one being tested.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pytest

from searchd.config.spec import Distance, IndexSpec
from searchd.index.annoy import AnnoyIndex
from searchd.index.base import EXACT_SCAN_MAX, AllowList, ApproximateIndex, Hit, VectorReader, build_index, prepare, restore_index, top_k
from searchd.index.codes import ScanCodes, rerank_count
from searchd.index.flat import FlatIndex
from searchd.index.hnsw import HnswIndex
from searchd.index.multivector import MultiVectorIndex, maxsim_distances
from searchd.index.persist import index_dir, open_index, save_index, vector_fingerprint
from searchd.sources import StoreSource
from searchd.storage import SqliteStore, StoredObject

COSINE, DOT, L2, L1 = Distance.COSINE, Distance.DOT, Distance.L2_SQUARED, Distance.MANHATTAN
K = 10


class Tolerance(TypedDict):
    """pytest.approx's keyword arguments."""

    rel: float
    abs: float


# float32 in annoy/hnswlib versus float32 numpy in the flat index: agree to ~1e-6 relative.
TOL: Tolerance = {"rel": 1e-5, "abs": 1e-4}
EXACT_ANNOY = 10**7  # a search_k larger than any test segment: annoy then examines every item
GHOST = 10_000_000  # docs from here on are allowed by some allow-lists, but never indexed

# -- data ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Clustered:
    points: np.ndarray
    queries: np.ndarray
    labels: np.ndarray  # cluster of each point
    query_labels: np.ndarray
    centres: np.ndarray
    ids: list[int]  # the doc of each point: its row number


def clustered(
    seed: int, n: int, dims: int, clusters: int = 50, n_queries: int = 200, spread: float = 0.5, query_noise: float = 0.25
) -> Clustered:
    """Gaussian clusters (unit noise around centres drawn with scale ``spread``); queries near centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dims)) * spread
    labels = rng.integers(0, clusters, n)
    points = (centres[labels] + rng.normal(size=(n, dims))).astype(np.float32)
    query_labels = rng.integers(0, clusters, n_queries)
    queries = (centres[query_labels] + query_noise * rng.normal(size=(n_queries, dims))).astype(np.float32)
    return Clustered(points, queries, labels, query_labels, centres, list(range(n)))


def ghosts(count: int) -> list[int]:
    """Docs that are allowed but not indexed."""
    return list(range(GHOST, GHOST + count))


def naive_distance(metric: Distance, vector: Sequence[float] | np.ndarray, query: Sequence[float] | np.ndarray) -> float:
    """Weaviate's definitions, computed independently of searchd in float64."""
    a, q = np.asarray(vector, np.float64), np.asarray(query, np.float64)
    if metric is COSINE:
        return float(1.0 - a @ q / (np.linalg.norm(a) * np.linalg.norm(q)))
    if metric is DOT:
        return float(-(a @ q))
    if metric is L2:
        return float(((a - q) ** 2).sum())
    assert metric is L1
    return float(np.abs(a - q).sum())


def spec_for(kind: str, metric: Distance, **params: Any) -> IndexSpec:
    return IndexSpec(type=kind, distance=metric, **params)


def fill(index: Any, ids: Sequence[int], vectors: Sequence[Any] | np.ndarray, batch: int = 1000) -> None:
    """Upsert in batches; for annoy wait after each batch so the segment layout is deterministic."""
    for start in range(0, len(ids), batch):
        index.upsert_many(ids[start : start + batch], vectors[start : start + batch])
        settle(index)


def settle(index: Any) -> None:
    if isinstance(index, AnnoyIndex):
        index.wait_for_merges()


def reference(metric: Distance, ids: Sequence[int], vectors: np.ndarray) -> FlatIndex:
    flat = FlatIndex(metric, vectors.shape[1])
    flat.upsert_many(ids, vectors)
    return flat


def stored_vectors(vectors: Mapping[int, np.ndarray], calls: list[int] | None = None, matrix: bool = True) -> VectorReader:
    """A ``VectorReader`` like the engine's over the store (the ``AllowList`` callback, and what an hnsw
    graph is restored with): the current vector of each asked doc that has one, read at call time (so
    later writes to ``vectors`` are seen), as one matrix like ``SqliteStore.vector_matrix`` (``matrix``
    False: as a list, as the store answers for vectors of mixed shapes); ``calls`` records how many docs
    each call asked for."""

    def read(docs: Sequence[int]) -> tuple[list[int], np.ndarray | list[np.ndarray]]:
        if calls is not None:
            calls.append(len(docs))
        found = [d for d in docs if d in vectors]
        rows = [np.asarray(vectors[d], np.float32) for d in found]
        if matrix and rows and len({r.shape for r in rows}) == 1 and rows[0].ndim == 1:
            return found, np.stack(rows)
        return found, rows

    return read


def allow(docs: Iterable[int], vectors: VectorReader | None = None) -> AllowList:
    return AllowList.of(docs, vectors)


def recall(got: Sequence[Hit], want: Sequence[Hit]) -> float:
    return len({h.id for h in got} & {h.id for h in want}) / len(want) if want else 1.0


def assert_well_formed(hits: Sequence[Hit], expected_count: int) -> None:
    ids = [h.id for h in hits]
    assert len(hits) == expected_count, f"{len(hits)} hits, expected {expected_count}"
    assert len(set(ids)) == len(ids), f"duplicate ids in {ids}"
    assert all(isinstance(i, int) for i in ids), f"hit ids are not plain int docs: {ids}"
    assert [h.distance for h in hits] == sorted(h.distance for h in hits), "hits not ordered by distance"


def assert_true_distances(hits: Sequence[Hit], query: np.ndarray, flat: FlatIndex) -> None:
    """Every hit is indexed in the reference and carries the reference's distance for its current vector."""
    ids = [h.id for h in hits]
    missing = [i for i in ids if i not in flat]
    assert not missing, f"ids that are deleted (or were never indexed) returned: {missing}"
    truth = {h.id: h.distance for h in flat.search(query, len(ids), allowed=allow(ids))}
    assert [h.distance for h in hits] == pytest.approx([truth[i] for i in ids], **TOL)


def assert_only_hit(hits: Sequence[Hit], doc: int, distance: float, *, rel: float | None = None, abs: float | None = None) -> None:
    """The hits are ``doc`` alone, at ``distance`` within pytest.approx's tolerance (a Hit's distance is a float, not an approx)."""
    assert len(hits) == 1 and hits[0].id == doc and hits[0].distance == pytest.approx(distance, rel=rel, abs=abs), hits


def assert_same_top_k(got: Sequence[Hit], want: Sequence[Hit]) -> None:
    assert [h.id for h in got] == [h.id for h in want]
    assert [h.distance for h in got] == pytest.approx([h.distance for h in want], **TOL)


def make_index(kind: str, metric: Distance, dims: int, **params: Any) -> Any:
    return build_index(spec_for(kind, metric, **params), dims)


# -- 1. recall against the exact reference -------------------------------------------------------

RECALL_DATA = {"seed": 11, "n": 8000, "dims": 48}

# (type, distance, spec params, lower bound on mean recall@10, lower bound on the worst query).
# Measured with these seeds (hnswlib 0.8.0, annoy 1.17.3): hnsw (built on 2 cores) cosine 1.000 / dot 0.999 / l2 0.998;
# annoy (32 trees, default search_k, 2 sealed segments + a 2,000-row delta) cosine 1.000,
# l2-squared 0.976, manhattan 0.964, dot 0.9995; worst single query 0.7.
RECALL_CASES = [
    pytest.param(kind, metric, params, mean_bound, worst_bound, id=f"{kind}-{metric.value}")
    for kind, metric, params, mean_bound, worst_bound in [
        ("hnsw", COSINE, {"ef": 64}, 0.95, 0.6),
        ("hnsw", DOT, {"ef": 64}, 0.95, 0.6),
        ("hnsw", L2, {"ef": 64}, 0.95, 0.6),
        ("annoy", COSINE, {"merge_threshold": 3000}, 0.93, 0.5),
        ("annoy", L2, {"merge_threshold": 3000}, 0.90, 0.5),
        ("annoy", L1, {"merge_threshold": 3000}, 0.90, 0.5),
        ("annoy", DOT, {"merge_threshold": 3000}, 0.93, 0.5),
    ]
]


@pytest.fixture(scope="module")
def recall_data() -> Clustered:
    return clustered(**RECALL_DATA)


@pytest.mark.parametrize(("kind", "metric", "params", "mean_bound", "worst_bound"), RECALL_CASES)
def test_recall_against_flat(
    recall_data: Clustered, kind: str, metric: Distance, params: dict[str, Any], mean_bound: float, worst_bound: float
) -> None:
    data = recall_data
    index = make_index(kind, metric, data.points.shape[1], **params)
    fill(index, data.ids, data.points)
    flat = reference(metric, data.ids, data.points)
    if kind == "annoy":  # the layout the measurement was made on: sealed segments and a live delta
        assert len(index._segments) == 2 and len(index._delta) == 2000
    recalls = []
    for query in data.queries:
        got, want = index.search(query, K), flat.search(query, K)
        assert_well_formed(got, K)
        assert_true_distances(got, query, flat)
        recalls.append(recall(got, want))
    print(f"recall@10 {kind} {metric.value}: mean {np.mean(recalls):.4f}, worst {min(recalls):.1f}")
    assert np.mean(recalls) >= mean_bound
    assert min(recalls) >= worst_bound
    index.close()


def test_flat_index_is_exact_against_numpy(recall_data: Clustered) -> None:
    """The reference itself: brute force in float64 gives the same top-k and distances."""
    points = recall_data.points[:2000]
    ids = recall_data.ids[:2000]
    for metric in (COSINE, DOT, L2, L1):
        flat = reference(metric, ids, points)
        for query in recall_data.queries[:5]:
            truth = np.array([naive_distance(metric, p, query) for p in points])
            order = np.argsort(truth, kind="stable")[:K]
            got = flat.search(query, K)
            assert [h.id for h in got] == [ids[i] for i in order]
            assert [h.distance for h in got] == pytest.approx(truth[order].tolist(), **TOL)


def test_top_k_breaks_ties_by_id() -> None:
    hits = top_k([3, 1, 4, 2], np.array([1.0, 1.0, 0.5, 1.0], np.float32), 3)
    assert hits == [Hit(4, 0.5), Hit(1, 1.0), Hit(2, 1.0)]
    assert top_k([], np.zeros(0), 3) == [] and top_k([1], np.zeros(1), 0) == []


# -- 2. updates and deletes are never returned ---------------------------------------------------


def far_from(metric: Distance, vectors: np.ndarray) -> np.ndarray:
    """New vectors nowhere near the old ones (for cosine: the opposite direction)."""
    return (-vectors if metric is COSINE else vectors + 25.0).astype(np.float32)


class Mirror:
    """Applies every write to the index under test, to an exact FlatIndex and to ``current`` (the
    latest vector of each live doc, as the store holds them)."""

    def __init__(self, index: Any, metric: Distance, dims: int) -> None:
        self.index = index
        self.flat = FlatIndex(metric, dims)
        self.current: dict[int, np.ndarray] = {}
        self.deleted: set[int] = set()
        self.stored = stored_vectors(self.current)  # the engine's allow-list callback, reading the "store"

    def track(self, ids: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        """Record writes the index under test already has (filled some other way)."""
        self.flat.upsert_many(list(ids), vectors)
        self.current.update(zip(ids, np.asarray(vectors, np.float32)))
        self.deleted -= set(ids)

    def upsert(self, ids: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        self.index.upsert_many(list(ids), vectors)
        self.track(ids, vectors)

    def delete(self, ids: Sequence[int]) -> None:
        for object_id in ids:
            self.index.delete(object_id)
            self.flat.delete(object_id)
            self.current.pop(object_id, None)
        self.deleted |= set(ids)

    def check(self, queries: Sequence[np.ndarray], *, exact: bool, min_recall: float = 1.0) -> float:
        """Deleted ids never come back, every hit has its current distance; exact: the flat top-k.

        A filtered search over a few docs (live, deleted and never indexed ones) is an exact scan for
        every index: it finds the latest vectors, read through the allow-list's callback or not.
        """
        assert len(self.index) == len(self.flat) == len(self.current)
        assert all(i not in self.index for i in self.deleted)
        recalls = []
        for query in queries:
            got, want = self.index.search(query, K), self.flat.search(query, K)
            assert_well_formed(got, min(K, len(self.flat)))
            assert not {h.id for h in got} & self.deleted
            assert_true_distances(got, query, self.flat)
            if exact:
                assert [h.distance for h in got] == pytest.approx([h.distance for h in want], **TOL)
            recalls.append(recall(got, want))
        assert np.mean(recalls) >= min_recall
        sample = sorted(self.current)[::7] + sorted(self.deleted)[::3] + ghosts(5)
        assert len(sample) <= EXACT_SCAN_MAX
        for vectors in (None, self.stored):
            allowed = allow(sample, vectors)
            for query in queries[:20]:
                assert_same_top_k(self.index.search(query, K, allowed=allowed), self.flat.search(query, K, allowed=allowed))
        return float(np.mean(recalls))


def update_and_delete(
    mirror: Mirror, data: Clustered, metric: Distance, rng: np.random.Generator
) -> tuple[list[int], list[int], np.ndarray]:
    """Move 300 ids far away, delete 300 others; returns (updated, deleted, old vectors of the updated)."""
    chosen = rng.choice(len(data.ids), size=600, replace=False)
    updated = [data.ids[i] for i in chosen[:300]]
    deleted = [data.ids[i] for i in chosen[300:]]
    old = data.points[chosen[:300]]
    mirror.upsert(updated, far_from(metric, old))
    mirror.delete(deleted)
    return updated, deleted, old


def probe_queries(data: Clustered, old_updated: np.ndarray, old_deleted: np.ndarray) -> list[np.ndarray]:
    """Old vectors of updated and of deleted ids (where they used to be the nearest), and centres."""
    return [*old_updated[:60], *old_deleted[:60], *data.queries[:40]]


def assert_updates_visible(index: Any, metric: Distance, updated: Sequence[int], old: np.ndarray) -> None:
    """A query equal to an updated id's old vector no longer finds it; its new vector does."""
    for object_id, old_vector, new_vector in list(zip(updated, old, far_from(metric, old)))[:60]:
        assert object_id not in {h.id for h in index.search(old_vector, K)}
        assert object_id in {h.id for h in index.search(new_vector, K)}


UPDATE_DATA = {"seed": 21, "n": 3000, "dims": 32}


@pytest.fixture(scope="module")
def update_data() -> Clustered:
    return clustered(**UPDATE_DATA)


def _old_vectors(data: Clustered, ids: Sequence[int]) -> np.ndarray:
    return data.points[list(ids)]  # a data point's doc is its row


@pytest.mark.parametrize("metric", [COSINE, L2], ids=lambda m: m.value)
@pytest.mark.parametrize("kind", ["flat", "hnsw", "annoy-delta", "annoy-tombstones", "annoy-merged"])
def test_updated_and_deleted_ids_are_never_returned(update_data: Clustered, kind: str, metric: Distance) -> None:
    data, dims = update_data, update_data.points.shape[1]
    rng = np.random.default_rng(22)
    if kind == "flat":
        index: Any = FlatIndex(metric, dims)
    elif kind == "hnsw":
        index = make_index("hnsw", metric, dims)
    else:
        # annoy near-exact (search_k covers every item), so the result must be the flat top-k.
        threshold = {"annoy-delta": 10**9, "annoy-tombstones": 1000, "annoy-merged": 200}[kind]
        index = make_index("annoy", metric, dims, merge_threshold=threshold, search_k=EXACT_ANNOY, trees=4)
    mirror = Mirror(index, metric, dims)
    fill(index, data.ids, data.points, batch=1000)
    mirror.track(data.ids, data.points)

    if kind == "annoy-merged":
        # (b) updates sealed by a merge, deletes as tombstones, then another merge over them.
        chosen = rng.choice(len(data.ids), size=600, replace=False)
        updated, deleted = [data.ids[i] for i in chosen[:300]], [data.ids[i] for i in chosen[300:]]
        mirror.upsert(updated, far_from(metric, data.points[chosen[:300]]))
        index.wait_for_merges()
        assert len(index._delta) < 200  # the updates were sealed into a segment
        mirror.delete(deleted)
        extra = [len(data.ids) + i for i in range(250)]  # new docs
        mirror.upsert(extra, data.points[:250] + np.float32(0.01))
        index.wait_for_merges()
        assert len(index._delta) < 200
        old = data.points[chosen[:300]]
    else:
        updated, deleted, old = update_and_delete(mirror, data, metric, rng)
        settle(index)
        if kind == "annoy-delta":
            assert not index._segments
        if kind == "annoy-tombstones":  # (a) before the next merge: tombstones in 3 segments, updates in the delta
            assert len(index._segments) == 3 and len(index._delta) == 300

    exact = kind != "hnsw"
    measured = mirror.check(probe_queries(data, old, _old_vectors(data, deleted)), exact=exact, min_recall=0.9)
    print(f"{kind} {metric.value}: recall@10 after updates/deletes {measured:.4f}")
    assert_updates_visible(index, metric, updated, old)
    # A deleted id written again is found again, with its new vector.
    revived = deleted[0]
    mirror.upsert([revived], data.points[:1])
    assert index.search(data.points[0], 2)[0].distance == pytest.approx(0.0, abs=1e-4)
    assert revived in {h.id for h in index.search(data.points[0], 2)}
    settle(index)
    for vectors in (None, mirror.stored):  # the exact path too (hnsw: read from the "store", or from the graph)
        assert_only_hit(index.search(data.points[0], 1, allowed=allow([revived, *ghosts(3)], vectors)), revived, 0.0, abs=1e-4)
    index.close()


@pytest.mark.parametrize("metric", [COSINE, L2], ids=lambda m: m.value)
def test_hnsw_reuses_deleted_slots_and_revives_deleted_docs(update_data: Clustered, metric: Distance) -> None:
    """hnswlib labels are the docs: new docs take deleted docs' slots; a deleted doc written again is
    updated in place while its slot is free and inserted anew once a new doc took it; batches big
    enough to be inserted on every core and single writes both end in the flat index's state."""
    data, dims = update_data, update_data.points.shape[1]
    rng = np.random.default_rng(25)
    index = make_index("hnsw", metric, dims)
    mirror = Mirror(index, metric, dims)
    mirror.upsert(data.ids[:2000], data.points[:2000])
    chosen = [int(i) for i in rng.choice(2000, size=600, replace=False)]
    deleted, updated = chosen[:400], chosen[400:]
    mirror.delete(deleted)
    slots = index._graph.get_current_count()
    mirror.upsert(data.ids[2000:2300], data.points[2000:2300])  # 300 new docs
    assert index._graph.get_current_count() == slots, "the new docs did not take the deleted docs' slots"
    revived = deleted[::4]  # 100 docs: some still have their (deleted) slot, the others lost it to a new doc
    still_slotted = set(revived) & set(index._graph.get_ids_list())
    assert 0 < len(still_slotted) < len(revived)
    # One batch (on every core): revived docs, more new docs, and a doc written twice (the last write wins).
    batch = revived + data.ids[2300:2400] + [revived[0]]
    vectors = np.concatenate([far_from(metric, _old_vectors(data, revived)), data.points[2300:2400], data.points[2400:2401]])
    mirror.upsert(batch, vectors)
    mirror.upsert(updated[:100], far_from(metric, _old_vectors(data, updated[:100])))  # updates of live docs, on every core
    for doc in revived[1:11] + updated[100:110]:  # and one at a time
        mirror.upsert([doc], far_from(metric, _old_vectors(data, [doc])) * np.float32(1.5))
    assert [d for d in data.ids[:2400] if (d in index) != (d in mirror.flat)] == []
    moved = revived[11:] + updated[:100]
    old = _old_vectors(data, moved)
    mirror.check(probe_queries(data, old, _old_vectors(data, deleted[1::4])), exact=False, min_recall=0.9)
    assert_updates_visible(index, metric, moved, old)
    for reader in (None, mirror.stored):  # the exact path reads each doc's latest vector
        for doc in [revived[0], *revived[1:11], *revived[11:30], *updated[100:110]]:
            assert_only_hit(index.search(mirror.current[doc], 1, allowed=allow([doc, *ghosts(2)], reader)), doc, 0.0, abs=1e-4)


def _gate_merges(index: AnnoyIndex) -> tuple[threading.Event, threading.Event, list[list[int]]]:
    """Hold the next merge's build (after its snapshot) until released; record every snapshot."""
    started, release = threading.Event(), threading.Event()
    snapshots: list[list[int]] = []
    build = index._build

    def gated(items: list[tuple[int, int, np.ndarray]]) -> Any:
        snapshots.append([object_id for object_id, _, _ in items])
        started.set()
        assert release.wait(30), "test never released the merge"
        return build(items)

    index._build = gated  # type: ignore[method-assign]
    return started, release, snapshots


@pytest.mark.parametrize("metric", [COSINE, L2], ids=lambda m: m.value)
@pytest.mark.parametrize("compact", [False, True], ids=["append-segment", "compaction"])
def test_annoy_writes_racing_a_merge(update_data: Clustered, metric: Distance, compact: bool) -> None:
    """(c) Writes to items of a running merge's snapshot: the final state equals the flat index."""
    data, dims = update_data, update_data.points.shape[1]
    index = make_index("annoy", metric, dims, merge_threshold=200, search_k=EXACT_ANNOY, trees=8)
    mirror = Mirror(index, metric, dims)
    base_ids, base = data.ids[:1000], data.points[:1000]
    fill(index, base_ids, base, batch=250)  # 4 sealed segments
    mirror.track(base_ids, base)
    assert len(index._segments) == 4 and len(index._delta) == 0
    if compact:  # > 30% of sealed items dead: the next merge compacts everything into one segment
        mirror.delete(base_ids[:350])

    started, release, snapshots = _gate_merges(index)
    try:
        fresh_ids, fresh = data.ids[1000:1250], data.points[1000:1250]
        mirror.upsert(fresh_ids, fresh)  # crosses the threshold: the merge thread snapshots these 250
        assert started.wait(10)
        snapshot = set(snapshots[0])
        assert set(fresh_ids) <= snapshot
        assert (set(base_ids[350:]) <= snapshot) is compact
        # While it builds: update and delete items of the snapshot (from the delta and, when
        # compacting, from the old segments), delete-then-rewrite some, and add new ones.
        sealed = list(base_ids[350:]) if compact else list(base_ids)
        moved = fresh_ids[:40] + sealed[:40]
        mirror.upsert(moved, far_from(metric, _old_vectors(data, moved)))
        mirror.delete(fresh_ids[40:80] + sealed[40:80])
        rewritten = fresh_ids[80:100]
        mirror.delete(rewritten)
        mirror.upsert(rewritten, _old_vectors(data, rewritten) + np.float32(0.5))
        mirror.upsert(data.ids[1250:1300], data.points[1250:1300])
        # Reads are not blocked by the build and already see the writes.
        mirror.check(probe_queries(data, _old_vectors(data, moved), _old_vectors(data, fresh_ids[40:80]))[:40], exact=True)
    finally:
        release.set()
    index.wait_for_merges()
    assert len(snapshots) >= 1
    if compact:
        assert len(index._segments) == 1
    every_id = data.ids[:1300]
    assert [i for i in every_id if (i in index) != (i in mirror.flat)] == []
    queries = probe_queries(data, _old_vectors(data, moved), _old_vectors(data, fresh_ids[40:80] + sealed[40:80]))
    mirror.check(queries, exact=True)
    # The exact path (allow-list of every id) reads the stored vectors: they are the latest ones.
    live = allow(i for i in every_id if i in mirror.flat)
    assert len(live) <= EXACT_SCAN_MAX
    for query in queries[:30]:
        assert_same_top_k(index.search(query, K, allowed=live), mirror.flat.search(query, K, allowed=live))
    index.close()


def test_annoy_unsynchronised_writes_during_merges_converge(update_data: Clustered) -> None:
    """No gate: writes race whatever merges happen to run; the end state is still the flat one."""
    data, dims = update_data, update_data.points.shape[1]
    rng = np.random.default_rng(24)
    index = make_index("annoy", L2, dims, merge_threshold=150, search_k=EXACT_ANNOY, trees=4)
    mirror = Mirror(index, L2, dims)
    for round_ in range(8):
        batch = rng.choice(len(data.ids), size=200, replace=False)
        ids = [data.ids[i] for i in batch]
        mirror.upsert(ids[:160], data.points[batch[:160]] + np.float32(round_))
        mirror.delete(ids[160:])
    index.wait_for_merges()
    assert [i for i in data.ids if (i in index) != (i in mirror.flat)] == []
    mirror.check(list(data.queries[:60]) + list(data.points[:60]), exact=True)
    index.close()


def test_hnsw_deleting_the_nearest_neighbours_still_returns_k(update_data: Clustered) -> None:
    data, dims = update_data, update_data.points.shape[1]
    index = make_index("hnsw", L2, dims)
    mirror = Mirror(index, L2, dims)
    mirror.upsert(data.ids, data.points)
    query = data.points[0]
    mirror.delete([h.id for h in mirror.flat.search(query, 100)])
    mirror.check([query], exact=False, min_recall=0.9)


def test_annoy_deleting_the_nearest_neighbours_still_returns_k(update_data: Clustered) -> None:
    """More tombstones than a segment's first over-fetch (k + 4k) right where the query is."""
    data, dims = update_data, update_data.points.shape[1]
    index = make_index("annoy", L2, dims, merge_threshold=200)
    mirror = Mirror(index, L2, dims)
    mirror.upsert(data.ids[:1000], data.points[:1000])
    index.wait_for_merges()
    assert len(index._segments) == 1 and len(index._delta) == 0
    query = data.points[0]
    mirror.delete([h.id for h in mirror.flat.search(query, 100)])
    mirror.check([query, data.points[1], data.queries[0]], exact=False, min_recall=0.9)


# -- 3. filtered search ----------------------------------------------------------------------------

FILTER_DATA = {"seed": 31, "n": 10_000, "dims": 32}  # 10,000 so that 50% (5,000) > EXACT_SCAN_MAX: the ANN path


@pytest.fixture(scope="module")
def filter_data() -> Clustered:
    return clustered(**FILTER_DATA, n_queries=20)


@pytest.fixture(scope="module")
def filter_documents(filter_data: Clustered) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """10,000 two-row documents (a clustered point and a neighbour of it); two-row queries near a centre."""
    rng = np.random.default_rng(32)

    def jitter(v: np.ndarray) -> np.ndarray:
        return np.stack([v, v + 0.3 * rng.normal(size=v.shape)]).astype(np.float32)

    return filter_data.ids, [jitter(p) for p in filter_data.points], [jitter(q) for q in filter_data.queries]


def allow_lists(
    ids: Sequence[int], query_label: int, labels: np.ndarray | None, rng: np.random.Generator, vectors: VectorReader | None = None
) -> dict[str, tuple[AllowList, bool]]:
    """name → (allowed docs, whether the search must be exact for this list); ``vectors``: their callback."""
    n = len(ids)

    def pick(count: int) -> list[int]:
        return [ids[i] for i in rng.choice(n, size=count, replace=False)]

    mask = np.zeros(n, dtype=bool)  # as the engine's doc table hands one over
    mask[pick(200)] = True
    lists: dict[str, tuple[AllowList, bool]] = {
        "5 ids": (allow(pick(5), vectors), True),
        "1%": (allow(pick(n // 100), vectors), True),
        "50%": (allow(pick(n // 2), vectors), False),
        "5 ids + 50 not indexed": (allow(pick(5) + ghosts(50), vectors), True),
        "200 ids + 5000 not indexed": (allow(pick(200) + ghosts(5000), vectors), False),  # the ANN path, widened ~20x
        "200 ids, a mask": (AllowList(mask, vectors), True),
    }
    if labels is not None:  # anti-correlated: the ~50% of points in clusters of the other parity than the query's
        lists["50% anti-correlated"] = (allow((ids[i] for i in range(n) if labels[i] % 2 != query_label % 2), vectors), False)
    return lists


# Measured mean recall@10 on the approximate lists (50% random / 50% anti-correlated / 200 ids + 5,000
# not indexed): hnsw 0.985 / 0.970 / 1.0, annoy (16 trees) 0.990 / 0.965 / 1.0, multivector 1.0 / - / 1.0.
FILTER_RECALL = {"hnsw": 0.9, "annoy": 0.9, "multivector": 0.9}
# "hnsw" reads the allowed docs' vectors from hnswlib for an exact scan; "hnsw+store" through the allow-list's callback.
FILTER_KINDS = ["flat", "hnsw", "hnsw+store", "annoy"]


@pytest.fixture(scope="module")
def filter_indexes(filter_data: Clustered) -> dict[str, Any]:
    data, dims = filter_data, filter_data.points.shape[1]
    indexes = {
        "flat": FlatIndex(L2, dims),
        "hnsw": make_index("hnsw", L2, dims),
        "annoy": make_index("annoy", L2, dims, merge_threshold=4000, trees=16),
    }
    for index in indexes.values():
        fill(index, data.ids, data.points, batch=2500)  # annoy: 2 segments of 5,000 after merges at 5,000 and 10,000
    return indexes


def filter_index(indexes: dict[str, Any], kind: str) -> Any:
    return indexes[kind.removesuffix("+store")]


def store_of(kind: str, ids: Sequence[int], vectors: Sequence[np.ndarray], calls: list[int]) -> VectorReader | None:
    """The allow-list's callback for a "+store" kind (reading the test data as the engine reads the store)."""
    return stored_vectors(dict(zip(ids, vectors)), calls) if kind.endswith("+store") else None


@pytest.mark.parametrize("kind", FILTER_KINDS)
def test_filtered_search_returns_the_allowed_top_k(filter_data: Clustered, filter_indexes: dict[str, Any], kind: str) -> None:
    data, index, flat = filter_data, filter_index(filter_indexes, kind), filter_indexes["flat"]
    rng = np.random.default_rng(33)
    calls: list[int] = []
    vectors = store_of(kind, data.ids, list(data.points), calls)
    measured: dict[str, list[float]] = {}
    for query, label in zip(data.queries, data.query_labels):
        for name, (allowed, must_be_exact) in allow_lists(data.ids, label, data.labels, rng, vectors).items():
            got, want = index.search(query, K, allowed=allowed), flat.search(query, K, allowed=allowed)
            indexed = {i for i in allowed if i in flat}
            assert_well_formed(got, min(K, len(indexed)))
            assert {h.id for h in got} <= indexed, name
            assert_true_distances(got, query, flat)
            if kind == "flat" or must_be_exact:
                assert_same_top_k(got, want)
            measured.setdefault(name, []).append(recall(got, want))
    report = {name: round(float(np.mean(r)), 4) for name, r in measured.items()}
    print(f"filtered recall@10 {kind}: {report}")
    assert min(report.values()) >= FILTER_RECALL.get(kind.removesuffix("+store"), 1.0)
    if vectors is not None:  # the exact scans did read the "store"
        assert calls


@pytest.mark.parametrize("metric", [COSINE, DOT, L2], ids=lambda m: m.value)
def test_hnsw_exact_scan_ranks_by_codes_and_reads_only_the_best_candidates(tmp_path: Path, metric: Distance) -> None:
    """A narrow filter on hnsw: the int8 scan codes pick rerank_count(k) candidates, only those are read from
    the store, and the answer is the exact filtered top-k (ids and distances), also after deletes and a restore."""
    rng = np.random.default_rng(61)
    dims, n = 48, 3000
    vectors = rng.normal(size=(n, dims)).astype(np.float32) * rng.uniform(0.5, 2.0, size=(n, 1)).astype(np.float32)
    ids = list(range(1, n + 1))
    stored = dict(zip(ids, vectors))
    spec = dataclasses.replace(PERSIST_SPECS["hnsw"], distance=metric)
    index = build_index(spec, dims)
    fill(index, ids, vectors, batch=700)
    for doc in ids[::7]:  # deleted docs keep no code: never a candidate
        index.delete(doc)
        del stored[doc]
    flat = reference(metric, list(stored), np.stack(list(stored.values())))
    index.save(tmp_path)
    restored = restore_index(spec, dims, tmp_path, stored_vectors(stored))
    for searched in (index, restored):
        for query in rng.normal(size=(25, dims)).astype(np.float32):
            calls: list[int] = []
            allowed = allow([int(d) for d in rng.choice(ids, size=450, replace=False)], stored_vectors(stored, calls))
            got, want = searched.search(query, K, allowed=allowed), flat.search(query, K, allowed=allowed)
            assert_same_top_k(got, want)
            assert_true_distances(got, query, flat)
            assert calls == [rerank_count(K)]  # one read, of the code-ranked candidates only
    index.close()
    restored.close()


@pytest.mark.parametrize("kind", [*FILTER_KINDS, "multivector"])
def test_filtered_search_widens_until_exact(
    request: pytest.FixtureRequest, filter_data: Clustered, filter_indexes: dict[str, Any], kind: str
) -> None:
    """A large allow-list (5,000 ids that are not indexed) whose few indexed ids are the farthest from the
    query: the ANN path must widen all the way and still return exactly the allowed top-k."""
    calls: list[int] = []
    scores_of: Callable[[np.ndarray], np.ndarray]
    if kind == "multivector":
        ids, documents, queries = request.getfixturevalue("filter_documents")
        index = request.getfixturevalue("multivector_filter_index")
        scores_of = MaxSimReference(documents, DOT).scores
    else:
        ids, queries, index = filter_data.ids, filter_data.queries, filter_index(filter_indexes, kind)
        points = filter_data.points.astype(np.float64)

        def squared_l2(q: np.ndarray) -> np.ndarray:
            return np.asarray(((points - q) ** 2).sum(axis=1))

        scores_of = squared_l2

    vectors = store_of(kind, filter_data.ids, list(filter_data.points), calls)
    for query in queries[:3]:
        scores = scores_of(query)
        farthest = [ids[i] for i in np.argsort(scores)[-15:]]
        allowed = allow(ghosts(5000) + farthest, vectors)
        assert len(allowed) > EXACT_SCAN_MAX
        hits = index.search(query, K, allowed=allowed)
        want = reference_top_k(farthest, scores[farthest], K)
        assert_same_top_k(hits, want)
    if vectors is not None:
        assert calls


def test_hnswlib_cannot_return_every_node_of_this_graph(filter_data: Clustered, filter_indexes: dict[str, Any]) -> None:
    """The premise of the fallback: in this graph (default settings) a node is unreachable, so hnswlib
    itself raises for k = len(index); HnswIndex must fall back to an exact scan."""
    index = filter_indexes["hnsw"]
    graph = index._graph
    graph.set_ef(len(filter_data.ids))
    try:
        with pytest.raises(RuntimeError, match="contiguous 2D array"):
            graph.knn_query(filter_data.queries[0], k=len(filter_data.ids))
    finally:
        graph.set_ef(index.spec.ef)  # the index is shared by other tests: back to its own setting
    query = prepare(filter_data.queries[0], L2)
    hits = index._approximate(query, len(filter_data.ids))  # white-box: the search that hnswlib cannot answer
    assert_well_formed(hits, len(filter_data.ids))
    assert [h.id for h in hits[:50]] == [h.id for h in filter_indexes["flat"].search(query, 50)]


@pytest.mark.parametrize("kind", ["flat", "hnsw", "annoy"])
def test_search_for_as_many_hits_as_indexed(filter_data: Clustered, filter_indexes: dict[str, Any], kind: str) -> None:
    index, flat = filter_indexes[kind], filter_indexes["flat"]
    for k in (len(filter_data.ids), len(filter_data.ids) + 5):
        hits = index.search(filter_data.queries[0], k)
        assert_well_formed(hits, len(filter_data.ids))
        assert [h.id for h in hits[:50]] == [h.id for h in flat.search(filter_data.queries[0], 50)]


def test_filtered_search_over_few_ids_in_a_tiny_index() -> None:
    """k larger than what is allowed and indexed: exactly the allowed, indexed ids come back."""
    a, b, c = 0, 1, 2
    # The "store" also holds a vector for GHOST, which the index does not hold: it must not be returned.
    stored = dict(zip([a, b, c, GHOST], np.eye(4, 4, dtype=np.float32)))
    # "+list": the store answers with a list (vectors of mixed shapes), which hnsw does not scan: it reads hnswlib instead.
    for kind in ("flat", "hnsw", "hnsw+store", "hnsw+list", "annoy"):
        index = make_index(kind.split("+")[0], COSINE, 4)
        index.upsert_many([a, b, c], np.eye(3, 4, dtype=np.float32))
        calls: list[int] = []
        vectors = stored_vectors(stored, calls, matrix=kind != "hnsw+list") if "+" in kind else None
        hits = index.search(np.array([1, 0, 0, 0], np.float32), 5, allowed=allow([a, c, GHOST], vectors))
        assert [h.id for h in hits] == [a, c]
        assert [h.distance for h in hits] == pytest.approx([0.0, 1.0], abs=1e-6)
        assert index.search(np.ones(4, np.float32), 5, allowed=allow([], vectors)) == []
        assert bool(calls) is (vectors is not None)
        settle(index)


@pytest.fixture(scope="module")
def multivector_filter_index(filter_documents: tuple[list[int], list[np.ndarray], list[np.ndarray]]) -> MultiVectorIndex:
    ids, documents, _ = filter_documents
    index: MultiVectorIndex = make_index("multivector", DOT, documents[0].shape[1], ef_construction=64)
    index.upsert_many(ids, documents)
    return index


def test_multivector_filtered_search_returns_the_allowed_top_k(
    filter_documents: tuple[list[int], list[np.ndarray], list[np.ndarray]], multivector_filter_index: MultiVectorIndex
) -> None:
    ids, documents, queries = filter_documents
    index = multivector_filter_index
    rng = np.random.default_rng(34)
    measured: dict[str, list[float]] = {}
    exact = MaxSimReference(documents, DOT)
    for query in queries:
        every_score = exact.scores(query)
        for name, (allowed, must_be_exact) in allow_lists(ids, 0, None, rng).items():
            indexed = [i for i in ids if i in allowed]
            want = reference_top_k(indexed, every_score[indexed], K)
            got = index.search(query, K, allowed=allowed)
            assert_well_formed(got, min(K, len(indexed)))
            assert {h.id for h in got} <= set(indexed), name
            if must_be_exact:
                assert_same_top_k(got, want)
            measured.setdefault(name, []).append(recall(got, want))
    report = {name: round(float(np.mean(r)), 4) for name, r in measured.items()}
    print(f"filtered recall@10 multivector: {report}")
    assert min(report.values()) >= FILTER_RECALL["multivector"]


def test_multivector_large_allow_list_over_a_small_collection() -> None:
    """More than EXACT_SCAN_MAX allowed ids (mostly not indexed) over fewer documents than candidates."""
    rng = np.random.default_rng(35)
    index = make_index("multivector", COSINE, 16)
    ids = list(range(50))
    index.upsert_many(ids, [rng.normal(size=(4, 16)).astype(np.float32) for _ in ids])
    allowed = allow(ids[:5] + ghosts(EXACT_SCAN_MAX + 1))
    hits = index.search(rng.normal(size=(3, 16)).astype(np.float32), K, allowed=allowed)
    assert sorted(h.id for h in hits) == ids[:5]


# -- 4. persistence ---------------------------------------------------------------------------------

PERSIST_SPECS = {
    "flat": spec_for("flat", COSINE),
    "hnsw": spec_for("hnsw", COSINE),
    "annoy": spec_for("annoy", L2, merge_threshold=400, trees=8, search_k=EXACT_ANNOY),
    "multivector": spec_for("multivector", DOT),
}
PERSIST_DIMS = 32
COLLECTION, VECTOR = "Docs", "v"


def persist_objects(kind: str, count: int, seed: int = 41) -> tuple[list[int], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    ids = list(range(count))
    if kind == "multivector":
        return ids, random_documents(rng, count, PERSIST_DIMS, rows=(1, 5))
    return ids, list(clustered(seed, count, PERSIST_DIMS, n_queries=1).points)


def persist_queries(kind: str, count: int = 30) -> list[np.ndarray]:
    rng = np.random.default_rng(42)
    if kind == "multivector":
        return [rng.normal(size=(3, PERSIST_DIMS)).astype(np.float32) for _ in range(count)]
    return list(clustered(43, 10, PERSIST_DIMS, n_queries=count).queries)


def written_index(kind: str) -> tuple[Any, list[int], dict[int, np.ndarray]]:
    """An index after inserts, updates and deletes (annoy: sealed segments, tombstones and a delta),
    with every id and the current vector of each live one."""
    ids, vectors = persist_objects(kind, 1500 if kind != "multivector" else 300)
    index = build_index(PERSIST_SPECS[kind], PERSIST_DIMS)
    fill(index, ids, vectors, batch=500)
    current = dict(zip(ids, vectors))
    rng = np.random.default_rng(44)
    chosen = [ids[int(i)] for i in rng.choice(len(ids), size=len(ids) // 10, replace=False)]
    for object_id in chosen[::2]:
        current[object_id] = -current[object_id]
    index.upsert_many(chosen[::2], [current[i] for i in chosen[::2]])
    for object_id in chosen[1::2]:
        index.delete(object_id)
        del current[object_id]
    if kind == "annoy":
        assert isinstance(index, AnnoyIndex)
        assert len(index._segments) == 3 and len(index._delta) > 0 and any(s.dead for s in index._segments)
    return index, ids, current


@pytest.mark.parametrize("kind", list(PERSIST_SPECS))
def test_save_then_restore_gives_identical_results(tmp_path: Path, kind: str) -> None:
    index, ids, current = written_index(kind)
    index.save(tmp_path)
    if kind == "hnsw":  # its graph is saved without the vectors: they come from the store
        with pytest.raises(ValueError, match="stored vectors"):
            restore_index(PERSIST_SPECS[kind], PERSIST_DIMS, tmp_path)
    restored = restore_index(PERSIST_SPECS[kind], PERSIST_DIMS, tmp_path, stored_vectors(current))
    assert len(restored) == len(index) == len(current)
    assert [i for i in ids if (i in restored) != (i in current)] == []
    # hnsw: the restored graph is the saved one, so even approximate results are identical.
    for vectors in (None, stored_vectors(current)):
        allowed = allow(ids[::50], vectors)
        for query in persist_queries(kind):
            assert_same_top_k(restored.search(query, K), index.search(query, K))
            assert_same_top_k(restored.search(query, K, allowed=allowed), index.search(query, K, allowed=allowed))
    index.close()
    restored.close()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "annoy"])
def test_a_restored_index_takes_further_writes(tmp_path: Path, kind: str) -> None:
    """After a restore (annoy: versions reset to 0), updates, deletes and merges keep the index exact."""
    index, ids, current = written_index(kind)
    index.save(tmp_path)
    index.close()
    restored = restore_index(PERSIST_SPECS[kind], PERSIST_DIMS, tmp_path, stored_vectors(current))
    mirror = Mirror(restored, PERSIST_SPECS[kind].distance, PERSIST_DIMS)
    mirror.track(list(current), list(current.values()))
    rng = np.random.default_rng(45)
    live = list(current)
    chosen = [live[int(i)] for i in rng.choice(len(live), size=600, replace=False)]
    mirror.upsert(chosen[:450], np.stack([current[i] + np.float32(0.25) for i in chosen[:450]]))  # crosses annoy's threshold
    mirror.delete(chosen[450:])
    mirror.upsert(chosen[450:500], np.stack([current[i] for i in chosen[450:500]]))  # deleted, then written again
    gone = [i for i in ids if i not in current]  # deleted before the save: written again after the restore
    mirror.upsert(gone[:50], np.stack([current[chosen[n]] + np.float32(0.5) for n in range(50)]))
    settle(mirror.index)
    mirror.check(persist_queries(kind) + [current[i] for i in chosen[::20]], exact=kind != "hnsw", min_recall=0.9)
    mirror.index.close()


@pytest.mark.parametrize("metric", [COSINE, DOT, L2], ids=lambda m: m.value)
def test_hnsw_restore_leaves_out_docs_the_store_no_longer_has(tmp_path: Path, metric: Distance) -> None:
    """A saved graph takes its vectors from the store: docs deleted from the store since the save are
    deleted from the restored graph (never returned), and can be written again."""
    spec = dataclasses.replace(PERSIST_SPECS["hnsw"], distance=metric)
    ids, vectors = persist_objects("hnsw", 1500)
    index = build_index(spec, PERSIST_DIMS)
    fill(index, ids, vectors, batch=500)
    index.save(tmp_path)
    index.close()
    stored = dict(zip(ids, vectors))
    gone = ids[::15]
    for doc in gone:
        del stored[doc]
    restored = restore_index(spec, PERSIST_DIMS, tmp_path, stored_vectors(stored))
    mirror = Mirror(restored, metric, PERSIST_DIMS)
    mirror.track(list(stored), list(stored.values()))
    mirror.deleted |= set(gone)
    assert [d for d in ids if (d in restored) != (d in stored)] == []
    mirror.check(persist_queries("hnsw") + [vectors[d] for d in gone[:30]], exact=False, min_recall=0.9)
    for doc in gone[:30]:  # a query right on a gone doc's vector finds its neighbours, not it
        assert doc not in {h.id for h in restored.search(vectors[doc], K)}
    mirror.upsert(gone[:80], np.stack([vectors[d] for d in gone[:80]]))  # written again (on every core)
    mirror.upsert(gone[80:90], np.stack([far_from(metric, vectors[d]) for d in gone[80:90]]))
    mirror.check(persist_queries("hnsw") + [vectors[d] for d in gone[:30]], exact=False, min_recall=0.9)
    for doc in gone[:90]:
        assert_only_hit(restored.search(mirror.current[doc], 1, allowed=allow([doc, GHOST])), doc, naive_distance(metric, mirror.current[doc], mirror.current[doc]), **TOL)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    with SqliteStore(tmp_path / "data") as opened:
        yield opened


def name_of(n: int) -> str:
    """The store's id for persisted object n."""
    return f"p{n:05d}"


def put(store: SqliteStore, names: Sequence[str], vectors: Sequence[np.ndarray]) -> list[int]:
    """Store objects (in batches of 500); the docs the store gave them."""
    docs: list[int] = []
    for start in range(0, len(names), 500):
        chunk = zip(names[start : start + 500], vectors[start : start + 500])
        docs += store.put_many([StoredObject(COLLECTION, i, {}, {VECTOR: np.asarray(v, np.float32)}) for i, v in chunk])
    return docs


def data_dir_of(store: SqliteStore) -> Path:
    return store.path.parent


class RecordingSource:
    """The store as ``open_index`` reads it (the engine's StoreSource), noting the docs each batched read
    of vectors asks for (``reads``; None: every stored vector, a rebuild), and those the vector reader
    (an hnsw graph's restore) asks for (``restored``)."""

    def __init__(self, store: SqliteStore) -> None:
        self.inner = StoreSource(store, COLLECTION)
        self.reads: list[list[int] | None] = []
        self.restored: list[list[int]] = []

    def vectors(self, name: str, docs: Sequence[int] | None = None) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        assert name == VECTOR
        self.reads.append(None if docs is None else sorted(docs))
        return self.inner.vectors(name, docs)

    def vector_reader(self, name: str) -> VectorReader:
        assert name == VECTOR
        read = self.inner.vector_reader(name)

        def recorded(docs: Sequence[int]) -> tuple[list[int], np.ndarray | list[np.ndarray]]:
            self.restored.append(sorted(docs))
            return read(docs)

        return recorded

    def properties(self, docs: Sequence[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        return self.inner.properties(docs)

    def changed_since(self, seq: int) -> list[int] | None:
        return self.inner.changed_since(seq)


def open_logged(store: SqliteStore, spec: IndexSpec, caplog: pytest.LogCaptureFixture, source: RecordingSource | None = None) -> tuple[Any, list[logging.LogRecord]]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="searchd.index"):
        index = open_index(source or RecordingSource(store), data_dir_of(store), COLLECTION, VECTOR, spec, PERSIST_DIMS, store.write_seq())
    settle(index)
    return index, [r for r in caplog.records if r.name == "searchd.index"]


def saved(store: SqliteStore, kind: str, caplog: pytest.LogCaptureFixture) -> tuple[Any, list[int], list[np.ndarray]]:
    """Objects in the store, their index rebuilt from it (a full and a partial batch) and saved as current;
    returns the index, the objects' docs and their vectors."""
    _, vectors = persist_objects(kind, 1100 if kind != "multivector" else 300)
    docs = put(store, [name_of(n) for n in range(len(vectors))], vectors)
    assert len(set(docs)) == len(docs)
    index, records = open_logged(store, PERSIST_SPECS[kind], caplog)
    assert any("rebuilt" in r.getMessage() for r in records)
    assert len(index) == len(docs)
    spec = PERSIST_SPECS[kind]
    save_index(index, index_dir(data_dir_of(store), COLLECTION, VECTOR), vector_fingerprint(spec, PERSIST_DIMS), store.write_seq())
    return index, docs, vectors


def messages(records: Sequence[logging.LogRecord], level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == level]


def loaded_message(store: SqliteStore, count: int, changed: int) -> str:
    return f"loaded {COLLECTION}.{VECTOR} index ({count} vectors) from {index_dir(data_dir_of(store), COLLECTION, VECTOR)}, {changed} changed since"


def assert_matches_the_store(index: Any, store: SqliteStore, kind: str) -> None:
    """The index holds exactly the store's docs, and answers like an exact search over the store's
    current vectors (flat, and annoy with an exhaustive search_k: the same top-k; hnsw and multivector:
    a recall bound)."""
    docs: list[int] = []
    vectors: list[np.ndarray] = []
    for batch_docs, batch_vectors in StoreSource(store, COLLECTION).vectors(VECTOR):
        docs += batch_docs
        vectors += batch_vectors
    assert len(index) == len(docs) == store.count(COLLECTION)
    assert all(d in index for d in docs)
    queries = persist_queries(kind, 20) + vectors[::100]
    if kind == "multivector":
        exact = MaxSimReference([v.reshape(-1, PERSIST_DIMS) for v in vectors], DOT)
        wants = [reference_top_k(docs, exact.scores(q.reshape(-1, PERSIST_DIMS)), K) for q in queries]
    else:
        flat = reference(PERSIST_SPECS[kind].distance, docs, np.stack(vectors))
        wants = [flat.search(q, K) for q in queries]
    recalls = []
    for query, want in zip(queries, wants):
        got = index.search(query, K)
        assert_well_formed(got, K)
        if kind in ("flat", "annoy"):
            assert_same_top_k(got, want)
        elif kind == "hnsw":
            assert_true_distances(got, query, flat)
        recalls.append(recall(got, want))
    assert np.mean(recalls) >= 0.9, f"recall@10 against the store: {np.mean(recalls):.3f}"


@pytest.mark.parametrize("kind", list(PERSIST_SPECS))
def test_open_index_loads_a_current_save_without_rebuilding(store: SqliteStore, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    index, docs, _ = saved(store, kind, caplog)
    source = RecordingSource(store)
    loaded, records = open_logged(store, PERSIST_SPECS[kind], caplog, source)
    assert loaded_message(store, len(docs), 0) in messages(records)
    assert not any("rebuilt" in r.getMessage() for r in records)
    assert not messages(records, logging.WARNING)
    assert source.reads == [[]]  # nothing changed since: nothing to catch up with
    assert source.restored == ([sorted(docs)] if kind == "hnsw" else [])  # hnsw: its graph's vectors, read once
    for query in persist_queries(kind, 10):
        assert_same_top_k(loaded.search(query, K), index.search(query, K))  # hnsw too: the same graph
    loaded.close()
    index.close()


@pytest.mark.parametrize("kind", ["hnsw", "multivector"])
def test_open_index_keeps_a_save_when_only_search_time_settings_changed(store: SqliteStore, caplog: pytest.LogCaptureFixture, kind: str) -> None:
    index, docs, _ = saved(store, kind, caplog)
    index.close()
    spec = dataclasses.replace(PERSIST_SPECS[kind], ef=PERSIST_SPECS[kind].ef + 7, candidates=PERSIST_SPECS[kind].candidates + 3)
    with caplog.at_level(logging.INFO, logger="searchd"):
        caplog.clear()
        reopened = open_index(StoreSource(store, COLLECTION), data_dir_of(store), COLLECTION, VECTOR, spec, PERSIST_DIMS, store.write_seq())
    assert not any("rebuilt" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage().startswith(f"loaded {COLLECTION}.{VECTOR} index") for r in caplog.records)
    assert len(reopened) == len(docs)
    assert isinstance(reopened, HnswIndex | MultiVectorIndex)
    assert reopened.spec.ef == spec.ef  # the new search-time setting is the one used
    if kind == "hnsw":
        assert isinstance(reopened, HnswIndex) and reopened._graph.ef == spec.ef  # and hnswlib searches with it


CATCH_UP = [(kind, change) for change in ("object written", "object rewritten", "object deleted", "log trimmed up to the save") for kind in PERSIST_SPECS]


def moved_vector(kind: str, vector: np.ndarray) -> np.ndarray:
    """A new vector for a stored object, far from its old one (multivector, dot: MaxSim -|Σ rows|²)."""
    if kind == "multivector":
        return np.tile(-vector.reshape(-1, PERSIST_DIMS).sum(axis=0), (2, 1)).astype(np.float32)
    return far_from(PERSIST_SPECS[kind].distance, vector)


@pytest.mark.parametrize(("kind", "change"), CATCH_UP)
def test_open_index_loads_an_older_save_and_replays_the_changes_since(store: SqliteStore, caplog: pytest.LogCaptureFixture, kind: str, change: str) -> None:
    """A save older than the store is loaded, then catches up with exactly the docs changed since
    (read from the change log), and answers as an index of the store's current content."""
    index, docs, vectors = saved(store, kind, caplog)
    index.close()
    saved_at = store.write_seq()
    if change == "object written":
        new_vector = (vectors[0] + np.float32(0.5)).astype(np.float32)
        (changed,) = put(store, ["p-new"], [new_vector])
        assert changed not in docs
    elif change == "object rewritten":  # the same object: it keeps its doc, with a new vector
        new_vector = moved_vector(kind, vectors[1])
        (changed,) = put(store, [name_of(1)], [new_vector])
        assert changed == docs[1]
    elif change == "object deleted":
        assert store.delete(COLLECTION, name_of(1)) == docs[1]
        changed = docs[1]
    else:  # the log forgot everything up to the save (not after it): it still tells what changed since
        store.trim_changes(saved_at)
        new_vector = (vectors[0] + np.float32(0.5)).astype(np.float32)
        (changed,) = put(store, ["p-new"], [new_vector])
    assert store.write_seq() == saved_at + 1
    source = RecordingSource(store)
    loaded, records = open_logged(store, PERSIST_SPECS[kind], caplog, source)
    assert loaded_message(store, len(docs), 1) in messages(records)
    assert not any("rebuilt" in r.getMessage() for r in records)
    assert not messages(records, logging.WARNING)
    assert source.reads == [[changed]], "the catch-up read more (or less) than the changed doc"
    assert source.restored == ([sorted(docs)] if kind == "hnsw" else [])  # hnsw: the saved graph's vectors, from the store
    if change == "object deleted":
        assert changed not in loaded
        assert changed not in {h.id for h in loaded.search(vectors[1], K)}
    else:
        assert changed in loaded
        assert loaded.search(new_vector, 1)[0].id == changed
    if change == "object rewritten":
        assert changed not in {h.id for h in loaded.search(vectors[1], K)}  # the old vector is gone
    assert_matches_the_store(loaded, store, kind)
    loaded.close()


REBUILT = [(kind, change) for change in ("maxConnections changed", "log trimmed past the save", "save newer than the store") for kind in PERSIST_SPECS]
REBUILT.append(("annoy", "trees changed"))  # a parameter annoy actually uses


@pytest.mark.parametrize(("kind", "change"), REBUILT)
def test_open_index_rebuilds_a_save_it_cannot_catch_up(store: SqliteStore, caplog: pytest.LogCaptureFixture, kind: str, change: str) -> None:
    """Built with other settings, older than the change log reaches, or newer than the store: rebuilt."""
    index, docs, vectors = saved(store, kind, caplog)
    index.close()
    spec = PERSIST_SPECS[kind]
    new_vector = (vectors[0] + np.float32(0.5)).astype(np.float32)
    directory = index_dir(data_dir_of(store), COLLECTION, VECTOR)
    written: int | None = None
    if change == "log trimmed past the save":
        (written,) = put(store, ["p-new"], [new_vector])
        assert store.delete(COLLECTION, name_of(1)) == docs[1]
        store.trim_changes(store.write_seq() - 1)  # the delete is still logged, the write after the save is not
    elif change == "save newer than the store":  # e.g. the data directory's database restored from an older backup
        manifest = json.loads((directory / "manifest.json").read_text())
        (directory / "manifest.json").write_text(json.dumps({**manifest, "writeSeq": store.write_seq() + 1}))
    else:
        changed = change == "maxConnections changed"
        spec = dataclasses.replace(spec, max_connections=spec.max_connections + 1) if changed else dataclasses.replace(spec, trees=spec.trees + 1)
    source = RecordingSource(store)
    rebuilt, records = open_logged(store, spec, caplog, source)
    assert any(m.startswith(f"rebuilt {COLLECTION}.{VECTOR} {kind} index from the store") for m in messages(records))
    assert not any(m.startswith("loaded") for m in messages(records))
    assert not messages(records, logging.WARNING)
    assert source.reads == [None]  # one full read of the stored vectors
    if written is not None:
        assert written in rebuilt and rebuilt.search(new_vector, 1)[0].id == written
        assert docs[1] not in rebuilt
    assert_matches_the_store(rebuilt, store, kind)
    rebuilt.close()


def _corrupt(path: Path, how: str) -> None:
    """Half plus one byte: for an annoy segment never a whole number of nodes, so annoy refuses it."""
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2 + 1])
    elif how == "one byte short":
        path.write_bytes(data[:-1])
    else:
        assert how == "garbage"
        path.write_bytes(bytes(np.random.default_rng(46).integers(0, 256, len(data), dtype=np.uint8)))


CORRUPTIONS = [
    ("flat", "vectors.npy", "empty"), ("flat", "vectors.npy", "truncated"), ("flat", "vectors.npy", "garbage"),
    ("flat", "ids.json", "garbage"),
    ("hnsw", "graph.npz", "empty"), ("hnsw", "graph.npz", "truncated"), ("hnsw", "graph.npz", "one byte short"),
    ("hnsw", "graph.npz", "garbage"), ("hnsw", "graph.json", "truncated"), ("hnsw", "graph.json", "garbage"),
    ("annoy", "segments.json", "garbage"), ("annoy", "delta.npy", "empty"),
    ("annoy", "delta.npy", "truncated"), ("annoy", "segment-0.ann", "empty"), ("annoy", "segment-0.ann", "one byte short"),
    ("annoy", "segment-0.ann", "truncated"), ("annoy", "segment-0.ann", "garbage"),
    ("multivector", "tokens.npy", "empty"), ("multivector", "tokens.npy", "truncated"), ("multivector", "documents.json", "truncated"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "file", "how"), CORRUPTIONS)
def test_open_index_rebuilds_an_unreadable_save_with_a_warning(
    store: SqliteStore, caplog: pytest.LogCaptureFixture, kind: str, file: str, how: str
) -> None:
    index, docs, vectors = saved(store, kind, caplog)
    index.close()
    directory = index_dir(data_dir_of(store), COLLECTION, VECTOR)
    _corrupt(directory / file, how)
    rebuilt, records = open_logged(store, PERSIST_SPECS[kind], caplog)
    warnings = messages(records, logging.WARNING)
    assert len(warnings) == 1 and "unreadable" in warnings[0] and "rebuilding" in warnings[0]
    assert any(m.startswith(f"rebuilt {COLLECTION}.{VECTOR}") for m in messages(records))
    assert len(rebuilt) == len(docs)
    for doc, vector in list(zip(docs, vectors))[::100]:
        assert rebuilt.search(vector, 1)[0].id == doc
    rebuilt.close()


def test_open_index_rebuilds_when_the_manifest_is_garbage(store: SqliteStore, caplog: pytest.LogCaptureFixture) -> None:
    index, docs, _ = saved(store, "flat", caplog)
    index.close()
    (index_dir(data_dir_of(store), COLLECTION, VECTOR) / "manifest.json").write_text("{not json")
    rebuilt, records = open_logged(store, PERSIST_SPECS["flat"], caplog)
    assert any(m.startswith(f"rebuilt {COLLECTION}.{VECTOR}") for m in messages(records))
    assert len(rebuilt) == len(docs)


def test_open_index_rebuilds_an_annoy_segment_truncated_to_whole_nodes(store: SqliteStore, caplog: pytest.LogCaptureFixture) -> None:
    """annoy itself loads a segment file cut at a node boundary (it just has fewer items): the
    restore must notice that the segment no longer matches its id list."""
    index, docs, _ = saved(store, "annoy", caplog)
    index.close()
    segment = index_dir(data_dir_of(store), COLLECTION, VECTOR) / "segment-0.ann"
    node = 16 + 4 * PERSIST_DIMS  # annoy's euclidean node: n_descendants, a, children[2], v[dims]
    size = segment.stat().st_size
    if size % node:
        pytest.fail(f"annoy's node size is not {node} bytes: the test needs updating")
    segment.write_bytes(segment.read_bytes()[: (size // node // 2) * node])
    rebuilt, records = open_logged(store, PERSIST_SPECS["annoy"], caplog)
    assert any("unreadable" in m for m in messages(records, logging.WARNING)), "the truncated segment was loaded"
    assert any(m.startswith(f"rebuilt {COLLECTION}.{VECTOR}") for m in messages(records))
    assert len(rebuilt) == len(docs)
    assert {h.id for h in rebuilt.search(np.zeros(PERSIST_DIMS, np.float32), len(docs))} == set(docs)
    rebuilt.close()


# -- 5. multi-vector MaxSim ----------------------------------------------------------------------


def naive_maxsim(query: np.ndarray, document: np.ndarray, metric: Distance) -> float:
    """-Σ over query rows of the max dot product over document rows, in plain Python loops."""
    q, d = np.asarray(query, np.float64), np.asarray(document, np.float64)
    if metric is COSINE:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
    return -sum(max(float(sum(a * b for a, b in zip(qr, dr))) for dr in d) for qr in q)


class MaxSimReference:
    """The same score for many documents at once: documents padded into one 3-D array, the padding
    masked with -inf, so every query is one einsum (float64)."""

    def __init__(self, documents: Sequence[np.ndarray], metric: Distance) -> None:
        self.metric = metric
        rows = max((len(d) for d in documents), default=1)
        dims = documents[0].shape[-1] if documents else 1
        self.padded = np.zeros((len(documents), rows, dims))
        self.mask = np.ones((len(documents), rows), bool)
        for n, d in enumerate(documents):
            d = np.asarray(d, np.float64).reshape(-1, dims)
            if metric is COSINE:
                d = d / np.linalg.norm(d, axis=1, keepdims=True)
            self.padded[n, : len(d)] = d
            self.mask[n, : len(d)] = False

    def scores(self, query: np.ndarray) -> np.ndarray:
        q = np.asarray(query, np.float64)
        if self.metric is COSINE:
            q = q / np.linalg.norm(q, axis=1, keepdims=True)
        sims = np.einsum("qd,nrd->nqr", q, self.padded)
        sims[np.broadcast_to(self.mask[:, None, :], sims.shape)] = -np.inf
        distances: np.ndarray = -sims.max(axis=2).sum(axis=1)
        return distances


def naive_maxsim_all(query: np.ndarray, documents: Sequence[np.ndarray], metric: Distance) -> np.ndarray:
    return MaxSimReference(documents, metric).scores(query) if documents else np.zeros(0)


def reference_top_k(ids: Sequence[int], scores: np.ndarray, k: int) -> list[Hit]:
    order = sorted(range(len(ids)), key=lambda i: (scores[i], ids[i]))[:k]
    return [Hit(ids[i], float(scores[i])) for i in order]


def random_documents(rng: np.random.Generator, count: int, dims: int, rows: tuple[int, int] = (4, 13)) -> list[np.ndarray]:
    return [rng.normal(size=(int(rng.integers(*rows)), dims)).astype(np.float32) for _ in range(count)]


def test_maxsim_distances_equals_the_naive_definition() -> None:
    rng = np.random.default_rng(51)
    documents = random_documents(rng, 30, 8, rows=(1, 7))
    for _ in range(5):
        query = rng.normal(size=(int(rng.integers(1, 6)), 8)).astype(np.float32)
        expected = [naive_maxsim(query, d, DOT) for d in documents]
        assert maxsim_distances(query, documents).tolist() == pytest.approx(expected, **TOL)
        assert naive_maxsim_all(query, documents, DOT).tolist() == pytest.approx(expected, **TOL)
    assert maxsim_distances(query, []).shape == (0,)
    # Hand-computed: rows (1,0) and (0,1); query rows (2,1) and (-1,3) → -(2 + 3).
    assert maxsim_distances(np.array([[2, 1], [-1, 3]], np.float32), [np.eye(2, dtype=np.float32)]).tolist() == [-5.0]


@pytest.mark.parametrize("metric", [DOT, COSINE], ids=lambda m: m.value)
def test_multivector_small_collection_is_exact(metric: Distance) -> None:
    rng = np.random.default_rng(52)
    documents = random_documents(rng, 40, 8, rows=(1, 7))  # 40 ≤ candidates: scored exactly
    ids = list(range(40))
    index = make_index("multivector", metric, 8)
    index.upsert_many(ids, documents)
    for _ in range(10):
        query = (rng.normal(size=(int(rng.integers(1, 6)), 8)) * 3).astype(np.float32)
        scores = np.array([naive_maxsim(query, d, metric) for d in documents])
        assert_same_top_k(index.search(query, K), reference_top_k(ids, scores, K))
        assert_same_top_k(index.search(query, 100), reference_top_k(ids, scores, 100))  # k > n: all 40
    # A single-row document (stored as a 1-D vector) is a one-row matrix.
    single = 40
    index.upsert(single, rng.normal(size=8).astype(np.float32))
    assert single in index and len(index) == 41


MV_DATA = {"count": 2000, "dims": 32}
# Measured mean recall@10 against the exact reference (candidates 64, ef 64, ef_construction 64):
# dot 0.943, cosine 0.890 (worst query 0.8 / 0.6).
MV_RECALL = {DOT: 0.85, COSINE: 0.8}


@pytest.fixture(scope="module")
def mv_documents() -> tuple[list[int], list[np.ndarray]]:
    rng = np.random.default_rng(53)
    return list(range(MV_DATA["count"])), random_documents(rng, MV_DATA["count"], MV_DATA["dims"])


@pytest.mark.parametrize("metric", [DOT, COSINE], ids=lambda m: m.value)
def test_multivector_recall_on_a_larger_collection(mv_documents: tuple[list[int], list[np.ndarray]], metric: Distance) -> None:
    ids, documents = mv_documents
    index = make_index("multivector", metric, MV_DATA["dims"], ef_construction=64)
    index.upsert_many(ids, documents)
    rng = np.random.default_rng(54)
    exact = MaxSimReference(documents, metric)
    recalls = []
    for _ in range(60):
        source = documents[int(rng.integers(len(documents)))]
        rows = rng.choice(len(source), size=min(4, len(source)), replace=False)
        query = (source[rows] + 0.5 * rng.normal(size=(len(rows), source.shape[1]))).astype(np.float32)
        want = reference_top_k(ids, exact.scores(query), K)
        got = index.search(query, K)
        assert_well_formed(got, K)
        truth = naive_maxsim_all(query, [documents[h.id] for h in got], metric)
        assert [h.distance for h in got] == pytest.approx(truth.tolist(), **TOL)
        recalls.append(recall(got, want))
    print(f"multivector {metric.value} recall@10: mean {np.mean(recalls):.4f}, worst {min(recalls):.1f}")
    assert np.mean(recalls) >= MV_RECALL[metric]
    if metric is COSINE:  # a document's own rows are the best possible cosine MaxSim: it ranks first
        for n in range(0, len(documents), 200):
            assert index.search(documents[n], 1)[0].id == ids[n]


@pytest.mark.parametrize("size", [40, 600], ids=["exact", "token-index"])  # 40 ≤ candidates < 600
def test_multivector_deleted_and_updated_documents_are_never_returned(mv_documents: tuple[list[int], list[np.ndarray]], size: int) -> None:
    ids, documents = mv_documents[0][:size], mv_documents[1][:size]
    index = make_index("multivector", COSINE, MV_DATA["dims"], ef_construction=64)
    index.upsert_many(ids, documents)
    rng = np.random.default_rng(55)
    chosen = rng.choice(size, size=size // 4, replace=False)
    updated, deleted = [ids[i] for i in chosen[: size // 8]], [ids[i] for i in chosen[size // 8 :]]
    current = dict(zip(ids, documents))
    for object_id in updated:  # two copies of minus the rows' sum: far from every old row
        current[object_id] = np.tile(-current[object_id].sum(axis=0), (2, 1))
        index.upsert(object_id, current[object_id])
    for object_id in deleted:
        index.delete(object_id)
        del current[object_id]
    assert len(index) == len(current) and all(i not in index for i in deleted)
    live = sorted(current)
    exact = MaxSimReference([current[i] for i in live], COSINE)
    for object_id in (updated[:15] + deleted[:15]):
        old = documents[object_id]
        hits = index.search(old, K)
        assert_well_formed(hits, K)
        assert not {h.id for h in hits} & set(deleted)
        truth = naive_maxsim_all(old, [current[h.id] for h in hits], COSINE)
        assert [h.distance for h in hits] == pytest.approx(truth.tolist(), **TOL)  # updated: new distance only
        assert object_id not in {h.id for h in hits}
        want = reference_top_k(live, exact.scores(old), K)
        assert recall(hits, want) >= 0.5
    for object_id in updated[:20]:
        assert index.search(current[object_id], 1)[0].id == object_id


def test_multivector_reimport_of_the_same_matrices_adds_no_tokens(mv_documents: tuple[list[int], list[np.ndarray]]) -> None:
    ids, documents = mv_documents[0][:600], mv_documents[1][:600]
    index = make_index("multivector", COSINE, MV_DATA["dims"], ef_construction=64)
    index.upsert_many(ids, documents)
    labels = sorted(index._tokens.get_ids_list())
    before = [index.search(documents[i], K) for i in range(0, 600, 60)]
    index.upsert_many(ids, documents)  # the same objects again (an idempotent re-import): no token replaced
    assert sorted(index._tokens.get_ids_list()) == labels and len(index) == 600
    assert [index.search(documents[i], K) for i in range(0, 600, 60)] == before
    changed = np.tile(-documents[7].sum(axis=0), (2, 1))  # a changed matrix is still replaced
    index.upsert_many([ids[7]], [changed])
    assert index.search(changed, 1)[0].id == ids[7] and index._documents[ids[7]].shape == (2, MV_DATA["dims"])


def test_multivector_returns_k_hits_when_document_rows_are_similar() -> None:
    """The nearest tokens crowd into a handful of documents (12 near-identical rows each): the token
    search must widen until enough documents are candidates."""
    rng = np.random.default_rng(0)
    dims = 16
    centres = rng.normal(size=(500, dims))
    documents = [(c + 0.05 * rng.normal(size=(12, dims))).astype(np.float32) for c in centres]
    ids = list(range(500))
    index = make_index("multivector", DOT, dims)
    index.upsert_many(ids, documents)
    exact = MaxSimReference(documents, DOT)
    recalls = []
    for _ in range(10):
        query = rng.normal(size=(int(rng.integers(1, 4)), dims)).astype(np.float32)
        hits = index.search(query, K)
        assert_well_formed(hits, K)
        recalls.append(recall(hits, reference_top_k(ids, exact.scores(query), K)))
    assert np.mean(recalls) >= 0.9


# -- 6. distance definitions -------------------------------------------------------------------------

# Four vectors (docs a, b, c, d) and a query, with distances worked out by hand.
a, b, c, d = 0, 1, 2, 3
HAND_VECTORS = {a: [3.0, 4.0, 0.0], b: [0.0, 0.0, 2.0], c: [-4.0, -3.0, 0.0], d: [0.0, -10.0, 0.0]}
HAND_QUERY = [4.0, 3.0, 0.0]
HAND_DISTANCES: dict[Distance, dict[int, float]] = {
    # a·q = 24, |a| = |q| = 5; b·q = 0; c·q = -25 (c = -q); d·q = -30, |d| = 10
    COSINE: {a: 1 - 24 / 25, b: 1.0, c: 2.0, d: 1 + 30 / 50},
    DOT: {a: -24.0, b: 0.0, c: 25.0, d: 30.0},
    L2: {a: 1 + 1 + 0, b: 16 + 9 + 4, c: 64 + 36 + 0, d: 16 + 169 + 0},
    L1: {a: 1 + 1 + 0, b: 4 + 3 + 2, c: 8 + 6 + 0, d: 4 + 13 + 0},
}
DISTANCE_CASES = [
    ("flat", COSINE), ("flat", DOT), ("flat", L2), ("flat", L1),
    ("hnsw", COSINE), ("hnsw", DOT), ("hnsw", L2),
    ("annoy-delta", COSINE), ("annoy-delta", DOT), ("annoy-delta", L2), ("annoy-delta", L1),
    ("annoy-sealed", COSINE), ("annoy-sealed", DOT), ("annoy-sealed", L2), ("annoy-sealed", L1),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "metric"), DISTANCE_CASES, ids=lambda v: getattr(v, "value", v))
def test_distance_definitions(kind: str, metric: Distance) -> None:
    if kind.startswith("annoy"):
        index = make_index("annoy", metric, 3, merge_threshold=1 if kind == "annoy-sealed" else 10**9)
    else:
        index = make_index(kind, metric, 3)
    index.upsert_many(list(HAND_VECTORS), np.array(list(HAND_VECTORS.values()), np.float32))
    settle(index)
    stored = stored_vectors({i: np.array(v, np.float32) for i, v in HAND_VECTORS.items()})
    if kind == "annoy-sealed":
        assert len(index._segments) == 1 and len(index._delta) == 0
    for query_scale in (1.0, 2.0):
        query = np.array(HAND_QUERY, np.float32) * query_scale
        expected = HAND_DISTANCES[metric] if query_scale == 1.0 else {i: naive_distance(metric, v, query) for i, v in HAND_VECTORS.items()}
        nearest = sorted(expected, key=lambda i: (expected[i], i))
        # k = 3 < 4 indexed: the index's own (approximate) search and its distance conversion.
        hits = index.search(query, 3)
        assert [h.id for h in hits] == nearest[:3]
        assert [h.distance for h in hits] == pytest.approx([expected[i] for i in nearest[:3]], abs=1e-4)
        if isinstance(index, ApproximateIndex):  # the arrays hybrid fuses: the same docs and distances, exactly
            for k in (3, 4):
                docs, distances = index.search_columns(query, k)
                assert list(zip(docs.tolist(), distances.tolist(), strict=True)) == [tuple(h) for h in index.search(query, k)]
        # The exact paths (an allow-list, its vectors read through its callback or not; k = everything) use the same definition.
        filtered = [index.search(query, 3, allowed=allow([*HAND_VECTORS, GHOST], vectors)) for vectors in (None, stored)]
        for exact in (*filtered, index.search(query, 4)):
            assert [h.id for h in exact] == nearest[: len(exact)] and len(exact) >= 3
            assert {h.id: h.distance for h in exact} == pytest.approx({i: expected[i] for i in [h.id for h in exact]}, abs=1e-4)
    index.close()


def test_multivector_distance_is_negative_maxsim() -> None:
    document = np.array([[3.0, 0.0], [0.0, 2.0]], np.float32)
    query = np.array([[2.0, 1.5], [0.0, 2.0]], np.float32)
    # dot: row (2, 1.5) → max(6, 3) = 6; row (0, 2) → max(0, 4) = 4.
    # cosine: document rows (1, 0), (0, 1); query rows (0.8, 0.6), (0, 1) → max(0.8, 0.6) + max(0, 1) = 1.8.
    for metric, expected in ((DOT, -10.0), (COSINE, -1.8)):
        index = make_index("multivector", metric, 2)
        doc = 7
        index.upsert(doc, document)
        assert_only_hit(index.search(query, 1), doc, expected, abs=1e-5)
        assert_only_hit(index.search(query, 1, allowed=allow([doc, GHOST])), doc, expected, abs=1e-5)


@pytest.mark.parametrize(("kind", "metric"), [("hnsw", L1), ("hnsw", Distance.HAMMING), ("annoy", Distance.HAMMING), ("multivector", L2)])
def test_unsupported_distances_are_refused(kind: str, metric: Distance) -> None:
    with pytest.raises(ValueError, match="does not support"):
        make_index(kind, metric, 4)


def test_scan_codes_are_the_set_of_live_docs() -> None:
    # hnsw's live docs are the docs with a code: the count survives repeated, re-put and removed docs.
    codes = ScanCodes(4, Distance.COSINE)
    rows = np.eye(4, dtype=np.float32)
    codes.put(np.array([7, 2, 7, 40]), rows)  # 7 twice in one put: counted once
    assert (len(codes), list(codes)) == (3, [2, 7, 40])
    codes.put(np.array([2, 5]), rows[:2])  # 2 again: only 5 is new
    assert (len(codes), list(codes)) == (4, [2, 5, 7, 40])
    codes.remove(7)
    codes.remove(7)  # twice: once counted
    codes.remove(1000)  # never held
    assert (len(codes), list(codes)) == (3, [2, 5, 40])
    assert [d in codes for d in (2, 7, 40, -1, 41, 10**9, "2", 2.0)] == [True, False, True, False, False, False, False, False]
    assert codes >= {2, 40} and not codes >= {2, 7}
