"""Writes by other replicas on a shared store (searchd.follower applies them), and the ids of their objects that a
pgvector search finds before this process has seen them.

Another replica may promote a re-vectorization before this one swaps to its revision: from then on the store holds
vectors made for settings this process does not serve yet (``Store.vector_stamps`` says so).  Until it swaps, this
process keeps answering from the indexes of the revision it serves, and never puts those vectors into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from searchd.catalog import CompiledVector
from searchd.config.spec import IndexType
from searchd.engine_indexes import ServedIndexes
from searchd.index import Hit
from searchd.index.base import build_index
from searchd.index.bm25 import BM25Index
from searchd.index.persist import fill_index, fill_keyword_index
from searchd.records import StoredObject
from searchd.serving import Serving, staging_stamp

IDS_ELSEWHERE_MAX = 100_000


class ReplicaChanges(ServedIndexes):
    """What the follower calls with the changes other replicas logged; ``_learn_ids`` for the query path."""

    def apply_changes(self, collection: str, docs: Sequence[int]) -> None:
        """Bring this process's indexes up to date with the store for ``docs``, which another replica wrote or deleted.

        Read and applied under the write lock: a write of this process to the same object cannot fall in between
        and be overwritten by the older version read before it.
        """
        with self._write_lock:
            if collection not in self.holder.current.collections:
                return  # not served here (yet): the catalog that adds it builds its indexes from the store
            found = self.store.get_docs(collection, docs, vectors=True)
            serving = {k[1]: s.vector for k, s in self._indexes.items() if k[0] == collection}
            fits = {n: self.stored_for(collection, v) for n, v in serving.items()}
            # A vector made for other settings (a replica on another revision) is not searchable here.
            present = [replace(o, vectors={n: v for n, v in o.vectors.items() if fits.get(n) and serving[n].dimensions == v.shape[-1]}) for o in found.values()]
            self._index([set() for _ in present], present)
            self._capture_promoted(collection, list(found.values()))
            for doc in docs:
                if doc not in found:
                    self._unindex(collection, doc, None)

    def stored_for(self, collection: str, vector: CompiledVector) -> bool:
        """Whether the store's vectors of ``vector``'s name were made for its settings (unless a promotion said otherwise)."""
        stamp = self.store.vector_stamps(collection).get(vector.name)
        return stamp is None or stamp == staging_stamp(vector)

    def _capture_promoted(self, collection: str, objects: Sequence[StoredObject]) -> None:
        """Give a rebuild that re-indexes promoted vectors (this replica following the new revision) the ones just read:
        ``_index`` captured them as missing, since the serving index's settings are not theirs."""
        for shadow in self._shadows.values():
            target, served = shadow.target, self._indexes.get(shadow.key)
            if shadow.collection != collection or shadow.reembed or target is None or not self.stored_for(collection, target):
                continue
            if served is not None and self.stored_for(collection, served.vector):
                continue  # the serving index's settings are the stored ones: ``_index`` captured them
            for obj in objects:
                vector = obj.vectors.get(shadow.source)
                if vector is not None and vector.shape[-1] == target.dimensions:
                    shadow.captured.append((obj.doc, vector))

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
                if not self.stored_for(collection, vector):
                    continue  # promoted for another revision: the served index answers until the swap re-indexes them
                if vector.spec.index.kind is IndexType.PGVECTOR:  # the database's, current already: a fresh handle recounts it
                    built = self.new_index(collection, vector.name, vector)
                else:
                    built = fill_index(build_index(vector.spec.index, vector.dimensions), source, vector.name, vector.dimensions, f"{collection}.{vector.name} {vector.spec.index.type}")
                self._replace_index(key, Serving(built, vector))
            return True

    def _learn_ids(self, collection: str, hits: Sequence[Hit]) -> None:
        """Ids of docs a pgvector search found that this process has not seen (written by another one): read once, in the search's thread."""
        unseen = [h.id for h, i in zip(hits, self.table(collection).ids_of([h.id for h in hits])) if i is None and (collection, h.id) not in self._ids_elsewhere]
        if unseen:
            if len(self._ids_elsewhere) > IDS_ELSEWHERE_MAX:
                self._ids_elsewhere.clear()  # docs are never reused, so any entry stays true; this only bounds the memory
            self._ids_elsewhere.update({(collection, doc): obj.id for doc, obj in self.store.get_docs(collection, unseen).items()})
