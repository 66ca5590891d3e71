"""Issue #7: Prometheus metrics at /metrics, request ids and the structured access log.

Metrics are parsed with prometheus_client's own text parser, so what is checked is what a
Prometheus server would read.  Each server has a registry of its own: counts start at zero.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from searchd.server.observe import JsonFormatter
from tests.conftest import QUICKSTART, ClientFactory, example_objects
from tests.fakes import FakeJina, serving

WriteConfig = Callable[..., Path]

OBJECTS = example_objects(QUICKSTART.parent / "objects.jsonl")
FIRST_ID = OBJECTS[0]["id"]
OBJECT_ROUTE = "/v1/objects/{class_name}/{id}"
ADMIN_KEY = "adm-metrics-5d2c7a19e0b4f366"
READ_KEY = "rd-metrics-0e7b3f5a91c2d488"
JINA_KEY = "jina_metrics-test-key-77aa01"
HTTP = "searchd_http_request_duration_seconds"
QUERIES = "searchd_query_duration_seconds"
PROVIDERS = "searchd_vectorizer_request_duration_seconds"


def quickstart_config(write_config: WriteConfig, **server: Any) -> Path:
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {"reload": {"watch": False}, **server}
    path: Path = write_config(json.dumps(data))
    return path


@pytest.fixture
def served(write_config: WriteConfig, client_factory: ClientFactory) -> TestClient:
    client = client_factory(quickstart_config(write_config))
    response = client.post("/v1/batch/objects", json={"objects": OBJECTS})
    assert response.status_code == 200
    return client


class Scrape:
    """One GET /metrics, parsed: ``value(name, **labels)`` sums the samples whose labels include those given."""

    def __init__(self, client: TestClient, headers: dict[str, str] | None = None) -> None:
        response = client.get("/metrics", headers=headers or {})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=")  # the text exposition format
        self.text = response.text
        self.families = {f.name: f for f in text_string_to_metric_families(response.text)}

    def samples(self, name: str, **labels: str) -> list[Any]:
        return [
            s for f in self.families.values() for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float:
        return float(sum(s.value for s in self.samples(name, **labels)))


def test_metrics_are_prometheus_text_with_every_family(served: TestClient) -> None:
    served.get("/v1/meta")
    scrape = Scrape(served)
    # (prometheus_client also writes <name>_created timestamps, which the parser reads as gauges.)
    kinds = {name: family.type for name, family in scrape.families.items() if not name.endswith("_created")}
    assert kinds == {
        HTTP: "histogram",
        QUERIES: "histogram",
        PROVIDERS: "histogram",
        "searchd_config_reloads": "counter",
        "searchd_objects": "gauge",
        "searchd_index_vectors": "gauge",
        "searchd_embedding_cache_lookups": "counter",
        "searchd_embedding_cache_entries": "gauge",
        "searchd_rebuild_remaining_objects": "gauge",
        "searchd_config_drift": "gauge",
    }
    for family in scrape.families.values():
        assert family.documentation, family.name


def test_request_latency_by_route_template_method_and_status(served: TestClient) -> None:
    assert served.get(f"/v1/objects/Article/{FIRST_ID}").status_code == 200
    assert served.get(f"/v1/objects/Article/{OBJECTS[1]['id']}").status_code == 200
    assert served.get("/v1/objects/Article/00000000-0000-4000-8000-00000000dead").status_code == 404
    assert served.head(f"/v1/objects/Article/{FIRST_ID}").status_code == 204
    assert served.patch(f"/v1/objects/Article/{FIRST_ID}", json={"properties": {"rating": 5.0}}).status_code == 204
    assert served.get("/v1/nowhere/at/all").status_code == 404
    assert served.post("/v1/meta").status_code == 405
    scrape = Scrape(served)
    count = f"{HTTP}_count"
    assert scrape.value(count, route=OBJECT_ROUTE, method="GET", status="200") == 2
    assert scrape.value(count, route=OBJECT_ROUTE, method="GET", status="404") == 1
    assert scrape.value(count, route=OBJECT_ROUTE, method="HEAD", status="204") == 1
    assert scrape.value(count, route=OBJECT_ROUTE, method="PATCH", status="204") == 1
    assert scrape.value(count, route="/v1/batch/objects", method="POST", status="200") == 1
    assert scrape.value(count, route="unmatched", method="GET", status="404") == 1
    assert scrape.value(count, route="/v1/meta", method="POST", status="405") == 1
    # Buckets are cumulative and end at +Inf == count; no label carries an id (bounded cardinality).
    buckets = scrape.samples(f"{HTTP}_bucket", route=OBJECT_ROUTE, method="GET", status="200")
    assert [b.value for b in buckets] == sorted(b.value for b in buckets) and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 2
    assert scrape.value(f"{HTTP}_sum", route=OBJECT_ROUTE, method="GET", status="200") > 0
    assert FIRST_ID not in scrape.text
    assert Scrape(served).value(count, route="/metrics", method="GET", status="200") == 1


def test_requests_refused_before_routing_keep_their_route(write_config: WriteConfig, client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHD_TEST_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("SEARCHD_TEST_READ_KEY", READ_KEY)
    auth = {"apiKeys": [{"name": "ops", "key": "${SEARCHD_TEST_ADMIN_KEY}", "role": "admin"}, {"name": "dashboard", "key": "${SEARCHD_TEST_READ_KEY}"}]}
    client = client_factory(quickstart_config(write_config, auth=auth, limits={"maxBodyBytes": 2048}))
    reader = {"Authorization": f"Bearer {READ_KEY}"}
    assert client.delete(f"/v1/objects/Article/{FIRST_ID}").status_code == 401
    assert client.delete(f"/v1/objects/Article/{FIRST_ID}", headers=reader).status_code == 403
    assert client.post("/v1/graphql", content=b"x" * 4096, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 413
    scrape = Scrape(client, reader)
    count = f"{HTTP}_count"
    assert scrape.value(count, route=OBJECT_ROUTE, method="DELETE", status="401") == 1
    assert scrape.value(count, route=OBJECT_ROUTE, method="DELETE", status="403") == 1
    assert scrape.value(count, route="/v1/graphql", method="POST", status="413") == 1
    assert ADMIN_KEY not in scrape.text and READ_KEY not in scrape.text


def graphql_ok(client: TestClient, query: str) -> None:
    response = client.post("/v1/graphql", json={"query": query})
    assert response.status_code == 200 and "errors" not in response.json(), response.text


def test_query_latency_by_kind(served: TestClient) -> None:
    graphql_ok(served, '{ Get { Article(nearText: {concepts: ["bread"]}, limit: 2) { title } } }')
    graphql_ok(served, '{ Get { Article(nearText: {concepts: ["garden"]}) { title } } }')
    graphql_ok(served, '{ Get { Article(bm25: {query: "bread"}) { title } } }')
    graphql_ok(served, '{ Get { Article(hybrid: {query: "vector search", alpha: 0.5}) { title } } }')
    graphql_ok(served, "{ Get { Article(limit: 3) { title } } }")
    graphql_ok(served, f'{{ Get {{ Article(nearObject: {{id: "{FIRST_ID}"}}) {{ title }} }} }}')
    graphql_ok(served, "{ Aggregate { Article { meta { count } } } }")
    response = served.post("/v1/graphql", json={"query": "{ Get { Article(limit: 100000) { title } } }"})
    assert response.json()["errors"]
    served.post("/v1/graphql", json={"query": "{ Get { Nope { title } } }"})  # invalid: never executed, not timed
    scrape = Scrape(served)
    count = f"{QUERIES}_count"
    assert scrape.value(count, kind="nearText", outcome="ok") == 2
    assert scrape.value(count, kind="bm25", outcome="ok") == 1
    assert scrape.value(count, kind="hybrid", outcome="ok") == 1
    assert scrape.value(count, kind="list", outcome="ok") == 1
    assert scrape.value(count, kind="nearObject", outcome="ok") == 1
    assert scrape.value(count, kind="aggregate", outcome="ok") == 1
    assert scrape.value(count, kind="list", outcome="error") == 1
    assert scrape.value(count) == 8


def test_objects_and_index_sizes_per_collection(served: TestClient) -> None:
    scrape = Scrape(served)
    assert scrape.value("searchd_objects", collection="Article") == len(OBJECTS)
    assert scrape.value("searchd_index_vectors", collection="Article", vector="text") == len(OBJECTS)
    assert served.delete(f"/v1/objects/Article/{FIRST_ID}").status_code == 204
    assert served.post("/v1/objects", json={"class": "Article", "properties": {"title": "New"}}).status_code == 200
    assert served.post("/v1/objects", json={"class": "Article", "properties": {"title": "Newer"}}).status_code == 200
    scrape = Scrape(served)
    assert scrape.value("searchd_objects", collection="Article") == len(OBJECTS) + 1
    assert scrape.value("searchd_index_vectors", collection="Article", vector="text") == len(OBJECTS) + 1


def test_reload_results_are_counted(served: TestClient, write_config: WriteConfig) -> None:
    def reloads(result: str) -> float:
        return Scrape(served).value("searchd_config_reloads_total", result=result)

    applied, invalid, unchanged = reloads("applied"), reloads("invalid"), reloads("unchanged")
    assert served.post("/v1/config/reload").json()["result"] == "unchanged"
    assert reloads("unchanged") == unchanged + 1
    write_config("server: {reload: {watch: false}}\ncollections: [{name: Article, properties: [{name: title, type: NOPE}]}]\n")
    assert served.post("/v1/config/reload").status_code == 422
    assert reloads("invalid") == invalid + 1
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {"reload": {"watch": False}}
    data["collections"][0]["description"] = "Changed by a reload."
    write_config(json.dumps(data))
    assert served.post("/v1/config/reload").json()["result"] == "applied"
    assert reloads("applied") == applied + 1
    assert reloads("invalid") == invalid + 1


# -- vectorizer calls and the embedding cache ------------------------------------------------------------


@pytest.fixture(scope="module")
def jina() -> Iterator[tuple[FakeJina, str]]:
    fake = FakeJina(api_keys=[JINA_KEY])
    with serving(fake.app) as url:
        yield fake, url


def test_vectorizer_calls_by_module_and_outcome_and_cache_hits(
    jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = jina
    fake.reset()
    monkeypatch.setenv("JINAAI_APIKEY", JINA_KEY)
    caplog.set_level(logging.DEBUG)
    config = {
        "server": {"reload": {"watch": False}},
        "modules": {"text2vec-jinaai": {"baseURL": url, "apiKey": "${JINAAI_APIKEY}"}},
        "collections": [{"name": "Doc", "properties": [{"name": "title", "type": "TEXT"}], "vectors": {"v": {"vectorizer": {"module": "text2vec-jinaai"}, "index": {"type": "flat"}}}}],
    }
    client = client_factory(write_config(json.dumps(config)))
    module = "text2vec-jinaai"
    count = f"{PROVIDERS}_count"

    fake.fail_next(500)
    assert client.post("/v1/objects", json={"class": "Doc", "properties": {"title": "Sourdough starter"}}).status_code == 200
    scrape = Scrape(client)
    assert scrape.value(count, module=module, outcome="retried") == 1
    assert scrape.value(count, module=module, outcome="ok") == 1
    assert scrape.value("searchd_embedding_cache_lookups_total", result="miss") == 1
    assert scrape.value("searchd_embedding_cache_lookups_total", result="hit") == 0
    assert scrape.value("searchd_embedding_cache_entries") == 1

    # The same text again: from the cache, no provider call.
    assert client.post("/v1/objects", json={"class": "Doc", "properties": {"title": "Sourdough starter"}}).status_code == 200
    scrape = Scrape(client)
    assert scrape.value(count, module=module, outcome="ok") == 1
    assert scrape.value("searchd_embedding_cache_lookups_total", result="hit") == 1

    fake.fail_next(400)
    assert client.post("/v1/objects", json={"class": "Doc", "properties": {"title": "Refused text"}}).status_code in (422, 502)
    scrape = Scrape(client)
    assert scrape.value(count, module=module, outcome="refused") == 1
    assert scrape.value("searchd_objects", collection="Doc") == 2
    assert len(fake.requests) == 3
    for record in caplog.records:
        assert JINA_KEY not in JsonFormatter().format(record) + repr(vars(record))
    assert JINA_KEY not in scrape.text


# -- request ids and the access log -------------------------------------------------------------


def test_request_id_is_echoed_or_generated(served: TestClient) -> None:
    assert served.get("/v1/meta", headers={"X-Request-Id": "trace-42"}).headers["x-request-id"] == "trace-42"
    first = served.get("/v1/meta").headers["x-request-id"]
    second = served.get("/v1/meta").headers["x-request-id"]
    assert first != second and len(first) == 32 and int(first, 16) >= 0
    replaced = served.get("/v1/meta", headers={"X-Request-Id": "x" * 200}).headers["x-request-id"]
    assert replaced != "x" * 200 and len(replaced) == 32
    # Error answers carry it too, including those sent before routing.
    assert served.get("/v1/objects/Article/not-a-uuid", headers={"X-Request-Id": "trace-43"}).headers["x-request-id"] == "trace-43"
    assert served.get("/nowhere", headers={"X-Request-Id": "trace-44"}).headers["x-request-id"] == "trace-44"


def test_access_log_line_carries_request_id_status_and_key_name(
    write_config: WriteConfig, client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SEARCHD_TEST_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("SEARCHD_TEST_READ_KEY", READ_KEY)
    auth = {"apiKeys": [{"name": "ops", "key": "${SEARCHD_TEST_ADMIN_KEY}", "role": "admin"}, {"name": "dashboard", "key": "${SEARCHD_TEST_READ_KEY}"}]}
    client = client_factory(quickstart_config(write_config, auth=auth))
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    client.get("/v1/schema", headers={"Authorization": f"Bearer {READ_KEY}", "X-Request-Id": "req-read"})
    client.post("/v1/objects", json={"class": "Article", "properties": {"title": "x"}}, headers={"Authorization": f"Bearer {READ_KEY}", "X-Request-Id": "req-403"})
    client.post("/v1/objects", json={"class": "Article", "properties": {"title": "x"}}, headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Request-Id": "req-admin"})
    client.get("/v1/schema", headers={"Authorization": "Bearer wrong-key-123456789", "X-Request-Id": "req-401"})
    access = {r.request_id: r for r in caplog.records if r.name == "searchd.access"}  # type: ignore[attr-defined]
    assert set(access) == {"req-read", "req-403", "req-admin", "req-401"}
    expected = {"req-read": (200, "dashboard", "GET", "/v1/schema"), "req-403": (403, None, "POST", "/v1/objects"), "req-admin": (200, "ops", "POST", "/v1/objects"), "req-401": (401, None, "GET", "/v1/schema")}
    formatter = JsonFormatter()
    for request_id, (status, key, method, path) in expected.items():
        record = access[request_id]
        assert (record.status, record.key, record.method, record.path) == (status, key, method, path)  # type: ignore[attr-defined]
        line = formatter.format(record)
        assert "\n" not in line
        fields = json.loads(line)
        assert fields["request_id"] == request_id and fields["status"] == status and fields["key"] == key
        assert fields["method"] == method and fields["path"] == path and fields["logger"] == "searchd.access" and fields["level"] == "info"
        assert isinstance(fields["duration_ms"], (int, float)) and fields["duration_ms"] >= 0
        assert method in fields["message"] and str(status) in fields["message"]
        assert isinstance(fields["time"], str)
    for record in caplog.records:
        text = formatter.format(record) + repr(vars(record))
        assert ADMIN_KEY not in text and READ_KEY not in text and "wrong-key-123456789" not in text


def test_json_formatter_renders_exceptions_on_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.LogRecord("searchd.server", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    record.request_id = "abc"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    fields = json.loads(line)
    assert fields["message"] == "failed here" and fields["level"] == "error" and fields["request_id"] == "abc"
    assert "RuntimeError: boom" in fields["exception"]
    assert "status" not in fields and "key" not in fields  # only the fields a record has


def test_unexpected_error_is_500_with_the_request_id(served: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    services = served.app.state.services  # type: ignore[attr-defined]

    def broken(*args: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.engine, "get", broken)
    caplog.set_level(logging.INFO)
    response = TestClient(served.app, raise_server_exceptions=False).get(f"/v1/objects/Article/{FIRST_ID}", headers={"X-Request-Id": "req-500"})
    assert response.status_code == 500
    message = response.json()["error"][0]["message"]
    assert "RuntimeError" in message and "req-500" in message and "disk on fire" not in message
    errors = [r for r in caplog.records if r.name == "searchd.server" and r.levelno == logging.ERROR]
    assert errors and errors[0].request_id == "req-500"  # type: ignore[attr-defined]
    assert "disk on fire" in json.loads(JsonFormatter().format(errors[0]))["exception"]
    (line,) = [r for r in caplog.records if r.name == "searchd.access"]
    assert line.status == 500 and line.request_id == "req-500"  # type: ignore[attr-defined]
    assert Scrape(served).value(f"{HTTP}_count", route=OBJECT_ROUTE, method="GET", status="500") == 1


def test_unexpected_error_answer_echoes_the_request_id(served: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    services = served.app.state.services  # type: ignore[attr-defined]

    def broken(*args: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(services.engine, "get", broken)
    response = TestClient(served.app, raise_server_exceptions=False).get(f"/v1/objects/Article/{FIRST_ID}", headers={"X-Request-Id": "req-500"})
    assert response.status_code == 500
    assert response.headers.get("x-request-id") == "req-500"
