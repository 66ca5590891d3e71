"""Which backend keeps the objects: SQLite in the data directory (the default) or PostgreSQL (``server.storage``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from searchd.config.spec import DATABASE_URL_ENV, StorageBackend, StorageSpec
from searchd.storage.applied import Applied, load_applied
from searchd.storage.base import Store
from searchd.storage.datadir import peek_counts
from searchd.storage.sqlite import SqliteStore

if TYPE_CHECKING:
    from searchd.storage.postgres_cache import PostgresCacheTable



def effective_storage(storage: StorageSpec, environ: Mapping[str, str] = os.environ) -> StorageSpec:
    """The config's storage, or PostgreSQL at $SEARCHD_DATABASE_URL when the config leaves the default."""
    if (storage.backend, storage.url) == (StorageBackend.SQLITE, "") and environ.get(DATABASE_URL_ENV):
        return replace(storage, backend=StorageBackend.POSTGRES, url=environ[DATABASE_URL_ENV])
    return storage


def open_store(storage: StorageSpec, data_dir: Path) -> Store:
    """The object store (taking the data directory's lock; an SQLite store migrates an older layout first)."""
    if storage.backend is StorageBackend.POSTGRES:
        # Imported here: only a PostgreSQL deployment needs psycopg loaded.
        from searchd.storage.postgres import PostgresStore

        return PostgresStore(storage.url, data_dir)
    return SqliteStore(data_dir)


def cache_table(storage: StorageSpec) -> PostgresCacheTable | None:
    """Where the embedding cache lives when not in the data directory: the PostgreSQL store's database."""
    if storage.backend is not StorageBackend.POSTGRES:
        return None
    from searchd.storage.postgres_cache import PostgresCacheTable

    return PostgresCacheTable(storage.url)


@dataclass(frozen=True)
class Peek:
    """What ``searchd plan`` reads from the store, without the data directory's lock."""

    where: str  # "Data directory DIR", or "Database postgresql://user@host/db" (never the password)
    applied: Applied | None
    count: Callable[[str], int]
    property_count: Callable[[str, str], int]


def peek(storage: StorageSpec, data_dir: Path) -> Peek:
    if storage.backend is StorageBackend.POSTGRES:
        from searchd.storage.postgres import PostgresStore

        with PostgresStore(storage.url, None) as store:
            applied = store.load_applied()
            names = {c: store.count(c) for c in store.collections()}
            counts = {(c, p): n for c in names for p, n in store.property_counts(c).items()}
        return Peek(f"Database {store.where}", applied, lambda c: names.get(c, 0), lambda c, p: counts.get((c, p), 0))
    count, property_count = peek_counts(data_dir)
    return Peek(f"Data directory {data_dir}", load_applied(data_dir), count, property_count)
