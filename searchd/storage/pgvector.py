"""Vector search inside PostgreSQL (pgvector): the ``pgvector`` index type's storage side.

A named vector with a pgvector index keeps its vectors where they already are, in its
``searchd_v<tag>`` table, plus a ``vector(d)`` column ``embedding`` with pgvector's HNSW
index on it; a multi-vector keeps one row per token in ``searchd_v<tag>_tokens``.  Both are
written by the same statement (or transaction) as the object, so a committed write is
searchable from every process with no in-memory index to keep current.

Which tables carry an embedding is a row of ``searchd_meta`` (``pgvector``), read by each
write transaction that writes vectors (under the write lock): a process that did not declare
the index itself still fills it.  Distances follow searchd's convention (Weaviate's): cosine
``1 - cos`` (``<=>``), dot ``-q.d`` (``<#>``), l2-squared the square of ``<->``.  A filtered
search runs the where filter (``searchd.storage.pgwhere``) in the same statement, with
pgvector 0.8's iterative index scan (``hnsw.iterative_scan = relaxed_order``); a narrow filter,
whose allowed docs are few, is an exact scan over those docs.
"""

from __future__ import annotations

import json
import struct
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import psycopg
from psycopg.adapt import Dumper, PyFormat
from psycopg.pq import Format
from psycopg.types import TypeInfo

from searchd.config.spec import Distance, IndexSpec
from searchd.storage.pgwhere import to_sql
from searchd.storage.rows import blob, vector_from_blob
from searchd.where import Filter

MIN_VERSION = (0, 8, 0)  # iterative index scans
_META_KEY = "pgvector"
_OPS = {Distance.COSINE: ("vector_cosine_ops", "<=>"), Distance.DOT: ("vector_ip_ops", "<#>"), Distance.L2_SQUARED: ("vector_l2_ops", "<->")}
MAX_SCAN_TUPLES = 50_000  # an iterative scan's budget before it stops short (then: exact over the allowed docs)
_BACKFILL_PAGE = 2000
_BUILD_MEMORY = "256MB"  # maintenance_work_mem for CREATE INDEX: a graph that fits builds several times faster


def literal(vector: np.ndarray) -> str:
    """pgvector's text form; float32 values printed as the shortest float64 text that reads back as the same float32."""
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).astype(np.float64).tolist())) + "]"


class Embedding:
    """One float32 row for a ``vector`` column, sent in pgvector's binary form (no text to print and parse: a third of the
    time an import spent in PostgreSQL, HNSW aside)."""

    __slots__ = ("row",)

    def __init__(self, row: np.ndarray) -> None:
        self.row = row


class _EmbeddingDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Embedding) -> bytes:
        # vector_recv: int16 dimensions, int16 unused, then big-endian float4s.
        return struct.pack(">HH", len(obj.row), 0) + np.asarray(obj.row, dtype=">f4").tobytes()


def _binary_embeddings(db: psycopg.Connection[Any]) -> None:
    """Let ``db`` send ``Embedding`` values (and lists of them) as pgvector's type; once per connection."""
    try:
        db.adapters.get_dumper(Embedding, PyFormat.BINARY)
        return
    except psycopg.ProgrammingError:
        pass
    info = TypeInfo.fetch(db, "vector")
    if info is None:
        raise psycopg.ProgrammingError("the vector type (pgvector) is not in this database")
    info.register(db)
    db.adapters.register_dumper(Embedding, type("EmbeddingDumper", (_EmbeddingDumper,), {"oid": info.oid}))


def extension_problem(db: psycopg.Connection[Any]) -> str | None:
    """Why this database cannot hold pgvector indexes (creating the extension where it is available), or None."""
    row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        if db.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
            return "the vector extension (pgvector) is not installed on the database server"
        try:
            with db.transaction():
                db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            return f"the vector extension could not be created ({str(exc).strip().splitlines()[0]})"
        row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert row is not None
    version = tuple(int(p) for p in str(row[0]).split(".")[:3] if p.isdigit())
    if version < MIN_VERSION:
        return f"pgvector {row[0]} is too old: iterative index scans need {'.'.join(map(str, MIN_VERSION))} or later (ALTER EXTENSION vector UPDATE)"
    return None


@dataclass(frozen=True)
class Layout:
    """What one vector table carries for pgvector: the vector length, whether its rows are token matrices (and unit rows)."""

    dimensions: int
    tokens: bool
    normalised: bool = False  # token rows of a cosine multi-vector: MaxSim is a dot product of unit rows


def read_layouts(db: psycopg.Connection[Any]) -> dict[str, Layout]:
    row = db.execute("SELECT value FROM searchd_meta WHERE key = %s", (_META_KEY,)).fetchone()
    return {table: Layout(int(v["dimensions"]), bool(v["tokens"]), bool(v.get("normalised"))) for table, v in json.loads(row[0]).items()} if row else {}


