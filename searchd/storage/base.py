"""What the engine, reload, the checkpoints and the edges ask of the object store, whichever backend keeps it.

Two backends satisfy ``Store``: SQLite (``searchd.storage.sqlite``, one file in the data
directory, the default) and PostgreSQL (``searchd.storage.postgres``, chosen by
``server.storage``).  Each compiles the filter tree (``searchd.where``) to its own SQL with
bound parameters; nothing above storage holds SQL text.

Every object of a collection has a ``doc``: an integer that is never reused, the key every
in-memory index uses.  Every write appends its docs to a change log under a sequence number
that only grows, and a write's sequence is committed with it, so a saved index (or, later, a
replica in another process) catches up by reading the changes after the sequence it has.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

import numpy as np

from searchd.config.spec import Spec
from searchd.errors import StorageError
from searchd.records import StoredObject
from searchd.storage.applied import Applied
from searchd.where import Filter, SortKey

if TYPE_CHECKING:  # psycopg is loaded only for a PostgreSQL store
    from searchd.storage.pgreplicas import ReplicaLog

BULK = -1  # a change to a whole collection (a dropped property, promoted vectors): its indexes rebuild
RETIRED_TABLE_GRACE_S = 60.0  # how long a dropped table stays for reads that began before the drop


class OthersAhead(StorageError):
    """Another replica changed the collection after what this process has applied: a promotion waits until it has."""


class StaleVectors(StorageError):
    """A write's vectors were made for other settings than the stored ones: another replica promoted a re-vectorization
    this process does not serve yet.  Nothing was written; the write is embedded again once this process swaps."""


# Per collection, per named vector: what a write's vectors were made for (searchd.serving.staging_stamp).
MadeFor = Mapping[str, Mapping[str, str]]


class Store(Protocol):
    """The durable object store: the source of truth every index is rebuilt from.

    A write is acknowledged only once it is durable.  Staged vectors of a re-vectorization
    live under a vector name holding ``#`` until they are promoted.
    """

    @property
    def where(self) -> str:
        """Where the data lives, for logs and messages (a path, or a database URL without its password)."""
        ...

    def close(self) -> None: ...

    # Both backends close on leaving a `with` block, so a caller holding only a ``Store`` (open_store's) may use one too.
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

    # -- writes
    def put_many(self, objects: Sequence[StoredObject], made_for: MadeFor | None = None) -> list[int]:
        """``made_for``: what the vectors were made for; a shared store refuses them (``StaleVectors``) when it holds
        vectors of those names made for other settings."""
        ...
    def delete(self, collection: str, object_id: str) -> int | None: ...

    # -- the change log
    def write_seq(self) -> int: ...
    def changes_since(self, seq: int, collection: str) -> list[int] | None: ...
    def trim_changes(self, upto: int) -> None: ...
    def replication(self) -> ReplicaLog | None:
        """The change feed other processes write to (PostgreSQL), or None: this process is the only writer (SQLite)."""
        ...

    # -- reads
    def get(self, collection: str, object_id: str, vectors: bool = True) -> StoredObject | None: ...
    def get_many(self, collection: str, object_ids: Sequence[str], vectors: bool = True) -> dict[str, StoredObject]: ...
    def get_docs(self, collection: str, docs: Sequence[int], vectors: bool = False) -> dict[int, StoredObject]: ...
    def vector_matrix(self, collection: str, name: str, docs: Sequence[int], bulk: bool = False) -> tuple[list[int], np.ndarray | list[np.ndarray]]: ...
    def created_times(self, collection: str, object_ids: Sequence[str]) -> dict[str, int]: ...
    def list_objects(
        self,
        collection: str | None,
        limit: int,
        offset: int = 0,
        after: str | None = None,
        where: Filter | None = None,
        order: Sequence[SortKey] = (),
        vectors: bool = True,
    ) -> list[StoredObject]: ...
    def docs_matching(self, collection: str, where: Filter) -> list[int]: ...
    def count_matching(self, collection: str, where: Filter | None = None) -> int: ...
    def count(self, collection: str) -> int: ...
    def property_count(self, collection: str, name: str) -> int: ...
    def index_properties(self, collection: str, names: Sequence[str]) -> None: ...

    # -- what the indexes are filled from
    def iter_vectors(self, collection: str, name: str, docs: Sequence[int] | None = None) -> Iterator[tuple[list[int], list[np.ndarray]]]: ...
    def iter_properties(self, collection: str, docs: Sequence[int] | None = None) -> Iterator[tuple[int, dict[str, Any]]]: ...
    def iter_objects(self, collection: str) -> Iterator[StoredObject]: ...

    # -- re-vectorization and destructive changes (searchd.reload)
    def ids_after(self, collection: str, after: str, limit: int) -> list[tuple[str, int]]: ...
    def ids_with_vector(self, collection: str, name: str, object_ids: Sequence[str]) -> set[str]: ...
    def put_vectors_if_unchanged(self, collection: str, name: str, rows: Sequence[tuple[str, int, np.ndarray | None]]) -> set[str]: ...
    def has_vectors(self, collection: str, name: str) -> bool: ...
    def vector_stamps(self, collection: str) -> dict[str, str]:
        """What the stored vectors of the collection's named vectors were made for, where a shared store knows it (a
        promotion by another replica); empty on a store only this process writes."""
        ...
    def promote_vectors(self, collection: str, staging: str, name: str) -> None: ...
    def drop_vectors(self, collection: str, name: str) -> None: ...
    def drop_staging_except(self, keep: Sequence[tuple[str, str]]) -> None: ...
    def drop_property(self, collection: str, name: str) -> None: ...
    def drop_collection(self, collection: str) -> None: ...
    def drop_retired(self, older_than: float = RETIRED_TABLE_GRACE_S) -> int: ...

    # -- the applied spec (what the store holds, so plans and restarts diff against it)
    def load_applied(self) -> Applied | None: ...
    def save_applied(self, spec: Spec) -> Applied: ...
