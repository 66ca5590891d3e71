"""The object store's layout: a data directory written by an older searchd is migrated once, at start, and nothing is lost."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from searchd.storage import SqliteStore
from tests.conftest import ClientFactory, graphql

# Layout 1, as searchd wrote it before the engine core (one table for all objects, one for all vectors, text keys).
LAYOUT_1 = """
CREATE TABLE objects (collection TEXT NOT NULL, id TEXT NOT NULL, properties TEXT NOT NULL,
    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (collection, id)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT INTO meta VALUES ('write_seq', '7');
CREATE TABLE vectors (collection TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, dims INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (collection, id, name)) WITHOUT ROWID;
CREATE INDEX prop_Doc_n ON objects(collection, json_extract(properties, '$.n'));
"""
CONFIG = {
    "collections": [
        {"name": "Doc", "properties": [{"name": "n", "type": "INT"}, {"name": "title", "type": "TEXT"}], "vectors": {"v": {"vectorizer": {"module": "none", "dimensions": 4}}}},
        {"name": "Other", "properties": [{"name": "title", "type": "TEXT"}], "vectors": {"w": {"vectorizer": {"module": "none", "dimensions": 2}}}},
    ]
}
RNG = np.random.default_rng(12)
DOC_VECTORS = RNG.normal(size=(30, 4)).astype(np.float32)


def doc_id(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def write_layout_1(data: Path) -> None:
    data.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(data / "objects.sqlite3")) as db, db:
        db.executescript(LAYOUT_1)
        for i in range(30):
            db.execute("INSERT INTO objects VALUES ('Doc', ?, ?, ?, ?)", (doc_id(i), json.dumps({"n": i, "title": f"doc {i}"}), 1000 + i, 2000 + i))
            db.execute("INSERT INTO vectors VALUES ('Doc', ?, 'v', 4, ?)", (doc_id(i), DOC_VECTORS[i].tobytes()))
        # A re-vectorization that was half-way: its staged vectors survive the migration, so it resumes.
        db.execute("INSERT INTO vectors VALUES ('Doc', ?, 'v#0123456789', 4, ?)", (doc_id(0), np.ones(4, np.float32).tobytes()))
        db.execute("INSERT INTO objects VALUES ('Other', ?, ?, 5, 6)", (doc_id(99), json.dumps({"title": "the other"})))
        db.execute("INSERT INTO vectors VALUES ('Other', ?, 'w', 2, ?)", (doc_id(99), np.array([1, 0], np.float32).tobytes()))


def test_a_layout_1_data_directory_is_migrated_at_start_and_serves_everything(
    write_config: Callable[..., Path], client_factory: ClientFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "old-data"
    write_layout_1(data)
    caplog.set_level(logging.INFO, logger="searchd.storage")
    with SqliteStore(data) as store:
        messages = [r.getMessage() for r in caplog.records]
        assert any("migrating the object store" in m and "from layout 1 to layout 2 (31 objects)" in m for m in messages), messages
        assert any(m.startswith("migrated the object store to layout 2: 31 objects") for m in messages), messages
        # A half-way re-vectorization's staged vectors come along (the next start resumes or drops it, as the config says).
        assert store.ids_with_vector("Doc", "v#0123456789", [doc_id(0), doc_id(1)]) == {doc_id(0)}
        assert store.count("Doc") == 30 and store.count("Other") == 1
    client = client_factory(write_config(yaml.safe_dump(CONFIG)), data)
    got = client.get(f"/v1/objects/Doc/{doc_id(7)}?include=vector").json()
    assert got["properties"] == {"n": 7, "title": "doc 7"}
    assert got["creationTimeUnix"] == 1007 and got["lastUpdateTimeUnix"] == 2007
    np.testing.assert_array_equal(np.asarray(got["vector"], np.float32), DOC_VECTORS[7])
    other = client.get(f"/v1/objects/Other/{doc_id(99)}?include=vector").json()
    assert other["properties"] == {"title": "the other"} and other["vector"] == [1.0, 0.0]

    # Searches, filters and counts run on the migrated data (indexes rebuilt from it).
    query = DOC_VECTORS[3] + 0.01
    body = graphql(client, "query($v: Vector!) { Get { Doc(nearVector: {vector: $v}, limit: 1, where: {path: [\"n\"], operator: LessThan, valueInt: 10}) { n } } }", {"v": query.tolist()})
    assert body["data"]["Get"]["Doc"] == [{"n": 3}]
    count = graphql(client, '{ Aggregate { Doc(where: {path: ["n"], operator: GreaterThanEqual, valueInt: 20}) { meta { count } } } }')
    assert count["data"]["Aggregate"]["Doc"][0]["meta"]["count"] == 10
    client.__exit__(None, None, None)

    with contextlib.closing(sqlite3.connect(f"file:{data / 'objects.sqlite3'}?mode=ro", uri=True)) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "objects" not in tables and "vectors" not in tables and {"collections", "vector_tables", "changes"} <= tables
        assert db.execute("PRAGMA page_size").fetchone() == (8192,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert not [r for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'prop%'")]

    caplog.clear()
    again = client_factory(write_config(yaml.safe_dump(CONFIG)), data)
    assert not any("migrat" in r.getMessage() for r in caplog.records)
    assert again.get(f"/v1/objects/Doc/{doc_id(29)}").json()["properties"] == {"n": 29, "title": "doc 29"}


def test_a_failed_migration_leaves_layout_1_untouched(tmp_path: Path) -> None:
    data = tmp_path / "old-data"
    write_layout_1(data)
    with contextlib.closing(sqlite3.connect(data / "objects.sqlite3")) as db, db:
        # A vector whose object is missing and a collection table name clash make the copy fail half-way.
        db.execute("CREATE TABLE o2 (x)")
    with pytest.raises(Exception, match="o2"):
        SqliteStore(data)
    with contextlib.closing(sqlite3.connect(f"file:{data / 'objects.sqlite3'}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT COUNT(*) FROM objects").fetchone() == (31,)
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone() == (32,)
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "collections" not in tables and "o1" not in tables


def test_new_stores_use_8_kb_pages_and_keep_vectors_off_overflow_pages(tmp_path: Path) -> None:
    from searchd.records import StoredObject

    with SqliteStore(tmp_path / "data") as store:
        vectors = RNG.normal(size=(200, 384)).astype(np.float32)
        store.put_many([StoredObject("Doc", doc_id(i), {"n": i}, {"v": vectors[i]}) for i in range(200)])
        path = store.path
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA page_size").fetchone() == (8192,)
        (pages,) = db.execute("PRAGMA page_count").fetchone()
    # 200 vectors of 1,536 bytes fit five to a page: the whole file stays under 1.6x their bytes
    # (a vector spilling to an overflow page, as in layout 1, takes at least twice its size).
    assert pages * 8192 <= 1.6 * 200 * 1536, pages


def test_expression_index_names_cannot_collide(tmp_path: Path) -> None:
    """Layout 1 named indexes prop_<collection>_<property>: A_b.c and A.b_c were both prop_A_b_c, so one lost its index.

    Layout 2 names them <table>__<property>, the table being o<number> (unique per collection); a property name cannot start
    with a digit, so a name reads back one way only.  Each property gets its own index, and filters are hinted to it.
    """
    from searchd.config.spec import PropertyType
    from searchd.records import StoredObject
    from searchd.where import Condition

    with SqliteStore(tmp_path / "data") as store:
        store.put_many([StoredObject("A_b", doc_id(i), {"c": i}, {}, 1, 1) for i in range(3)])
        store.put_many([StoredObject("A", doc_id(10 + i), {"b_c": 10 + i}, {}, 1, 1) for i in range(3)])
        store.index_properties("A_b", ["c"])
        store.index_properties("A", ["b_c"])
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "objects.sqlite3")) as db:
            tables = dict(db.execute("SELECT name, 'o' || tag FROM collections").fetchall())
            indexes = sorted(db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql LIKE '%json_extract%'").fetchall())
        assert indexes == sorted([(f"{tables['A_b']}__c", tables["A_b"]), (f"{tables['A']}__b_c", tables["A"])])
        for collection, prop, value in (("A_b", "c", 1), ("A", "b_c", 11)):
            where = Condition(prop, "Equal", value, PropertyType.INT)
            assert store._hint(collection, where) == f"INDEXED BY {tables[collection]}__{prop}"  # the filter is answered by its own index
            assert store.docs_matching(collection, where) == [2]


def test_readers_see_a_table_only_once_its_creation_is_committed(tmp_path: Path) -> None:
    """A re-vectorization's first staged write creates its table in a transaction while the rebuild's reader looks
    the table up: until the commit, that reader finds no table (and no rows), not a "no such table" error."""
    import threading

    from searchd.records import StoredObject

    created, proceed = threading.Event(), threading.Event()
    with SqliteStore(tmp_path / "data") as store:
        store.put_many([StoredObject("Doc", doc_id(1), {"n": 1}, {"v": np.ones(4, np.float32)})])

        def create_staging_table() -> None:
            with store._transaction() as db:
                store._vector_table_for_write(db, "Doc", "staged")
                created.set()
                assert proceed.wait(30)

        writer = threading.Thread(target=create_staging_table)
        writer.start()
        try:
            assert created.wait(30)
            assert store.has_vectors("Doc", "staged") is False
            assert store.ids_with_vector("Doc", "staged", [doc_id(1)]) == set()
            assert store.vector_matrix("Doc", "staged", [1]) == ([], [])
        finally:
            proceed.set()
            writer.join()
        assert store._vector_table("Doc", "staged") is not None  # committed: now every reader sees it
        assert store.has_vectors("Doc", "staged") is False
