"""The embedding cache's rows in the PostgreSQL store's database (``searchd.modules.cache.CacheTable``).

An UNLOGGED table: like the SQLite cache (not fsynced), a crash may lose entries, which
costs provider calls, never data; writes skip the WAL.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from searchd.storage.pgerrors import connect, pg_error, safe_url

_TABLE = "CREATE UNLOGGED TABLE IF NOT EXISTS searchd_embeddings (key bytea PRIMARY KEY, rows int NOT NULL, data bytea NOT NULL)"


class PostgresCacheTable:
    """One connection; the cache serialises its calls under its own lock."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._where = safe_url(url)
        self._db = connect(url)
        with self._checked() as db:
            db.execute(_TABLE)

    @contextmanager
    def _checked(self) -> Iterator[psycopg.Connection[Any]]:
        if self._db.closed or self._db.broken:
            self._db = connect(self._url)
        try:
            yield self._db
        except psycopg.Error as exc:
            raise pg_error(exc, self._where) from exc

    def get(self, keys: Sequence[bytes]) -> list[tuple[bytes, int, bytes]]:
        if not keys:
            return []
        with self._checked() as db:
            return [(bytes(k), int(r), bytes(d)) for k, r, d in db.execute("SELECT key, rows, data FROM searchd_embeddings WHERE key = ANY(%s::bytea[])", (list(keys),))]

    def put(self, rows: Sequence[tuple[bytes, int, bytes]]) -> None:
        with self._checked() as db, db.transaction(), db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO searchd_embeddings VALUES (%s, %s, %s) ON CONFLICT (key) DO UPDATE SET rows = excluded.rows, data = excluded.data",
                list(rows),
            )

    def count(self) -> int:
        with self._checked() as db:
            row = db.execute("SELECT count(*) FROM searchd_embeddings").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()
