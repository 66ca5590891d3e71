"""Object ids by doc and docs by object id, without a Python object per doc.

A str and a dict entry per object cost about 160 bytes; held for the collection's lifetime
among the short-lived floats of an import, they also keep the allocator's arenas from being
returned.  Here every id is one fixed-width ASCII row of a numpy array (ids are canonical
UUIDs: ``values.normalize_uuid``), indexed by doc.  Lookups by id bisect a sort order of
those rows, plus a dict of the ids written since that order was made, which is folded in
once it grows past a fraction of the collection.  An id
that does not fit a row (never written by searchd itself) stays in a dict of its own.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

import numpy as np

from searchd import deadline

WIDTH = 36  # a canonical UUID
_FOLD_MIN = 4_096  # recent ids always kept in the dict before a fold …
_FOLD_FRACTION = 4  # … and at most one per this many sorted ones


class IdMap:
    """doc ↔ object id for one collection's live docs."""

    def __init__(self) -> None:
        self._rows = np.zeros(0, dtype=f"S{WIDTH}")  # by doc; kept after a delete (the sort order points at it), cleared by ``live``
        self._live = np.zeros(0, dtype=bool)
        self._order = np.zeros(0, dtype=np.int32)  # docs whose rows are in ascending order (live when sorted)
        self._recent: dict[str, int] = {}  # id → doc, written since ``_order`` was made
        self._odd: dict[str, int] = {}  # ids that are not one ASCII row
        self._odd_ids: dict[int, str] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _grow(self, size: int) -> None:
        if size <= len(self._rows):
            return
        capacity = max(size, len(self._rows) * 3 // 2, 1024)
        rows = np.zeros(capacity, dtype=self._rows.dtype)
        rows[: len(self._rows)] = self._rows
        live = np.zeros(capacity, dtype=bool)
        live[: len(self._live)] = self._live
        self._rows, self._live = rows, live

    def put(self, doc: int, object_id: str) -> None:
        # Writes come one at a time (the engine's write lock) while searches read: the id goes in before the doc is live.
        self.remove(doc)
        self._grow(doc + 1)
        fits = len(object_id) == WIDTH and object_id.isascii() and "\0" not in object_id
        if fits:
            self._rows[doc] = object_id.encode()
            self._recent[object_id] = doc
        else:
            self._odd[object_id] = doc
            self._odd_ids[doc] = object_id
        self._live[doc] = True
        self._count += 1
        if fits and len(self._recent) > max(_FOLD_MIN, len(self._order) // _FOLD_FRACTION):
            self._fold()

    def remove(self, doc: int) -> None:
        if doc >= len(self._live) or not self._live[doc]:
            return
        self._live[doc] = False
        self._count -= 1
        odd = self._odd_ids.pop(doc, None)
        if odd is not None:
            self._odd.pop(odd, None)
            return
        object_id = self._rows[doc].decode()
        if self._recent.get(object_id) == doc:
            del self._recent[object_id]

    def _fold(self) -> None:
        """A new sort order over every live row; the recent dict empties into it."""
        docs = np.flatnonzero(self._live[: len(self._rows)]).astype(np.int32)
        if self._odd_ids:
            docs = docs[~np.isin(docs, np.fromiter(self._odd_ids, dtype=np.int32, count=len(self._odd_ids)))]
        self._order = docs[np.argsort(self._rows[docs], kind="stable")]
        self._recent = {}

    def doc_of(self, object_id: str) -> int | None:
        found = self._recent.get(object_id)
        if found is not None:
            return found
        if len(object_id) != WIDTH or not object_id.isascii():
            return self._odd.get(object_id)
        key = object_id.encode()
        order, rows = self._order, self._rows
        at = bisect_left(order, key, key=lambda doc: rows[doc])  # about 17 steps at 100,000 ids: microseconds
        # Rows in the order may belong to docs deleted since; the newest live doc wins, as the recent dict's would.
        found = None
        while at < len(order) and rows[order[at]] == key:
            if self._live[order[at]]:
                found = int(order[at])
            at += 1
        return found if found is not None else self._odd.get(object_id)

    def id_of(self, doc: int) -> str | None:
        return self.ids_of((doc,))[0]

    def ids_of(self, docs: Sequence[int]) -> list[str | None]:
        """``id_of`` for many docs at once (a search's hits): no method call per doc."""
        # One reading of each array: a write may replace them (``_grow``) meanwhile.
        live, rows, odd = self._live, self._rows, self._odd_ids
        known = min(len(live), len(rows))
        return [(odd.get(doc) or rows[doc].decode()) if 0 <= doc < known and live[doc] else None for doc in docs]

    def compare(self, compare: Any, value: str, size: int) -> np.ndarray:
        """``compare(id, value)`` for docs below ``size`` (False for docs without an id), as a boolean mask."""
        result = np.zeros(size, dtype=bool)
        known = min(size, len(self._live))
        if self._odd_ids or not value.isascii():
            listed = self.ids_of(range(known))
            result[:known] = [i is not None and bool(compare(i, value)) for i in deadline.checked(listed)]
        else:  # byte rows compare as their ASCII strings do
            rows, live = self._rows, self._live
            known = min(known, len(rows), len(live))
            result[:known] = np.asarray(compare(rows[:known], np.bytes_(value.encode())), dtype=bool) & live[:known]
        return result
