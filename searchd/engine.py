"""The engine: writes objects (check → embed → store → index) and answers searches.

The object store is the source of truth; the indexes are derived from it (see searchd.engine_indexes).
``Engine`` is what the edges, the query path and searchd.reload call.  Its parts, each on the state
``searchd.engine_indexes`` holds: the write path (searchd.engine_writes), the rebuilds beside the serving
indexes (searchd.engine_shadows) and the writes of other replicas (searchd.engine_replicas).  This module
starts and stops it (index checkpoints, the follower) and answers the reads.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np

from searchd.catalog import CatalogHolder, CompiledCollection, CompiledVector
from searchd.checkpoints import CHECKPOINT_CHANGES, Checkpoints, release_free_memory
from searchd.engine_replicas import ReplicaChanges
from searchd.engine_shadows import ShadowIndexes
from searchd.engine_writes import WritePath
from searchd.errors import ConfigChanged
from searchd.follower import Follower
from searchd.index import Hit, VectorIndex
from searchd.index.base import AllowList, ApproximateIndex, columns
from searchd.index.persist import index_dir, keyword_dir, keyword_fingerprint, save_index, vector_fingerprint
from searchd.index.pgvector import PgVectorIndex
from searchd.records import StoredObject
from searchd.sources import ProgressReport
from searchd.storage.backends import Peek, cache_table, effective_storage, open_store, peek
from searchd.storage.backup import BackupResult, backup
from searchd.storage.base import Store
from searchd.storage.datadir import default_data_dir
from searchd.storage.failures import storage_error
from searchd.where import Filter, SortKey
from searchd.workers import WorkerThreads

log = logging.getLogger("searchd")


def backup_postgres(url: str, destination: Path) -> BackupResult:
    """``searchd backup`` of a PostgreSQL store into a data directory (psycopg is loaded only for this)."""
    from searchd.storage.pgbackup import backup_postgres as copy_database

    return copy_database(url, destination)

# What the edges use of the data directory, through the engine core (they never import storage).
__all__ = [
    "BackupResult",
    "Engine",
    "Peek",
    "ProgressReport",
    "Store",
    "StoredObject",
    "backup",
    "backup_postgres",
    "cache_table",
    "default_data_dir",
    "effective_storage",
    "open_store",
    "peek",
    "storage_error",
]


P = ParamSpec("P")
T = TypeVar("T")


class Engine(WritePath, ShadowIndexes, ReplicaChanges):
    """The engine core: the only way the edges, the query path and the reload manager reach storage and indexes."""

    def __init__(self, holder: CatalogHolder, store: Store, data_dir: Path, progress: ProgressReport | None = None) -> None:
        super().__init__(holder, store, data_dir)
        self._checkpoint = Checkpoints(self)
        self._workers = WorkerThreads()
        replication = store.replication()
        start_seq = store.write_seq() if replication is not None else 0  # the indexes opened next reflect at least this
        self.open_indexes(holder.current, progress)
        release_free_memory()  # loading and catching up built transient arrays
        # What is saved is as current as the store, unless opening had much to catch up on: then save soon.
        self._checkpoint.saved(-1 if sum(self._stale) >= CHECKPOINT_CHANGES else store.write_seq())
        self.follower = Follower(self, replication, data_dir, holder.current.spec.server.storage, start_seq) if replication is not None else None

    # -- running, saving and stopping -------------------------------------------

    async def offload(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``work(*args)`` in a worker thread (searchd.workers), so the event loop goes on meanwhile.

        The work runs in a copy of the caller's context, which carries the request's deadline (searchd.deadline).
        """
        return await self._workers.run(functools.partial(work, *args, **kwargs))

    def close(self) -> None:
        """Save every index (so the next start loads instead of rebuilding), then release them."""
        self._checkpoint.stop()
        self._workers.close()
        if self.follower is not None:
            self.follower.stop()
        self.save_indexes(closing=True)

    def save_indexes(self, closing: bool = False) -> int:
        """Save every serving index with the store's sequence, under the write lock, and trim the change log; the sequence saved.

        A later start loads them and replays only the writes after that sequence.
        """
        catalog = self.holder.current
        with self._write_lock:
            # With other writers, the indexes hold what the follower applied (and this process's own writes): no more.
            write_seq = self.follower.applied if self.follower is not None else self.store.write_seq()
            for (collection, name), serving in self._indexes.items():
                index, vector = serving.index, serving.vector
                if closing:
                    index.close()
                try:
                    save_index(index, index_dir(self.data_dir, collection, name), vector_fingerprint(vector.spec.index, vector.dimensions), write_seq)
                except OSError as exc:  # the store is the truth: the next start rebuilds
                    log.warning("could not save the %s.%s index (%s); it will be rebuilt at the next start", collection, name, exc)
            for collection, keyword in self._keyword.items():
                if collection not in catalog.collections:
                    continue
                try:
                    save_index(keyword, keyword_dir(self.data_dir, collection), keyword_fingerprint(catalog.collections[collection].spec), write_seq)
                except OSError as exc:
                    log.warning("could not save the %s BM25 index (%s); it will be rebuilt at the next start", collection, exc)
            self.store.trim_changes(write_seq)
        self._checkpoint.saved(write_seq)
        return write_seq

    def start_checkpoints(self) -> None:
        """Save the indexes in the background as writes accumulate, so a restart after kill -9 replays few writes;
        on a shared store, follow the other replicas' writes too."""
        self._checkpoint.start()
        if self.follower is not None:
            self.follower.start()

    # -- reads -----------------------------------------------------------------

    def allowed_at_once(self, collection: str, where: Filter) -> AllowList | None:
        """``allowed`` for a small numeric filter the in-memory columns answer (a few numpy passes); None otherwise.

        Such a filter costs less than handing it to a worker thread, so the query path runs it on the event loop;
        anything else (text, ids, many operands, the store) goes to ``allowed`` in a worker.
        """
        table = self.table(collection)
        if not table.answers_cheaply(where):
            return None
        mask = table.mask_or_none(where)
        return AllowList(mask, where=where) if mask is not None else None

    def allowed(self, collection: str, where: Filter) -> AllowList:
        """The docs a filter lets through: from the in-memory columns, or from the store for what they do not hold."""
        mask = self.table(collection).mask_or_none(where)
        return AllowList(mask, where=where) if mask is not None else AllowList.of(self.store.docs_matching(collection, where), where=where)

    def objects(self, collection: str, docs: Sequence[int], vectors: bool = False) -> dict[int, StoredObject]:
        """Stored objects by doc (vectors only when asked: they are most of a row)."""
        return self.store.get_docs(collection, docs, vectors)

    def alive(self, collection: str, docs: np.ndarray) -> np.ndarray:
        """Whether each of these docs still holds an object (False for one deleted since a search found it)."""
        return self.table(collection).alive(docs)

    def ids(self, collection: str, docs: Sequence[int]) -> list[str | None]:
        """The ids of these docs (None for one deleted since it was found).

        A doc this process has not seen (a pgvector index finds what other processes wrote) is looked up in the store.
        """
        found = self.table(collection).ids_of(docs)
        if self._ids_elsewhere and None in found:
            found = [i if i is not None else self._ids_elsewhere.get((collection, d)) for d, i in zip(docs, found)]
        return found

    def list_objects(
        self, collection: str | None, limit: int, offset: int = 0, after: str | None = None, where: Filter | None = None, order: Sequence[SortKey] = (), vectors: bool = True
    ) -> list[StoredObject]:
        return self.store.list_objects(collection, limit, offset, after, where, order, vectors)

    def size(self, collection: str) -> int | None:
        """How many objects the collection holds now (its table's rows, no store read), None when it is not served."""
        table = self._tables.get(collection)
        return None if table is None else len(table)

    def count(self, collection: str, where: Filter | None = None) -> int:
        """How many objects pass ``where`` (all of them without one)."""
        table = self._tables.get(collection)
        if table is not None and where is None:
            return len(table)
        mask = table.mask_or_none(where) if table is not None and where is not None else None
        return int(np.count_nonzero(mask)) if mask is not None else self.store.count_matching(collection, where)

    def search_hits(
        self,
        collection: CompiledCollection,
        vector: CompiledVector,
        query: np.ndarray,
        limit: int,
        offset: int = 0,
        max_distance: float | None = None,
        allowed: AllowList | None = None,
    ) -> list[Hit]:
        """Nearest docs and distances (not the objects); ``allowed`` restricts the search to what a filter passes."""
        if allowed is not None and self.stored_for(collection.name, vector):
            # An exact scan over a few allowed docs reads their (best candidates') vectors from the store.
            allowed = AllowList(allowed.mask, lambda docs: self.store.vector_matrix(collection.name, vector.name, docs), allowed.where)
        elif allowed is not None:
            # The store holds vectors another replica promoted for settings not served here yet: the index's own answer.
            allowed = AllowList(allowed.mask, None, allowed.where)
        index = self._index_for(collection.name, vector, query)
        hits = index.search(query, limit + offset, allowed)[offset:]
        if isinstance(index, PgVectorIndex):
            self._learn_ids(collection.name, hits)
        if max_distance is not None:
            hits = [h for h in hits if h.distance <= max_distance + 1e-6]
        return hits

    def search_columns(
        self, collection: CompiledCollection, vector: CompiledVector, query: np.ndarray, limit: int, max_distance: float | None = None, allowed: AllowList | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search_hits`` as (docs, distances) arrays, for fusion: an unfiltered graph search gives them without making hits."""
        index = self._index_for(collection.name, vector, query)
        if allowed is not None or not isinstance(index, ApproximateIndex):
            return columns(self.search_hits(collection, vector, query, limit, 0, max_distance, allowed))
        docs, found = index.search_columns(query, limit)
        found = found.astype(np.float64, copy=False)  # as the hits' Python floats: a bound compares in float64
        if max_distance is not None:
            kept = found <= max_distance + 1e-6
            docs, found = docs[kept], found[kept]
        return docs, found

    def _index_for(self, collection: str, vector: CompiledVector, query: np.ndarray) -> VectorIndex:
        """The index built for ``vector`` as the request's catalog declares it.

        A query that began before a rebuild's swap searches the index it began on
        (kept for RETIRED_GRACE_S): its vector was made for that one.
        """
        key = (collection, vector.name)
        current = self._indexes.get(key)
        for serving in (*([current] if current else []), *self._retired.get(key, ())):
            if serving.vector.same_space(vector) and query.shape[-1] == vector.dimensions:
                return serving.index
        raise ConfigChanged(f"the vector '{vector.name}' of '{collection}' was rebuilt with new settings while this query ran", "send the query again")
