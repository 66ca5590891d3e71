"""PostgreSQL object store: the ``Store`` of ``searchd.storage.base`` in a database that can outlive the machine.

The layout follows SQLite's (``searchd.storage.sqlite``), in tables named ``searchd_*``:

* one table per collection, ``searchd_o<tag>``: ``doc`` (a bigserial, never reused),
  ``id`` (text, compared bytewise), ``properties`` (jsonb), the two timestamps;
* one table per named vector (and per staged re-vectorization), ``searchd_v<tag>``:
  ``doc`` → ``dims`` and the float32 bytes;
* ``searchd_changes``: a sequence number per written or deleted document, and which process
  wrote it.  Every write transaction first takes one transaction-level advisory lock, so
  sequence numbers are committed in the order they were drawn: a reader in any process that
  has seen sequence ``n`` has seen every change up to ``n``.  Replicas follow it
  (``searchd.storage.pgreplicas``, ``searchd.follower``); a write transaction also reads the
  table registry's version under that lock, so a table another replica created is known
  before this one writes;
* ``searchd_applied``: the applied spec (redacted, as in the data directory) and its revision;
* ``searchd_embeddings`` (``searchd.storage.postgres_cache``): the embedding cache.

Writes go through one connection under a lock, in one transaction each, acknowledged after
COMMIT (synchronous_commit as the server has it: on by default).  Reads take a connection
from a small pool (autocommit), so a query never waits behind a write.  The data directory
still holds this process's saved in-memory indexes, under its lock.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool

from searchd import deadline
from searchd.config.spec import IndexSpec, Spec
from searchd.errors import StorageError
from searchd.records import StoredObject
from searchd.storage.applied import Applied, applied_document, new_applied, read_applied
from searchd.storage.base import BULK, MadeFor, OthersAhead, StaleVectors
from searchd.storage.datadir import lock_data_dir
from searchd.storage.pgerrors import connect, pg_error, safe_url
from searchd.storage.pgreplicas import LOG_CHANGES, ReplicaLog
from searchd.storage.pgreplicas import SCHEMA as REPLICA_SCHEMA
from searchd.storage.pgvector import DatabaseVectors, Layout, SearchSettings, ensure, extension_problem, put_vectors, read_layouts
from searchd.storage.pgwhere import order_sql, text_of, to_sql
from searchd.storage.rows import matrix_of, vector_from_blob
from searchd.storage.sqlstore import SqlStore
from searchd.where import Filter, SortKey

if TYPE_CHECKING:
    from searchd.storage.pgreload import ReloadLedger

log = logging.getLogger("searchd.storage")

WRITE_LOCK = 0x5EA2C4D0  # the advisory lock every write transaction takes first (see the module docstring)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS searchd_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS searchd_collections (name text PRIMARY KEY, tag int NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS searchd_vector_tables (collection text NOT NULL, name text NOT NULL, tag int NOT NULL UNIQUE, PRIMARY KEY (collection, name));
-- The settings a promoted table's vectors were made for (searchd.serving.staging_stamp); NULL for a table a write made.
ALTER TABLE searchd_vector_tables ADD COLUMN IF NOT EXISTS stamp text;
CREATE TABLE IF NOT EXISTS searchd_changes (seq bigserial PRIMARY KEY, collection text NOT NULL, doc bigint NOT NULL);
CREATE TABLE IF NOT EXISTS searchd_retired (name text PRIMARY KEY, at float8 NOT NULL);
CREATE TABLE IF NOT EXISTS searchd_applied (one int PRIMARY KEY CHECK (one = 1), revision text NOT NULL, document bytea NOT NULL);
CREATE SEQUENCE IF NOT EXISTS searchd_tags;
CREATE OR REPLACE FUNCTION searchd_epoch(value text) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    -- RFC 3339 with a zone, as searchd.where.epoch_seconds reads it; anything else has no instant.
    IF value IS NULL OR value !~ '(Z|z|[+-][0-9][0-9]:?[0-9][0-9])$' THEN RETURN NULL; END IF;
    RETURN extract(epoch FROM value::timestamptz)::float8;
EXCEPTION WHEN others THEN RETURN NULL;
END $$;
"""
_OBJECTS_TABLE = """CREATE TABLE IF NOT EXISTS searchd_o{tag} (
    doc bigserial PRIMARY KEY, id text COLLATE "C" NOT NULL UNIQUE, properties jsonb NOT NULL,
    created_ms bigint NOT NULL, updated_ms bigint NOT NULL)"""
