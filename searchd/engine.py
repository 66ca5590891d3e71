"""The engine: writes objects (check → embed → store → index) and answers searches.

The object store is the source of truth.  Indexes are derived: rebuilt from the
store at start, and updated after each durable write, under one write lock so
that the store and the indexes agree on the order of writes.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
import numpy as np

from searchd.catalog import Catalog, CatalogHolder, CompiledCollection, CompiledVector
from searchd.checkpoints import CHECKPOINT_CHANGES, Checkpoints, release_free_memory
from searchd.config.spec import IndexSpec, IndexType
from searchd.drafts import Draft, draft_object, stored_unchanged, supplied_vectors
from searchd.errors import AlreadyExists, ConfigChanged, InvalidInput, NotFound, QueryError, SearchdError
from searchd.follower import Follower
from searchd.index import Hit, VectorIndex
from searchd.index.base import AllowList, build_index
from searchd.index.bm25 import BM25Index
from searchd.index.persist import (
    fill_index,
    fill_keyword_index,
    index_dir,
    keyword_dir,
    keyword_fingerprint,
    open_index,
    open_keyword_index,
    save_index,
    vector_fingerprint,
)
from searchd.index.pgvector import PgVectorIndex
from searchd.index.table import DocTable
from searchd.modules.base import NO_KEYS
from searchd.records import StoredObject
from searchd.serving import RETIRED_GRACE_S, Serving, Shadow
from searchd.sources import CountedSource, ProgressReport, Steps, StoreSource
from searchd.storage.backends import Peek, cache_table, effective_storage, open_store, peek
from searchd.storage.backup import BackupResult, backup
from searchd.storage.base import Store
from searchd.storage.datadir import default_data_dir
from searchd.storage.failures import storage_error
from searchd.values import check_properties, normalize_uuid
from searchd.where import Filter, SortKey

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


IDS_ELSEWHERE_MAX = 100_000
STORE_ATTEMPTS = 3  # embed-and-commit rounds for a write that keeps meeting re-vectorization swaps


def _public(obj: StoredObject) -> StoredObject:
    return replace(obj, vectors={n: v for n, v in obj.vectors.items() if "#" not in n}) if any("#" in n for n in obj.vectors) else obj


def _now_ms() -> int:
    return int(time.time() * 1000)


class Engine:
    def __init__(self, holder: CatalogHolder, store: Store, data_dir: Path, progress: ProgressReport | None = None) -> None:
        self.holder = holder
        self.store = store
        self.data_dir = data_dir
        self._write_lock = threading.Lock()
        self._last_commit_ms = 0
        self._indexes: dict[tuple[str, str], Serving] = {}
        self._retired: dict[tuple[str, str], tuple[Serving, ...]] = {}
        self._retired_lock = threading.Lock()  # held only for dict updates: release_retired runs on the manager's loop
        self._keyword: dict[str, BM25Index] = {}
        self._tables: dict[str, DocTable] = {}
        self._stale: list[int] = []  # writes that opened indexes had to catch up on (or rebuild from)
        self._checkpoint = Checkpoints(self)
        self._shadows: dict[tuple[str, str], Shadow] = {}
        self._promoted: dict[tuple[str, str], CompiledVector] = {}  # (collection, staging name) → the vector it became
        self._ids_elsewhere: dict[tuple[str, int], str] = {}  # (collection, doc) → id, of docs other processes wrote (_learn_ids)
        replication = store.replication()
        start_seq = store.write_seq() if replication is not None else 0  # the indexes opened next reflect at least this
        self.open_indexes(holder.current, progress)
        release_free_memory()  # loading and catching up built transient arrays
        # What is saved is as current as the store, unless opening had much to catch up on: then save soon.
        self._checkpoint.saved(-1 if sum(self._stale) >= CHECKPOINT_CHANGES else store.write_seq())
        # On a shared store (PostgreSQL), what other replicas write reaches this process's indexes through the change log.
        self.follower = Follower(self, replication, data_dir, holder.current.spec.server.storage, start_seq) if replication is not None else None

    # -- indexes ---------------------------------------------------------------

    def open_indexes(self, catalog: Catalog, progress: ProgressReport | None = None) -> None:
        """Load each saved index that is still current, or rebuild it from the store.

        An index already open keeps its content but takes the catalog's search-time
        settings (ef, candidates …): changing those is an in-place change.
        """
        write_seq = self.store.write_seq()
        counts = {name: self.store.count(name) for name in catalog.collections} if progress else {}
        steps = Steps(progress, sum(n * (2 + len(catalog.collections[c].vectors)) for c, n in counts.items())) if progress else None
        for collection in catalog.collections.values():
            self.store.index_properties(collection.name, [p.name for p in collection.spec.properties if p.filterable and not p.type.value.endswith("[]")])
            self._open_table(collection, steps)
            source = self.source(collection.name) if steps is None else CountedSource(self.store, collection.name, steps)
            size = counts.get(collection.name, 0)
            if steps is not None:
                steps.step(size)
            rebuilding = (collection.name, "") in self._shadows
            if collection.name not in self._keyword and not rebuilding and any(p.searchable for p in collection.spec.properties):
                self._keyword[collection.name] = open_keyword_index(source, self.data_dir, collection.spec, write_seq, self._stale)
            elif collection.name in self._keyword:  # k1, b and stopwords apply at query time: an in-place change
                self._keyword[collection.name].configure(collection.spec.inverted_index)
            if steps is not None:
                steps.step(size)
            for vector in collection.vectors.values():
                key = (collection.name, vector.name)
                serving = self._indexes.get(key)
                if serving is None or not serving.vector.same_space(vector):
                    if vector.spec.index.kind is IndexType.PGVECTOR:
                        index = self.new_index(collection.name, vector.name, vector)
                    else:
                        index = open_index(source, self.data_dir, collection.name, vector.name, vector.spec.index, vector.dimensions, write_seq, self._stale)
                    self._indexes[key] = Serving(index, vector)
                    if steps is not None:
                        steps.step(size)
                    continue
                if isinstance(getattr(serving.index, "spec", None), IndexSpec):
                    # Only the ANN indexes read settings at search time (flat has none): duck-typed on purpose.
                    setattr(serving.index, "spec", vector.spec.index)  # noqa: B010
                self._indexes[key] = Serving(serving.index, vector)

    def new_index(self, collection: str, name: str, vector: CompiledVector) -> VectorIndex:
        """An empty index for ``vector``'s settings; a pgvector index is the database's, already filled from the stored vectors ``name``."""
        index = vector.spec.index
        if index.kind is not IndexType.PGVECTOR:
            return build_index(index, vector.dimensions)
        make = getattr(self.store, "database_index", None)  # only the PostgreSQL store has one (the config check says so)
        if make is None:
            raise ConfigChanged(f"the vector '{name}' of '{collection}' has a pgvector index, but the object store is not PostgreSQL", "set server.storage.backend: postgres, or use index type hnsw")
        return PgVectorIndex(index, vector.dimensions, make(collection, name, index, vector.dimensions))

    def _open_table(self, collection: CompiledCollection, steps: Steps | None = None, rebuild: bool = False) -> None:
        """The collection's doc table, built from the store when new, when its filterable properties changed, or to ``rebuild`` it.

        The table being replaced keeps answering until the new one is built (queries never find none).
        """
        columns = tuple((p.name, p.type) for p in collection.spec.properties if p.filterable)
        current = self._tables.get(collection.name)
        if current is not None and current.columns == columns and not rebuild:
            return
        table = DocTable(collection.spec)
        for obj in self.store.iter_objects(collection.name):
            table.put(obj.doc, obj.id, obj.properties, obj.created_ms, obj.updated_ms)
            if steps is not None:
                steps.tick(1)
        self._tables[collection.name] = table

    def source(self, collection: str) -> StoreSource:
        return StoreSource(self.store, collection)

    def table(self, collection: str) -> DocTable:
        table = self._tables.get(collection)
        if table is None:
            raise NotFound(f"collection '{collection}' is not served yet", "wait for the config to be applied")
        return table

    def keyword_index(self, collection: CompiledCollection) -> BM25Index:
        index = self._keyword.get(collection.name)
        if index is None:
            raise QueryError(f"collection '{collection.name}' has no searchable TEXT property for bm25", "declare a TEXT property (indexSearchable is true by default)")
        return index

    async def offload(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``work(*args)`` in a worker thread, so the event loop goes on meanwhile.

        anyio's threads, not a ThreadPoolExecutor: they run the work in a copy of the caller's context, which carries
        the request's deadline (searchd.deadline); and with a pool, health probes under an 8-client load waited about
        twice as long (p50 8-14 ms against 6-8 ms, same run), although each hand-over cost less CPU.
        """
        return await anyio.to_thread.run_sync(functools.partial(work, *args, **kwargs))

    def close(self) -> None:
        """Save every index (so the next start loads instead of rebuilding), then release them."""
        self._checkpoint.stop()
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

    # -- writes ----------------------------------------------------------------

    def draft(self, catalog: Catalog, payload: Any, class_name: str | None = None, object_id: str | None = None) -> Draft:
        """Check one object payload (Weaviate's object JSON) without touching storage."""
        return draft_object(catalog, payload, class_name, object_id)

    def unchanged(self, drafts: Sequence[Draft]) -> list[bool]:
        """Which drafts are stored already exactly as they are: one read per collection (a resumed import skips those)."""
        wanted: dict[str, list[str]] = {}
        for d in drafts:
            wanted.setdefault(d.collection.name, []).append(d.id)
        stored = {(name, found.id): found for name, ids in wanted.items() for found in self.store.get_many(name, ids).values()}
        return [(obj := stored.get((d.collection.name, d.id))) is not None and stored_unchanged(d, _public(obj)) for d in drafts]

    async def embed(self, drafts: Sequence[Draft], keys: Mapping[str, str] = NO_KEYS) -> list[SearchdError | None]:
        """Fill in missing vectors from the vectorizers, batched per named vector; one error slot per draft."""
        errors: list[SearchdError | None] = [None] * len(drafts)
        groups: dict[tuple[str, str], list[int]] = {}
        for position, draft in enumerate(drafts):
            for vector in draft.collection.vectors.values():
                if vector.vectorizer is not None and vector.name not in draft.vectors:
                    groups.setdefault((draft.collection.name, vector.name), []).append(position)
        work = [
            self._embed_into(drafts, positions, drafts[positions[0]].collection.vectors[vector_name], vector_name, errors, keys)
            for (_, vector_name), positions in groups.items()
        ]
        # A write during a re-vectorization is embedded for the new vectors too.
        for shadow in list(self._shadows.values()):
            positions = [p for p, d in enumerate(drafts) if d.collection.name == shadow.collection]
            if shadow.reembed and shadow.target is not None and positions:
                for position in positions:
                    drafts[position].staged.add(shadow.source)
                work.append(self._embed_into(drafts, positions, shadow.target, shadow.source, errors, keys))
        await asyncio.gather(*work)  # named vectors are embedded concurrently: their providers' latencies overlap
        return errors

    async def _embed_into(
        self, drafts: Sequence[Draft], positions: list[int], vector: CompiledVector, name: str, errors: list[SearchdError | None], keys: Mapping[str, str]
    ) -> None:
        assert vector.vectorizer is not None
        results = await vector.vectorizer.embed_objects([drafts[p].properties for p in positions], keys)
        for position, result in zip(positions, results):
            if isinstance(result, SearchdError):
                errors[position] = errors[position] or result
            elif result is not None:
                drafts[position].vectors[name] = result
                drafts[position].embedded.add(name)

    def commit(self, drafts: Sequence[Draft], require_new: bool = False) -> list[StoredObject | ConfigChanged]:
        """Store drafts durably in one transaction, then update the indexes.

        A draft whose vectors were made for settings no longer served fails alone with
        ``ConfigChanged`` (``store_drafts`` embeds it again).
        """
        with self._write_lock:
            # Strictly increasing per commit: updated_ms versions an object (see put_vectors_if_unchanged).
            now = self._last_commit_ms = max(_now_ms(), self._last_commit_ms + 1)
            settled = [self._settle(d) for d in drafts]
            drafts = [d for d in settled if isinstance(d, Draft)]
            pending: dict[str, list[str]] = {}
            for d in drafts:
                if d.created_ms is None:
                    pending.setdefault(d.collection.name, []).append(d.id)
            created = {(c, i): t for c, ids in pending.items() for i, t in self.store.created_times(c, ids).items()}
            if require_new and created:
                (collection, object_id), _ = next(iter(created.items()))
                raise AlreadyExists(f"id '{object_id}' already exists in '{collection}'", "use PUT or PATCH to change it, or omit id to get a new one")
            objects = [
                StoredObject(
                    d.collection.name,
                    d.id,
                    d.properties,
                    dict(d.vectors),
                    d.created_ms if d.created_ms is not None else created.get((d.collection.name, d.id), now),
                    now,
                )
                for d in drafts
            ]
            docs = self.store.put_many(objects)
            objects = [replace(o, doc=doc) for o, doc in zip(objects, docs)]
            self._index([d.staged for d in drafts], objects)
        stored = iter(objects)
        return [_public(next(stored)) if isinstance(d, Draft) else d for d in settled]

    def _settle(self, draft: Draft) -> Draft | ConfigChanged:
        """The draft as it may be stored now (under the write lock), its vectors checked against the indexes in service.

        A re-vectorization may have ended since the draft was embedded: a vector staged
        for it becomes the vector; a vector made for settings no index serves any more
        means embedding again.
        """
        name = draft.collection.name
        if name not in self.holder.current.collections:
            return ConfigChanged(f"collection '{name}' was removed from the config while this object was written", "check the collection's name in the config")
        serving = {k[1]: s.vector for k, s in self._indexes.items() if k[0] == name}
        sources = {s.source for s in self._shadows.values() if s.collection == name and s.reembed}
        vectors = {n: v for n, v in draft.vectors.items() if n in serving or n in sources}
        promoted = set()
        for staged in draft.staged & draft.vectors.keys():
            final = self._promoted.get((name, staged))
            if final is not None and staged not in sources and final.name in serving and final.same_embedding(serving[final.name]):
                vectors[final.name] = draft.vectors[staged]
                promoted.add(final.name)
        for vector_name, vector in serving.items():
            made_for = draft.collection.vectors.get(vector_name)
            if vector_name in promoted or (made_for is None and vector.vectorizer is None):
                continue
            if made_for is None or not made_for.same_embedding(vector):  # a reindex alone keeps the vectors valid
                return ConfigChanged(f"the vector '{vector_name}' of '{name}' was rebuilt with new settings while this object was embedded", "send it again")
        return replace(draft, vectors=vectors)

    def _index(self, staged_for: Sequence[set[str]], objects: Sequence[StoredObject]) -> None:
        """Bring the derived indexes up to date with stored objects, one batch call per index.

        ``staged_for``: per object, the staged vectors it was written with (a running re-vectorization embeds the others).
        """
        upserts: dict[tuple[str, str], tuple[list[int], list[np.ndarray]]] = {}
        keys: dict[str, list[tuple[str, str]]] = {}
        for obj in objects:
            table = self._tables.get(obj.collection)
            if table is not None:
                table.put(obj.doc, obj.id, obj.properties, obj.created_ms, obj.updated_ms)
            if obj.collection in self._keyword:
                self._keyword[obj.collection].upsert(obj.doc, obj.properties)
            if obj.collection not in keys:
                keys[obj.collection] = [k for k in self._indexes if k[0] == obj.collection]
            for key in keys[obj.collection]:
                if key[1] in obj.vectors:
                    docs, vectors = upserts.setdefault(key, ([], []))
                    docs.append(obj.doc)
                    vectors.append(obj.vectors[key[1]])
                else:
                    self._indexes[key].index.delete(obj.doc)
        for key, (ids, vectors) in upserts.items():
            self._indexes[key].index.upsert_many(ids, vectors)
        for shadow in self._shadows.values():
            for staged, obj in zip(staged_for, objects):
                if obj.collection != shadow.collection:
                    continue
                if shadow.reembed and shadow.source not in staged:
                    shadow.unstaged.add(obj.id)
                else:
                    shadow.unstaged.discard(obj.id)
                    shadow.captured.append((obj.doc, obj.properties if shadow.vector is None else obj.vectors.get(shadow.source)))

    async def write(self, draft: Draft, require_new: bool = False, keys: Mapping[str, str] = NO_KEYS) -> StoredObject:
        (result,) = await self.store_drafts([draft], keys, require_new)
        if isinstance(result, SearchdError):
            raise result
        return result

    async def store_drafts(self, drafts: Sequence[Draft], keys: Mapping[str, str] = NO_KEYS, require_new: bool = False) -> list[StoredObject | SearchdError]:
        """Embed and commit; a draft that met a re-vectorization's swap half-way is drafted and embedded again."""
        results: list[StoredObject | SearchdError | None] = [None] * len(drafts)
        todo = list(enumerate(drafts))
        for attempt in range(STORE_ATTEMPTS):
            errors = await self.embed([d for _, d in todo], keys)
            ready = [(p, d) for (p, d), e in zip(todo, errors) if e is None]
            for (position, _), error in zip(todo, errors):
                results[position] = error
            committed = await anyio.to_thread.run_sync(self.commit, [d for _, d in ready], require_new)
            todo = []
            for (position, draft), result in zip(ready, committed):
                results[position] = result
                if isinstance(result, ConfigChanged) and attempt + 1 < STORE_ATTEMPTS:
                    try:
                        todo.append((position, self._redraft(draft)))
                    except SearchdError as exc:
                        results[position] = exc
            if not todo:
                break
        return [r for r in results if r is not None]

    def _redraft(self, draft: Draft) -> Draft:
        """``draft`` checked against the catalog served now, keeping only the vectors it was sent with."""
        try:
            collection = self.holder.current.collection(draft.collection.name)
        except NotFound as exc:  # removed meanwhile: the same answer as for a new write
            raise InvalidInput(exc.problem, exc.hint) from exc
        sent = {n: v for n, v in draft.vectors.items() if n not in draft.embedded and "#" not in n}
        vectors = supplied_vectors(collection, {"vectors": sent})
        return Draft(collection, draft.id, check_properties(collection, draft.properties), vectors, draft.created_ms)

    async def batch(self, catalog: Catalog, payloads: Sequence[Any], keys: Mapping[str, str] = NO_KEYS) -> list[StoredObject | SearchdError]:
        """Store every valid object; each bad one fails alone with its own error."""
        results: list[StoredObject | SearchdError | None] = [None] * len(payloads)
        drafts: list[tuple[int, Draft]] = []

        def check() -> None:
            for position, payload in enumerate(payloads):
                try:
                    drafts.append((position, self.draft(catalog, payload)))
                except SearchdError as exc:
                    results[position] = exc

        await anyio.to_thread.run_sync(check)  # checking a batch (decoding its images) takes milliseconds: off the event loop
        stored = await self.store_drafts([d for _, d in drafts], keys)
        for (position, _), result in zip(drafts, stored):
            results[position] = result
        return [r for r in results if r is not None]

    async def merge(self, catalog: Catalog, class_name: str, object_id: str, payload: Any, keys: Mapping[str, str] = NO_KEYS) -> StoredObject:
        """PATCH: merge properties (null removes one) and supplied vectors into the stored object."""
        existing = self.get(catalog, class_name, object_id)
        if not isinstance(payload, Mapping):
            raise InvalidInput("a PATCH body must be a JSON object", "send {\"properties\": {...}}")
        patch = payload.get("properties") or {}
        if not isinstance(patch, Mapping):
            raise InvalidInput("'properties' must be a JSON object", "send properties as {\"name\": value, ...}")
        merged = {**existing.properties, **patch}
        draft = self.draft(catalog, {**payload, "properties": merged}, class_name, existing.id)
        # Vectors the patch did not supply and no vectorizer recomputes are kept.
        own = {n for n, v in draft.collection.vectors.items() if v.vectorizer is None}
        kept = {n: v for n, v in existing.vectors.items() if n in own and n not in draft.vectors}
        draft = replace(draft, vectors={**kept, **draft.vectors}, created_ms=existing.created_ms)
        return await self.write(draft, keys=keys)

    def delete(self, catalog: Catalog, class_name: str, object_id: str) -> None:
        collection = catalog.collection(class_name)
        the_id = normalize_uuid(object_id)
        with self._write_lock:
            doc = self.store.delete(collection.name, the_id)
            if doc is None:
                raise NotFound(f"no object with id '{the_id}' in '{collection.name}'")
            self._unindex(collection.name, doc, the_id)

    def _unindex(self, collection: str, doc: int, object_id: str | None) -> None:
        """Take a deleted object out of every index (under the write lock); ``object_id`` if known (else the doc table's)."""
        table = self._tables.get(collection)
        if table is not None:
            object_id = object_id or table.ids_of([doc])[0]
            table.remove(doc)
        for key, serving in self._indexes.items():
            if key[0] == collection:
                serving.index.delete(doc)
        if collection in self._keyword:
            self._keyword[collection].delete(doc)
        for shadow in self._shadows.values():
            if shadow.collection == collection:
                if object_id is not None:
                    shadow.unstaged.discard(object_id)
                shadow.captured.append((doc, None))

    # -- rebuilds beside the serving indexes (driven by searchd.reload) ---------

    def begin_shadow(self, shadow: Shadow) -> None:
        """From now on, writes to the collection are captured for ``shadow`` (and embedded, for a re-vectorization)."""
        with self._write_lock:
            self._shadows[shadow.key] = shadow

    def abandon_shadow(self, shadow: Shadow) -> None:
        with self._write_lock:
            if self._shadows.get(shadow.key) is shadow:
                del self._shadows[shadow.key]

    def take_unstaged(self, shadow: Shadow) -> list[str]:
        with self._write_lock:
            taken = sorted(shadow.unstaged)
            shadow.unstaged.clear()
            return taken

    def stage(self, shadow: Shadow, rows: Sequence[tuple[str, int, np.ndarray | None]]) -> None:
        """Store catch-up vectors (unless the object changed again) and capture them for the shadow index.

        An object written or deleted since it was read is left out: that write captured its own vector (or deletion).
        """
        with self._write_lock:
            current = self.store.put_vectors_if_unchanged(shadow.collection, shadow.source, rows)
            table = self._tables.get(shadow.collection)
            for object_id, _, vector in rows:
                doc = table.doc_of(object_id) if table is not None else None
                if object_id in current and object_id not in shadow.unstaged and doc is not None:
                    shadow.captured.append((doc, vector))

    def finish_shadow(self, shadow: Shadow, built: VectorIndex | BM25Index, then: Callable[[], None]) -> bool:
        """Replay the captured writes onto ``built``, put it in service, and run ``then`` — all under the write lock.

        False (and nothing done) while objects written meanwhile still wait for their new vector.
        """
        with self._write_lock:
            if shadow.unstaged:
                return False
            for object_id, value in shadow.captured:
                if value is None:
                    built.delete(object_id)
                elif isinstance(built, BM25Index):
                    built.upsert(object_id, value)
                else:
                    built.upsert_many([object_id], [value])
            if shadow.reembed and shadow.target is not None:
                self.store.promote_vectors(shadow.collection, shadow.source, shadow.target.name)
                self._promoted[(shadow.collection, shadow.source)] = shadow.target
            if isinstance(built, BM25Index):
                self._keyword[shadow.collection] = built
            else:
                assert shadow.target is not None
                self._replace_index(shadow.key, Serving(built, shadow.target))
            del self._shadows[shadow.key]
            then()
            return True

    def _replace_index(self, key: tuple[str, str], serving: Serving) -> None:
        previous = self._indexes.get(key)
        if previous is not None:  # it still answers queries that began before the swap (see _index_for): retired first
            previous.index.close()
            with self._retired_lock:
                self._retired[key] = (*self._retired.get(key, ()), replace(previous, retired_at=time.monotonic()))
        self._indexes[key] = serving

    # -- writes by other replicas (searchd.follower) ------------------------------

    def apply_changes(self, collection: str, docs: Sequence[int]) -> None:
        """Bring this process's indexes up to date with the store for ``docs``, which another replica wrote or deleted.

        Read and applied under the write lock: a write of this process to the same object cannot fall in between
        and be overwritten by the older version read before it.
        """
        with self._write_lock:
            if collection not in self.holder.current.collections:
                return  # not served here (yet): the catalog that adds it builds its indexes from the store
            found = self.store.get_docs(collection, docs, vectors=True)
            dims = {k[1]: s.vector.dimensions for k, s in self._indexes.items() if k[0] == collection}
            # A vector made for other settings (a replica on another revision) is not searchable here.
            present = [replace(o, vectors={n: v for n, v in o.vectors.items() if dims.get(n) == v.shape[-1]}) for o in found.values()]
            self._index([set() for _ in present], present)
            for doc in docs:
                if doc not in found:
                    self._unindex(collection, doc, None)

    def rebuild_collection(self, collection: str) -> bool:
        """Rebuild a collection's indexes from the store, as a start without saved indexes does; whether it is served here.

        For a change to the whole collection by another replica (a dropped property, promoted vectors), or changes
        this process can no longer read (the log was trimmed past them while it was away).
        """
        with self._write_lock:
            compiled = self.holder.current.collections.get(collection)
            if compiled is None:
                return False
            self._open_table(compiled, rebuild=True)
            source = self.source(collection)
            if collection in self._keyword:
                self._keyword[collection] = fill_keyword_index(BM25Index(compiled.spec), source, collection)
            for key in [k for k in self._indexes if k[0] == collection]:
                vector = self._indexes[key].vector
                built = fill_index(build_index(vector.spec.index, vector.dimensions), source, vector.name, vector.dimensions, f"{collection}.{vector.name} {vector.spec.index.type}")
                self._replace_index(key, Serving(built, vector))
            return True

    def drop(self, collection: str, vector: str | None = None) -> None:
        """Forget a removed collection's (or one vector's) indexes; the caller has dropped the stored data."""
        with self._write_lock:
            for key in [k for k in self._indexes if k[0] == collection and vector in (None, k[1])]:
                self._indexes.pop(key).index.close()
                with self._retired_lock:
                    self._retired.pop(key, None)
            if vector is None:
                self._keyword.pop(collection, None)
                self._tables.pop(collection, None)

    def swap(self, catalog: Catalog) -> Catalog:
        """Serve ``catalog`` from now on; new collections, vectors and filterable properties get their (empty or built) indexes first."""
        with self._write_lock:
            self.open_indexes(catalog)
            return self.holder.swap(catalog)

    def release_retired(self, older_than: float = RETIRED_GRACE_S) -> None:
        """Let go of indexes replaced more than ``older_than`` seconds ago: no query still needs them."""
        cutoff = time.monotonic() - older_than
        with self._retired_lock:
            kept = {k: tuple(s for s in old if s.retired_at > cutoff) for k, old in self._retired.items()}
            self._retired = {k: old for k, old in kept.items() if old}

    def index_size(self, collection: str, vector: str) -> int:
        serving = self._indexes.get((collection, vector))
        return len(serving.index) if serving is not None else 0

    def shadows(self) -> list[Shadow]:
        return list(self._shadows.values())

    # -- reads -----------------------------------------------------------------

    def get(self, catalog: Catalog, class_name: str, object_id: str) -> StoredObject:
        collection = catalog.collection(class_name)
        found = self.store.get(collection.name, normalize_uuid(object_id))
        if found is None:
            raise NotFound(f"no object with id '{object_id}' in '{collection.name}'")
        return found

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

    def _learn_ids(self, collection: str, hits: Sequence[Hit]) -> None:
        """Ids of docs a pgvector search found that this process has not seen (written by another one): read once, in the search's thread."""
        unseen = [h.id for h, i in zip(hits, self.table(collection).ids_of([h.id for h in hits])) if i is None and (collection, h.id) not in self._ids_elsewhere]
        if unseen:
            if len(self._ids_elsewhere) > IDS_ELSEWHERE_MAX:
                self._ids_elsewhere.clear()  # docs are never reused, so any entry stays true; this only bounds the memory
            self._ids_elsewhere.update({(collection, doc): obj.id for doc, obj in self.store.get_docs(collection, unseen).items()})

    def list_objects(
        self, collection: str | None, limit: int, offset: int = 0, after: str | None = None, where: Filter | None = None, order: Sequence[SortKey] = (), vectors: bool = True
    ) -> list[StoredObject]:
        return self.store.list_objects(collection, limit, offset, after, where, order, vectors)

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
        if allowed is not None:
            # An exact scan over a few allowed docs reads their (best candidates') vectors from the store.
            allowed = AllowList(allowed.mask, lambda docs: self.store.vector_matrix(collection.name, vector.name, docs), allowed.where)
        index = self._index_for(collection.name, vector, query)
        hits = index.search(query, limit + offset, allowed)[offset:]
        if isinstance(index, PgVectorIndex):
            self._learn_ids(collection.name, hits)
        if max_distance is not None:
            hits = [h for h in hits if h.distance <= max_distance + 1e-6]
        return hits

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
