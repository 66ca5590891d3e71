"""A consistent copy of the PostgreSQL store, as a data directory a server starts on (SQLite).

Everything is read in one REPEATABLE READ, READ ONLY transaction: one snapshot of the
database, taken while servers keep writing, and nothing is locked against them.  The
copy holds the objects with all their vectors (staged ones too, so a re-vectorization
resumes), the applied spec and the embedding cache.  Indexes are derived: a server started
on the copy (``--data``) rebuilds them.  PostgreSQL's own tools (pg_dump, base backups,
a managed service's snapshots) back up the whole database; this copy is searchd's,
readable without PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from searchd.errors import StorageError
from searchd.records import StoredObject
from searchd.storage.applied import read_applied, write_applied
from searchd.storage.backup import CACHE_FILE, BackupResult
from searchd.storage.pgerrors import connect, pg_error, safe_url
from searchd.storage.rows import vector_from_blob
from searchd.storage.sqlite import SqliteStore

_PAGE = 2000


def _objects(db: psycopg.Connection[Any], name: str, tag: int, vectors: dict[str, int]) -> Iterator[list[StoredObject]]:
    """A collection's objects with all their vectors, page by page (doc order)."""
    last = 0
    while True:
        rows = db.execute(
            f"SELECT doc, id, properties, created_ms, updated_ms FROM searchd_o{tag} WHERE doc > %s ORDER BY doc LIMIT {_PAGE}", (last,)
        ).fetchall()
        if not rows:
            return
        last = rows[-1][0]
        docs = [int(r[0]) for r in rows]
        found: dict[int, dict[str, Any]] = {}
        for vector, vtag in vectors.items():
            for doc, dims, data in db.execute(f"SELECT doc, dims, data FROM searchd_v{vtag} WHERE doc = ANY(%s::bigint[])", (docs,)):
                found.setdefault(int(doc), {})[vector] = vector_from_blob(dims, bytes(data))
        yield [StoredObject(name, i, props, found.get(int(d), {}), int(c), int(u), int(d)) for d, i, props, c, u in rows]


def backup_postgres(url: str, destination: Path) -> BackupResult:
    where = safe_url(url)
    if destination.exists() and any(destination.iterdir()):
        raise StorageError(f"{destination} is not empty", "back up into a new or empty directory")
    objects = 0
    try:
        with connect(url) as db, db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            tables = db.execute("SELECT to_regclass('searchd_collections') IS NOT NULL").fetchone()
            if not tables or not tables[0]:
                raise StorageError(f"the database {where} holds no searchd store", "pass the database a server uses (server.storage.url)")
            vectors: dict[str, dict[str, int]] = {}
            for collection, name, tag in db.execute("SELECT collection, name, tag FROM searchd_vector_tables"):
                vectors.setdefault(collection, {})[name] = int(tag)
            with SqliteStore(destination) as target:
                for name, tag in db.execute("SELECT name, tag FROM searchd_collections ORDER BY name").fetchall():
                    for page in _objects(db, name, int(tag), vectors.get(name, {})):
                        target.put_many(page)
                        objects += len(page)
            applied = db.execute("SELECT document FROM searchd_applied WHERE one = 1").fetchone()
            if applied is not None:
                write_applied(destination, read_applied(f"in {where} (table searchd_applied)", bytes(applied[0])))
            cache = db.execute("SELECT to_regclass('searchd_embeddings') IS NOT NULL").fetchone()
            if cache and cache[0]:
                with sqlite3.connect(destination / CACHE_FILE) as out:
                    # The table as searchd.modules.cache.SqliteCacheTable keeps it.
                    out.execute("CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, rows INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID")
                    with db.cursor() as cursor:
                        cursor.execute("SELECT key, rows, data FROM searchd_embeddings")
                        while batch := cursor.fetchmany(_PAGE):
                            out.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)", [(bytes(k), int(r), bytes(d)) for k, r, d in batch])
    except psycopg.Error as exc:
        raise pg_error(exc, where) from exc
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"backup to {destination} failed: {exc}", "check free space and permissions at the destination") from exc
    size = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    return BackupResult(destination, objects, size)