def _write_layouts(db: psycopg.Connection[Any], layouts: dict[str, Layout]) -> None:
    value = json.dumps({t: {"dimensions": v.dimensions, "tokens": v.tokens, "normalised": v.normalised} for t, v in sorted(layouts.items())})
    db.execute("INSERT INTO searchd_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (_META_KEY, value))


def _rows(vector: np.ndarray, layout: Layout) -> np.ndarray | None:
    """The rows to index, or None when the vector was made for other settings (its length differs)."""
    matrix = np.asarray(vector, dtype=np.float32)
    if matrix.shape[-1] != layout.dimensions:
        return None
    matrix = matrix.reshape(-1, layout.dimensions)
    if layout.normalised:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = np.asarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)
    return matrix


def put_vectors(db: psycopg.Connection[Any], table: str, docs: Sequence[int], vectors: Sequence[np.ndarray], layout: Layout | None) -> None:
    """Store several docs' vectors (and, for a pgvector table, their embeddings or token rows) in the caller's transaction.

    One statement per table, whatever the number of docs (a round trip per row halved the import rate); ``docs``
    must be distinct (an upsert cannot touch a row twice).  The float32 bytes travel in binary (``%b``).
    """
    if not docs:
        return
    blobs = [blob(v) for v in vectors]
    params: list[Any] = [[int(d) for d in docs], [d for d, _ in blobs], [b for _, b in blobs]]
    if layout is None or layout.tokens:
        db.execute(
            f"INSERT INTO {table} (doc, dims, data) SELECT * FROM unnest(%s::bigint[], %s::int[], %b::bytea[]) "
            "ON CONFLICT (doc) DO UPDATE SET dims = excluded.dims, data = excluded.data",
            params,
        )
    else:
        _binary_embeddings(db)
        embeddings = [None if (rows := _rows(v, layout)) is None or len(rows) != 1 else Embedding(rows[0]) for v in vectors]
        db.execute(
            f"INSERT INTO {table} (doc, dims, data, embedding) SELECT * FROM unnest(%s::bigint[], %s::int[], %b::bytea[], %b::vector[]) "
            "ON CONFLICT (doc) DO UPDATE SET dims = excluded.dims, data = excluded.data, embedding = excluded.embedding",
            [*params, embeddings],
        )
    if layout is not None and layout.tokens:
        _put_tokens(db, table, docs, vectors, layout)


def _put_tokens(db: psycopg.Connection[Any], table: str, docs: Sequence[int], vectors: Sequence[np.ndarray], layout: Layout) -> None:
    db.execute(f"DELETE FROM {table}_tokens WHERE doc = ANY(%s::bigint[])", ([int(d) for d in docs],))
    tokens = [(int(doc), i, Embedding(r)) for doc, v in zip(docs, vectors) if (m := _rows(v, layout)) is not None for i, r in enumerate(m)]
    _insert_tokens(db, table, tokens)


def _insert_tokens(db: psycopg.Connection[Any], table: str, tokens: Sequence[tuple[int, int, Embedding]]) -> None:
    if tokens:
        _binary_embeddings(db)
        db.execute(
            f"INSERT INTO {table}_tokens SELECT * FROM unnest(%s::bigint[], %s::int[], %b::vector[])",
            ([t[0] for t in tokens], [t[1] for t in tokens], [t[2] for t in tokens]),
        )


def _index_name(table: str, spec: IndexSpec, tokens: bool) -> str:
    return f"{table}{'_tokens' if tokens else ''}_hnsw_{spec.distance.name.lower()}_m{spec.max_connections}_e{spec.ef_construction}"


