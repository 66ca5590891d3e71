"""Rebuilds beside the serving indexes (driven by searchd.reload.rebuild): writes are captured for the shadow index
(and embedded for its new vectors) while it is built, then replayed onto it before it replaces the serving one."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from searchd.engine_indexes import ServedIndexes
from searchd.index import VectorIndex
from searchd.index.bm25 import BM25Index
from searchd.serving import Serving, Shadow
from searchd.storage.base import OthersAhead


class ShadowIndexes(ServedIndexes):
    """What searchd.reload.rebuild calls to build an index beside the serving one and swap it in, under the write lock."""

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
            promoting = shadow.reembed and shadow.target is not None
            if promoting and not self._promote(shadow):
                return False  # another replica's write is not applied here yet: it may need the new vector too
            for object_id, value in shadow.captured:
                if value is None:
                    built.delete(object_id)
                elif isinstance(built, BM25Index):
                    built.upsert(object_id, value)
                else:
                    built.upsert_many([object_id], [value])
            if promoting:
                assert shadow.target is not None
                self._promoted[(shadow.collection, shadow.source)] = shadow.target
            if isinstance(built, BM25Index):
                self._keyword[shadow.collection] = built
            else:
                assert shadow.target is not None
                self._replace_index(shadow.key, Serving(built, shadow.target))
            del self._shadows[shadow.key]
            then()
            return True

    def _promote(self, shadow: Shadow) -> bool:
        """Promote a shadow's staged vectors; False when other replicas' writes must be applied here first (a shared store)."""
        assert shadow.target is not None
        try:
            self.store.promote_vectors(shadow.collection, shadow.source, shadow.target.name)
        except OthersAhead:
            return False
        return True

    def shadows(self) -> list[Shadow]:
        return list(self._shadows.values())
