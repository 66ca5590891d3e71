"""Bad input over gRPC gets the right status code and the HTTP edge's message, and changes nothing stored."""

from __future__ import annotations

import socket
import struct
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from weaviate.proto.v1 import (
    aggregate_pb2,
    base_pb2,
    base_search_pb2,
    batch_delete_pb2,
    batch_pb2,
    generative_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)

from tests.grpc_support import connect, get, graphql_error, running, weaviate
from tests.test_e2e_server import Server, child_env, free_port, searchd_module

ADMIN, READER = "grpc-admin-key-0001", "grpc-read-key-0002"
AUTH = """\
  auth:
    apiKeys:
      - {name: admin, key: "${GRPC_TEST_ADMIN}", role: admin}
      - {name: reader, key: "${GRPC_TEST_READER}", role: read}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    with running(tmp_path_factory.mktemp("grpc-errors"), AUTH, {"GRPC_TEST_ADMIN": ADMIN, "GRPC_TEST_READER": READER}) as started:
        yield started


@pytest.fixture(scope="module")
def http(server: tuple[Server, int]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0].url, timeout=30, trust_env=False, headers={"Authorization": f"Bearer {ADMIN}"}) as connected:
        yield connected


@pytest.fixture(scope="module")
def stub(server: tuple[Server, int]) -> Iterator[Any]:
    # Twice the server's 1 MiB limit may be sent: the server, not this channel, is what is tested.
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}", options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
        yield weaviate_pb2_grpc.WeaviateStub(channel)  # type: ignore[no-untyped-call]  # weaviate-client's generated gRPC stubs have no annotations


def admin(key: str = ADMIN) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def failure(call: Any, request: Any, metadata: list[tuple[str, str]] | None = None) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=admin() if metadata is None else metadata, timeout=30)
    error: Any = caught.value
    return error.code(), error.details()


def snapshot(http: httpx.Client) -> list[dict[str, Any]]:
    return get(http, "Article", "limit: 500", "title wordCount _additional { id lastUpdateTimeUnix }")


def test_keys_are_checked_as_over_http(stub: Any, http: httpx.Client, server: tuple[Server, int]) -> None:
    search = search_get_pb2.SearchRequest(collection="Article", limit=1)
    missing = httpx.get(f"{server[0].url}/v1/schema", timeout=30).json()["error"][0]["message"]
    assert failure(stub.Search, search, []) == (grpc.StatusCode.UNAUTHENTICATED, missing)
    wrong = httpx.get(f"{server[0].url}/v1/schema", headers={"Authorization": "Bearer nope"}, timeout=30).json()["error"][0]["message"]
    assert failure(stub.Search, search, admin("nope")) == (grpc.StatusCode.UNAUTHENTICATED, wrong)
    assert len(stub.Search(search, metadata=admin(READER), timeout=30).results) == 1
    before = snapshot(http)
    write = batch_pb2.BatchObjectsRequest(objects=[batch_pb2.BatchObject(collection="Article", properties=batch_pb2.BatchObject.Properties())])
    assert failure(stub.BatchObjects, write, admin(READER)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "key 'reader' has the read role; weaviate.v1.Weaviate/BatchObjects needs an admin key",
    )
    assert failure(stub.BatchObjects, write, []) == (grpc.StatusCode.UNAUTHENTICATED, missing)
    delete = batch_delete_pb2.BatchDeleteRequest(collection="Article", filters=base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_LIKE, target=base_pb2.FilterTarget(property="title"), value_text="*"))
    assert failure(stub.BatchDelete, delete, admin(READER))[0] == grpc.StatusCode.PERMISSION_DENIED
    assert failure(stub.BatchDelete, delete, []) == (grpc.StatusCode.UNAUTHENTICATED, missing)
    assert snapshot(http) == before


def test_the_v4_client_with_a_key(server: tuple[Server, int], http: httpx.Client) -> None:
    with connect(*server, auth_credentials=weaviate.auth.AuthApiKey(READER)) as client:
        found = client.collections.use("Article").query.bm25("fruit", limit=3)
        assert [str(o.uuid) for o in found.objects] == [r["_additional"]["id"] for r in get(http, "Article", 'bm25: {query: "fruit"}, limit: 3')]


def test_a_wrong_collection_is_not_found(stub: Any, http: httpx.Client) -> None:
    response = http.get("/v1/schema/Nope")
    assert response.status_code == 404
    expected = (grpc.StatusCode.NOT_FOUND, response.json()["error"][0]["message"])
    assert expected[1] == "collection 'Nope' is not declared in the config (declared collections: Artwork, Article, Scratch, Passage; add it to the YAML config)"
    before = snapshot(http)
    assert failure(stub.Search, search_get_pb2.SearchRequest(collection="Nope")) == expected
    assert failure(stub.BatchDelete, batch_delete_pb2.BatchDeleteRequest(collection="Nope", filters=base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_IS_NULL))) == expected
    assert failure(stub.Aggregate, aggregate_pb2.AggregateRequest(collection="Nope", objects_count=True)) == expected
    assert failure(stub.TenantsGet, tenants_pb2.TenantsGetRequest(collection="Nope")) == expected
    # A batch answers per object, as POST /v1/batch/objects does: the object naming no declared collection fails, the other is stored.
    kept = str(uuid.uuid4())
    properties = batch_pb2.BatchObject.Properties()
    properties.non_ref_properties.update({"title": "kept beside a bad object"})
    write = batch_pb2.BatchObjectsRequest(
        objects=[batch_pb2.BatchObject(collection="Nope", uuid=str(uuid.uuid4())), batch_pb2.BatchObject(collection="Scratch", uuid=kept, properties=properties)]
    )
    reply = stub.BatchObjects(write, metadata=admin(), timeout=30)
    rest = http.post("/v1/batch/objects", json={"objects": [{"class": "Nope"}]}).json()[0]["result"]["errors"]["error"][0]["message"]
    assert [(e.index, e.error) for e in reply.errors] == [(0, rest)]
    assert rest.startswith("collection 'Nope' is not declared in the config")
    assert snapshot(http) == before
    assert http.get(f"/v1/objects/Scratch/{kept}").json()["properties"]["title"] == "kept beside a bad object"
    assert http.delete(f"/v1/objects/Scratch/{kept}").status_code == 204


def test_a_wrong_vector_width_is_refused_as_graphql_refuses_it(stub: Any, http: httpx.Client) -> None:
    near = base_search_pb2.NearVector(vectors=[base_pb2.Vectors(vector_bytes=struct.pack("<3f", 1, 2, 3), type=base_pb2.Vectors.VECTOR_TYPE_SINGLE_FP32)])
    code, message = failure(stub.Search, search_get_pb2.SearchRequest(collection="Article", near_vector=near))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == graphql_error(http, "{ Get { Article(nearVector: {vector: [1, 2, 3]}) { title } } }")
    assert message.startswith("nearVector has 3 dimensions, but vector 'text' has 64")
    torn = base_search_pb2.NearVector(vector_bytes=b"\x00\x00\x80")
    assert failure(stub.Search, search_get_pb2.SearchRequest(collection="Article", near_vector=torn)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "near_vector holds 3 bytes, which is not a whole number of 32-bit floats (send the vector as little-endian float32s)",
    )


MALFORMED = [
    (base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_EQUAL, target=base_pb2.FilterTarget(property="colour"), value_text="red"), '{path: ["colour"], operator: Equal, valueText: "red"}'),
    (base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_EQUAL, target=base_pb2.FilterTarget(property="wordCount"), value_text="ten"), '{path: ["wordCount"], operator: Equal, valueText: "ten"}'),
    (base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_AND), "{operator: And}"),
    (base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_LIKE, target=base_pb2.FilterTarget(property="wordCount"), value_int=3), '{path: ["wordCount"], operator: Like, valueInt: 3}'),
    (
        base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_EQUAL, target=base_pb2.FilterTarget(property="publishedAt"), value_text="yesterday"),
        '{path: ["publishedAt"], operator: Equal, valueText: "yesterday"}',
    ),
]


@pytest.mark.parametrize(("filters", "where"), MALFORMED, ids=[w for _, w in MALFORMED])
def test_malformed_filters_are_refused_as_graphql_refuses_them(stub: Any, http: httpx.Client, filters: Any, where: str) -> None:
    before = snapshot(http)
    code, message = failure(stub.Search, search_get_pb2.SearchRequest(collection="Article", filters=filters))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert message == graphql_error(http, f"{{ Get {{ Article(where: {where}) {{ title }} }} }}")
    assert failure(stub.BatchDelete, batch_delete_pb2.BatchDeleteRequest(collection="Article", filters=filters)) == (code, message)
    assert failure(stub.Aggregate, aggregate_pb2.AggregateRequest(collection="Article", objects_count=True, filters=filters)) == (code, message)
    assert snapshot(http) == before


def test_unsupported_requests_say_so(stub: Any) -> None:
    geo = base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_WITHIN_GEO_RANGE, target=base_pb2.FilterTarget(property="title"))
    assert failure(stub.Search, search_get_pb2.SearchRequest(collection="Article", filters=geo))[1].startswith("filter operator OPERATOR_WITHIN_GEO_RANGE is not supported")
    audio = failure(stub.Search, search_get_pb2.SearchRequest(collection="Article", near_audio=base_search_pb2.NearAudioSearch(audio="AAAA")))
    assert audio == (grpc.StatusCode.UNIMPLEMENTED, "near_audio is not supported: searchd has no audio vectorizer (search with near_text, near_image, near_vector or near_object)")
    generative = search_get_pb2.SearchRequest(collection="Article", generative=generative_pb2.GenerativeSearch(single_response_prompt="Summarise {title}"))
    assert failure(stub.Search, generative) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "generative search (RAG) is not supported: searchd has no generative modules (query without generate, and pass the results to your model yourself)",
    )
    references = failure(stub.BatchReferences, batch_pb2.BatchReferencesRequest(references=[batch_pb2.BatchReference(name="x")]))
    assert references[0] == grpc.StatusCode.UNIMPLEMENTED and "BatchReferences is not supported" in references[1]


def test_limits_are_the_http_limits(stub: Any, http: httpx.Client) -> None:
    before = snapshot(http)
    big = batch_pb2.BatchObjectsRequest(objects=[batch_pb2.BatchObject(collection="Article", properties=batch_pb2.BatchObject.Properties())])
    big.objects[0].properties.non_ref_properties.update({"title": "x" * (1 << 20)})
    http_message = http.post("/v1/batch/objects", content=b"{" + b" " * (1 << 20) + b"}").json()["error"][0]["message"]
    assert failure(stub.BatchObjects, big) == (grpc.StatusCode.RESOURCE_EXHAUSTED, http_message)
    huge = batch_pb2.BatchObjectsRequest(objects=[batch_pb2.BatchObject(collection="Article", properties=batch_pb2.BatchObject.Properties())])
    huge.objects[0].properties.non_ref_properties.update({"title": "x" * (3 << 20)})
    assert failure(stub.BatchObjects, huge)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED  # refused by the transport itself
    many = batch_pb2.BatchObjectsRequest(objects=[batch_pb2.BatchObject(collection="Article") for _ in range(51)])
    many_http = http.post("/v1/batch/objects", json={"objects": [{"class": "Article"}] * 51}).json()["error"][0]["message"]
    assert failure(stub.BatchObjects, many) == (grpc.StatusCode.RESOURCE_EXHAUSTED, many_http)
    assert many_http == "the batch has 51 objects, more than the limit of 50 (split it into smaller batches, or raise server.limits.maxBatchObjects)"
    too_far = failure(stub.Search, search_get_pb2.SearchRequest(collection="Article", limit=400, offset=200))
    assert too_far == (grpc.StatusCode.INVALID_ARGUMENT, graphql_error(http, "{ Get { Article(limit: 400, offset: 200) { title } } }"))
    assert snapshot(http) == before


def test_metrics_count_calls_per_method_and_code(stub: Any, http: httpx.Client) -> None:
    stub.Search(search_get_pb2.SearchRequest(collection="Article", limit=1), metadata=admin(), timeout=30)
    failure(stub.Search, search_get_pb2.SearchRequest(collection="Nope"))
    text = http.get("/metrics").text
    assert 'searchd_grpc_request_duration_seconds_count{code="OK",method="Search"}' in text
    assert 'searchd_grpc_request_duration_seconds_count{code="NOT_FOUND",method="Search"}' in text


def test_a_grpc_port_in_use_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text("collections:\n  - name: Doc\n    properties:\n      - {name: title, type: TEXT}\n", encoding="utf-8")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = [*searchd_module(), "serve", str(config), "--data", str(tmp_path / "data"), "--port", str(free_port()), "--grpc-port", str(port)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=child_env(), check=False)
    assert done.returncode != 0
    assert f"gRPC cannot listen on 127.0.0.1:{port}: address already in use or not available" in done.stderr
    assert "set server.grpc.port, or --grpc-port" in done.stderr


def test_grpc_can_be_turned_off(tmp_path: Path) -> None:
    config = "server:\n  grpc: {enabled: false}\ncollections:\n  - name: Doc\n    properties:\n      - {name: title, type: TEXT}\n"
    with running(tmp_path, config_yaml=config) as (server, grpc_port):
        assert httpx.get(f"{server.url}/v1/.well-known/ready", timeout=30).status_code == 200
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel, pytest.raises(grpc.RpcError) as caught:
            stub = weaviate_pb2_grpc.WeaviateStub(channel)  # type: ignore[no-untyped-call]  # generated by grpc_tools, unannotated
            stub.Search(search_get_pb2.SearchRequest(collection="Doc"), timeout=10)
        error: Any = caught.value
        assert error.code() == grpc.StatusCode.UNAVAILABLE  # nothing listens on the port it would have taken
        assert "gRPC" not in server.logs()


def test_filter_limits_are_the_graphql_limits(stub: Any, http: httpx.Client) -> None:
    """A gRPC filter over server.limits.maxFilterOperands is refused as its GraphQL twin is (RESOURCE_EXHAUSTED: a limit said no)."""
    before = snapshot(http)
    condition = base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_EQUAL, target=base_pb2.FilterTarget(property="wordCount"), value_int=3)
    wide = base_pb2.Filters(operator=base_pb2.Filters.OPERATOR_OR, filters=[condition] * 2001)
    code, message = failure(stub.Search, search_get_pb2.SearchRequest(collection="Article", filters=wide))
    where = {"operator": "Or", "operands": [{"path": ["wordCount"], "operator": "Equal", "valueInt": 3}] * 2001}
    twin = http.post("/v1/graphql", json={"query": "query($w: WhereInpObj) { Get { Article(where: $w) { title } } }", "variables": {"w": where}})
    assert (twin.status_code, code) == (422, grpc.StatusCode.RESOURCE_EXHAUSTED)
    http_message = twin.json()["error"][0]["message"]
    assert message == http_message and "(server.limits.maxFilterOperands)" in message
    aggregate = aggregate_pb2.AggregateRequest(collection="Article", objects_count=True, filters=wide)
    assert failure(stub.Aggregate, aggregate) == (code, message)
    assert snapshot(http) == before