def ensure(db: psycopg.Connection[Any], table: str, spec: IndexSpec, dimensions: int) -> Layout:
    """Give a vector table its embedding column (or token table) and HNSW index, filling them from the stored vectors.

    Runs in a write transaction.  An HNSW index with other settings (a reindex) is dropped last, so reads wait
    on its exclusive lock only for the end of the transaction.
    """
    layout = Layout(dimensions, spec.multivector, spec.multivector and spec.distance is Distance.COSINE)
    layouts = read_layouts(db)
    ops = "vector_ip_ops" if spec.multivector else _OPS[spec.distance][0]
    target = f"{table}_tokens" if spec.multivector else table
    name = _index_name(table, spec, spec.multivector)
    hnsw = [str(r[0]) for r in db.execute("SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%USING hnsw%%'", (target,))]
    known = layouts.get(table)
    if known == layout and hnsw == [name]:
        # Built already (every start after the first): no DDL, whose exclusive lock would stall other processes' reads.
        return layout
    if known != layout:
        # Settings that change what is stored (length, tokens or not, normalisation): start this table's embeddings afresh.
        db.execute(f"DROP TABLE IF EXISTS {table}_tokens")
        db.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS embedding")
    if spec.multivector:
        db.execute(f"CREATE TABLE IF NOT EXISTS {target} (doc bigint NOT NULL REFERENCES {table} (doc) ON DELETE CASCADE, token int NOT NULL, embedding vector({dimensions}) NOT NULL, PRIMARY KEY (doc, token))")
    else:
        db.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS embedding vector({dimensions})")
    layouts[table] = layout
    _write_layouts(db, layouts)
    _backfill(db, table, layout)
    db.execute(f"SET LOCAL maintenance_work_mem = '{_BUILD_MEMORY}'")
    db.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target} USING hnsw (embedding {ops}) WITH (m = {int(spec.max_connections)}, ef_construction = {int(spec.ef_construction)})")
    for other in hnsw:
        if other != name:
            db.execute(f"DROP INDEX IF EXISTS {other}")
    return layout


def _backfill(db: psycopg.Connection[Any], table: str, layout: Layout) -> None:
    """Embeddings for the vectors stored before the column (or token table) existed, a page at a time."""
    missing = (
        f"SELECT v.doc, v.dims, v.data FROM {table} AS v WHERE v.doc > %s AND NOT EXISTS (SELECT 1 FROM {table}_tokens AS t WHERE t.doc = v.doc) ORDER BY v.doc LIMIT {_BACKFILL_PAGE}"
        if layout.tokens
        else f"SELECT doc, dims, data FROM {table} WHERE doc > %s AND embedding IS NULL ORDER BY doc LIMIT {_BACKFILL_PAGE}"
    )
    last = -1
    _binary_embeddings(db)
    while True:
        rows = db.execute(missing, (last,)).fetchall()
        if not rows:
            return
        last = int(rows[-1][0])
        if layout.tokens:
            tokens = [(int(doc), i, Embedding(r)) for doc, dims, data in rows if (m := _rows(vector_from_blob(dims, data), layout)) is not None for i, r in enumerate(m)]
            _insert_tokens(db, table, tokens)
            continue
        fills = [(int(doc), Embedding(m[0])) for doc, dims, data in rows if (m := _rows(vector_from_blob(dims, data), layout)) is not None and len(m) == 1]
        if fills:
            db.execute(
                f"UPDATE {table} AS v SET embedding = f.e FROM unnest(%s::bigint[], %b::vector[]) AS f(doc, e) WHERE v.doc = f.doc",
                ([d for d, _ in fills], [e for _, e in fills]),
            )


