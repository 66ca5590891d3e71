"""What the engine's indexes are filled from: one collection of the store, counted for start-up's progress.

``StoreSource`` is the ``searchd.index.persist.Source`` an index is built or caught up from;
``CountedSource`` is the same while the server starts, reporting each object read to ``Steps``
(what ``/v1/.well-known/ready`` shows as progress).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from searchd.index.base import VectorReader
from searchd.storage.base import Store


@dataclass(frozen=True)
class StoreSource:
    """One collection of the store, as the indexes are filled from it (``searchd.index.persist.Source``)."""

    store: Store
    collection: str

    def vectors(self, name: str, docs: Sequence[int] | None = None) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        return self.store.iter_vectors(self.collection, name, docs)

    def properties(self, docs: Sequence[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        return self.store.iter_properties(self.collection, docs)

    def vector_reader(self, name: str) -> VectorReader:
        return lambda docs: self.store.vector_matrix(self.collection, name, docs, bulk=True)

    def changed_since(self, seq: int) -> list[int] | None:
        return self.store.changes_since(seq, self.collection)


# Told how opening the indexes at start-up goes: (phase, done, total); the server's readiness shows it.
ProgressReport = Callable[[str, int, int | None], None]
_REPORT_EVERY = 1000  # objects between reports: a report takes a lock, an object takes microseconds


@dataclass
class Steps:
    """Progress over the indexes opened at start-up, in objects: each index (and doc table) counts its collection's objects."""

    report: ProgressReport
    total: int
    done: int = 0
    base: int = 0  # where the current step began
    reported: int = 0

    def tick(self, count: int) -> None:
        self.done = min(self.done + count, self.total)
        if self.done - self.reported >= _REPORT_EVERY:
            self.reported = self.done
            self.report("opening indexes", self.done, self.total)

    def step(self, size: int) -> None:
        """One index is open: however much of it was read (a saved index is read in bulk), its share is done."""
        self.base = self.done = min(self.base + size, self.total)
        self.reported = self.done
        self.report("opening indexes", self.done, self.total)


@dataclass(frozen=True)
class CountedSource(StoreSource):
    steps: Steps

    def vectors(self, name: str, docs: Sequence[int] | None = None) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        for batch in super().vectors(name, docs):
            self.steps.tick(len(batch[0]))
            yield batch

    def properties(self, docs: Sequence[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        for row in super().properties(docs):
            self.steps.tick(1)
            yield row
