"""The data directory: its lock, its default place, and counts read from it without the lock (``searchd plan``)."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from searchd.errors import StorageError
from searchd.storage.failures import full_disk


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Create the data directory and take its exclusive lock (held while the returned file stays open)."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        lock_file = open(data_dir / "LOCK", "w")  # noqa: SIM115 (held open for the store's life: it is the lock)
    except OSError as exc:
        raise full_disk(data_dir, exc) or StorageError(f"cannot use data directory {data_dir}: {exc}", "check that it exists and is writable, or pass --data DIR") from exc
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        lock_file.close()
        raise StorageError(
            f"data directory {data_dir} is in use by another searchd process",
            "stop the other server, or give this one its own --data DIR",
        ) from exc
    return lock_file


def peek_counts(data_dir: Path) -> tuple[Callable[[str], int], Callable[[str, str], int]]:
    """Object and per-property counts read without taking the data directory's lock (for ``searchd plan``)."""
    path = data_dir / "objects.sqlite3"
    if not path.exists():
        return (lambda collection: 0), (lambda collection, name: 0)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    tables: Mapping[str, str]
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'collections'").fetchone():
        tables = {name: f"o{tag}" for name, tag in db.execute("SELECT name, tag FROM collections")}
        where = ""
    else:  # layout 1, not migrated yet: one table, rows keyed by collection
        tables, where = {}, "collection = ?"

    def _query(collection: str, condition: str) -> int:
        if where:
            sql = f"SELECT COUNT(*) FROM objects WHERE {' AND '.join(c for c in (where, condition) if c)}"
            return int(db.execute(sql, (collection,)).fetchone()[0])
        table = tables.get(collection)
        if table is None:
            return 0
        return int(db.execute(f"SELECT COUNT(*) FROM {table}{' WHERE ' + condition if condition else ''}").fetchone()[0])

    def count(collection: str) -> int:
        return _query(collection, "")

    def property_count(collection: str, name: str) -> int:
        return _query(collection, f"json_type(properties, '$.{name}') IS NOT NULL") if name.isidentifier() else 0

    return count, property_count


def default_data_dir() -> Path:
    """Where data lives when neither --data nor server.dataDir says: $SEARCHD_DATA or ./searchd-data."""
    return Path(os.environ.get("SEARCHD_DATA", "searchd-data"))
