"""The PostgreSQL store itself: its change log, filters as parameters, the URL kept secret, the cache in the database.

The API, filter, reload and crash suites run on PostgreSQL too (their modules parametrize
``storage_backend``); these tests hold what only this backend has.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from searchd.config import load_spec
from searchd.config.revision import redacted
from searchd.config.spec import DATABASE_URL_ENV, PropertyType, StorageBackend, StorageSpec
from searchd.errors import ConfigError, StorageError
from searchd.modules.cache import EmbeddingCache
from searchd.modules.registry import default_registry
from searchd.storage import StoredObject
from searchd.storage.backends import effective_storage
from searchd.storage.datadir import lock_data_dir
from searchd.storage.pgerrors import safe_url
from searchd.storage.pgwhere import like_pattern, to_sql
from searchd.storage.postgres import PostgresStore
from searchd.storage.postgres_cache import PostgresCacheTable
from searchd.where import Combination, Condition
from tests.pgcluster import Cluster


@pytest.fixture
def database(pg_cluster: Cluster) -> Iterator[str]:
    name = pg_cluster.new_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture
def store(database: str, tmp_path: Path) -> Iterator[PostgresStore]:
    with PostgresStore(database, tmp_path / "data") as opened:
        yield opened


def obj(object_id: str, title: str, vector: list[float] | None = None) -> StoredObject:
    vectors = {"text": np.array(vector, dtype=np.float32)} if vector else {}
    return StoredObject("Doc", object_id, {"title": title}, vectors, 1, 1)


def test_the_change_log_gives_each_write_a_sequence_that_another_connection_reads(store: PostgresStore, database: str, tmp_path: Path) -> None:
    assert store.write_seq() == 0
    docs = store.put_many([obj("a", "one", [1, 0]), obj("b", "two", [0, 1])])
    first = store.write_seq()
    assert first == 2 and store.changes_since(0, "Doc") == sorted(docs)
    assert store.delete("Doc", "a") == docs[0]
    # Another process (a replica, later) reads the same log from the database.
    with PostgresStore(database, None) as other:
        assert other.write_seq() == first + 1
        assert other.changes_since(first, "Doc") == [docs[0]]
        got = other.get("Doc", "b")
        assert got is not None and (got.id, got.properties, got.doc) == ("b", {"title": "two"}, docs[1])
        assert list(got.vectors) == ["text"] and got.vectors["text"].tolist() == [0.0, 1.0]
    store.trim_changes(first)
    assert store.changes_since(first - 1, "Doc") is None  # trimmed past it: the index rebuilds
    assert store.changes_since(first, "Doc") == [docs[0]]
    store.trim_changes(first + 1)
    assert store.write_seq() == first + 1  # an emptied log still knows its sequence


def test_a_restarted_store_keeps_docs_vectors_and_the_applied_spec(database: str, tmp_path: Path) -> None:
    with PostgresStore(database, tmp_path / "data") as store:
        (doc,) = store.put_many([obj("a", "one", [0.5, 0.25])])
        store.index_properties("Doc", ["title"])
    with PostgresStore(database, tmp_path / "data") as store:
        found, matrix = store.vector_matrix("Doc", "text", [doc])
        assert found == [doc] and np.array_equal(np.asarray(matrix), np.array([[0.5, 0.25]], dtype=np.float32))
        assert store.load_applied() is None
        with psycopg.connect(database) as db:
            indexes = {r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE indexname LIKE 'searchd_o%%__title'")}
        assert len(indexes) == 1


def test_the_data_directory_lock_still_stops_a_second_server(store: PostgresStore, database: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as refused:
        PostgresStore(database, tmp_path / "data")
    assert str(refused.value).startswith(f"data directory {tmp_path / 'data'} is in use by another searchd process")


def test_filter_values_travel_as_parameters_only() -> None:
    hostile = "x'); DROP TABLE searchd_changes; --"
    sql, params = to_sql(
        Combination("Or", (Condition("title", "Equal", hostile, PropertyType.TEXT), Condition("tags", "ContainsAny", (hostile, "b"), PropertyType.TEXT_ARRAY)))
    )
    assert hostile not in sql and "DROP" not in sql
    assert params == [hostile, [hostile, "b"]]


def test_filters_with_hostile_values_match_nothing_and_change_nothing(store: PostgresStore) -> None:
    store.put_many([obj("a", "x'); DROP TABLE searchd_changes; --"), obj("b", "100%_sure")])
    assert store.docs_matching("Doc", Condition("title", "Equal", "x'); DROP TABLE searchd_changes; --", PropertyType.TEXT)) == [1]
    # Like's own wildcards are * and ?: % and _ in the pattern are plain characters.
    assert like_pattern("100%_*") == "100\\%\\_%"
    assert store.docs_matching("Doc", Condition("title", "Like", "100%_*", PropertyType.TEXT)) == [2]
    assert store.docs_matching("Doc", Condition("title", "Like", "1%", PropertyType.TEXT)) == []
    assert store.write_seq() == 2


def test_the_url_and_its_password_never_show_in_errors(pg_cluster: Cluster, tmp_path: Path) -> None:
    url = f"postgresql://searchd:hunter2secret@/no_such_db?host={pg_cluster.socket}&port=5432"
    with pytest.raises(StorageError) as failed:
        PostgresStore(url, tmp_path / "data")
    message = f"{failed.value} {failed.value.hint}"
    assert "hunter2secret" not in message
    assert message.startswith(f"cannot connect to the object store at postgresql://searchd@{pg_cluster.socket}/no_such_db: ")
    assert safe_url(url) == f"postgresql://searchd@{pg_cluster.socket}/no_such_db"
    assert safe_url("postgresql://u:pw@db.example:6543/prod?sslmode=require") == "postgresql://u@db.example:6543/prod"
    lock_data_dir(tmp_path / "data").close()  # the failed open left the data directory to the next server


def test_the_embedding_cache_keeps_vectors_in_the_database(database: str) -> None:
    cache = EmbeddingCache(None, PostgresCacheTable(database))
    one, many = np.array([0.5, 1.5], dtype=np.float32), np.arange(6, dtype=np.float32).reshape(3, 2)
    cache.put_many({b"k1": one, b"k2": many})
    cache.close()
    again = EmbeddingCache(None, PostgresCacheTable(database))  # a restart (or another replica) finds them
    found = again.get_many([b"k1", b"k2", b"missing"])
    assert set(found) == {b"k1", b"k2"} and np.array_equal(found[b"k1"], one) and np.array_equal(found[b"k2"], many)
    assert again.stats().as_dict() == {"entries": 2, "hits": 2, "misses": 1, "hitRate": 0.6667}
    again.close()


def test_the_database_url_comes_from_the_config_or_searchd_database_url() -> None:
    configured = StorageSpec(StorageBackend.POSTGRES, "postgresql://a/db")
    assert effective_storage(configured, {DATABASE_URL_ENV: "postgresql://b/db"}) == configured
    assert effective_storage(StorageSpec(), {DATABASE_URL_ENV: "postgresql://b/db"}) == StorageSpec(StorageBackend.POSTGRES, "postgresql://b/db")
    assert effective_storage(StorageSpec(), {}) == StorageSpec()


STORAGE_CASES = [
    ("{backend: postgres}", {}, "the postgres backend needs a url", "add url: ${DATABASE_URL} and export DATABASE_URL=postgresql://user@host:5432/dbname"),
    (
        "{backend: postgres, url: 'postgresql://u:hunter2secret@db/x'}",
        {},
        "secrets are never written in the config",
        "write it as an environment reference, e.g. url: ${MY_SECRET}",
    ),
    (
        "{backend: postgres, url: '${DATABASE_URL}'}",
        {"DATABASE_URL": "mysql://u:hunter2secret@db/x"},
        "the database URL does not start with postgresql:// (its value is not shown: it may hold a password)",
        "export it as postgresql://user:password@host:5432/dbname",
    ),
    (
        "{url: '${DATABASE_URL}'}",
        {"DATABASE_URL": "postgresql://u:hunter2secret@db/x"},
        "a url is only read by the postgres backend",
        "add backend: postgres, or remove the url (SQLite lives in the data directory)",
    ),
]


@pytest.mark.parametrize(("storage", "environ", "message", "hint"), STORAGE_CASES)
def test_a_wrong_storage_block_is_refused_without_showing_the_url(tmp_path: Path, storage: str, environ: dict[str, str], message: str, hint: str) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text(f"server:\n  storage: {storage}\ncollections:\n  - name: A\n    properties: []\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_spec(config, default_registry(), environ=environ)
    (issue,) = refused.value.issues
    assert (issue.message, issue.hint) == (message, hint)
    assert "hunter2secret" not in str(refused.value)


def test_the_storage_url_is_redacted_in_the_applied_spec(tmp_path: Path) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text("server:\n  storage: {backend: postgres, url: '${DATABASE_URL}'}\ncollections:\n  - name: A\n    properties: []\n", encoding="utf-8")
    spec = load_spec(config, default_registry(), environ={"DATABASE_URL": "postgresql://u:hunter2secret@db/x"})
    assert spec.server.storage == StorageSpec(StorageBackend.POSTGRES, "postgresql://u:hunter2secret@db/x")
    assert "hunter2secret" not in repr(spec) and "hunter2secret" not in repr(redacted(spec))
    assert redacted(spec).server.storage.url != spec.server.storage.url


def _run_without_postgres(**environ: str) -> subprocess.CompletedProcess[str]:
    """Run one PostgreSQL test in a child pytest on a machine where PostgreSQL is not installed (PG_BIN points nowhere)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "SEARCHD_REQUIRE_POSTGRES", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")}
    env.update(PG_BIN="/nonexistent/postgresql/bin", **environ)
    test = f"tests/{Path(__file__).name}::test_the_embedding_cache_keeps_vectors_in_the_database"
    return subprocess.run(
        [sys.executable, "-m", "pytest", test, "-rs", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=Path(__file__).parent.parent, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_without_postgresql_its_tests_skip_saying_how_to_enable_them() -> None:
    done = _run_without_postgres()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert "PostgreSQL is not installed (/nonexistent/postgresql/bin/initdb not found): apt-get install postgresql-15" in done.stdout


@pytest.mark.parametrize("required", [{"CI": "true"}, {"SEARCHD_REQUIRE_POSTGRES": "1"}])
def test_in_ci_a_missing_postgresql_fails_its_tests(required: dict[str, str]) -> None:
    done = _run_without_postgres(**required)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PostgreSQL is required here (CI or SEARCHD_REQUIRE_POSTGRES=1): PostgreSQL is not installed" in done.stdout
