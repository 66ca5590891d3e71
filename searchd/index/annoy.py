"""annoy index: sealed annoy segments + an exact numpy delta + tombstones, merged in the background.

An annoy forest is immutable once built, so writes land in the delta (searched
exactly) and mark any older copy in a segment as dead.  When the delta passes
``merge_threshold``, a background thread builds a new segment from a snapshot of
it, without blocking reads or writes; items written again while it was building
are born dead in the new segment.  When segments pile up (or are mostly dead),
the merge compacts all live items into one segment.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import annoy
import numpy as np

from searchd.config.spec import Distance, IndexSpec
from searchd.index.base import AllowList, ApproximateIndex, Hit, distances, top_k
from searchd.index.flat import FlatIndex

log = logging.getLogger("searchd.index")

METRICS: dict[Distance, Literal["angular", "dot", "euclidean", "manhattan"]] = {Distance.COSINE: "angular", Distance.DOT: "dot", Distance.L2_SQUARED: "euclidean", Distance.MANHATTAN: "manhattan"}
MAX_SEGMENTS = 6
DEAD_FRACTION_TO_COMPACT = 0.3


def _weaviate_distance(metric: Distance, raw: float) -> float:
    if metric is Distance.COSINE:  # annoy's angular distance is sqrt(2 - 2 cos)
        return raw * raw / 2.0
    if metric is Distance.L2_SQUARED:  # annoy's euclidean is not squared
        return raw * raw
    if metric is Distance.DOT:  # annoy returns the dot product itself
        return -raw
    return raw


@dataclass
class Segment:
    forest: annoy.AnnoyIndex
    ids: list[int]
    versions: list[int]  # the version of each item when it was sealed
    dead: set[int] = field(default_factory=set)

    @property
    def live(self) -> int:
        return len(self.ids) - len(self.dead)


class AnnoyIndex(ApproximateIndex):
    def __init__(self, spec: IndexSpec, dimensions: int) -> None:
        if spec.distance not in METRICS:
            raise ValueError(f"annoy does not support {spec.distance.value} distance")
        self.spec = spec
        self.metric = spec.distance
        self.dimensions = dimensions
        self._lock = threading.RLock()
        self._segments: list[Segment] = []
        self._where: dict[int, tuple[int, int]] = {}  # id → (segment number, item) for sealed items
        # Recent writes, searched exactly.  Sealed vectors live only in their forests: a filter's exact scan reads
        # them from the store (and a compaction from the forests), so there is no second copy of every vector.
        self._delta = FlatIndex(spec.distance, dimensions)
        self._version: dict[int, int] = {}  # id → current version; absent: deleted
        self._clock = 0
        self._merging: threading.Thread | None = None
        self._closed = False

    # -- writes ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._version)

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._version

    def upsert(self, object_id: int, vector: np.ndarray) -> None:
        self.upsert_many([object_id], [vector])

    def upsert_many(self, object_ids: Sequence[int], vectors: Sequence[np.ndarray] | np.ndarray) -> None:
        with self._lock:
            for object_id in object_ids:
                self._bury(object_id)
                self._clock += 1
                self._version[object_id] = self._clock
            self._delta.upsert_many(object_ids, vectors)
            self._maybe_merge()

    def delete(self, object_id: int) -> None:
        with self._lock:
            self._bury(object_id)
            self._delta.delete(object_id)
            self._version.pop(object_id, None)

    def _bury(self, object_id: int) -> None:
        sealed = self._where.pop(object_id, None)
        if sealed is not None:
            self._segments[sealed[0]].dead.add(sealed[1])

    # -- merging ---------------------------------------------------------------

    def _maybe_merge(self) -> None:
        if len(self._delta) >= self.spec.merge_threshold and self._merging is None and not self._closed:
            self._merging = threading.Thread(target=self._merge, name="annoy-merge", daemon=True)
            self._merging.start()

    def wait_for_merges(self) -> None:
        """Block until no merge is running (used by tests, benchmarks and shutdown)."""
        while True:
            with self._lock:
                thread = self._merging
            if thread is None:
                return
            thread.join()

    def _merge(self) -> None:
        try:
            with self._lock:
                dead = sum(len(s.dead) for s in self._segments)
                total = sum(len(s.ids) for s in self._segments)
                compact = len(self._segments) >= MAX_SEGMENTS or (total and dead / total > DEAD_FRACTION_TO_COMPACT)
                delta_ids, delta_vectors = self._delta.items()
                snapshot: list[tuple[int, int, np.ndarray]] = [(i, self._version[i], v) for i, v in zip(delta_ids, delta_vectors)]
                sealed = [(segment, sorted(set(range(len(segment.ids))) - segment.dead)) for segment in self._segments] if compact else []
                replaced = len(self._segments) if compact else 0
            # Outside the lock: a forest never changes once built, and only this thread replaces segments.
            for segment, items in sealed:
                snapshot += [(segment.ids[item], segment.versions[item], self._item_vector(segment, item)) for item in items]
            segment = self._build(snapshot)  # the slow part, outside the lock
            with self._lock:
                self._install(segment, replaced)
        except Exception:  # a failed merge leaves the delta in place: searches stay correct
            log.exception("annoy merge failed; recent writes stay in the exact delta")
        finally:
            with self._lock:
                self._merging = None
                self._maybe_merge()

    def _build(self, items: list[tuple[int, int, np.ndarray]]) -> Segment:
        forest = annoy.AnnoyIndex(self.dimensions, METRICS[self.metric])
        for position, (_, _, vector) in enumerate(items):
            forest.add_item(position, vector)
        forest.build(self.spec.trees, n_jobs=1)
        return Segment(forest, [i for i, _, _ in items], [v for _, v, _ in items])

    def _install(self, segment: Segment, replaced: int) -> None:
        """Swap in a built segment: items written again (or deleted) while it was built are born dead."""
        if replaced:
            self._segments = self._segments[replaced:]
            self._where = {i: (n - replaced, item) for i, (n, item) in self._where.items() if n >= replaced}
        number = len(self._segments)
        for item, (object_id, version) in enumerate(zip(segment.ids, segment.versions)):
            if self._version.get(object_id) != version:
                segment.dead.add(item)
                continue
            self._where[object_id] = (number, item)
            self._delta.delete(object_id)
        self._segments.append(segment)

    # -- reads -----------------------------------------------------------------

    def _item_vector(self, segment: Segment, item: int) -> np.ndarray:
        return np.asarray(segment.forest.get_item_vector(item), dtype=np.float32)

    def _vectors(self, docs: Sequence[int]) -> tuple[list[int], np.ndarray]:
        """The live docs' vectors, from the delta or their forest (annoy keeps each item's vector); under the lock."""
        found, matrix = self._delta.vectors(docs)
        recent = dict(zip(found, matrix))
        rows: list[np.ndarray] = []
        kept: list[int] = []
        for doc in docs:
            sealed = self._where.get(doc)
            if doc in recent:
                rows.append(recent[doc])
            elif sealed is not None:
                rows.append(self._item_vector(self._segments[sealed[0]], sealed[1]))
            else:
                continue
            kept.append(doc)
        return kept, np.asarray(rows, dtype=np.float32).reshape(len(rows), self.dimensions)

    def _exact(self, query: np.ndarray, k: int, allowed: AllowList | None = None) -> list[Hit]:
        live = self._version.keys()  # only tested for membership: safe beside writers
        found = self._exact_from_store(query, k, allowed, live)  # the store's read holds no lock of ours
        if found is not None:
            return found
        with self._lock:
            docs, matrix = self._vectors(sorted(live if allowed is None else (d for d in allowed if d in live)))
        return top_k(docs, distances(matrix, query, self.metric), k)

    def _search_k(self, k: int, segment: Segment) -> int:
        """A segment's share of the search budget: the whole index costs about as much as one segment would."""
        budget = self.spec.search_k or self.spec.trees * k * 25
        sealed = sum(len(s.ids) for s in self._segments) or 1
        return max(self.spec.trees * k, budget * len(segment.ids) // sealed)

    def _approximate(self, query: np.ndarray, k: int) -> list[Hit]:
        # Held for the whole search so segments, tombstones and delta agree; merges build outside it.
        with self._lock:
            hits = self._delta.search(query, k)
            for segment in self._segments:
                hits += self._search_segment(segment, query, k)
        hits.sort(key=lambda h: (h.distance, h.id))
        return hits[:k]

    def _search_segment(self, segment: Segment, query: np.ndarray, k: int) -> list[Hit]:
        """k live hits from one segment: tombstones are skipped, widening the fetch until enough are live."""
        wanted = min(k, segment.live)
        fetch = k + min(len(segment.dead), 4 * k)
        while True:
            items, raw = segment.forest.get_nns_by_vector(query, fetch, search_k=self._search_k(fetch, segment), include_distances=True)
            hits = [Hit(segment.ids[item], _weaviate_distance(self.metric, d)) for item, d in zip(items, raw) if item not in segment.dead]
            if len(hits) >= wanted or fetch >= len(segment.ids):
                return hits
            fetch = min(len(segment.ids), fetch * 4)

    # -- persistence -----------------------------------------------------------

    def save(self, directory: Path) -> None:
        self.wait_for_merges()
        with self._lock:
            delta_ids, delta_vectors = self._delta.items()
            segments = []
            for number, segment in enumerate(self._segments):
                segment.forest.save(str(directory / f"segment-{number}.ann"))
                segments.append({"ids": segment.ids, "dead": sorted(segment.dead)})
            manifest = {"segments": segments, "delta": delta_ids}
            np.save(directory / "delta.npy", delta_vectors)
            (directory / "segments.json").write_text(json.dumps(manifest))

    @classmethod
    def restore(cls, spec: IndexSpec, dimensions: int, directory: Path) -> AnnoyIndex:
        manifest = json.loads((directory / "segments.json").read_text())
        index = cls(spec, dimensions)
        for number, saved in enumerate(manifest["segments"]):
            forest = annoy.AnnoyIndex(dimensions, METRICS[spec.distance])
            if not forest.load(str(directory / f"segment-{number}.ann")) or forest.get_n_items() != len(saved["ids"]):
                raise ValueError(f"annoy segment {number} is unreadable or does not match its id list")
            segment = Segment(forest, saved["ids"], [0] * len(saved["ids"]), set(saved["dead"]))
            index._segments.append(segment)
            for item, object_id in enumerate(segment.ids):
                if item not in segment.dead:
                    index._where[object_id] = (number, item)
                    index._version[object_id] = 0
        delta = np.load(directory / "delta.npy")
        if len(delta) != len(manifest["delta"]):
            raise ValueError("saved annoy delta does not match its id list")
        index._delta.upsert_many(manifest["delta"], delta)
        index._version.update({object_id: 0 for object_id in manifest["delta"]})
        return index

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.wait_for_merges()
