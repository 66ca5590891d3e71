"""Bringing an older data directory's store to the current layout, once, at start.

Layout 1 (searchd before the engine core) kept every collection in one
``objects`` table and every vector in one ``vectors`` table, both ``WITHOUT ROWID``,
keyed by text: counts were slow and each 1.5 KB vector spilled to an overflow page.
Layout 2 (``searchd.storage.sqlite``) gives each collection and each named vector a
rowid table keyed by an integer doc.  The migration copies everything in one
transaction (a crash leaves layout 1 untouched), then rewrites the file with
8 KB pages (VACUUM), and says so in the log.  Saved indexes of layout 1 are keyed
by text ids: their format no longer matches, so they are rebuilt once.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger("searchd.storage")

LAYOUT = 2
_PAGE_SIZE = 8192


def _layout(db: sqlite3.Connection) -> int:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "objects" in tables and "collections" not in tables:
        return 1
    return LAYOUT


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Migrate ``db`` (the store's connection, outside any transaction) to the current layout if it is older."""
    if _layout(db) == LAYOUT:
        return
    started = time.monotonic()
    (objects,) = db.execute("SELECT COUNT(*) FROM objects").fetchone()
    log.warning("migrating the object store %s from layout 1 to layout %d (%d objects); this happens once", path, LAYOUT, objects)
    db.execute("BEGIN IMMEDIATE")
    try:
        _copy(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    # A new page size needs a rollback journal while the file is rewritten.
    db.execute("PRAGMA journal_mode=DELETE")
    db.execute(f"PRAGMA page_size={_PAGE_SIZE}")
    db.execute("VACUUM")
    log.warning("migrated the object store to layout %d: %d objects in %.1fs", LAYOUT, objects, time.monotonic() - started)


def _copy(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    db.execute("CREATE TABLE collections (name TEXT PRIMARY KEY, tag INTEGER NOT NULL UNIQUE) WITHOUT ROWID")
    db.execute("CREATE TABLE vector_tables (collection TEXT NOT NULL, name TEXT NOT NULL, tag INTEGER NOT NULL UNIQUE, PRIMARY KEY (collection, name)) WITHOUT ROWID")
    db.execute("CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, doc INTEGER NOT NULL)")
    tag = 0
    tables: dict[str, str] = {}
    for (collection,) in db.execute("SELECT DISTINCT collection FROM objects ORDER BY collection").fetchall():
        tag += 1
        table = tables[collection] = f"o{tag}"
        db.execute(
            f"CREATE TABLE {table} (doc INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, properties TEXT NOT NULL, "
            "created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL)"
        )
        db.execute(f"INSERT INTO {table} (id, properties, created_ms, updated_ms) SELECT id, properties, created_ms, updated_ms FROM objects WHERE collection = ? ORDER BY id", (collection,))
        db.execute("INSERT INTO collections VALUES (?, ?)", (collection, tag))
    for collection, name in db.execute("SELECT DISTINCT collection, name FROM vectors ORDER BY collection, name").fetchall():
        if collection not in tables:
            continue  # vectors of a deleted object's collection: nothing refers to them
        tag += 1
        db.execute(f"CREATE TABLE v{tag} (doc INTEGER PRIMARY KEY, dims INTEGER NOT NULL, data BLOB NOT NULL)")
        db.execute(
            f"INSERT INTO v{tag} SELECT o.doc, v.dims, v.data FROM vectors AS v JOIN {tables[collection]} AS o ON o.id = v.id WHERE v.collection = ? AND v.name = ?",
            (collection, name),
        )
        db.execute("INSERT INTO vector_tables VALUES (?, ?, ?)", (collection, name, tag))
    for (index,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'prop\\_%' ESCAPE '\\'").fetchall():
        db.execute(f"DROP INDEX IF EXISTS {index}")
    db.execute("DROP TABLE objects")
    db.execute("DROP TABLE vectors")
    db.execute("DELETE FROM meta WHERE key = 'write_seq'")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('next_tag', ?)", (str(tag + 1),))
    db.execute("INSERT OR REPLACE INTO meta VALUES ('layout', ?)", (str(LAYOUT),))
