"""A consistent copy of a data directory, taken while a server is using it.

SQLite's online backup API copies one snapshot of the store, even while WAL
writes go on, and takes no lock that would stop the server.  Indexes are not
copied: they are derived, and a server started on the copy rebuilds them from the
store.  The applied spec and the embedding cache come along, so a restore plans
against the right spec and does not pay providers again.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from searchd.errors import StorageError
from searchd.storage.applied import APPLIED_DIR

STORE_FILE = "objects.sqlite3"
CACHE_FILE = "embeddings.sqlite"


@dataclass(frozen=True)
class BackupResult:
    destination: Path
    objects: int
    bytes: int


def _copy_database(source: Path, target: Path) -> None:
    reader = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    writer = sqlite3.connect(target)
    try:
        reader.backup(writer)
    finally:
        writer.close()
        reader.close()


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def backup(data_dir: Path, destination: Path) -> BackupResult:
    store = data_dir / STORE_FILE
    if not store.exists():
        raise StorageError(f"{data_dir} holds no object store ({STORE_FILE})", "pass the data directory a server uses (--data)")
    if destination.exists() and any(destination.iterdir()):
        raise StorageError(f"{destination} is not empty", "back up into a new or empty directory")
    destination.mkdir(parents=True, exist_ok=True)
    try:
        _copy_database(store, destination / STORE_FILE)
        if (data_dir / CACHE_FILE).exists():
            _copy_database(data_dir / CACHE_FILE, destination / CACHE_FILE)
        if (data_dir / APPLIED_DIR).is_dir():
            shutil.copytree(data_dir / APPLIED_DIR, destination / APPLIED_DIR)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"backup to {destination} failed: {exc}", "check free space and permissions at the destination") from exc
    with contextlib.closing(sqlite3.connect(destination / STORE_FILE)) as db:
        # Layout 2: a table per collection (searchd.storage.sqlite); an unmigrated layout 1 has one ``objects`` table.
        tables = [f"o{tag}" for (tag,) in db.execute("SELECT tag FROM collections")] if _has_table(db, "collections") else ["objects"]
        objects = sum(int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in tables if _has_table(db, table))
        (check,) = db.execute("PRAGMA integrity_check").fetchone()
    if check != "ok":
        raise StorageError(f"the copy in {destination} failed its integrity check: {check}", "run the backup again")
    size = sum(p.stat().st_size for p in destination.rglob("*") if p.is_file())
    return BackupResult(destination, int(objects), size)