_VECTORS_TABLE = "CREATE TABLE IF NOT EXISTS searchd_v{tag} (doc bigint PRIMARY KEY, dims int NOT NULL, data bytea NOT NULL)"
_COLUMNS = "doc, id, properties, created_ms, updated_ms"
_REGISTRY = "SELECT value FROM searchd_meta WHERE key = 'registry'"
_PAGE = 5000
_POOL_SIZE = 8


class PostgresStore(SqlStore):
    """The ``Store`` in the PostgreSQL database at ``url`` (never logged: ``where`` names it without a password)."""

    OBJECTS, VECTORS, COLLECTIONS, VECTOR_TABLES = "searchd_o", "searchd_v", "searchd_collections", "searchd_vector_tables"
    RETIRED, CHANGES, OBJECTS_DDL, VECTORS_DDL, MARK = "searchd_retired", "searchd_changes", _OBJECTS_TABLE, _VECTORS_TABLE, "%s"

    def __init__(self, url: str, data_dir: Path | None) -> None:
        """``data_dir``: where this process keeps its saved indexes, locked; None to only read (``searchd plan``)."""
        self._url = url
        self._where = safe_url(url)
        self._lock_file = lock_data_dir(data_dir) if data_dir is not None else None
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._stamps: dict[tuple[str, str], str] = {}  # (collection, vector) -> what its promoted vectors were made for
        self._layouts: dict[str, Layout] | None = None  # pgvector tables (searchd.storage.pgvector), read per write transaction
        self._search_settings = SearchSettings()
        self._init_tables()
        self._registry: str | None = None  # the version of the table registry last read (see _transaction)
        try:
            self._db = connect(url)
            with self._guard() as db:
                db.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK,))  # two first starts must not race on CREATE
                try:
                    db.execute(_SCHEMA)
                    db.execute(REPLICA_SCHEMA)
                    self._registry = self._registry_version(db)
                    self._reload_tags(db)
                finally:
                    db.execute("SELECT pg_advisory_unlock(%s)", (WRITE_LOCK,))
            self._pool = ConnectionPool(url, min_size=1, max_size=_POOL_SIZE, kwargs={"autocommit": True}, open=False, name="searchd-readers")
            self._pool.open(wait=True, timeout=30)
            # This process's writes carry a fresh id each start: its follower skips them (it indexed them as it wrote).
            self._replicas = ReplicaLog(url, self._where, self._read, uuid.uuid4().hex, self.refresh_registry)
        except BaseException:
            if hasattr(self, "_db"):
                self._db.close()
            if self._lock_file is not None:
                self._lock_file.close()
            raise
        log.info("object store: PostgreSQL %s", self._where)
        if data_dir is not None:
            self.drop_retired()  # after the grace period only: another process may be reading them

    @property
    def where(self) -> str:
        return self._where

    def close(self) -> None:
        with self._lock:
            self._pool.close()
            self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()

    def __enter__(self) -> PostgresStore:  # noqa: PYI034 (not subclassed)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections -------------------------------------------------------------

    @contextmanager
    def _guard(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._db.closed or self._db.broken:  # the server restarted, or the network dropped: connect again
                self._db = connect(self._url)
            try:
                yield self._db
            except psycopg.Error as exc:
                raise pg_error(exc, self._where) from exc

    @contextmanager
    def _read(self, bulk: bool = False) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection(timeout=30) as db:
                yield db
        except psycopg.Error as exc:
            raise pg_error(exc, self._where) from exc
        except TimeoutError as exc:  # psycopg_pool.PoolTimeout
            raise StorageError(f"no connection to the object store ({self._where}) within 30 s: {exc}", "check that PostgreSQL is up and accepts connections") from exc

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with self._guard() as db:
            self._writer = threading.get_ident()
            try:
                with db.transaction():
                    # The lock, and the registry's version as it is under the lock: a table another replica made or
                    # dropped is known before this transaction writes (see searchd.storage.pgreplicas).
                    row = db.execute("SELECT searchd_write_lock(%s)", (WRITE_LOCK,)).fetchone()
                    if row is not None and row[0] != self._registry:
                        self._reload_tags(db)
                        self._registry = row[0]
                    self._layouts = None  # another process may have added a pgvector index since
                    yield db
            except BaseException:
                self._reload_tags(db)
                raise
            finally:
                self._writer = None
            self._publish_tags()

    # -- tables ------------------------------------------------------------------

    @staticmethod
    def _registry_version(db: psycopg.Connection[Any]) -> str | None:
        row = db.execute(_REGISTRY).fetchone()
        return None if row is None else str(row[0])

    def _reload_tags(self, db: Any) -> None:
        super()._reload_tags(db)
        self._stamps = {(c, n): str(s) for c, n, s in db.execute("SELECT collection, name, stamp FROM searchd_vector_tables WHERE stamp IS NOT NULL")}

    def vector_stamps(self, collection: str) -> dict[str, str]:
        """What the stored vectors of each of ``collection``'s named vectors were made for, where a promotion said so."""
        tables = self._views()[1]  # a dropped table's stamp is gone with it
        return {n: s for (c, n), s in self._stamps.items() if c == collection and "#" not in n and (c, n) in tables}

    def refresh_registry(self) -> bool:
        """Reload the table registry if another replica changed it (a collection or vector table made or dropped); whether it did."""
        with self._read() as db:
            version = self._registry_version(db)
        if version == self._registry:
            return False
        with self._guard() as db:  # the write connection, between transactions: the writer works on the registry
            self._reload_tags(db)
            self._registry = version
        return True

    def replication(self) -> ReplicaLog:
        return self._replicas

    def _log_changes(self, db: psycopg.Connection[Any], changes: Sequence[tuple[str, int]]) -> None:
        """Log the transaction's changes under this process's id, and announce them to the other replicas at COMMIT."""
        db.execute(LOG_CHANGES, {"origin": self._replicas.origin, "collections": [c for c, _ in changes], "docs": [d for _, d in changes]})

    def _bulk_change(self, db: Any, collection: str) -> None:
        self._log_changes(db, [(collection, BULK)])

    def _next_tag(self, db: psycopg.Connection[Any]) -> int:
        row = db.execute("SELECT nextval('searchd_tags')").fetchone()
        assert row is not None
        return int(row[0])

    # -- writes ------------------------------------------------------------------

    def put_many(self, objects: Sequence[StoredObject], made_for: MadeFor | None = None) -> list[int]:
        """Insert or replace objects (with all their vectors) in one transaction; their docs, in order.

        ``made_for``: per collection, what the writer's vectors were made for (``staging_stamp``).  Another replica may
        have promoted a re-vectorization since this one embedded them: then nothing is written (``StaleVectors``, checked
        under the write lock) and the writer embeds them again once it serves the promoted settings.

        A few statements per collection and vector table, not per object.  An id given twice in one batch is written
        once, with the last object's content, at the first one's place in the batch (the doc it draws): as if each
        object replaced the one before, which is what SQLite's row-by-row upserts do.
        """
        if not objects:
            return []
        latest: dict[tuple[str, str], StoredObject] = {}
        for obj in objects:
            latest[obj.collection, obj.id] = obj  # a dict keeps the first position of a key and takes the last value
        by_collection: dict[str, list[StoredObject]] = {}
        for obj in latest.values():
            by_collection.setdefault(obj.collection, []).append(obj)
        doc_of: dict[tuple[str, str], int] = {}
        with self._transaction() as db:
            for collection, group in by_collection.items():
                if made_for is not None and collection in made_for:
                    self._check_stamps(collection, made_for[collection])
                table = self._table_for_write(db, collection)
                rows = db.execute(
                    f"INSERT INTO {table} (id, properties, created_ms, updated_ms) "
                    "SELECT id, p::jsonb, c, u FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[]) WITH ORDINALITY AS r(id, p, c, u, n) ORDER BY n "
                    "ON CONFLICT (id) DO UPDATE SET properties = excluded.properties, created_ms = excluded.created_ms, updated_ms = excluded.updated_ms "
                    "RETURNING id, doc",
                    (
                        [o.id for o in group],
                        [json.dumps(o.properties, separators=(",", ":")) for o in group],
                        [o.created_ms for o in group],
                        [o.updated_ms for o in group],
                    ),
                ).fetchall()
                docs = {str(i): int(d) for i, d in rows}
                doc_of.update(((collection, i), d) for i, d in docs.items())
                for name in dict.fromkeys(n for o in objects if o.collection == collection for n in o.vectors):
                    self._vector_table_for_write(db, collection, name)
                for name, vectors in self._vector_tables(collection).items():
                    having = [o for o in group if name in o.vectors]
                    self._put_vectors(db, vectors, [docs[o.id] for o in having], [o.vectors[name] for o in having])
                    lacking = [docs[o.id] for o in group if name not in o.vectors]
                    if lacking:
                        db.execute(f"DELETE FROM {vectors} WHERE doc = ANY(%s::bigint[])", (lacking,))
            found = [doc_of[o.collection, o.id] for o in objects]
            self._log_changes(db, [(o.collection, d) for o, d in zip(objects, found)])
        return found

    def _check_stamps(self, collection: str, made_for: Mapping[str, str]) -> None:
        """In a write transaction (the registry read under the lock): refuse vectors made for other settings than stored ones."""
        stale = sorted(n for n, stamp in self.vector_stamps(collection).items() if made_for.get(n) != stamp)
        if stale:
            names = ", ".join(f"{collection}.{n}" for n in stale)
            raise StaleVectors(
                f"another replica promoted re-vectorized vectors of {names} that this replica does not serve yet", "the write is embedded again once it does"
            )

    def _promote_in(self, db: Any, collection: str, staging: str, name: str) -> None:
        super()._promote_in(db, collection, staging, name)
        stamp = staging.partition("#")[2]  # a staging name holds the stamp of the settings its vectors were made for
        db.execute("UPDATE searchd_vector_tables SET stamp = %s WHERE collection = %s AND name = %s", (stamp, collection, name))
        self._stamps = {**self._stamps, (collection, name): stamp}

    def _put_vectors(self, db: psycopg.Connection[Any], table: str, docs: Sequence[int], vectors: Sequence[np.ndarray]) -> None:
        """In a write transaction: the vectors, and their pgvector embeddings when the table has them."""
        if self._layouts is None:
            self._layouts = read_layouts(db)
        put_vectors(db, table, docs, vectors, self._layouts.get(table))

    # -- pgvector indexes (searchd.storage.pgvector) -------------------------------

    def vector_extension_problem(self) -> str | None:
        """Why this database cannot hold pgvector indexes (the extension is created when it is available), or None."""
        with self._guard() as db:
            return extension_problem(db)

    def database_index(self, collection: str, name: str, spec: IndexSpec, dimensions: int) -> DatabaseVectors:
        """The pgvector index of a named vector (or staged vectors), created and filled from the stored vectors if need be."""
        with self._transaction() as db:
            problem = extension_problem(db)
            if problem is not None:
                raise StorageError(f"a pgvector index cannot be created in {self._where}: {problem}", "install pgvector (scripts/pgvector.sh) and run CREATE EXTENSION vector as a superuser, or use index type hnsw")
            objects = self._table_for_write(db, collection)
            table = self._vector_table_for_write(db, collection, name)
            layout = ensure(db, table, spec, dimensions)
        return DatabaseVectors(self._read, objects, table, spec.distance, layout, self._search_settings)

    def _drop_table(self, db: Any, name: str) -> None:
        db.execute(f"DROP TABLE IF EXISTS {name}_tokens")  # a pgvector multi-vector's token rows, if any
        db.execute(f"DROP TABLE IF EXISTS {name}")

    def delete(self, collection: str, object_id: str) -> int | None:
        table = self._table(collection)
        if table is None:
            return None
        with self._transaction() as db:
            row = db.execute(f"DELETE FROM {table} WHERE id = %s RETURNING doc", (object_id,)).fetchone()
            if row is None:
                return None
            for vectors in self._vector_tables(collection).values():
                db.execute(f"DELETE FROM {vectors} WHERE doc = %s", (row[0],))
            self._log_changes(db, [(collection, int(row[0]))])
        return int(row[0])

    # -- the change log ----------------------------------------------------------

    def write_seq(self) -> int:
        """The sequence number of the last committed change (or of the last trim, when the log is empty since)."""
        with self._read() as db:
            row = db.execute(
                "SELECT GREATEST((SELECT max(seq) FROM searchd_changes), (SELECT value::bigint FROM searchd_meta WHERE key = 'trimmed'), 0)"
            ).fetchone()
        return int(row[0]) if row else 0

    def changes_since(self, seq: int, collection: str) -> list[int] | None:
        """Docs of ``collection`` changed after ``seq``; None when the log was trimmed past it, or a bulk change happened."""
        with self._read() as db:
            trimmed = db.execute("SELECT value::bigint FROM searchd_meta WHERE key = 'trimmed'").fetchone()
            if trimmed is not None and int(trimmed[0]) > seq:
                return None
            docs = [int(r[0]) for r in db.execute("SELECT DISTINCT doc FROM searchd_changes WHERE seq > %s AND collection = %s", (seq, collection))]
        return None if BULK in docs else docs

    def trim_changes(self, upto: int) -> None:
        """This process's indexes are saved at ``upto``: forget the changes no replica heard from lately still needs."""
        with self._transaction() as db:
            upto = self._replicas.trim_floor(db, upto)
            db.execute("DELETE FROM searchd_changes WHERE seq <= %s", (upto,))
            db.execute(
                "INSERT INTO searchd_meta VALUES ('trimmed', %s) ON CONFLICT (key) DO UPDATE SET value = GREATEST(searchd_meta.value::bigint, excluded.value::bigint)::text",
                (str(upto),),
            )

    # -- reads -------------------------------------------------------------------

    def get_many(self, collection: str, object_ids: Sequence[str], vectors: bool = True) -> dict[str, StoredObject]:
        table = self._table(collection)
        if table is None or not object_ids:
            return {}
        with self._read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM {table} WHERE id = ANY(%s::text[])", (list(object_ids),)).fetchall()
        return {obj.id: obj for obj in self._objects(collection, rows, vectors)}

    def get_docs(self, collection: str, docs: Sequence[int], vectors: bool = False) -> dict[int, StoredObject]:
        table = self._table(collection)
        if table is None or not len(docs):
            return {}
        with self._read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM {table} WHERE doc = ANY(%s::bigint[])", ([int(d) for d in docs],)).fetchall()
        return {obj.doc: obj for obj in self._objects(collection, rows, vectors)}

    def vector_matrix(self, collection: str, name: str, docs: Sequence[int], bulk: bool = False) -> tuple[list[int], np.ndarray | list[np.ndarray]]:
        table = self._vector_table(collection, name)
        if table is None or not len(docs):
            return [], []
        listed = docs.tolist() if isinstance(docs, np.ndarray) else [int(d) for d in docs]
        with self._read() as db:
            rows = db.execute(f"SELECT doc, dims, data FROM {table} WHERE doc = ANY(%s::bigint[]) ORDER BY doc", (listed,)).fetchall()
        return matrix_of(rows)

    def created_times(self, collection: str, object_ids: Sequence[str]) -> dict[str, int]:
        table = self._table(collection)
        if table is None or not object_ids:
            return {}
        with self._read() as db:
            return {i: int(t) for i, t in db.execute(f"SELECT id, created_ms FROM {table} WHERE id = ANY(%s::text[])", (list(object_ids),))}

    def _to_sql(self, where: Filter) -> tuple[str, list[Any]]:
        return to_sql(where)

    def _order_sql(self, order: Sequence[SortKey]) -> str:
        return order_sql(order)

    def property_count(self, collection: str, name: str) -> int:
        table = self._table(collection)
        if table is None or not name.isidentifier():
            return 0
        with self._read() as db:
            row = db.execute(f"SELECT COUNT(*) FROM {table} WHERE properties ? %s", (name,)).fetchone()
        return int(row[0]) if row else 0

    def collections(self) -> list[str]:
        return sorted(self._views()[0])

    def property_counts(self, collection: str) -> dict[str, int]:
        """How many objects hold each property (one scan, for ``searchd plan``)."""
        table = self._table(collection)
        if table is None:
            return {}
        with self._read() as db:
            return {k: int(n) for k, n in db.execute(f"SELECT key, COUNT(*) FROM {table}, jsonb_object_keys(properties) AS key GROUP BY key")}

    def index_properties(self, collection: str, names: Sequence[str]) -> None:
        """Expression indexes on the text of these scalar properties (names come from the validated config)."""
        with self._transaction() as db:
            table = self._table_for_write(db, collection)
            for name in names:
                if not name.isidentifier():
                    raise StorageError(f"refusing to index property name {name!r}")
                db.execute(f"CREATE INDEX IF NOT EXISTS {table}__{name} ON {table} ({text_of(name, '')})")

    # -- what the indexes are filled from ----------------------------------------

    def iter_vectors(self, collection: str, name: str, docs: Sequence[int] | None = None) -> Iterator[tuple[list[int], list[np.ndarray]]]:
        if docs is not None:
            for start in range(0, len(docs), _PAGE):
                found, matrix = self.vector_matrix(collection, name, docs[start : start + _PAGE])
                yield found, list(matrix)
            return
        for rows in self._pages(self._vector_table(collection, name), "doc, dims, data"):
            yield [int(r[0]) for r in rows], [vector_from_blob(dims, data) for _, dims, data in rows]

    def _objects(self, collection: str, rows: list[tuple[Any, ...]], vectors: bool) -> list[StoredObject]:
        if not rows:
            return []
        found: dict[int, dict[str, np.ndarray]] = {}
        if vectors:
            docs = [int(r[0]) for r in rows]
            for name, table in self._vector_tables(collection).items():
                if "#" in name:
                    continue  # staged vectors are not the object's yet
                with self._read() as db:
                    for doc, dims, data in db.execute(f"SELECT doc, dims, data FROM {table} WHERE doc = ANY(%s::bigint[])", (docs,)):
                        found.setdefault(int(doc), {})[name] = vector_from_blob(dims, data)
        return [StoredObject(collection, object_id, props, found.get(int(doc), {}), int(created), int(updated), int(doc)) for doc, object_id, props, created, updated in deadline.checked(rows)]

    # -- re-vectorization and destructive changes (see searchd.reload) -----------

    def ids_with_vector(self, collection: str, name: str, object_ids: Sequence[str]) -> set[str]:
        table, vectors = self._table(collection), self._vector_table(collection, name)
        if table is None or vectors is None or not object_ids:
            return set()
        with self._read() as db:
            rows = db.execute(f"SELECT o.id FROM {table} AS o JOIN {vectors} AS v ON v.doc = o.doc WHERE o.id = ANY(%s::text[])", (list(object_ids),))
            return {r[0] for r in rows}

    def put_vectors_if_unchanged(self, collection: str, name: str, rows: Sequence[tuple[str, int, np.ndarray | None]]) -> set[str]:
        if not rows:
            return set()
        with self._transaction() as db:
            table = self._table_for_write(db, collection)
            vectors = self._vector_table_for_write(db, collection, name)
            unchanged = db.execute(
                f"SELECT o.id, o.doc FROM {table} AS o JOIN unnest(%s::text[], %s::bigint[]) AS r(id, updated_ms) ON o.id = r.id AND o.updated_ms = r.updated_ms",
                ([r[0] for r in rows], [r[1] for r in rows]),
            ).fetchall()
            doc_of = {str(i): int(d) for i, d in unchanged}
            puts = {doc_of[i]: vec for i, _, vec in rows if i in doc_of and vec is not None}  # one row per doc: the last
            self._put_vectors(db, vectors, list(puts), list(puts.values()))
        return set(doc_of)

    def promote_vectors(self, collection: str, staging: str, name: str) -> None:
        """Promote staged vectors, unless another replica changed the collection after what this process's follower has
        applied (``OthersAhead``): such a write may have dropped an object's staged vector, and this process has not yet
        heard that the object needs a new one.  Checked under the write lock: no write falls between the check and the swap.
        """
        applied = self._replicas.applied
        with self._transaction() as db:
            if applied is not None:
                later = db.execute(
                    "SELECT seq FROM searchd_changes WHERE seq > %s AND collection = %s AND origin <> %s LIMIT 1", (applied, collection, self._replicas.origin)
                ).fetchone()
                if later is not None:
                    raise OthersAhead(f"another replica wrote to {collection} (change {later[0]}) after this one applied change {applied}", "promote once it is applied")
            self._promote_in(db, collection, staging, name)

    def drop_property(self, collection: str, name: str) -> None:
        if not name.isidentifier():
            raise StorageError(f"refusing to drop property name {name!r}")
        table = self._table(collection)
        if table is None:
            return
        with self._transaction() as db:
            db.execute(f"UPDATE {table} SET properties = properties - %s WHERE properties ? %s", (name, name))
            db.execute(f"DROP INDEX IF EXISTS {table}__{name}")
            self._bulk_change(db, collection)

    # -- the applied spec ----------------------------------------------------------

    def load_applied(self) -> Applied | None:
        with self._read() as db:
            row = db.execute("SELECT document FROM searchd_applied WHERE one = 1").fetchone()
        return None if row is None else read_applied(f"in {self._where} (table searchd_applied)", bytes(row[0]))

    def refresh_tables(self) -> None:
        """Read the table registry again: another replica may have created, promoted or dropped tables since."""
        with self._guard() as db:
            self._reload_tags(db)

    def reload_ledger(self) -> ReloadLedger:
        """Where replicas sharing this database coordinate reloads (``searchd.storage.pgreload``)."""
        from searchd.storage.pgreload import ReloadLedger  # it imports this module (the write lock's key)

        return ReloadLedger(self._url)

    def save_applied(self, spec: Spec) -> Applied:
        applied = new_applied(spec)
        with self._transaction() as db:
            db.execute(
                "INSERT INTO searchd_applied VALUES (1, %s, %s) ON CONFLICT (one) DO UPDATE SET revision = excluded.revision, document = excluded.document",
                (applied.revision, applied_document(applied)),
            )
        return applied
