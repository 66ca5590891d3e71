"""SQLite object store (WAL, synchronous=FULL): a write is acknowledged only after it is durable.

One file, ``objects.sqlite3``, in the data directory; an exclusive lock file stops
two servers from sharing a data directory.  Layout 2 (see ``searchd.storage.migrate``
for layout 1):

* one table per collection, ``o<tag>``: ``doc`` (an integer that is never reused,
  the key every index uses), ``id`` (the UUID), properties as JSON, timestamps;
* one table per named vector (and per staged re-vectorization), ``v<tag>``: ``doc``
  → the float32 bytes.  Both are rowid tables, so a 1.5 KB vector sits in its
  page instead of spilling to overflow pages, and counts and range scans read the
  rowid b-tree;
* ``changes``: a sequence number per written or deleted document, so a saved
  index catches up from its sequence instead of being rebuilt.

Writes go through one connection; reads use one connection per thread, so a
query never waits behind a write transaction (WAL readers see the last commit).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from searchd import deadline
from searchd.config.spec import Spec
from searchd.errors import StorageError
from searchd.records import StoredObject
from searchd.storage.applied import Applied, load_applied, save_applied
from searchd.storage.base import BULK, MadeFor
from searchd.storage.datadir import lock_data_dir
from searchd.storage.failures import storage_error
from searchd.storage.migrate import LAYOUT, migrate
from searchd.storage.rows import blob, matrix_of, properties_of, stored_text, vector_from_blob
from searchd.storage.sqlstore import SqlStore
from searchd.storage.sqlwhere import indexed_property, order_sql, to_sql
from searchd.where import Filter, SortKey, epoch_seconds, like

log = logging.getLogger("searchd.storage")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS collections (name TEXT PRIMARY KEY, tag INTEGER NOT NULL UNIQUE) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vector_tables (
    collection TEXT NOT NULL, name TEXT NOT NULL, tag INTEGER NOT NULL UNIQUE, PRIMARY KEY (collection, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, doc INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS retired_tables (name TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
"""
_OBJECTS_TABLE = """CREATE TABLE IF NOT EXISTS o{tag} (
    doc INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)"""
_VECTORS_TABLE = "CREATE TABLE IF NOT EXISTS v{tag} (doc INTEGER PRIMARY KEY, dims INTEGER NOT NULL, data BLOB NOT NULL)"
_PAGE_SIZE = 8192  # five 1.5 KB vectors to a page (4 KB pages hold two)
_READER_CACHE_KB = 512
_MMAP_BYTES = 1 << 30
_CHUNK = 500  # stay under SQLite's bound-parameter limit
# SQLite VM steps between two looks of a reader at its request's deadline (searchd.deadline): about a thousand rows of a scan,
# a millisecond or so, so a query past server.limits.queryTimeout stops its statement that soon.
_PROGRESS_STEPS = 5_000


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    # Filters call these from SQL (values always arrive as bound parameters; stored text as a BLOB, see sqlwhere).
    db.create_function("searchd_like", 2, _like, deterministic=True)
    db.create_function("searchd_epoch", 1, _epoch, deterministic=True)
    return db


# SQLite reports an exception in a function as "user-defined function raised exception", nothing more: the details are logged here.
def _like(pattern: Any, value: Any) -> int:
    try:
        return int(like(pattern, stored_text(value)))
    except Exception:
        log.exception("the filter function searchd_like failed on the pattern %r and the stored value %.200r", pattern, value)
        raise


def _epoch(value: Any) -> float | None:
    try:
        return epoch_seconds(stored_text(value))
    except Exception:
        log.exception("the filter function searchd_epoch failed on the stored value %.200r", value)
        raise


