"""SQLite object store (WAL, synchronous=FULL): a write is acknowledged only after it is durable.

One file, ``objects.sqlite3``, in the data directory; an exclusive lock file stops
two servers from sharing a data directory.  Vectors are float32 blobs beside
their object, one row per named vector.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from searchd.errors import StorageError
from searchd.storage.sqlfunctions import epoch_seconds, like

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (collection, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('write_seq', '0');
CREATE TABLE IF NOT EXISTS vectors (
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    dims INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (collection, id, name)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class StoredObject:
    collection: str
    id: str
    properties: dict[str, Any]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    created_ms: int = 0
    updated_ms: int = 0


def _vector_from_row(dims: int, data: bytes) -> np.ndarray:
    # A multi-vector (one row per token) is stored flat; dims tells the row length.
    flat = np.frombuffer(data, dtype=np.float32)
    return flat if flat.size == dims else flat.reshape(-1, dims)


class ObjectStore:
    def __init__(self, data_dir: Path) -> None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(data_dir / "LOCK", "w")
        except OSError as exc:
            raise StorageError(f"cannot use data directory {data_dir}: {exc}", "check that it exists and is writable, or pass --data DIR") from exc
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock_file.close()
            raise StorageError(
                f"data directory {data_dir} is in use by another searchd process",
                "stop the other server, or give this one its own --data DIR",
            ) from exc
        self.path = data_dir / "objects.sqlite3"
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # Filters call these from SQL (values always arrive as bound parameters).
        self._db.create_function("searchd_like", 2, like, deterministic=True)
        self._db.create_function("searchd_epoch", 1, epoch_seconds, deterministic=True)
        with self._guard():
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA analysis_limit=1000")  # approximate statistics, gathered in milliseconds
            self._db.executescript(_SCHEMA)
        self._unanalyzed = 0
        self.analyze()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self._lock_file.close()

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StorageError(f"object store error: {exc}", "check free disk space and the data directory's permissions") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._guard() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                # Every write bumps the sequence, so a saved index knows whether it is still current.
                db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'write_seq'")
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself on some errors (disk full); keep the real one
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def analyze(self) -> None:
        """Refresh the planner's statistics, so it picks a filter's index only when the filter is selective."""
        with self._guard() as db:
            db.execute("ANALYZE")
        self._unanalyzed = 0

    def _note_writes(self, count: int) -> None:
        self._unanalyzed += count
        if self._unanalyzed >= 1000:
            self.analyze()

    def put_many(self, objects: Sequence[StoredObject]) -> None:
        """Insert or replace objects (with all their vectors) in one durable transaction."""
        if not objects:
            return
        with self._transaction() as db:
            for obj in objects:
                db.execute(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?)",
                    (obj.collection, obj.id, json.dumps(obj.properties, separators=(",", ":")), obj.created_ms, obj.updated_ms),
                )
                db.execute("DELETE FROM vectors WHERE collection = ? AND id = ?", (obj.collection, obj.id))
                db.executemany(
                    "INSERT INTO vectors VALUES (?, ?, ?, ?, ?)",
                    [(obj.collection, obj.id, name, int(vec.shape[-1]), np.ascontiguousarray(vec, dtype=np.float32).tobytes()) for name, vec in obj.vectors.items()],
                )
        self._note_writes(len(objects))

    def delete(self, collection: str, object_id: str) -> bool:
        with self._transaction() as db:
            deleted = db.execute("DELETE FROM objects WHERE collection = ? AND id = ?", (collection, object_id)).rowcount
            db.execute("DELETE FROM vectors WHERE collection = ? AND id = ?", (collection, object_id))
        return bool(deleted)

    def get(self, collection: str, object_id: str) -> StoredObject | None:
        found = self._load(self._rows("WHERE collection = ? AND id = ?", (collection, object_id), ""))
        return found[0] if found else None

    def write_seq(self) -> int:
        """A counter bumped by every committed write."""
        with self._guard() as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'write_seq'").fetchone()[0])

    def get_many(self, collection: str, object_ids: Sequence[str]) -> dict[str, StoredObject]:
        found: dict[str, StoredObject] = {}
        for start in range(0, len(object_ids), 500):  # stay under SQLite's bound-parameter limit
            chunk = tuple(object_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for obj in self._load(self._rows(f"WHERE collection = ? AND id IN ({marks})", (collection, *chunk), "")):
                found[obj.id] = obj
        return found

    def created_times(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """Creation times of those (collection, id) pairs that are stored."""
        found: dict[tuple[str, str], int] = {}
        with self._guard() as db:
            for start in range(0, len(keys), 400):
                chunk = keys[start : start + 400]
                marks = " OR ".join("(collection = ? AND id = ?)" for _ in chunk)
                params = [part for key in chunk for part in key]
                for collection, object_id, created in db.execute(f"SELECT collection, id, created_ms FROM objects WHERE {marks}", params):
                    found[(collection, object_id)] = created
        return found

    def list_objects(
        self,
        collection: str | None,
        limit: int,
        offset: int = 0,
        after: str | None = None,
        where: tuple[str, list[Any]] | None = None,
        order: Sequence[tuple[str, bool]] = (),
    ) -> list[StoredObject]:
        """Objects ordered by ``order`` ((SQL expression, descending) pairs from the query layer), then id.

        ``after`` is an exclusive id cursor within one collection; ``where`` a compiled filter.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if collection is not None:
            clauses.append("collection = ?")
            params.append(collection)
        if after is not None:
            clauses.append("id > ?")
            params.append(after)
        if where is not None:
            clauses.append(where[0])
            params.extend(where[1])
        condition = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sort = "".join(f"{expression} {'DESC' if descending else 'ASC'}, " for expression, descending in order)
        return self._load(self._rows(condition, tuple(params), f"ORDER BY {sort}collection, id LIMIT {int(limit)} OFFSET {int(offset)}"))

    def ids_matching(self, collection: str, where: tuple[str, list[Any]], indexed_property: str | None = None) -> list[str]:
        """Ids of a collection's objects that pass a compiled filter: the allow-list for searches.

        ``indexed_property`` names a property whose expression index should answer it.
        """
        hint = self._index_hint(collection, indexed_property)
        with self._guard() as db:
            rows = db.execute(f"SELECT id FROM objects {hint} WHERE collection = ? AND ({where[0]})", (collection, *where[1])).fetchall()
        return [row[0] for row in rows]

    def count_matching(self, collection: str, where: tuple[str, list[Any]] | None = None, indexed_property: str | None = None) -> int:
        sql, params = where or ("1", [])
        with self._guard() as db:
            query = f"SELECT COUNT(*) FROM objects {self._index_hint(collection, indexed_property)} WHERE collection = ? AND ({sql})"
            return int(db.execute(query, (collection, *params)).fetchone()[0])

    def ids_among(self, collection: str, where: tuple[str, list[Any]], object_ids: Sequence[str]) -> set[str]:
        """Which of these ids pass a compiled filter (checking candidates instead of listing every match)."""
        found: set[str] = set()
        with self._guard() as db:
            for start in range(0, len(object_ids), 500):
                chunk = object_ids[start : start + 500]
                query = f"SELECT id FROM objects WHERE collection = ? AND id IN ({','.join('?' * len(chunk))}) AND ({where[0]})"
                found.update(row[0] for row in db.execute(query, (collection, *chunk, *where[1])))
        return found

    @staticmethod
    def _index_hint(collection: str, indexed_property: str | None) -> str:
        if indexed_property is None:
            return ""
        if not indexed_property.isidentifier():
            raise StorageError(f"refusing to use index name {indexed_property!r}")
        return f"INDEXED BY prop_{collection}_{indexed_property}"

    def index_properties(self, collection: str, names: Sequence[str]) -> None:
        """Expression indexes so that filters on these scalar properties do not scan the collection.

        Names come from the validated config (identifiers only), never from a request.
        """
        with self._guard() as db:
            for name in names:
                if not name.isidentifier():
                    raise StorageError(f"refusing to index property name {name!r}")
                db.execute(
                    f"CREATE INDEX IF NOT EXISTS prop_{collection}_{name} ON objects(collection, json_extract(properties, '$.{name}'))"
                )
        self.analyze()

    def count(self, collection: str) -> int:
        with self._guard() as db:
            return int(db.execute("SELECT COUNT(*) FROM objects WHERE collection = ?", (collection,)).fetchone()[0])

    def iter_vectors(self, collection: str, name: str) -> list[tuple[str, np.ndarray]]:
        """Every stored vector of one named vector: what an index is rebuilt from."""
        with self._guard() as db:
            rows = db.execute("SELECT id, dims, data FROM vectors WHERE collection = ? AND name = ? ORDER BY id", (collection, name)).fetchall()
        return [(object_id, _vector_from_row(dims, data)) for object_id, dims, data in rows]

    def iter_properties(self, collection: str) -> list[tuple[str, dict[str, Any]]]:
        """Every object's properties: what the BM25 index is rebuilt from."""
        with self._guard() as db:
            rows = db.execute("SELECT id, properties FROM objects WHERE collection = ? ORDER BY id", (collection,)).fetchall()
        return [(object_id, json.loads(properties)) for object_id, properties in rows]

    # -- re-vectorization and destructive changes (see searchd.reload) -----------

    def ids_after(self, collection: str, after: str, limit: int) -> list[tuple[str, int]]:
        """(id, updated_ms) in id order: a cursor that a background job can resume from."""
        with self._guard() as db:
            rows = db.execute("SELECT id, updated_ms FROM objects WHERE collection = ? AND id > ? ORDER BY id LIMIT ?", (collection, after, limit)).fetchall()
        return [(object_id, int(updated)) for object_id, updated in rows]

    def ids_with_vector(self, collection: str, name: str, object_ids: Sequence[str]) -> set[str]:
        with self._guard() as db:
            marks = ",".join("?" * len(object_ids))
            rows = db.execute(f"SELECT id FROM vectors WHERE collection = ? AND name = ? AND id IN ({marks})", (collection, name, *object_ids)).fetchall()
        return {r[0] for r in rows}

    def put_vectors_if_unchanged(self, collection: str, name: str, rows: Sequence[tuple[str, int, np.ndarray | None]]) -> set[str]:
        """Add a vector to objects not rewritten since ``updated_ms`` was read (a newer write staged its own).

        Returns the ids of the rows whose object is unchanged: their vector (if any) is stored.
        """
        current: set[str] = set()
        with self._transaction() as db:
            for object_id, updated_ms, vec in rows:
                if vec is None:
                    found = db.execute("SELECT 1 FROM objects WHERE collection = ? AND id = ? AND updated_ms = ?", (collection, object_id, updated_ms)).fetchone()
                    unchanged = 1 if found else 0
                else:
                    unchanged = db.execute(
                        "INSERT OR REPLACE INTO vectors SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM objects WHERE collection = ? AND id = ? AND updated_ms = ?)",
                        (collection, object_id, name, int(vec.shape[-1]), np.ascontiguousarray(vec, dtype=np.float32).tobytes(), collection, object_id, updated_ms),
                    ).rowcount
                if unchanged:
                    current.add(object_id)
        return current

    def has_vectors(self, collection: str, name: str) -> bool:
        with self._guard() as db:
            return db.execute("SELECT 1 FROM vectors WHERE collection = ? AND name = ? LIMIT 1", (collection, name)).fetchone() is not None

    def promote_vectors(self, collection: str, staging: str, name: str) -> None:
        """The re-vectorized vectors replace the old ones, in one transaction."""
        with self._transaction() as db:
            db.execute("DELETE FROM vectors WHERE collection = ? AND name = ?", (collection, name))
            db.execute("UPDATE vectors SET name = ? WHERE collection = ? AND name = ?", (name, collection, staging))

    def drop_vectors(self, collection: str, name: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM vectors WHERE collection = ? AND name = ?", (collection, name))

    def drop_staging_except(self, keep: Sequence[tuple[str, str]]) -> None:
        """Forget staged vectors of re-vectorizations that are no longer wanted (``keep``: (collection, staging name))."""
        with self._transaction() as db:
            for collection, name in db.execute("SELECT DISTINCT collection, name FROM vectors WHERE name LIKE '%#%'").fetchall():
                if (collection, name) not in keep:
                    db.execute("DELETE FROM vectors WHERE collection = ? AND name = ?", (collection, name))

    def drop_property(self, collection: str, name: str) -> None:
        if not name.isidentifier():
            raise StorageError(f"refusing to drop property name {name!r}")
        with self._transaction() as db:
            db.execute(f"UPDATE objects SET properties = json_remove(properties, '$.{name}') WHERE collection = ? AND json_type(properties, '$.{name}') IS NOT NULL", (collection,))
            db.execute(f"DROP INDEX IF EXISTS prop_{collection}_{name}")

    def drop_collection(self, collection: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM objects WHERE collection = ?", (collection,))
            db.execute("DELETE FROM vectors WHERE collection = ?", (collection,))
            for (index,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall():
                if index.startswith(f"prop_{collection}_"):
                    db.execute(f"DROP INDEX IF EXISTS {index}")

    def property_count(self, collection: str, name: str) -> int:
        if not name.isidentifier():
            return 0
        with self._guard() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM objects WHERE collection = ? AND json_type(properties, '$.{name}') IS NOT NULL", (collection,)).fetchone()[0])

    def _rows(self, where: str, params: tuple[Any, ...], tail: str) -> list[tuple[Any, ...]]:
        with self._guard() as db:
            return db.execute(f"SELECT collection, id, properties, created_ms, updated_ms FROM objects {where} {tail}", params).fetchall()

    def _load(self, rows: list[tuple[Any, ...]]) -> list[StoredObject]:
        if not rows:
            return []
        vectors: dict[tuple[str, str], dict[str, np.ndarray]] = {}
        by_collection: dict[str, list[str]] = {}
        for collection, object_id, *_ in rows:
            by_collection.setdefault(collection, []).append(object_id)
        with self._guard() as db:
            for collection, ids in by_collection.items():
                for start in range(0, len(ids), 500):  # stay under SQLite's bound-parameter limit
                    chunk = ids[start : start + 500]
                    query = f"SELECT id, name, dims, data FROM vectors WHERE collection = ? AND id IN ({','.join('?' * len(chunk))}) AND name NOT LIKE '%#%'"
                    for object_id, name, dims, data in db.execute(query, (collection, *chunk)):
                        vectors.setdefault((collection, object_id), {})[name] = _vector_from_row(dims, data)
        return [
            StoredObject(collection, object_id, json.loads(props), vectors.get((collection, object_id), {}), created, updated)
            for collection, object_id, props, created, updated in rows
        ]


def peek_counts(data_dir: Path) -> tuple[Callable[[str], int], Callable[[str, str], int]]:
    """Object and per-property counts read without taking the data directory's lock (for ``searchd plan``)."""
    path = data_dir / "objects.sqlite3"
    if not path.exists():
        return (lambda collection: 0), (lambda collection, name: 0)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def count(collection: str) -> int:
        return int(db.execute("SELECT COUNT(*) FROM objects WHERE collection = ?", (collection,)).fetchone()[0])

    def property_count(collection: str, name: str) -> int:
        if not name.isidentifier():
            return 0
        query = f"SELECT COUNT(*) FROM objects WHERE collection = ? AND json_type(properties, '$.{name}') IS NOT NULL"
        return int(db.execute(query, (collection,)).fetchone()[0])

    return count, property_count


def default_data_dir() -> Path:
    """Where data lives when neither --data nor server.dataDir says: $SEARCHD_DATA or ./searchd-data."""
    return Path(os.environ.get("SEARCHD_DATA", "searchd-data"))
