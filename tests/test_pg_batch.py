"""PostgreSQL's batched writes (a few statements per batch) keep SQLite's row-by-row semantics, object for object.

The same batches go to a ``SqliteStore`` and a ``PostgresStore``; what each then holds (objects, vectors, the change
log) must be the same: a replace keeps the doc and drops the vectors the new object lacks, an id given twice in one
batch ends with the last content at one doc, a batch may span collections, and a pgvector table's embeddings and
token rows follow the stored vectors.  And a re-vectorization's staged vectors are promoted only once the promoting
process has applied every other replica's write to the collection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from searchd.config.spec import Distance, IndexSpec
from searchd.records import StoredObject
from searchd.storage.base import OthersAhead
from searchd.storage.postgres import PostgresStore
from searchd.storage.sqlite import SqliteStore
from tests import pgcluster

pytestmark = pytest.mark.parametrize("storage_backend", ["postgres"], indirect=True)


def obj(collection: str, object_id: str, title: str, ms: int, **vectors: Sequence[float] | Sequence[Sequence[float]]) -> StoredObject:
    return StoredObject(collection, object_id, {"title": title}, {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}, ms, ms)


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[SqliteStore, PostgresStore]]:
    sqlite = SqliteStore(tmp_path / "sqlite")
    postgres = PostgresStore(os.environ["SEARCHD_DATABASE_URL"], tmp_path / "pg")
    yield sqlite, postgres
    sqlite.close()
    postgres.close()


def content(store: SqliteStore | PostgresStore, collection: str, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    found = store.get_many(collection, ids)
    return {i: (o.properties, o.created_ms, o.updated_ms, {k: v.tolist() for k, v in sorted(o.vectors.items())}) for i, o in found.items()}


FIRST = [
    obj("A", "a1", "first a1", 1, v=[1, 0, 0], w=[0, 1, 0]),
    obj("B", "b1", "b1", 2, v=[0, 0, 1]),
    obj("A", "a2", "a2", 3, v=[1, 1, 0]),
    obj("A", "a1", "second a1", 4, w=[0, 0, 2]),  # the same id again: the last content wins, at the first's doc
]
SECOND = [
    obj("A", "a2", "a2 without vectors", 5),  # a replace drops the vectors the new object lacks
    obj("A", "a3", "a3", 6, v=[2, 0, 0]),
    obj("B", "b1", "b1 again", 7, v=[0, 3, 0], w=[1, 1, 1]),  # a new vector name in the batch
]


def test_a_batch_writes_what_sqlite_writes_object_by_object(stores: tuple[SqliteStore, PostgresStore]) -> None:
    sqlite, postgres = stores
    first = [store.put_many(FIRST) for store in stores]
    assert first[0] == first[1] == [1, 1, 2, 1]
    docs = postgres.put_many(SECOND)
    sqlite_docs = sqlite.put_many(SECOND)
    assert sqlite_docs[::2] == docs[::2] == [2, 1]  # replaced: the docs they had
    assert docs[1] not in (1, 2)  # a new object: a doc never used in its table (PostgreSQL's sequence may skip some)
    for collection, ids in (("A", ["a1", "a2", "a3"]), ("B", ["b1"])):
        assert content(postgres, collection, ids) == content(sqlite, collection, ids)
    assert content(postgres, "A", ["a1", "a2"]) == {
        "a1": ({"title": "second a1"}, 4, 4, {"w": [0.0, 0.0, 2.0]}),
        "a2": ({"title": "a2 without vectors"}, 5, 5, {}),
    }
    assert content(postgres, "B", ["b1"])["b1"][3] == {"v": [0.0, 3.0, 0.0], "w": [1.0, 1.0, 1.0]}
    assert sorted(postgres.changes_since(0, "A") or []) == [1, 2, docs[1]]
    assert sorted(sqlite.changes_since(0, "A") or []) == [1, 2, sqlite_docs[1]]
    with psycopg.connect(os.environ["SEARCHD_DATABASE_URL"]) as db:
        # One change-log row per object written, duplicates included (as SQLite logs them).
        assert db.execute("SELECT collection, doc FROM searchd_changes ORDER BY seq").fetchall() == [
            ("A", 1), ("B", 1), ("A", 2), ("A", 1), ("A", 2), ("A", docs[1]), ("B", 1)
        ]


def test_revectorized_vectors_are_written_only_for_unchanged_objects(stores: tuple[SqliteStore, PostgresStore]) -> None:
    rows = [("a1", 4, np.asarray([5, 5, 5], dtype=np.float32)), ("a2", 99, np.asarray([6, 6, 6], dtype=np.float32)), ("zz", 1, None), ("a1", 4, np.asarray([7, 7, 7], dtype=np.float32))]
    for store in stores:
        store.put_many(FIRST)
        assert store.put_vectors_if_unchanged("A", "v#next", rows) == {"a1"}
    with psycopg.connect(os.environ["SEARCHD_DATABASE_URL"]) as db:
        ((tag,),) = db.execute("SELECT tag FROM searchd_vector_tables WHERE collection = 'A' AND name = 'v#next'").fetchall()
        ((doc, data),) = db.execute(f"SELECT doc, data FROM searchd_v{tag}").fetchall()
    assert (doc, np.frombuffer(data, dtype=np.float32).tolist()) == (1, [7.0, 7.0, 7.0])  # the last row for a doc


@pytest.fixture
def _pgvector(pg_cluster: pgcluster.Cluster) -> None:
    if pg_cluster.admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
        if pgcluster.required():
            pytest.fail("pgvector is required here (CI or SEARCHD_REQUIRE_POSTGRES=1) but not installed: bash scripts/pgvector.sh")
        pytest.skip("pgvector is not installed: bash scripts/pgvector.sh (as root) builds and installs it")


@pytest.mark.usefixtures("_pgvector")
def test_a_batch_fills_pgvector_embeddings_and_token_rows(stores: tuple[SqliteStore, PostgresStore]) -> None:
    _, postgres = stores
    single = postgres.database_index("A", "v", IndexSpec(type="pgvector", distance=Distance.L2_SQUARED), 3)
    tokens = postgres.database_index("A", "w", IndexSpec(type="pgvector", distance=Distance.DOT, multivector=True), 3)
    postgres.put_many([
        obj("A", "a1", "a1", 1, v=[1, 0, 0], w=[[1, 0, 0], [0, 1, 0]]),
        obj("A", "a2", "a2", 2, v=[0, 2, 0], w=[[0, 0, 1]]),
        obj("A", "a3", "a3", 3, v=[0, 0, 3, 9]),  # another length: stored, not indexed
        obj("A", "a1", "a1 again", 4, v=[0, 0, 1], w=[[2, 0, 0]]),
    ])
    assert single.search(np.asarray([0, 0, 1.5], dtype=np.float32), 5, 40) == [(1, 0.25), (2, 6.25)]
    assert sorted(single.docs().tolist()) == sorted(tokens.docs().tolist()) == [1, 2]
    postgres.put_many([obj("A", "a2", "a2 without w", 5, v=[0, 2, 0])])
    with psycopg.connect(os.environ["SEARCHD_DATABASE_URL"]) as db:
        ((tag,),) = db.execute("SELECT tag FROM searchd_vector_tables WHERE collection = 'A' AND name = 'w'").fetchall()
        assert db.execute(f"SELECT doc, token, embedding::text FROM searchd_v{tag}_tokens ORDER BY doc, token").fetchall() == [(1, 0, "[2,0,0]")]
    assert tokens.search(np.asarray([[1, 0, 0]], dtype=np.float32), 5, 40) == [(1, -2.0)]


def test_staged_vectors_are_promoted_only_once_other_replicas_writes_are_applied(tmp_path: Path) -> None:
    url = os.environ["SEARCHD_DATABASE_URL"]
    with PostgresStore(url, tmp_path / "leader") as leader, PostgresStore(url, tmp_path / "other") as other:
        leader.put_many([obj("A", "a1", "a1", 1, v=[1, 0, 0])])
        leader.put_vectors_if_unchanged("A", "v#next", [("a1", 1, np.asarray([0, 1], dtype=np.float32))])
        leader.replication().applied = leader.write_seq()  # its follower is up to date
        other.put_many([obj("A", "a2", "a2 from another replica", 2, v=[0, 0, 1])])  # not applied by the leader yet
        with pytest.raises(OthersAhead, match="another replica wrote to A"):
            leader.promote_vectors("A", "v#next", "v")
        assert leader.has_vectors("A", "v#next")  # nothing promoted
        leader.put_many([obj("A", "a3", "a3", 3, v=[1, 1, 1])])  # its own writes never hold a promotion back
        leader.replication().applied = other.write_seq()  # now it has applied the other replica's write
        leader.promote_vectors("A", "v#next", "v")
        assert content(leader, "A", ["a1"])["a1"][3] == {"v": [0.0, 1.0]} and not leader.has_vectors("A", "v#next")
