"""Nothing a query or a write waits on runs on the event loop: health probes answer while it waits.

Each test holds one blocking step (an index search, a filter, a store read, a write) on a
threading.Event, sends a request that reaches it, and probes /v1/.well-known/live while the
step is held.  If the step ran on the event loop, the probe could not be answered until the
event is set, and the test would hang until its timeout instead of passing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from searchd.engine import Engine
from searchd.query import aggregate as aggregate_module
from searchd.query.aggregate import Group
from searchd.storage import SqliteStore
from tests.conftest import ClientFactory

CONFIG = {
    "collections": [
        {
            "name": "Doc",
            "properties": [{"name": "title", "type": "TEXT"}, {"name": "n", "type": "INT"}],
            "vectors": {"v": {"vectorizer": {"module": "none", "dimensions": 8}}},
        }
    ]
}
VECTORS = np.random.default_rng(3).normal(size=(40, 8))
HELD_S = 30.0  # a generous bound: a held step is released as soon as the probe has answered


@pytest.fixture
def client(write_config: Callable[..., Path], client_factory: ClientFactory) -> TestClient:
    client = client_factory(write_config(yaml.safe_dump(CONFIG)))
    objects = [
        {"class": "Doc", "id": f"00000000-0000-4000-8000-{i:012d}", "properties": {"title": f"bread number {i}", "n": i}, "vector": VECTORS[i].tolist()}
        for i in range(40)
    ]
    assert client.post("/v1/batch/objects", json={"objects": objects}).status_code == 200
    return client


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def held(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> tuple[threading.Event, threading.Event]:
    """Make ``owner.name`` wait for a release; returns (reached, release)."""
    reached, release = threading.Event(), threading.Event()
    original = getattr(owner, name)

    def waiting(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        assert release.wait(HELD_S), "the held step was never released"
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, waiting)
    return reached, release


def probe_while_held(client: TestClient, pool: ThreadPoolExecutor, reached: threading.Event, release: threading.Event, request: Callable[[], Any]) -> Any:
    pending: Future[Any] = pool.submit(request)
    try:
        assert reached.wait(HELD_S), "the request never reached the held step"
        assert client.get("/v1/.well-known/live").status_code == 200  # answered while the step is held
        assert not pending.done()
    finally:
        release.set()
    return pending.result(timeout=HELD_S)


QUERY = f"{{ Get {{ Doc(nearVector: {{vector: {VECTORS[5].tolist()}}}, limit: 3) {{ title _additional {{ id }} }} }} }}"


@pytest.mark.parametrize(
    "owner,name,query",
    [
        (Engine, "search_hits", QUERY),
        # A text pattern goes to a worker (a small numeric filter is answered on the loop: see the test below).
        (Engine, "allowed", QUERY.replace("limit: 3", 'limit: 3, where: {path: ["title"], operator: Like, valueText: "bread*"}')),
        (Engine, "objects", QUERY),
        (SqliteStore, "list_objects", "{ Get { Doc(limit: 5) { title } } }"),
        (Engine, "keyword_index", '{ Get { Doc(bm25: {query: "bread"}, limit: 3) { title } } }'),
        (SqliteStore, "get_many", '{ Get { Doc(nearObject: {id: "00000000-0000-4000-8000-000000000005"}, limit: 3) { title } } }'),
        (Engine, "count", '{ Aggregate { Doc(where: {path: ["n"], operator: LessThan, valueInt: 30}) { meta { count } } } }'),
        # An Aggregate's values are aggregated, and grouped, in a worker too (thousands of values per property).
        (Group, "aggregate", "{ Aggregate { Doc { n { mean } title { topOccurrences { value } } } } }"),
        (aggregate_module, "_groups", '{ Aggregate { Doc(groupBy: ["n"]) { meta { count } } } }'),
    ],
)
def test_a_query_waiting_on_a_blocking_step_leaves_probes_answered(
    client: TestClient, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, query: str
) -> None:
    reached, release = held(monkeypatch, owner, name)
    response = probe_while_held(client, pool, reached, release, lambda: client.post("/v1/graphql", json={"query": query}))
    assert response.status_code == 200 and "errors" not in response.json(), response.text


def test_a_write_waiting_on_the_store_leaves_probes_answered(client: TestClient, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    reached, release = held(monkeypatch, SqliteStore, "put_many")
    body = {"class": "Doc", "id": "00000000-0000-4000-8000-000000000100", "properties": {"title": "late", "n": 100}, "vector": [0.0] * 8}
    response = probe_while_held(client, pool, reached, release, lambda: client.post("/v1/objects", json=body))
    assert response.status_code == 200, response.text
    assert client.get("/v1/objects/Doc/00000000-0000-4000-8000-000000000100").json()["properties"]["n"] == 100


def test_a_batch_being_checked_leaves_probes_answered(client: TestClient, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    reached, release = held(monkeypatch, Engine, "draft")
    body = {"objects": [{"class": "Doc", "id": "00000000-0000-4000-8000-000000000101", "properties": {"title": "batch", "n": 101}, "vector": [0.0] * 8}]}
    response = probe_while_held(client, pool, reached, release, lambda: client.post("/v1/batch/objects", json=body))
    assert response.status_code == 200 and response.json()[0]["result"]["status"] == "SUCCESS", response.text


def test_a_rest_read_waiting_on_the_store_leaves_probes_answered(client: TestClient, pool: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch) -> None:
    reached, release = held(monkeypatch, SqliteStore, "list_objects")
    response = probe_while_held(client, pool, reached, release, lambda: client.get("/v1/objects?class=Doc&limit=3"))
    assert response.status_code == 200 and len(response.json()["objects"]) == 3


def test_a_small_numeric_filter_is_answered_on_the_loop_with_the_same_docs(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two comparisons on an INT column cost less than a worker hop: Engine.allowed (the worker's way) is not called."""
    where = 'where: {operator: And, operands: [{path: ["n"], operator: GreaterThanEqual, valueInt: 10}, {path: ["n"], operator: LessThan, valueInt: 14}]}'
    query = f"{{ Get {{ Doc({where}, nearVector: {{vector: {VECTORS[0].tolist()}}}, limit: 10) {{ n }} }} }}"
    expected = sorted(row["n"] for row in client.post("/v1/graphql", json={"query": query}).json()["data"]["Get"]["Doc"])
    assert expected == [10, 11, 12, 13]

    calls: list[str] = []
    allowed = Engine.allowed

    def recorded(self: Engine, collection: str, where: Any) -> Any:
        calls.append(collection)
        return allowed(self, collection, where)

    monkeypatch.setattr(Engine, "allowed", recorded)
    assert sorted(row["n"] for row in client.post("/v1/graphql", json={"query": query}).json()["data"]["Get"]["Doc"]) == expected
    assert calls == []
    text = query.replace(where, 'where: {path: ["title"], operator: Equal, valueText: "bread number 3"}')
    assert [row["n"] for row in client.post("/v1/graphql", json={"query": text}).json()["data"]["Get"]["Doc"]] == [3]
    assert calls == ["Doc"]  # text goes the worker's way