class SqliteStore(SqlStore):
    """The ``Store`` (``searchd.storage.base``) in the data directory's ``objects.sqlite3``; the applied spec beside it."""

    OBJECTS, VECTORS, COLLECTIONS, VECTOR_TABLES, RETIRED, CHANGES = "o", "v", "collections", "vector_tables", "retired_tables", "changes"
    OBJECTS_DDL, VECTORS_DDL, MARK = _OBJECTS_TABLE, _VECTORS_TABLE, "?"

    def __init__(self, data_dir: Path) -> None:
        self._lock_file = lock_data_dir(data_dir)
        self.data_dir = data_dir
        self.path = data_dir / "objects.sqlite3"
        self._lock = threading.Lock()
        self._readers = threading.local()
        self._reader_list: list[sqlite3.Connection] = []
        self._init_tables()
        try:
            try:
                self._db = _connect(self.path)
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path) from exc
            with self._guard() as db:
                fresh = db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
                if fresh:
                    db.execute(f"PRAGMA page_size={_PAGE_SIZE}")
                migrate(db, self.path)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute("PRAGMA analysis_limit=1000")  # approximate statistics, gathered in milliseconds
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('layout', ?)", (str(LAYOUT),))
                self._reload_tags(db)
        except BaseException:
            if hasattr(self, "_db"):
                self._db.close()
            self._lock_file.close()
            raise
        self._unanalyzed = 0
        self.drop_retired(older_than=0)  # nothing reads yet
        self.analyze()

    def close(self) -> None:
        with self._lock:
            for reader in self._reader_list:
                reader.close()
            self._db.close()
        self._lock_file.close()

    def __enter__(self) -> SqliteStore:  # noqa: PYI034 (not subclassed)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return str(self.path)

    def load_applied(self) -> Applied | None:
        return load_applied(self.data_dir)

    def save_applied(self, spec: Spec) -> Applied:
        return save_applied(self.data_dir, spec)

    # -- connections -------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path) from exc

    @contextmanager
    def _read(self, bulk: bool = False) -> Iterator[sqlite3.Connection]:
        """This thread's reader: reads never queue behind the write lock.

        ``bulk`` reads (filling an index from every stored vector) use a reader without the memory map,
        so they do not leave the whole file counted in the server's memory.
        """
        slot = "bulk" if bulk else "db"
        db = getattr(self._readers, slot, None)
        if db is None:
            try:
                db = _connect(self.path)
                # Small per-thread caches; reads go through a shared memory map of the file instead (an exact scan of
                # 600 vectors: 2.1 ms mapped, 4.3 ms through read calls). Mapped pages a read touched count in VmRSS
                # as file pages (RssFile), which the OS can drop at any time.
                db.execute(f"PRAGMA cache_size=-{_READER_CACHE_KB}")
                if not bulk:
                    db.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
                db.set_progress_handler(deadline.expired, _PROGRESS_STEPS)  # a true answer interrupts the statement
            except sqlite3.Error as exc:  # e.g. no file descriptor left for this thread's connection
                raise storage_error(exc, self.path) from exc
            setattr(self._readers, slot, db)
            with self._lock:
                self._reader_list.append(db)
        try:
            yield db
        except sqlite3.Error as exc:
            stopped = deadline.current()
            if stopped is not None and isinstance(exc, sqlite3.OperationalError) and str(exc) == "interrupted":
                raise deadline.timed_out(stopped.timeout) from exc  # the progress handler stopped it at the deadline
            raise storage_error(exc, self.path) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._guard() as db:
            db.execute("BEGIN IMMEDIATE")
            self._writer = threading.get_ident()
            try:
                yield db
            except BaseException:
                if db.in_transaction:  # SQLite rolls back by itself on some errors (disk full); keep the real one
                    db.execute("ROLLBACK")
                self._reload_tags(db)
                raise
            finally:
                self._writer = None
            db.execute("COMMIT")
            self._publish_tags()

    # -- tables ------------------------------------------------------------------

    def _next_tag(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'next_tag'").fetchone()
        tag = int(row[0]) if row else 1
        db.execute("INSERT OR REPLACE INTO meta VALUES ('next_tag', ?)", (str(tag + 1),))
        return tag

    def analyze(self) -> None:
        """Refresh the planner's statistics, so it picks a filter's index only when the filter is selective."""
        with self._guard() as db:
            db.execute("ANALYZE")
        self._unanalyzed = 0

    def _note_writes(self, count: int) -> None:
        self._unanalyzed += count
        if self._unanalyzed >= 10_000:
            self.analyze()

    def vector_stamps(self, collection: str) -> dict[str, str]:
        return {}  # no other process promotes vectors here

    # -- writes ------------------------------------------------------------------

    def put_many(self, objects: Sequence[StoredObject], made_for: MadeFor | None = None) -> list[int]:
        """Insert or replace objects (with all their vectors) in one durable transaction; their docs, in order.

        A replaced object keeps its doc; a vector it no longer has is removed.  ``made_for`` is not checked: this
        process is the only writer, and its promotions swap its indexes under the engine's write lock.
        """
        if not objects:
            return []
        docs: list[int] = []
        with self._transaction() as db:
            for obj in objects:
                table = self._table_for_write(db, obj.collection)
                (doc,) = db.execute(
                    f"INSERT INTO {table} (id, properties, created_ms, updated_ms) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET properties = excluded.properties, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms "
                    "RETURNING doc",
                    (obj.id, json.dumps(obj.properties, separators=(",", ":")), obj.created_ms, obj.updated_ms),
                ).fetchone()
                docs.append(int(doc))
                for name in obj.vectors:
                    self._vector_table_for_write(db, obj.collection, name)
                for name, vectors in self._vector_tables(obj.collection).items():
                    if name in obj.vectors:
                        db.execute(f"INSERT OR REPLACE INTO {vectors} VALUES (?, ?, ?)", (doc, *blob(obj.vectors[name])))
                    else:
                        db.execute(f"DELETE FROM {vectors} WHERE doc = ?", (doc,))
            db.executemany("INSERT INTO changes (collection, doc) VALUES (?, ?)", [(o.collection, d) for o, d in zip(objects, docs)])
        self._note_writes(len(objects))
        return docs

    def delete(self, collection: str, object_id: str) -> int | None:
        """Delete an object and its vectors; its doc, or None if it was not stored."""
        table = self._table(collection)
        if table is None:
            return None
        with self._transaction() as db:
            row = db.execute(f"DELETE FROM {table} WHERE id = ? RETURNING doc", (object_id,)).fetchone()
            if row is None:
                return None
            for vectors in self._vector_tables(collection).values():
                db.execute(f"DELETE FROM {vectors} WHERE doc = ?", (row[0],))
            db.execute("INSERT INTO changes (collection, doc) VALUES (?, ?)", (collection, row[0]))
        return int(row[0])

    # -- the change log ----------------------------------------------------------

    def write_seq(self) -> int:
        """The sequence number of the last committed change."""
        with self._read() as db:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
        return int(row[0]) if row else 0

    def changes_since(self, seq: int, collection: str) -> list[int] | None:
        """Docs of ``collection`` changed after ``seq``; None when the log no longer reaches back that far, or a bulk change happened."""
        with self._read() as db:
            oldest = db.execute("SELECT MIN(seq) FROM changes").fetchone()[0]
            last = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
            if last is not None and int(last[0]) > seq and (oldest is None or int(oldest) > seq + 1):
                return None  # trimmed past it
            docs = [int(r[0]) for r in db.execute("SELECT DISTINCT doc FROM changes WHERE seq > ? AND collection = ?", (seq, collection))]
        return None if BULK in docs else docs

    def trim_changes(self, upto: int) -> None:
        """Forget changes at or before ``upto``: every saved index is at least that current."""
        with self._transaction() as db:
            db.execute("DELETE FROM changes WHERE seq <= ?", (upto,))

    def replication(self) -> None:
        """None: the data directory's lock makes this process the store's only writer, so there is nothing to follow."""

    # -- reads -------------------------------------------------------------------

    def get_many(self, collection: str, object_ids: Sequence[str], vectors: bool = True) -> dict[str, StoredObject]:
        table = self._table(collection)
        if table is None:
            return {}
        rows: list[tuple[Any, ...]] = []
        with self._read() as db:
            for start in range(0, len(object_ids), _CHUNK):
                chunk = tuple(object_ids[start : start + _CHUNK])
                rows += db.execute(f"SELECT doc, id, properties, created_ms, updated_ms FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return {obj.id: obj for obj in self._objects(collection, rows, vectors)}

    def get_docs(self, collection: str, docs: Sequence[int], vectors: bool = False) -> dict[int, StoredObject]:
        """Objects by doc (what searches return), without their vectors unless asked."""
        table = self._table(collection)
        if table is None or not docs:
            return {}
        rows: list[tuple[Any, ...]] = []
        with self._read() as db:
            for start in range(0, len(docs), _CHUNK):
                chunk = tuple(int(d) for d in docs[start : start + _CHUNK])
                rows += db.execute(f"SELECT doc, id, properties, created_ms, updated_ms FROM {table} WHERE doc IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return {obj.doc: obj for obj in self._objects(collection, rows, vectors)}

    def vectors_of(self, collection: str, name: str, docs: Sequence[int]) -> tuple[list[int], list[np.ndarray]]:
        """Stored vectors of these docs (those that have one), for exact scans over a few allowed docs."""
        found, rows = self.vector_matrix(collection, name, docs)
        return found, list(rows)

    def vector_matrix(self, collection: str, name: str, docs: Sequence[int], bulk: bool = False) -> tuple[list[int], np.ndarray | list[np.ndarray]]:
        """Like ``vectors_of``, as one matrix when they are all single vectors of one length (else a list)."""
        table = self._vector_table(collection, name)
        if table is None or not len(docs):
            return [], []
        # One statement for any number of docs (a JSON array is one parameter); rows come back in doc order.
        listed = orjson.dumps(docs if isinstance(docs, (list, tuple, np.ndarray)) else list(docs), option=orjson.OPT_SERIALIZE_NUMPY)
        with self._read(bulk) as db:
            rows = db.execute(f"SELECT doc, dims, data FROM {table} WHERE doc IN (SELECT value FROM json_each(?)) ORDER BY doc", (listed,)).fetchall()
        return matrix_of(rows)

    def doc_ids(self, collection: str) -> list[tuple[int, str]]:
        """Every (doc, id) of a collection: the engine's map between them."""
        table = self._table(collection)
        if table is None:
            return []
        with self._read() as db:
            return db.execute(f"SELECT doc, id FROM {table}").fetchall()

    def created_times(self, collection: str, object_ids: Sequence[str]) -> dict[str, int]:
        """Creation times of those ids that are stored."""
        table = self._table(collection)
        found: dict[str, int] = {}
        if table is None:
            return found
        # Every write asks this of random ids: through the memory map it would leave the id index's pages counted
        # in the server's memory (16 MB after a 60k import), so it reads through the unmapped reader.
        with self._read(bulk=True) as db:
            for start in range(0, len(object_ids), _CHUNK):
                chunk = tuple(object_ids[start : start + _CHUNK])
                found.update(db.execute(f"SELECT id, created_ms FROM {table} WHERE id IN ({','.join('?' * len(chunk))})", chunk).fetchall())
        return found

    def _to_sql(self, where: Filter) -> tuple[str, list[Any]]:
        return to_sql(where)

    def _order_sql(self, order: Sequence[SortKey]) -> str:
        return order_sql(order)

    def _properties(self, stored: Any) -> dict[str, Any]:
        return properties_of(stored)

    def _hint(self, collection: str, where: Filter) -> str:
        indexed = [name.split("__", 1)[1] for name in self._indexes(collection)]
        chosen = indexed_property(where, indexed)
        return "" if chosen is None else f"INDEXED BY {self._table(collection)}__{chosen}"

    def _indexes(self, collection: str) -> list[str]:
        table = self._table(collection)
        with self._read() as db:
            return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name LIKE ? ESCAPE '\\'", (table, f"{table}\\_\\_%"))] if table else []

    def index_properties(self, collection: str, names: Sequence[str]) -> None:
        """Expression indexes so that listings filtered on these scalar properties do not scan the collection.

        Names come from the validated config (identifiers only), never from a request.
        """
        with self._transaction() as db:
            table = self._table_for_write(db, collection)
            for name in names:
                if not name.isidentifier():
                    raise StorageError(f"refusing to index property name {name!r}")
                db.execute(f"CREATE INDEX IF NOT EXISTS {table}__{name} ON {table}(json_extract(properties, '$.{name}'))")
        self.analyze()

    def iter_vectors(self, collection: str, name: str, docs: Sequence[int] | None = None) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        """Stored vectors of one named vector (all, or of ``docs``), in batches: what an index is rebuilt from."""
        if docs is not None:
            for start in range(0, len(docs), 5000):
                yield self.vectors_of(collection, name, docs[start : start + 5000])
            return
        for rows in self._pages(self._vector_table(collection, name), "doc, dims, data"):
            yield [r[0] for r in rows], [vector_from_blob(dims, data) for _, dims, data in rows]

    # -- re-vectorization and destructive changes (see searchd.reload) -----------

    def ids_with_vector(self, collection: str, name: str, object_ids: Sequence[str]) -> set[str]:
        table, vectors = self._table(collection), self._vector_table(collection, name)
        if table is None or vectors is None or not object_ids:
            return set()
        with self._read() as db:
            marks = ",".join("?" * len(object_ids))
            rows = db.execute(f"SELECT o.id FROM {table} AS o JOIN {vectors} AS v ON v.doc = o.doc WHERE o.id IN ({marks})", tuple(object_ids)).fetchall()
        return {r[0] for r in rows}

    def put_vectors_if_unchanged(self, collection: str, name: str, rows: Sequence[tuple[str, int, np.ndarray | None]]) -> set[str]:
        """Add a vector to objects not rewritten since ``updated_ms`` was read (a newer write staged its own).

        Returns the ids of the rows whose object is unchanged: their vector (if any) is stored.
        """
        current: set[str] = set()
        with self._transaction() as db:
            table = self._table_for_write(db, collection)
            vectors = self._vector_table_for_write(db, collection, name)
            for object_id, updated_ms, vec in rows:
                found = db.execute(f"SELECT doc FROM {table} WHERE id = ? AND updated_ms = ?", (object_id, updated_ms)).fetchone()
                if found is None:
                    continue
                if vec is not None:
                    db.execute(f"INSERT OR REPLACE INTO {vectors} VALUES (?, ?, ?)", (found[0], *blob(vec)))
                current.add(object_id)
        return current

    def drop_property(self, collection: str, name: str) -> None:
        if not name.isidentifier():
            raise StorageError(f"refusing to drop property name {name!r}")
        table = self._table(collection)
        if table is None:
            return
        with self._transaction() as db:
            db.execute(f"UPDATE {table} SET properties = json_remove(properties, '$.{name}') WHERE json_type(properties, '$.{name}') IS NOT NULL")
            db.execute(f"DROP INDEX IF EXISTS {table}__{name}")
            self._bulk_change(db, collection)

    def property_count(self, collection: str, name: str) -> int:
        table = self._table(collection)
        if table is None or not name.isidentifier():
            return 0
        with self._read() as db:
            return int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE json_type(properties, '$.{name}') IS NOT NULL").fetchone()[0])

    def _objects(self, collection: str, rows: list[tuple[Any, ...]], vectors: bool) -> list[StoredObject]:
        if not rows:
            return []
        found: dict[int, dict[str, np.ndarray]] = {}
        if vectors:
            docs = [r[0] for r in rows]
            for name, table in self._vector_tables(collection).items():
                if "#" in name:
                    continue  # staged vectors are not the object's yet
                with self._read() as db:
                    for start in range(0, len(docs), _CHUNK):
                        chunk = docs[start : start + _CHUNK]
                        for doc, dims, data in db.execute(f"SELECT doc, dims, data FROM {table} WHERE doc IN ({','.join('?' * len(chunk))})", chunk):
                            found.setdefault(doc, {})[name] = vector_from_blob(dims, data)
        return [StoredObject(collection, object_id, properties_of(props), found.get(doc, {}), created, updated, doc) for doc, object_id, props, created, updated in deadline.checked(rows)]