@dataclass
class SearchSettings:
    """The hnsw.* settings each of the store's reader connections has (one record per store: its indexes share the connections)."""

    by_connection: weakref.WeakKeyDictionary[Any, tuple[int, int]] = field(default_factory=weakref.WeakKeyDictionary)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DatabaseVectors:
    """One named vector's pgvector index, searched by SQL on the store's reader connections.

    ``search`` returns (doc, distance) pairs, nearest first.  Search settings are set once per
    reader connection (session-level, only when they change), so a search is one statement.
    """

    def __init__(self, read: Any, objects: str, table: str, metric: Distance, layout: Layout, settings: SearchSettings) -> None:
        self._read: Any = read  # the store's reader: a context manager factory yielding a connection
        self.objects, self.table, self.metric, self.layout = objects, table, metric, layout
        self._settings = settings
        op = "<#>" if layout.tokens else _OPS[metric][1]
        self._op = op
        self._distance = f"(embedding {op} %s::vector)" if metric is not Distance.L2_SQUARED else f"((embedding {op} %s::vector) ^ 2)"

    @contextmanager
    def _connection(self, ef: int) -> Iterator[psycopg.Connection[Any]]:
        with cast(AbstractContextManager[psycopg.Connection[Any]], self._read()) as db:
            wanted = (ef, MAX_SCAN_TUPLES)
            with self._settings.lock:
                current = self._settings.by_connection.get(db)
            if current != wanted:
                db.execute(
                    "SELECT set_config('hnsw.ef_search', %s, false), set_config('hnsw.iterative_scan', 'relaxed_order', false), set_config('hnsw.max_scan_tuples', %s, false)",
                    (str(ef), str(MAX_SCAN_TUPLES)),
                )
                with self._settings.lock:
                    self._settings.by_connection[db] = wanted
            yield db

    def docs(self) -> np.ndarray:
        """The docs that have an embedding (or token rows): read once, when an index opens (its count is kept from then on)."""
        with self._read() as db:
            sql = f"SELECT DISTINCT doc FROM {self.table}_tokens" if self.layout.tokens else f"SELECT doc FROM {self.table} WHERE embedding IS NOT NULL"
            return np.fromiter((int(r[0]) for r in db.execute(sql)), dtype=np.int64)

    def contains(self, doc: int) -> bool:
        with self._read() as db:
            source = f"{self.table}_tokens WHERE doc = %s" if self.layout.tokens else f"{self.table} WHERE doc = %s AND embedding IS NOT NULL"
            return db.execute(f"SELECT 1 FROM {source} LIMIT 1", (int(doc),)).fetchone() is not None

    def search(self, query: np.ndarray, k: int, ef: int, where: Filter | None = None, docs: Sequence[int] | None = None, candidates: int = 0) -> list[tuple[int, float]]:
        """The k nearest docs: all of them, those passing ``where`` (iterative scan), or among ``docs`` (exactly)."""
        if k <= 0:
            return []
        if self.layout.tokens:
            return self._maxsim(query, k, ef, where, docs, candidates)
        q = literal(query)
        if docs is not None:
            # Exact: the subquery's OFFSET 0 keeps the planner from ordering through the HNSW index.
            sql = f"SELECT doc, d FROM (SELECT doc, {self._distance} AS d FROM {self.table} WHERE doc = ANY(%s::bigint[]) AND embedding IS NOT NULL OFFSET 0) AS s ORDER BY d, doc LIMIT %s"
            params: list[Any] = [q, [int(d) for d in docs], k]
        elif where is not None:
            condition, values = to_sql(where)
            sql = (
                f"SELECT v.doc, {self._distance.replace('embedding', 'v.embedding')} AS d FROM {self.table} AS v JOIN {self.objects} AS objects ON objects.doc = v.doc "
                f"WHERE {condition} ORDER BY v.embedding {self._op} %s::vector LIMIT %s"
            )
            params = [q, *values, q, k]
        else:
            sql = f"SELECT doc, {self._distance} AS d FROM {self.table} ORDER BY embedding {self._op} %s::vector LIMIT %s"
            params = [q, q, k]
        with self._connection(max(ef, 1)) as db:
            rows = db.execute(sql, params).fetchall()
        # relaxed_order: an iterative scan may return a few rows out of order.
        return sorted(((int(doc), float(d)) for doc, d in rows), key=lambda r: (r[1], r[0]))

    def _maxsim(self, query: np.ndarray, k: int, ef: int, where: Filter | None, docs: Sequence[int] | None, candidates: int) -> list[tuple[int, float]]:
        """Σ over query rows of the nearest token's negative inner product (Weaviate's MaxSim distance), exactly, over candidates.

        Candidates: the allowed docs when they are given; otherwise the owners of each query row's nearest tokens
        (the token HNSW index; with ``where``, through the objects); ``candidates`` 0 means every doc.
        """
        rows = np.asarray(query, dtype=np.float32).reshape(-1, self.layout.dimensions)
        if self.layout.normalised:
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = np.asarray(rows / np.where(norms > 0, norms, 1.0), dtype=np.float32)
        params: list[Any] = [[literal(r) for r in rows]]
        if docs is not None:
            chosen = "SELECT unnest(%s::bigint[]) AS doc"
            params.append([int(d) for d in docs])
        elif candidates <= 0:
            chosen = f"SELECT doc FROM {self.table}"
        elif where is not None:
            condition, values = to_sql(where)
            chosen = (
                f"SELECT DISTINCT c.doc FROM q CROSS JOIN LATERAL (SELECT t.doc FROM {self.table}_tokens AS t JOIN {self.objects} AS objects ON objects.doc = t.doc "
                f"WHERE {condition} ORDER BY t.embedding <#> q.v LIMIT %s) AS c"
            )
            params.extend([*values, candidates])
        else:
            chosen = f"SELECT DISTINCT c.doc FROM q CROSS JOIN LATERAL (SELECT t.doc FROM {self.table}_tokens AS t ORDER BY t.embedding <#> q.v LIMIT %s) AS c"
            params.append(candidates)
        sql = (
            "WITH q AS MATERIALIZED (SELECT i, v::vector AS v FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, i)), "
            f"chosen AS MATERIALIZED ({chosen}) "
            "SELECT s.doc, SUM(s.best) AS d FROM (SELECT t.doc, q.i, MIN(t.embedding <#> q.v) AS best "
            f"FROM {self.table}_tokens AS t JOIN chosen ON chosen.doc = t.doc CROSS JOIN q GROUP BY t.doc, q.i) AS s "
            "GROUP BY s.doc ORDER BY d, s.doc LIMIT %s"
        )
        params.append(k)
        with self._connection(max(ef, candidates, 1)) as db:
            found = db.execute(sql, params).fetchall()
        return [(int(doc), float(d)) for doc, d in found]
