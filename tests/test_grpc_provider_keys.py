"""Provider keys travel as gRPC metadata (``x-jinaai-api-key``), as the HTTP edge takes them from headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from tests.fakes import FakeJina, serving
from tests.grpc_support import connect, get, running, weaviate
from tests.test_e2e_server import Server

KEY = "jina_grpc-metadata-key-7d2e"
CONFIG = """\
server:
  host: 127.0.0.1
  dataDir: data
modules:
  text2vec-jinaai: {{baseURL: "{url}", maxRetries: 0}}
collections:
  - name: Doc
    properties:
      - {{name: title, type: TEXT}}
    vectors:
      v:
        vectorizer: {{module: text2vec-jinaai, textFields: [title]}}
        index: {{type: flat, distance: cosine}}
"""


@pytest.fixture(scope="module")
def jina() -> Iterator[tuple[FakeJina, str]]:
    fake = FakeJina(api_keys=[KEY])
    with serving(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def server(jina: tuple[FakeJina, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    env = {"JINAAI_APIKEY": ""}  # no key but the one each request brings
    with running(tmp_path_factory.mktemp("grpc-keys"), env=env, config_yaml=CONFIG.format(url=jina[1])) as started:
        yield started


def test_the_key_in_metadata_reaches_the_provider(jina: tuple[FakeJina, str], server: tuple[Server, int]) -> None:
    fake = jina[0]
    with connect(*server, headers={"X-JinaAI-Api-Key": KEY}) as client:
        docs = client.collections.use("Doc")
        result = docs.data.insert_many([{"title": "a quiet river"}, {"title": "a loud city"}])
        assert not result.errors
        found = docs.query.near_text("river", limit=2)
        with httpx.Client(base_url=server[0].url, timeout=30, trust_env=False, headers={"X-JinaAI-Api-Key": KEY}) as http:
            expected = [r["_additional"]["id"] for r in get(http, "Doc", 'nearText: {concepts: ["river"]}, limit: 2')]
        assert [str(o.uuid) for o in found.objects] == expected
    calls = [r for r in fake.requests if r.path == "/v1/embeddings"]
    assert calls and all(r.headers["authorization"] == f"Bearer {KEY}" for r in calls)


def test_without_a_key_the_error_says_which_header_to_send(server: tuple[Server, int]) -> None:
    with connect(*server) as client:
        docs = client.collections.use("Doc")
        with pytest.raises(weaviate.exceptions.WeaviateQueryError) as caught:
            docs.query.near_text("mountain lake", limit=2)  # not embedded before: the cache cannot answer it
        with httpx.Client(base_url=server[0].url, timeout=30, trust_env=False) as http:
            body: Any = http.post("/v1/graphql", json={"query": '{ Get { Doc(nearText: {concepts: ["mountain lake"]}) { title } } }'}).json()
        message = body["errors"][0]["message"]
        # The same message over both edges (the provider's request id inside it differs per call).
        head, tail = message.split(" [RID: ")[0], message.split("] ", 1)[1]
        assert head == "Jina AI (text2vec-jinaai) refused the API key: 401" and tail.endswith("or send the X-JinaAI-Api-Key header)")
        assert head in str(caught.value) and tail in str(caught.value)
        rpc_error: Any = caught.value.__context__  # the client raises its error while handling the RpcError
        assert rpc_error.code() == grpc.StatusCode.FAILED_PRECONDITION  # a refused key is not worth retrying


def test_insert_many_without_a_key_fails_each_object_and_stores_nothing(server: tuple[Server, int]) -> None:
    with httpx.Client(base_url=server[0].url, timeout=30, trust_env=False) as http, connect(*server) as client:
        before = sorted(r["_additional"]["id"] for r in get(http, "Doc", "limit: 100", "_additional { id }"))
        with pytest.raises(weaviate.exceptions.WeaviateInsertManyAllFailedError) as caught:
            client.collections.use("Doc").data.insert_many([{"title": "snowy peaks"}, {"title": "dry deserts"}])
        rest = http.post("/v1/batch/objects", json={"objects": [{"class": "Doc", "properties": {"title": "green valleys"}}]}).json()
        rest_message = rest[0]["result"]["errors"]["error"][0]["message"]
        after = sorted(r["_additional"]["id"] for r in get(http, "Doc", "limit: 100", "_additional { id }"))
    # Every object fails (the client's error says so, with the set of their messages) with the REST batch's message for
    # the same refusal (the provider's request id inside it differs per call).
    head, tail = rest_message.split(" [RID: ")[0], rest_message.split("] ", 1)[1]
    assert head == "Jina AI (text2vec-jinaai) refused the API key: 401" and tail.endswith("or send the X-JinaAI-Api-Key header)")
    assert head in str(caught.value) and tail in str(caught.value)
    assert after == before
