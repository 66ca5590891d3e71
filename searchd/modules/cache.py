"""The embedding cache: a provider is never paid twice for the same input.

Keyed by a digest of (module, model, request parameters, input), so a change of
model or dimensions misses while a re-import or a re-vectorization that only
changes weights or index settings hits.  Stored in the data directory (SQLite), or
in the PostgreSQL store's database;
losing it costs money, never data, so writes are not fsynced.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

CACHE_FILE = "embeddings.sqlite"


def cache_key(namespace: str, kind: str, payload: str) -> bytes:
    digest = hashlib.blake2b(digest_size=20)
    for part in (namespace, kind, payload):
        digest.update(part.encode())
        digest.update(b"\x00")
    return digest.digest()


@dataclass(frozen=True)
class CacheStats:
    entries: int
    hits: int
    misses: int

    def as_dict(self) -> dict[str, int | float]:
        asked = self.hits + self.misses
        return {"entries": self.entries, "hits": self.hits, "misses": self.misses, "hitRate": round(self.hits / asked, 4) if asked else 0.0}


class CacheTable(Protocol):
    """Where the cache's rows live: (key, rows, float32 bytes); rows is 0 for a 1-d vector.

    SQLite in the data directory (below), or the PostgreSQL store's table (``searchd.storage.postgres_cache``).
    """

    def get(self, keys: Sequence[bytes]) -> list[tuple[bytes, int, bytes]]: ...
    def put(self, rows: Sequence[tuple[bytes, int, bytes]]) -> None: ...
    def count(self) -> int: ...
    def close(self) -> None: ...


class SqliteCacheTable:
    """``embeddings.sqlite`` in the data directory (``None``: in memory).  Not fsynced: a lost entry costs a provider call."""

    def __init__(self, directory: Path | None) -> None:
        target = ":memory:" if directory is None else str(directory / CACHE_FILE)
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS embeddings (key BLOB PRIMARY KEY, rows INTEGER NOT NULL, data BLOB NOT NULL) WITHOUT ROWID")

    def get(self, keys: Sequence[bytes]) -> list[tuple[bytes, int, bytes]]:
        found: list[tuple[bytes, int, bytes]] = []
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            found += self._db.execute(f"SELECT key, rows, data FROM embeddings WHERE key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
        return found

    def put(self, rows: Sequence[tuple[bytes, int, bytes]]) -> None:
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO embeddings (key, rows, data) VALUES (?, ?, ?)", rows)
        self._db.execute("COMMIT")

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        self._db.close()


class EmbeddingCache:
    """Vectors (1-d) and multi-vectors (2-d) by key, in ``table`` (default: SQLite in ``directory``; ``None``: in memory)."""

    def __init__(self, directory: Path | None, table: CacheTable | None = None) -> None:
        self._table: CacheTable = table if table is not None else SqliteCacheTable(directory)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        # Single flight: keys some caller is asking the provider for now, and the futures its result settles.  Futures of
        # concurrent.futures, because callers run on different event loops (the server's, the reload manager's).
        self._flying: dict[bytes, concurrent.futures.Future[np.ndarray | None]] = {}

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for key, rows, data in self._table.get(keys):
                vector = np.frombuffer(data, dtype=np.float32)
                found[key] = vector if rows == 0 else vector.reshape(rows, -1)
            self._hits += len(found)
            self._misses += len(set(keys)) - len(found)
        return found

    def claim(self, keys: Iterable[bytes]) -> tuple[list[bytes], dict[bytes, concurrent.futures.Future[np.ndarray | None]]]:
        """Split keys into those this caller fetches (the first to ask) and those another caller is fetching now.

        The claimed keys must be handed back through :meth:`settle`, whatever happens; the futures of the others
        give their vector, or None when that fetch failed (then ask again, with your own request's keys).
        """
        mine: list[bytes] = []
        theirs: dict[bytes, concurrent.futures.Future[np.ndarray | None]] = {}
        with self._lock:
            for key in keys:
                flying = self._flying.get(key)
                if flying is not None:
                    theirs[key] = flying
                    self._hits += 1  # served without a provider request of its own
                else:
                    self._flying[key] = concurrent.futures.Future()
                    mine.append(key)
        return mine, theirs

    def settle(self, keys: Iterable[bytes], results: Mapping[bytes, object]) -> None:
        """End the flight of claimed keys: waiters get the vector in ``results``, or None for anything else."""
        with self._lock:
            futures = [(self._flying.pop(key), results.get(key)) for key in keys if key in self._flying]
        for future, result in futures:
            future.set_result(result if isinstance(result, np.ndarray) else None)

    def put_many(self, vectors: Mapping[bytes, np.ndarray] | Iterable[tuple[bytes, np.ndarray]]) -> None:
        items = vectors.items() if isinstance(vectors, Mapping) else vectors
        rows = [(key, 0 if v.ndim == 1 else v.shape[0], np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in items]
        with self._lock:
            self._table.put(rows)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._table.count(), self._hits, self._misses)

    def close(self) -> None:
        with self._lock:
            self._table.close()
