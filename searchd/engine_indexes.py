"""The indexes one process serves, derived from the object store, and what keeps them in step with it.

The object store is the source of truth.  Indexes are derived: rebuilt from the
store at start, and updated after each durable write, under one write lock so
that the store and the indexes agree on the order of writes.  The engine's other
parts (searchd.engine_writes, searchd.engine_shadows, searchd.engine_replicas)
build on this state; searchd.engine puts them together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from searchd.catalog import Catalog, CatalogHolder, CompiledCollection, CompiledVector
from searchd.config.spec import IndexSpec, IndexType
from searchd.errors import ConfigChanged, NotFound, QueryError
from searchd.follower import Follower
from searchd.index import VectorIndex
from searchd.index.base import build_index
from searchd.index.bm25 import BM25Index
from searchd.index.persist import open_index, open_keyword_index
from searchd.index.pgvector import PgVectorIndex
from searchd.index.table import DocTable
from searchd.records import StoredObject
from searchd.serving import RETIRED_GRACE_S, Serving, Shadow
from searchd.sources import CountedSource, ProgressReport, Steps, StoreSource
from searchd.storage.base import Store
from searchd.values import normalize_uuid


class ServedIndexes:
    """The engine's state: the store, the catalog holder, and the indexes serving each collection under one write lock."""

    def __init__(self, holder: CatalogHolder, store: Store, data_dir: Path) -> None:
        self.holder = holder
        self.store = store
        self.data_dir = data_dir
        self._write_lock = threading.Lock()
        self._last_commit_ms = 0  # the write path's (searchd.engine_writes)
        self._indexes: dict[tuple[str, str], Serving] = {}
        self._retired: dict[tuple[str, str], tuple[Serving, ...]] = {}
        self._retired_lock = threading.Lock()  # held only for dict updates: release_retired runs on the manager's loop
        self._keyword: dict[str, BM25Index] = {}
        self._tables: dict[str, DocTable] = {}
        self._stale: list[int] = []  # writes that opened indexes had to catch up on (or rebuild from)
        # Rebuilds beside the serving indexes (searchd.engine_shadows): every write is captured for them too.
        self._shadows: dict[tuple[str, str], Shadow] = {}
        self._promoted: dict[tuple[str, str], CompiledVector] = {}  # (collection, staging name) → the vector it became
        self._ids_elsewhere: dict[tuple[str, int], str] = {}  # (collection, doc) → id, of docs other processes wrote (_learn_ids)
        # On a shared store (PostgreSQL), what other replicas write reaches this process's indexes through the change log
        # (searchd.engine starts one once the indexes are open; saves and swaps consult what it applied).
        self.follower: Follower | None = None

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

    # -- the stored object by id (a read that PATCH merges into) -------------------

    def get(self, catalog: Catalog, class_name: str, object_id: str) -> StoredObject:
        collection = catalog.collection(class_name)
        found = self.store.get(collection.name, normalize_uuid(object_id))
        if found is None:
            raise NotFound(f"no object with id '{object_id}' in '{collection.name}'")
        return found

    # -- kept in step with the store, under the write lock -----------------------

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

    def _replace_index(self, key: tuple[str, str], serving: Serving) -> None:
        previous = self._indexes.get(key)
        if previous is not None:  # it still answers queries that began before the swap (see _index_for): retired first
            previous.index.close()
            with self._retired_lock:
                self._retired[key] = (*self._retired.get(key, ()), replace(previous, retired_at=time.monotonic()))
        self._indexes[key] = serving

    # -- swapped by searchd.reload --------------------------------------------------

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
