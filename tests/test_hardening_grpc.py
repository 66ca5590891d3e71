"""gRPC under the query limits (#13): BatchDelete takes a query slot, and a Filters message is refused while it is translated.

A real ``searchd serve`` child; each refusal is compared with what its GraphQL twin answers over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from weaviate.proto.v1 import aggregate_pb2, base_pb2, batch_delete_pb2, search_get_pb2, weaviate_pb2_grpc

from tests.grpc_support import running
from tests.test_e2e_server import Server

CONFIG = """\
server:
  host: 127.0.0.1
  reload: {{watch: false}}
  limits: {{queryTimeout: {timeout}}}
collections:
  - name: Note
    properties:
      - {{name: title, type: TEXT}}
      - {{name: n, type: INT}}
"""
NOTES = 30
WHERE_QUERY = "query($w: WhereInpObj) { Get { Note(where: $w) { title } } }"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int, Path]]:
    base = tmp_path_factory.mktemp("grpc-hardening")
    with running(base, config_yaml=CONFIG.format(timeout=30)) as (started, grpc_port):
        yield started, grpc_port, base / "searchd.yaml"


@pytest.fixture(scope="module")
def http(server: tuple[Server, int, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0].url, timeout=30, trust_env=False) as connected:
        objects = [{"class": "Note", "properties": {"title": f"note {i}", "n": i}} for i in range(NOTES)]
        assert connected.post("/v1/batch/objects", json={"objects": objects}).status_code == 200
        yield connected


@pytest.fixture(scope="module")
def stub(server: tuple[Server, int, Path]) -> Iterator[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        yield weaviate_pb2_grpc.WeaviateStub(channel)  # type: ignore[no-untyped-call]  # weaviate-client's generated gRPC stubs have no annotations


def failure(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    error: Any = caught.value
    return error.code(), error.details()


def titles(http: httpx.Client) -> list[str]:
    """The stored notes, read through REST (never queued behind queries, never timed out)."""
    response = http.get("/v1/objects", params={"class": "Note", "limit": 100})
    assert response.status_code == 200, response.text
    return sorted(o["properties"]["title"] for o in response.json()["objects"])


def condition(n: int) -> base_pb2.Filters:
    return base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_EQUAL, target=base_pb2.FilterTarget(property="n"), value_int=n)


def nested(depth: int) -> tuple[base_pb2.Filters, dict[str, Any]]:
    """A condition inside depth - 1 Nots, as a Filters message and as its GraphQL where."""
    message, where = condition(1), {"path": ["n"], "operator": "Equal", "valueInt": 1}
    for _ in range(depth - 1):
        message = base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_NOT, filters=[message])
        where = {"operator": "Not", "operands": [where]}
    return message, where


def twin_refusal(http: httpx.Client, where: dict[str, Any], status: int) -> str:
    response = http.post("/v1/graphql", json={"query": WHERE_QUERY, "variables": {"w": where}})
    assert response.status_code == status, response.text
    return str(response.json()["error"][0]["message"])


def calls(filters: base_pb2.Filters, stub: Any) -> list[tuple[Any, Any]]:
    return [
        (stub.Search, search_get_pb2.SearchRequest(collection="Note", filters=filters)),
        (stub.Aggregate, aggregate_pb2.AggregateRequest(collection="Note", objects_count=True, filters=filters)),
        (stub.BatchDelete, batch_delete_pb2.BatchDeleteRequest(collection="Note", filters=filters)),
    ]


def test_a_filter_nested_too_deep_is_refused_as_graphql_refuses_it(stub: Any, http: httpx.Client) -> None:
    before = titles(http)
    message, where = nested(25)
    expected = twin_refusal(http, where, 422)
    assert expected.startswith("this query has a where filter nested more than 10 levels deep; the limit is 10 (server.limits.maxFilterDepth)")
    for call, request in calls(message, stub):
        assert failure(call, request) == (grpc.StatusCode.RESOURCE_EXHAUSTED, expected)
    assert titles(http) == before  # BatchDelete deleted nothing


def test_a_filter_with_too_many_operands_is_refused_by_batch_delete_too(stub: Any, http: httpx.Client) -> None:
    before = titles(http)
    wide = base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_OR, filters=[condition(n % NOTES) for n in range(2001)])
    expected = twin_refusal(http, {"operator": "Or", "operands": [{"path": ["n"], "operator": "Equal", "valueInt": n % NOTES} for n in range(2001)]}, 422)
    assert "(server.limits.maxFilterOperands)" in expected
    for call, request in calls(wide, stub):
        assert failure(call, request) == (grpc.StatusCode.RESOURCE_EXHAUSTED, expected)
    assert titles(http) == before


def reload_with_timeout(http: httpx.Client, config: Path, timeout: str) -> None:
    config.write_text(CONFIG.format(timeout=timeout), encoding="utf-8")
    response = http.post("/v1/config/reload")
    assert response.status_code == 200 and response.json()["result"] == "applied", response.text


def test_batch_delete_runs_in_a_query_slot_under_the_query_timeout(server: tuple[Server, int, Path], stub: Any, http: httpx.Client) -> None:
    before = titles(http)
    everything = base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_GREATER_THAN_EQUAL, target=base_pb2.FilterTarget(property="n"), value_int=0)
    request = batch_delete_pb2.BatchDeleteRequest(collection="Note", filters=everything)
    # A timeout no request can meet: whatever the machine's speed, the deadline has passed before the first delete.
    reload_with_timeout(http, server[2], "1.0e-9")
    try:
        expected = twin_refusal(http, {"path": ["n"], "operator": "GreaterThanEqual", "valueInt": 0}, 503)
        assert expected.startswith("the query ran longer than 1e-09 s and was cancelled (server.limits.queryTimeout)")
        assert failure(stub.BatchDelete, request) == (grpc.StatusCode.UNAVAILABLE, expected)
        assert titles(http) == before  # stopped before its first delete
    finally:
        reload_with_timeout(http, server[2], "30")
    reply = stub.BatchDelete(batch_delete_pb2.BatchDeleteRequest(collection="Note", filters=condition(7)), timeout=30)
    assert (reply.matches, reply.successful, reply.failed) == (1, 1, 0)
    assert titles(http) == [t for t in before if t != "note 7"]


def deep_message(depth: int) -> base_pb2.Filters:
    """depth Nots around one condition, built top-down (no copy per level)."""
    root = node = base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_NOT)
    for _ in range(depth - 2):
        node = node.filters.add(operator=base_pb2.Filters.OPERATOR_NOT)
    node.filters.append(condition(1))
    return root


def test_translation_refuses_at_the_first_node_over_a_limit_without_recursing(tmp_path: Path) -> None:
    """A message nested far deeper than Python's stack (and a wide one) meets the limits during translation."""
    from searchd.catalog import compile_catalog
    from searchd.config import load_spec
    from searchd.config.spec import LimitsSpec
    from searchd.errors import LimitExceeded
    from searchd.grpc.codec import where_of
    from searchd.modules.registry import default_registry

    (tmp_path / "searchd.yaml").write_text(CONFIG.format(timeout=30), encoding="utf-8")
    registry = default_registry()
    collection = compile_catalog(load_spec(tmp_path / "searchd.yaml", registry), registry).collection("Note")
    with pytest.raises(LimitExceeded, match=r"nested more than 10 levels deep; the limit is 10 \(server.limits.maxFilterDepth\)"):
        where_of(collection, deep_message(5000), LimitsSpec())  # a recursive translation dies of RecursionError here
    wide = base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_OR, filters=[condition(n) for n in range(50_000)])
    with pytest.raises(LimitExceeded, match=r"at least 50000 filter operands in one where filter; the limit is 2000"):
        where_of(collection, wide, LimitsSpec())  # counted at the root, before any of its operands is translated
    assert where_of(collection, deep_message(10), LimitsSpec())["operator"] == "Not"  # the limit itself passes


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_a_message_nested_deeper_than_protobuf_decodes_is_refused_and_the_server_answers(server: tuple[Server, int, Path], http: httpx.Client) -> None:
    """Protobuf itself refuses to decode a message nested this deep: the call fails cleanly and the server goes on."""
    number = search_get_pb2.SearchRequest.DESCRIPTOR.fields_by_name["filters"].number
    filters = deep_message(5000).SerializeToString()  # our own bytes: the client's message classes would not take it either
    raw = search_get_pb2.SearchRequest(collection="Note").SerializeToString() + _varint(number << 3 | 2) + _varint(len(filters)) + filters
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        search = channel.unary_unary("/weaviate.v1.Weaviate/Search", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as caught:
            search(raw, timeout=30)
    error: Any = caught.value
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        (
            "the request is not a valid weaviate.v1.SearchRequest message (malformed, or nested more than 100 levels deep) "
            "(send a message of the weaviate.v1 protocol; a filter may nest at most server.limits.maxFilterDepth levels)"
        ),
    )
    assert len(titles(http)) >= NOTES - 1  # still answering
    assert "Traceback" not in server[0].logs()
