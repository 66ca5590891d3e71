"""The table registry both SQL backends keep, and the changes that retire tables (re-vectorization, drops).

A collection's objects live in a table ``<objects prefix><tag>``, each named vector (and each
staged re-vectorization) in ``<vectors prefix><tag>``; registry tables map names to tags.
The registry is cached in memory: a write transaction works on its own copy (with the tables
it creates), readers use the last committed one, since their connections do not see a table
before its creation commits.  A dropped table is first retired and dropped after a grace
period, so a read that looked its name up a moment before still finds it.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from searchd.storage.base import BULK, RETIRED_TABLE_GRACE_S


class TaggedTables(abc.ABC):
    # Set by each backend: names, DDL (with {tag}) and its parameter mark ("?" or "%s").
    OBJECTS: str
    VECTORS: str
    COLLECTIONS: str
    VECTOR_TABLES: str
    RETIRED: str
    CHANGES: str
    OBJECTS_DDL: str
    VECTORS_DDL: str
    MARK: str

    def _init_tables(self) -> None:
        self._tags: dict[str, int] = {}
        self._vector_tags: dict[tuple[str, str], int] = {}
        self._published: tuple[dict[str, int], dict[tuple[str, str], int]] = ({}, {})
        self._writer: int | None = None  # the thread inside a write transaction

    @abc.abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]: ...

    @abc.abstractmethod
    def _read(self) -> AbstractContextManager[Any]: ...

    @abc.abstractmethod
    def _next_tag(self, db: Any) -> int: ...

    def _sql(self, text: str) -> str:
        """Statements here are written with ``?`` marks."""
        return text if self.MARK == "?" else text.replace("?", self.MARK)

    def _reload_tags(self, db: Any) -> None:
        self._tags = {name: int(tag) for name, tag in db.execute(f"SELECT name, tag FROM {self.COLLECTIONS}")}
        self._vector_tags = {(c, n): int(t) for c, n, t in db.execute(f"SELECT collection, name, tag FROM {self.VECTOR_TABLES}")}
        self._publish_tags()

    def _publish_tags(self) -> None:
        # Readers see a table once its creation is committed: another connection would find no such table before
        # that (a re-vectorization's first staged write creates its table while the rebuild reads it).
        self._published = (dict(self._tags), dict(self._vector_tags))

    def _views(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """The table registry this thread may use: the write transaction's own (with what it created), or the committed one."""
        return (self._tags, self._vector_tags) if self._writer == threading.get_ident() else self._published

    def _table(self, collection: str) -> str | None:
        tag = self._views()[0].get(collection)
        return None if tag is None else f"{self.OBJECTS}{tag}"

    def _table_for_write(self, db: Any, collection: str) -> str:
        if collection not in self._tags:
            tag = self._next_tag(db)
            db.execute(self.OBJECTS_DDL.format(tag=tag))
            db.execute(self._sql(f"INSERT INTO {self.COLLECTIONS} VALUES (?, ?)"), (collection, tag))
            self._tags[collection] = tag
        return f"{self.OBJECTS}{self._tags[collection]}"

    def _vector_table(self, collection: str, name: str) -> str | None:
        tag = self._views()[1].get((collection, name))
        return None if tag is None else f"{self.VECTORS}{tag}"

    def _vector_table_for_write(self, db: Any, collection: str, name: str) -> str:
        if (collection, name) not in self._vector_tags:
            tag = self._next_tag(db)
            db.execute(self.VECTORS_DDL.format(tag=tag))
            db.execute(self._sql(f"INSERT INTO {self.VECTOR_TABLES} VALUES (?, ?, ?)"), (collection, name, tag))
            self._vector_tags[(collection, name)] = tag
        return f"{self.VECTORS}{self._vector_tags[(collection, name)]}"

    def _vector_tables(self, collection: str) -> dict[str, str]:
        return {n: f"{self.VECTORS}{t}" for (c, n), t in self._views()[1].items() if c == collection}

    def _bulk_change(self, db: Any, collection: str) -> None:
        db.execute(self._sql(f"INSERT INTO {self.CHANGES} (collection, doc) VALUES (?, ?)"), (collection, BULK))

    def has_vectors(self, collection: str, name: str) -> bool:
        table = self._vector_table(collection, name)
        if table is None:
            return False
        with self._read() as db:
            return db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None

    def promote_vectors(self, collection: str, staging: str, name: str) -> None:
        """The re-vectorized vectors replace the old ones, in one transaction."""
        with self._transaction() as db:
            self._promote_in(db, collection, staging, name)

    def _promote_in(self, db: Any, collection: str, staging: str, name: str) -> None:
        old = self._vector_tags.pop((collection, name), None)
        if old is not None:
            self._retire_table(db, f"{self.VECTORS}{old}")
            db.execute(self._sql(f"DELETE FROM {self.VECTOR_TABLES} WHERE tag = ?"), (old,))
        self._vector_table_for_write(db, collection, staging)
        db.execute(self._sql(f"UPDATE {self.VECTOR_TABLES} SET name = ? WHERE collection = ? AND name = ?"), (name, collection, staging))
        self._vector_tags[(collection, name)] = self._vector_tags.pop((collection, staging))
        self._bulk_change(db, collection)

    def drop_vectors(self, collection: str, name: str) -> None:
        with self._transaction() as db:
            self._drop_vector_table(db, collection, name)
            self._bulk_change(db, collection)

    def _retire_table(self, db: Any, table: str) -> None:
        """Forget a table now, drop it later: a read that looked its name up a moment ago still finds it."""
        db.execute(self._sql(f"INSERT INTO {self.RETIRED} VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET at = excluded.at"), (table, time.time()))

    def drop_retired(self, older_than: float = RETIRED_TABLE_GRACE_S) -> int:
        """Drop tables retired more than ``older_than`` seconds ago; how many."""
        cutoff = time.time() - older_than
        with self._read() as db:  # usually nothing: no write transaction (and no fsync) for that
            if db.execute(self._sql(f"SELECT 1 FROM {self.RETIRED} WHERE at <= ? LIMIT 1"), (cutoff,)).fetchone() is None:
                return 0
        with self._transaction() as db:
            names = [r[0] for r in db.execute(self._sql(f"SELECT name FROM {self.RETIRED} WHERE at <= ?"), (cutoff,))]
            for name in names:
                self._drop_table(db, name)
                db.execute(self._sql(f"DELETE FROM {self.RETIRED} WHERE name = ?"), (name,))
        return len(names)

    def _drop_table(self, db: Any, name: str) -> None:
        db.execute(f"DROP TABLE IF EXISTS {name}")  # names are <prefix><tag>, written by this module

    def _drop_vector_table(self, db: Any, collection: str, name: str) -> None:
        tag = self._vector_tags.pop((collection, name), None)
        if tag is not None:
            self._retire_table(db, f"{self.VECTORS}{tag}")
            db.execute(self._sql(f"DELETE FROM {self.VECTOR_TABLES} WHERE tag = ?"), (tag,))

    def drop_staging_except(self, keep: Sequence[tuple[str, str]]) -> None:
        """Forget staged vectors of re-vectorizations that are no longer wanted (``keep``: (collection, staging name))."""
        with self._transaction() as db:
            for collection, name in list(self._vector_tags):
                if "#" in name and (collection, name) not in keep:
                    self._drop_vector_table(db, collection, name)

    def drop_collection(self, collection: str) -> None:
        with self._transaction() as db:
            for name in [n for c, n in self._vector_tags if c == collection]:
                self._drop_vector_table(db, collection, name)
            tag = self._tags.pop(collection, None)
            if tag is not None:
                self._retire_table(db, f"{self.OBJECTS}{tag}")
                db.execute(self._sql(f"DELETE FROM {self.COLLECTIONS} WHERE name = ?"), (collection,))
            self._bulk_change(db, collection)
