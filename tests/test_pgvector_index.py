"""The pgvector index type: HNSW inside PostgreSQL, through the real server, against numpy and the in-memory indexes.

Runs on a throwaway cluster (tests/pgcluster.py) with the vector extension; skipped with a message
where pgvector is not installed (scripts/pgvector.sh installs it), failing instead in CI or with
SEARCHD_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from starlette.testclient import TestClient

from searchd.config import load_spec
from searchd.config.spec import IndexSpec
from searchd.errors import ConfigError
from searchd.index import pgvector as pgvector_index
from searchd.modules import default_registry
from tests import pgcluster
from tests.conftest import ClientFactory, wait_for
from tests.test_e2e_server import Server, child_env, free_port, searchd_module, wait_ready

pytestmark = pytest.mark.parametrize("storage_backend", ["postgres"], indirect=True)

DIMS = 12
HOW_TO_ENABLE = "bash scripts/pgvector.sh (as root) builds and installs pgvector for PostgreSQL 15"


@pytest.fixture(autouse=True)
def _pgvector(pg_cluster: pgcluster.Cluster) -> None:
    if pg_cluster.admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
        if pgcluster.required():
            pytest.fail(f"pgvector is required here (CI or SEARCHD_REQUIRE_POSTGRES=1) but not installed: {HOW_TO_ENABLE}")
        pytest.skip(f"pgvector is not installed: {HOW_TO_ENABLE}")


def config(index: str, mem_index: str = "{type: hnsw, distance: cosine, ef: 200}", dims: int = DIMS) -> str:
    """Two named vectors over the same data: ``pg`` (the index under test) and ``mem`` (an in-memory reference)."""
    return textwrap.dedent(
        f"""\
        server:
          storage: {{backend: postgres, url: "${{SEARCHD_DATABASE_URL}}"}}
        collections:
          - name: Doc
            properties:
              - {{name: title, type: TEXT}}
              - {{name: bucket, type: INT}}
            vectors:
              pg:
                vectorizer: {{module: none, dimensions: {dims}}}
                index: {index}
              mem:
                vectorizer: {{module: none, dimensions: {dims}}}
                index: {mem_index}
        """
    )


# A real server's client, or the in-process one (starlette's TestClient is an httpx2 client where httpx2 is installed).
Client = httpx.Client | TestClient


def uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def put(client: Client, vectors: np.ndarray | list[np.ndarray], start: int = 0) -> None:
    objects = [
        {"class": "Doc", "id": uuid(start + i), "properties": {"title": f"doc {start + i}", "bucket": (start + i) % 100}, "vectors": {"pg": v.tolist(), "mem": v.tolist()}}
        for i, v in enumerate(vectors)
    ]
    for at in range(0, len(objects), 500):
        results = client.post("/v1/batch/objects", json={"objects": objects[at : at + 500]}).json()
        assert [r["result"].get("status") for r in results] == ["SUCCESS"] * len(objects[at : at + 500]), results[:2]


def near(client: Client, target: str, query: np.ndarray, limit: int = 10, where: str = "") -> list[tuple[str, float]]:
    """(id, distance) of a nearVector search on one named vector."""
    clause = f", where: {where}" if where else ""
    text = f'query($v: Vector!) {{ Get {{ Doc(nearVector: {{vector: $v, targetVectors: ["{target}"]}}, limit: {limit}{clause}) {{ _additional {{ id distance }} }} }} }}'
    response = client.post("/v1/graphql", json={"query": text, "variables": {"v": query.tolist()}})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body["errors"]
    return [(h["_additional"]["id"], h["_additional"]["distance"]) for h in body["data"]["Get"]["Doc"]]


def reference(vectors: np.ndarray, query: np.ndarray, metric: str, allowed: np.ndarray | None = None, limit: int = 10) -> list[tuple[str, float]]:
    """The exact answer in numpy, in searchd's distance convention (ties by id)."""
    if metric == "cosine":
        rows = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        scores = 1.0 - rows @ (query / np.linalg.norm(query))
    elif metric == "dot":
        scores = -(vectors @ query)
    else:
        scores = ((vectors - query) ** 2).sum(axis=1)
    docs = np.arange(len(vectors)) if allowed is None else np.flatnonzero(allowed)
    order = sorted(docs.tolist(), key=lambda i: (float(scores[i]), uuid(i)))[:limit]
    return [(uuid(i), float(scores[i])) for i in order]


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((300, DIMS)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2-squared"])
def test_results_match_numpy_and_the_hnsw_index(client_factory: ClientFactory, write_config: Callable[..., Path], data: np.ndarray, metric: str) -> None:
    path = write_config(config(f"{{type: pgvector, distance: {metric}, ef: 200}}", f"{{type: hnsw, distance: {metric}, ef: 200}}"))
    client = client_factory(path)
    put(client, data)
    for query in np.random.default_rng(8).standard_normal((5, DIMS)).astype(np.float32):
        expected = reference(data, query, metric)
        pg, mem = near(client, "pg", query), near(client, "mem", query)
        assert [i for i, _ in pg] == [i for i, _ in expected] == [i for i, _ in mem]
        assert [d for _, d in pg] == pytest.approx([d for _, d in expected], abs=1e-5)
        assert [d for _, d in pg] == pytest.approx([d for _, d in mem], abs=1e-5)


@pytest.mark.parametrize("path_taken", ["iterative scan", "exact by doc"])
@pytest.mark.parametrize("share", [1, 30, 90])
def test_filtered_search_returns_limit_hits(
    client_factory: ClientFactory, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, share: int, path_taken: str
) -> None:
    # 2,000 objects; bucket = n % 100, so bucket < share lets through share % of them.
    monkeypatch.setattr(pgvector_index, "narrow", lambda allowed, k, objects: path_taken == "exact by doc")
    vectors = np.random.default_rng(share).standard_normal((2000, DIMS)).astype(np.float32)
    client = client_factory(write_config(config("{type: pgvector, distance: cosine, ef: 40}")))
    put(client, vectors)
    allowed = (np.arange(len(vectors)) % 100) < share
    for query in np.random.default_rng(9).standard_normal((4, DIMS)).astype(np.float32):
        found = near(client, "pg", query, 10, f'{{path: ["bucket"], operator: LessThan, valueInt: {share}}}')
        expected = reference(vectors, query, "cosine", allowed)
        assert len(found) == 10
        assert all(allowed[int(i[-12:])] for i, _ in found)
        assert [d for _, d in found] == sorted(d for _, d in found)
        recall = len({i for i, _ in found} & {i for i, _ in expected}) / 10
        assert recall >= (1.0 if path_taken == "exact by doc" else 0.8), (share, recall)
        if path_taken == "exact by doc":
            assert [d for _, d in found] == pytest.approx([d for _, d in expected], abs=1e-5)


def test_narrow_filters_are_exact_scans_broad_ones_iterative_scans() -> None:
    assert pgvector_index.narrow(200, 10, 20_000)  # 1 %
    assert not pgvector_index.narrow(6_000, 10, 20_000)  # 30 %
    assert pgvector_index.narrow(1_300, 10, 20_000) and not pgvector_index.narrow(1_400, 10, 20_000)


def test_multivector_maxsim_equals_the_in_memory_multivector_index(client_factory: ClientFactory, write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    documents = [rng.standard_normal((int(rng.integers(2, 6)), 8)).astype(np.float32) for _ in range(40)]
    path = write_config(config("{type: pgvector, distance: cosine, multivector: true}", "{type: multivector, distance: cosine}", dims=8))
    client = client_factory(path)
    put(client, documents)
    for _ in range(4):
        query = rng.standard_normal((3, 8)).astype(np.float32)
        pg, mem = near(client, "pg", query, 8), near(client, "mem", query, 8)
        assert [i for i, _ in pg] == [i for i, _ in mem]
        assert [d for _, d in pg] == pytest.approx([d for _, d in mem], abs=1e-5)
        q = query / np.linalg.norm(query, axis=1, keepdims=True)
        naive = sorted((-float(sum((q @ (d / np.linalg.norm(d, axis=1, keepdims=True)).T).max(axis=1))), uuid(n)) for n, d in enumerate(documents))[:8]
        assert [i for i, _ in pg] == [i for _, i in naive]
    # A filter goes into the same statement: only the allowed documents are scored (exactly by doc, or through the token index).
    found = near(client, "pg", documents[5], 5, '{path: ["bucket"], operator: Equal, valueInt: 5}')
    assert [i for i, _ in found] == [uuid(5)]
    where = '{path: ["bucket"], operator: LessThan, valueInt: 20}'
    monkeypatch.setattr(pgvector_index, "narrow", lambda allowed, k, objects: False)
    through_tokens, in_memory = near(client, "pg", documents[3], 5, where), near(client, "mem", documents[3], 5, where)
    assert [i for i, _ in through_tokens] == [i for i, _ in in_memory] and len(through_tokens) == 5
    assert [d for _, d in through_tokens] == pytest.approx([d for _, d in in_memory], abs=1e-5)


def test_deletes_and_updates_are_visible_at_once(client_factory: ClientFactory, write_config: Callable[..., Path], data: np.ndarray) -> None:
    client = client_factory(write_config(config("{type: pgvector, distance: l2-squared}")))
    put(client, data[:50])
    target = data[7]
    assert near(client, "pg", target, 1)[0] == pytest.approx((uuid(7), 0.0), abs=1e-6)  # approx compares the (string) id exactly
    assert client.delete(f"/v1/objects/Doc/{uuid(7)}").status_code == 204
    assert uuid(7) not in [i for i, _ in near(client, "pg", target, 50)]
    moved = data[20] + 0.5
    response = client.put(f"/v1/objects/Doc/{uuid(20)}", json={"class": "Doc", "properties": {"title": "moved", "bucket": 20}, "vectors": {"pg": moved.tolist(), "mem": moved.tolist()}})
    assert response.status_code == 200, response.text
    assert near(client, "pg", moved, 1)[0] == pytest.approx((uuid(20), 0.0), abs=1e-5)
    assert len(near(client, "pg", target, 100)) == 49
    assert index_vectors(client) == {"pg": 49, "mem": 49}


def index_vectors(client: Client) -> dict[str, int]:
    """searchd_index_vectors of the Doc collection, by vector, from /metrics."""
    response = client.get("/metrics")
    assert response.status_code == 200
    prefix = 'searchd_index_vectors{collection="Doc",vector="'
    return {line[len(prefix) :].split('"')[0]: int(float(line.rsplit(" ", 1)[1])) for line in response.text.splitlines() if line.startswith(prefix)}


class Database:
    """A pgvector table's stand-in: the docs it holds when an index opens, and nothing else (a count reads no rows)."""

    def __init__(self, docs: list[int]) -> None:
        self.opened = np.asarray(docs, dtype=np.int64)

    def docs(self) -> np.ndarray:
        return self.opened

    def search(self, query: np.ndarray, k: int, ef: int, where: Any = None, docs: Any = None, candidates: int = 0) -> list[tuple[int, float]]:
        raise AssertionError("not searched here")

    def contains(self, doc: int) -> bool:
        raise AssertionError("not asked here")


@pytest.mark.parametrize("multivector", [False, True])
def test_the_index_size_is_kept_from_the_writes_not_counted_in_the_database(multivector: bool) -> None:
    index = pgvector_index.PgVectorIndex(IndexSpec(type="pgvector", multivector=multivector), 3, Database([1, 2, 5]))
    assert len(index) == 3
    one = np.ones((2, 3) if multivector else 3, dtype=np.float32)
    index.upsert_many([2, 7, 7, 300], [one, one, one, one])  # a replace, a new doc (twice in the batch), a doc past the end
    assert len(index) == 5
    index.upsert(5, np.ones(4, dtype=np.float32))  # another length: stored, not indexed (the store gives it no embedding)
    assert len(index) == 4
    index.delete(1)
    index.delete(1)
    index.delete(10_000)
    assert len(index) == 3
    index.upsert(1, np.zeros((0, 3), dtype=np.float32) if multivector else one)
    assert len(index) == (3 if multivector else 4)  # a matrix with no rows has no token rows


def test_a_second_server_sees_the_first_servers_writes_with_no_follower(
    client_factory: ClientFactory, write_config: Callable[..., Path], data: np.ndarray, tmp_path: Path
) -> None:
    path = write_config(config("{type: pgvector, distance: cosine}"))
    first = client_factory(path)
    put(first, data[:100])
    port = free_port()
    args = [*searchd_module(), "serve", str(path), "--data", str(tmp_path / "second"), "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0"]
    out, err = open(tmp_path / "second.out", "wb"), open(tmp_path / "second.err", "wb")  # noqa: SIM115 (the server holds them)
    second = Server(subprocess.Popen(args, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=tmp_path, env=child_env()), port, tmp_path / "second.out", tmp_path / "second.err", [out, err])
    try:
        wait_ready(second)
        with httpx.Client(base_url=second.url, timeout=30, trust_env=False) as http:
            assert near(http, "pg", data[3], 1)[0][0] == uuid(3)
            put(first, data[100:150], start=100)  # written after the second server started: no follower tells it
            assert near(http, "pg", data[120], 1)[0] == pytest.approx((uuid(120), 0.0), abs=1e-5)
            assert first.delete(f"/v1/objects/Doc/{uuid(3)}").status_code == 204
            assert uuid(3) not in [i for i, _ in near(http, "pg", data[3], 20)]
            put(http, data[150:160], start=150)  # and the other way round
            # The size in /metrics follows the other server's writes (through the follower), as the in-memory index does.
            wait_for(lambda: index_vectors(http) == {"pg": 159, "mem": 159}, "the second server's index sizes")
        assert near(first, "pg", data[155], 1)[0] == pytest.approx((uuid(155), 0.0), abs=1e-5)
        wait_for(lambda: index_vectors(first) == {"pg": 159, "mem": 159}, "the first server's index sizes")
    finally:
        second.stop()


def hnsw_indexes(table_like: str = "searchd_v%") -> list[str]:
    """The definitions of the HNSW indexes searchd made in the test's database."""
    with psycopg.connect(os.environ["SEARCHD_DATABASE_URL"], autocommit=True) as db:
        return sorted(str(r[0]) for r in db.execute("SELECT indexdef FROM pg_indexes WHERE tablename LIKE %s AND indexdef LIKE '%%USING hnsw%%'", (table_like,)))


def finished(client: Client, kind: str) -> Callable[[], dict[str, Any] | None]:
    def done() -> dict[str, Any] | None:
        rebuilds = [r for r in client.get("/v1/config/status").json()["rebuilds"] if r["kind"] == kind and r["target"] == "pg"]
        assert not any(r["state"] == "failed" for r in rebuilds), rebuilds
        return next((r for r in rebuilds if r["state"] == "done"), None)

    return done


def test_search_settings_change_in_place_and_build_settings_rebuild(client_factory: ClientFactory, write_config: Callable[..., Path], data: np.ndarray) -> None:
    path = write_config(config("{type: pgvector, distance: cosine, ef: 40}"))
    client = client_factory(path)
    put(client, data)
    query = data[42]
    (built,) = hnsw_indexes()
    assert "vector_cosine_ops" in built and "m='16'" in built and "ef_construction='128'" in built
    path.write_text(config("{type: pgvector, distance: cosine, ef: 100}"), encoding="utf-8")
    reload = client.post("/v1/config/reload").json()
    assert reload["result"] == "applied" and reload["plan"]["reindex"] == [] and reload["plan"]["revectorize"] == [], reload
    assert hnsw_indexes() == [built]  # ef is a search setting: the index stays
    assert near(client, "pg", query, 1)[0][0] == uuid(42)
    path.write_text(config("{type: pgvector, distance: cosine, ef: 100, maxConnections: 8, efConstruction: 32}"), encoding="utf-8")
    reload = client.post("/v1/config/reload").json()
    assert reload["result"] == "applied" and reload["plan"]["reindex"] == [{"collection": "Doc", "vector": "pg"}], reload
    wait_for(finished(client, "reindex"), "the pgvector reindex")
    (rebuilt,) = hnsw_indexes()
    assert "m='8'" in rebuilt and "ef_construction='32'" in rebuilt
    assert [i for i, _ in near(client, "pg", query, 10)] == [i for i, _ in reference(data, query, "cosine")]


REVECTORIZE = """
server:
  storage: {{backend: postgres, url: "${{SEARCHD_DATABASE_URL}}"}}
  reload: {{watch: false}}
collections:
  - name: Doc
    properties:
      - {{name: title, type: TEXT}}
    vectors:
      pg:
        vectorizer: {{module: text2vec-hash, dimensions: {dims}}}
        index: {{type: pgvector, distance: cosine}}
"""


def test_a_revectorization_stages_vectors_then_promotes_them_with_their_index(client_factory: ClientFactory, write_config: Callable[..., Path]) -> None:
    path = write_config(REVECTORIZE.format(dims=64))
    client = client_factory(path)
    objects = [{"class": "Doc", "id": uuid(i), "properties": {"title": f"note {i} about topic {i % 7}"}} for i in range(60)]
    assert client.post("/v1/batch/objects", json={"objects": objects}).status_code == 200
    path.write_text(REVECTORIZE.format(dims=32), encoding="utf-8")
    reload = client.post("/v1/config/reload").json()
    assert reload["result"] == "applied" and reload["plan"]["revectorize"] == [{"collection": "Doc", "vector": "pg"}], reload
    # A write while the rebuild may still run is embedded for both, and searchable in the new index once it is promoted.
    assert client.post("/v1/objects", json={"class": "Doc", "id": uuid(60), "properties": {"title": "a late note"}}).status_code == 200
    wait_for(finished(client, "re-vectorize"), "the re-vectorization")
    for i in (3, 60):
        stored = client.get(f"/v1/objects/Doc/{uuid(i)}", params={"include": "vector"}).json()
        vector = np.asarray(stored["vectors"]["pg"], dtype=np.float32)
        assert vector.shape == (32,)
        assert near(client, "pg", vector, 1)[0] == pytest.approx((uuid(i), 0.0), abs=1e-5)
    assert len(near(client, "pg", vector, 100)) == 61


def test_pgvector_is_refused_on_sqlite_with_the_line_and_a_fix(write_config: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEARCHD_DATABASE_URL", raising=False)
    text = config("{type: pgvector, distance: cosine}").replace('server:\n  storage: {backend: postgres, url: "${SEARCHD_DATABASE_URL}"}\n', "")
    path = write_config(text)
    with pytest.raises(ConfigError) as refused:
        load_spec(path, default_registry())
    (issue,) = refused.value.issues
    assert (issue.line, issue.path) == (9, "collections[0].vectors.pg.index.type")
    assert issue.message == "a pgvector index lives in PostgreSQL, but this server keeps its objects in SQLite"
    assert issue.hint == "set server.storage: {backend: postgres, url: ${DATABASE_URL}}, or use index type hnsw"


def test_a_database_without_the_extension_is_refused_with_the_line(write_config: Callable[..., Path]) -> None:
    path = write_config(config("{type: pgvector, distance: cosine, maxConnections: 120}"))
    with pytest.raises(ConfigError) as refused:
        load_spec(path, default_registry(), vector_extension="the vector extension (pgvector) is not installed on the database server")
    messages = {i.path: i.message for i in refused.value.issues}
    assert messages == {
        "collections[0].vectors.pg.index.type": "the database cannot hold a pgvector index: the vector extension (pgvector) is not installed on the database server",
        "collections[0].vectors.pg.index.maxConnections": "pgvector takes at most m = 100, not 120",
        "collections[0].vectors.pg.index.efConstruction": "pgvector needs efConstruction between 2 x maxConnections (240) and 1000, not 128",
    }
