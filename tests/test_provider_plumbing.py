"""What every provider module shares, end to end against the fake Jina API on a local port:
retries (Retry-After, 5xx, timeouts, malformed answers), per-object failures and bisection,
the actionable 401 message, API keys (config, environment, request header; never leaked),
the embedding cache, bounded concurrency, batching and /v1/meta.

Timing assertions are lower bounds only (received_at of the fake), never wall-clock upper bounds.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from tests.conftest import ClientFactory
from tests.fakes import FakeJina, serving
from tests.fakes.base import RecordedRequest
from tests.fakes.embeddings import text_vector, truncate_dims

KEY = "jina_plumbing-config-key-3e9d"
HEADER_KEY = "jina_plumbing-header-key-b04c"
WriteConfig = Callable[..., Path]
IDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(20)]


@pytest.fixture(scope="module")
def served_jina() -> Iterator[tuple[FakeJina, str]]:
    fake = FakeJina(api_keys=[KEY])
    with serving(fake.app) as url:
        yield fake, url


@pytest.fixture
def jina(served_jina: tuple[FakeJina, str], monkeypatch: pytest.MonkeyPatch) -> tuple[FakeJina, str]:
    fake, _ = served_jina
    fake.reset()
    monkeypatch.setenv("JINAAI_APIKEY", KEY)
    return served_jina


# --- helpers -------------------------------------------------------------------------------------------


def config_text(url: str, settings: dict[str, Any] | None = None, vectorizer: dict[str, Any] | None = None, with_key: bool = True) -> str:
    module = {"baseURL": url, **({"apiKey": "${JINAAI_APIKEY}"} if with_key else {}), **(settings or {})}
    return json.dumps({
        "modules": {"text2vec-jinaai": module},
        "collections": [{
            "name": "Doc",
            "properties": [{"name": "title", "type": "TEXT"}],
            "vectors": {"v": {"vectorizer": vectorizer or {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 64}, "index": {"type": "flat"}}},
        }],
    })


def start(write_config: WriteConfig, client_factory: ClientFactory, url: str, **kwargs: Any) -> TestClient:
    return client_factory(write_config(config_text(url, **kwargs)))


def batch(client: TestClient, titles: list[str], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    objects = [{"class": "Doc", "id": IDS[i], "properties": {"title": t}} for i, t in enumerate(titles)]
    response = client.post("/v1/batch/objects", json={"objects": objects}, headers=headers or {})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()
    assert [r["id"] for r in results] == IDS[: len(titles)]
    return results


def statuses(results: list[dict[str, Any]]) -> list[str]:
    return [r["result"]["status"] for r in results]


def error_of(result: dict[str, Any]) -> str:
    assert result["result"]["status"] == "FAILED"
    errors = result["result"]["errors"]["error"]
    assert len(errors) == 1
    message: str = errors[0]["message"]
    return message


def is_stored(client: TestClient, index: int) -> bool:
    status: int = client.get(f"/v1/objects/Doc/{IDS[index]}").status_code
    assert status in (200, 404)
    return status == 200


def near_text(client: TestClient, concept: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post("/v1/graphql", json={"query": '{ Get { Doc(nearText: {concepts: [' + json.dumps(concept) + ']}) { title } } }'}, headers=headers or {})
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def cache_stats(client: TestClient) -> dict[str, Any]:
    stats: dict[str, Any] = client.get("/v1/meta").json()["embeddingCache"]
    return stats


def inputs(calls: list[RecordedRequest]) -> list[list[str]]:
    return [c.body["input"] for c in calls]


# --- retries ---------------------------------------------------------------------------------------------


def test_429_with_retry_after_seconds_is_waited_for(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url)
    fake.fail_next(429, retry_after="1")
    assert statuses(batch(client, ["rate limited"])) == ["SUCCESS"]
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.95  # lower bound only
    assert first.body == second.body == {"model": "jina-embeddings-v3", "input": ["rate limited"], "embedding_type": "float", "task": "retrieval.passage", "normalized": True, "dimensions": 64}
    assert is_stored(client, 0)


def test_429_with_retry_after_http_date_is_waited_for(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url)
    # The date is made when the 429 is answered, two seconds on; it has whole seconds, so it lies more than one second
    # after the first request arrived, however long the server took to send it.
    fake.fail_next(429, retry_after=lambda: email.utils.formatdate(time.time() + 2, usegmt=True))
    assert statuses(batch(client, ["rate limited"])) == ["SUCCESS"]
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.95


def test_5xx_and_malformed_answers_are_retried(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url, settings={"maxRetries": 3})
    fake.fail_next(502)
    fake.fail_next(503)
    fake.malformed_next()
    results = batch(client, ["flaky one", "flaky two"])
    assert statuses(results) == ["SUCCESS", "SUCCESS"]
    assert inputs(fake.requests) == [["flaky one", "flaky two"]] * 4
    vector = np.asarray(client.get(f"/v1/objects/Doc/{IDS[0]}?include=vector").json()["vectors"]["v"])
    assert np.allclose(vector, truncate_dims(text_vector("flaky one", 1024, salt="retrieval.passage"), 64), atol=1e-5)


def test_a_timeout_is_retried(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url, settings={"timeoutSeconds": 0.3, "maxRetries": 2})
    fake.fail_next(200, delay=3.0)  # answers far too late
    assert statuses(batch(client, ["slow"])) == ["SUCCESS"]
    first, second = fake.requests
    assert second.received_at - first.received_at >= 0.3
    assert first.body == second.body
    assert is_stored(client, 0)


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ({"status": 503}, "503 Service Unavailable"),
        ({"status": 200, "delay": 2.0}, "no answer within 0.2 s"),
    ],
)
def test_exhausted_retries_fail_each_object_and_store_nothing(
    jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory, fault: dict[str, Any], problem: str
) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url, settings={"maxRetries": 2, "timeoutSeconds": 0.2})
    fake.fail_next(times=3, **fault)
    results = batch(client, ["one", "two"])
    for result in results:
        message = error_of(result)
        assert message.startswith(f"Jina AI (text2vec-jinaai) failed after 3 attempt(s): {problem}")
        assert "maxRetries" in message
    assert len(fake.requests) == 3  # an unavailable provider is not bisected
    assert not is_stored(client, 0) and not is_stored(client, 1)
    # The provider is back: the same objects go in.
    fake.reset()
    assert statuses(batch(client, ["one", "two"])) == ["SUCCESS", "SUCCESS"]


def test_exhausted_retries_on_a_query_are_a_graphql_error(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url, settings={"maxRetries": 1})
    fake.fail_next(500, times=2)
    result = near_text(client, "anything")
    assert result["errors"][0]["message"].startswith("Jina AI (text2vec-jinaai) failed after 2 attempt(s): 500 Internal Server Error")
    assert len(fake.requests) == 2


# --- refusals and bisection --------------------------------------------------------------------------------


def test_401_names_the_env_var_and_header_and_is_not_retried(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url)
    fake.api_keys = {"jina_someone-elses-key"}
    results = batch(client, ["a", "b", "c"])
    for result in results:
        message = error_of(result)
        assert message.startswith("Jina AI (text2vec-jinaai) refused the API key: 401")
        assert "JINAAI_APIKEY" in message and "X-JinaAI-Api-Key" in message
        assert KEY not in message
    assert len(fake.requests) == 1  # neither retried nor bisected
    assert not any(is_stored(client, i) for i in range(3))
    answer = near_text(client, "a")
    assert "JINAAI_APIKEY" in answer["errors"][0]["message"] and KEY not in json.dumps(answer)


def test_no_key_anywhere_sends_no_authorization_and_says_how(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = jina
    monkeypatch.delenv("JINAAI_APIKEY")
    client = start(write_config, client_factory, url, with_key=False)
    message = error_of(batch(client, ["a"])[0])
    assert "refused the API key: 401" in message and "JINAAI_APIKEY" in message and "X-JinaAI-Api-Key" in message
    (call,) = fake.requests
    assert "authorization" not in call.headers
    fake.reset()
    assert statuses(batch(client, ["a"], headers={"X-JinaAI-Api-Key": KEY})) == ["SUCCESS"]
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_a_request_header_key_overrides_the_config_key(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url)
    fake.api_keys = {HEADER_KEY}  # only the header's key is valid now
    headers = {"X-JinaAI-Api-Key": HEADER_KEY}
    assert statuses(batch(client, ["with header"], headers=headers)) == ["SUCCESS"]
    assert "errors" not in near_text(client, "header", headers=headers)
    assert [c.headers["authorization"] for c in fake.requests] == [f"Bearer {HEADER_KEY}"] * 2
    fake.reset()
    fake.api_keys = {HEADER_KEY}
    assert "refused the API key: 401" in error_of(batch(client, ["without header"])[0])
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_one_rejected_object_fails_alone_by_bisection(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    vectorizer = {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 64, "truncate": "NONE"}
    client = start(write_config, client_factory, url, vectorizer=vectorizer)
    too_long = " ".join(["token"] * 8300)  # over v3's 8192 tokens, and truncate: NONE
    titles = ["a", "b", too_long, "d", "e"]
    results = batch(client, titles)
    assert statuses(results) == ["SUCCESS", "SUCCESS", "FAILED", "SUCCESS", "SUCCESS"]
    message = error_of(results[2])
    assert message.startswith("Jina AI (text2vec-jinaai) rejected the input: 422")
    assert "input has 8300 tokens, more than the maximum of 8192; set truncate: true" in message
    # The whole batch, its halves, then the bad half's halves: 5 requests, all with truncate false.
    assert sorted(inputs(fake.requests), key=len) == sorted([titles, ["a", "b"], [too_long, "d", "e"], [too_long], ["d", "e"]], key=len)
    assert all(c.body["truncate"] is False for c in fake.requests)
    assert [is_stored(client, i) for i in range(5)] == [True, True, False, True, True]


# --- keys never leak ----------------------------------------------------------------------------------------


def test_keys_never_appear_in_responses_or_logs(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory, caplog: pytest.LogCaptureFixture) -> None:
    fake, url = jina
    caplog.set_level(logging.DEBUG)
    client = start(write_config, client_factory, url, settings={"maxRetries": 1})
    texts: list[str] = []

    def call(method: str, path: str, **kwargs: Any) -> None:
        response = client.request(method, path, **kwargs)
        texts.append(response.text + json.dumps(dict(response.headers)))

    def objects(*titles: str) -> dict[str, Any]:
        return {"json": {"objects": [{"class": "Doc", "properties": {"title": t}} for t in titles]}}

    # A provider that quotes the key back in its errors (refusal, and a retryable error that is logged).
    fake.fail_next(401, body={"detail": f"Invalid API key {KEY}"})
    call("POST", "/v1/batch/objects", **objects("quoted"))
    fake.fail_next(503, times=2, body={"detail": f"overloaded for Bearer {KEY}"})
    call("POST", "/v1/batch/objects", **objects("overloaded"))
    fake.fail_next(401, body={"detail": f"Invalid API key {HEADER_KEY}"})
    call("POST", "/v1/objects", json={"class": "Doc", "properties": {"title": "single"}}, headers={"X-JinaAI-Api-Key": HEADER_KEY})
    fake.fail_next(401, body={"detail": f"Invalid API key {KEY}"})
    call("POST", "/v1/graphql", json={"query": '{ Get { Doc(nearText: {concepts: ["q"]}) { title } } }'})
    call("POST", "/v1/batch/objects", **objects("fine"))
    call("GET", "/v1/meta")
    call("GET", "/v1/schema")
    call("GET", "/v1/objects?include=vector")
    joined = "\n".join(texts)
    assert "refused the API key: 401 Invalid API key ***" in joined  # the provider's words, minus the key
    assert "failed after 2 attempt(s): 503 overloaded for Bearer ***" in joined
    assert "SUCCESS" in joined
    for secret in (KEY, HEADER_KEY):
        assert secret not in joined
        assert secret not in caplog.text
    assert "retry 1/1" in caplog.text  # the retry was logged, without the key


# --- cache, concurrency, batching, meta --------------------------------------------------------------


def test_embedding_cache_makes_a_reimport_free_and_survives_a_restart(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory, tmp_path: Path) -> None:
    fake, url = jina
    data = tmp_path / "kept"
    titles = ["cached one", "cached two", "cached three"]
    client = client_factory(write_config(config_text(url)), data)
    assert cache_stats(client) == {"entries": 0, "hits": 0, "misses": 0, "hitRate": 0.0}
    assert statuses(batch(client, titles)) == ["SUCCESS"] * 3
    assert len(fake.requests) == 1
    assert cache_stats(client) == {"entries": 3, "hits": 0, "misses": 3, "hitRate": 0.0}
    before = client.get(f"/v1/objects/Doc/{IDS[0]}?include=vector").json()["vectors"]["v"]

    fake.reset()
    assert statuses(batch(client, titles)) == ["SUCCESS"] * 3
    assert fake.requests == []  # a re-import pays nothing
    assert cache_stats(client) == {"entries": 3, "hits": 3, "misses": 3, "hitRate": 0.5}
    assert "errors" not in near_text(client, "cached")
    assert "errors" not in near_text(client, "cached")
    assert len(fake.requests) == 1  # the same query is embedded once
    client.__exit__(None, None, None)

    # Same data dir, new server: still nothing to pay, and the same vectors.
    fake.reset()
    restarted = client_factory(write_config(config_text(url)), data)
    assert cache_stats(restarted)["entries"] == 4
    assert statuses(batch(restarted, titles)) == ["SUCCESS"] * 3
    assert "errors" not in near_text(restarted, "cached")
    assert fake.requests == []
    assert cache_stats(restarted) == {"entries": 4, "hits": 4, "misses": 0, "hitRate": 1.0}
    assert restarted.get(f"/v1/objects/Doc/{IDS[0]}?include=vector").json()["vectors"]["v"] == before
    restarted.__exit__(None, None, None)


def test_cache_keys_include_the_request_parameters(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    """Same module, model and text, other dimensions: another embedding, so no cache hit across them."""
    fake, url = jina
    config = json.loads(config_text(url))
    v3 = {"module": "text2vec-jinaai", "model": "jina-embeddings-v3"}
    config["collections"][0]["vectors"] = {
        "small": {"vectorizer": {**v3, "dimensions": 64}, "index": {"type": "flat"}},
        "large": {"vectorizer": {**v3, "dimensions": 128}, "index": {"type": "flat"}},
    }
    client = client_factory(write_config(json.dumps(config)))
    assert statuses(batch(client, ["same text"])) == ["SUCCESS"]
    assert sorted(c.body["dimensions"] for c in fake.requests) == [64, 128]
    assert all(c.body["input"] == ["same text"] for c in fake.requests)
    assert cache_stats(client) == {"entries": 2, "hits": 0, "misses": 2, "hitRate": 0.0}
    vectors = client.get(f"/v1/objects/Doc/{IDS[0]}?include=vector").json()["vectors"]
    full = text_vector("same text", 1024, salt="retrieval.passage")
    assert np.allclose(vectors["small"], truncate_dims(full, 64), atol=1e-5)
    assert np.allclose(vectors["large"], truncate_dims(full, 128), atol=1e-5)
    fake.reset()
    assert statuses(batch(client, ["same text"])) == ["SUCCESS"]
    assert fake.requests == []
    assert cache_stats(client)["hits"] == 2


def test_two_vectors_embedding_the_same_inputs_share_one_request(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    """Same module, model, parameters and inputs, embedded side by side: the second waits for the first one's request."""
    fake, url = jina
    config = json.loads(config_text(url))
    v3 = {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 64}
    config["collections"][0]["vectors"] = {
        "cosine": {"vectorizer": v3, "index": {"type": "flat", "distance": "cosine"}, "default": True},
        "dot": {"vectorizer": v3, "index": {"type": "flat", "distance": "dot"}},
    }
    client = client_factory(write_config(json.dumps(config)))
    titles = ["shared one", "shared two", "shared three"]
    assert statuses(batch(client, titles)) == ["SUCCESS"] * 3
    (call,) = fake.requests  # one request, not one per vector
    assert call.body["input"] == titles and call.body["dimensions"] == 64
    want = truncate_dims(text_vector("shared two", 1024, salt="retrieval.passage"), 64)
    vectors = client.get(f"/v1/objects/Doc/{IDS[1]}?include=vector").json()["vectors"]
    assert np.allclose(vectors["cosine"], want, atol=1e-5) and np.allclose(vectors["dot"], want, atol=1e-5)
    assert cache_stats(client) == {"entries": 3, "hits": 3, "misses": 3, "hitRate": 0.5}
    # A failed flight is not shared: the waiting side asks again itself (here both fail the same way, once each after retries).
    fake.reset()
    fake.fail_next(401, times=2)
    results = batch(client, ["fresh text"])
    assert statuses(results) == ["FAILED"] and "JINAAI_APIKEY" in error_of(results[0])
    assert len(fake.requests) == 2 and all(c.body["input"] == ["fresh text"] for c in fake.requests)


def test_concurrency_is_bounded_by_max_concurrency(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url, settings={"maxConcurrency": 2, "batchSize": 1})
    fake.hold(2)  # the first two wait for each other: they did overlap, whatever the machine's load
    fake.latency = 0.05  # and the rest take a while, so a third sent too early would be seen in flight
    titles = [f"object {i}" for i in range(6)]
    assert statuses(batch(client, titles)) == ["SUCCESS"] * 6
    assert sorted(inputs(fake.requests)) == sorted([[t] for t in titles])
    assert fake.in_flight_max == 2  # requests did overlap, never more than two


def test_batches_are_cut_at_batch_size(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url, settings={"batchSize": 3})
    titles = [f"item {i}" for i in range(7)]
    assert statuses(batch(client, titles)) == ["SUCCESS"] * 7
    assert sorted(inputs(fake.requests)) == [titles[0:3], titles[3:6], titles[6:7]]


def test_batch_size_is_capped_at_the_provider_limit(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = jina
    client = start(write_config, client_factory, url, settings={"batchSize": 10_000})
    titles = [f"w{i}" for i in range(520)]
    objects = [{"class": "Doc", "properties": {"title": t}} for t in titles]
    results = client.post("/v1/batch/objects", json={"objects": objects}).json()
    assert statuses(results) == ["SUCCESS"] * 520
    assert sorted(len(i) for i in inputs(fake.requests)) == [8, 512]


def test_meta_lists_the_modules_in_use(jina: tuple[FakeJina, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    _, url = jina
    config = {
        "modules": {"text2vec-jinaai": {"baseURL": url, "apiKey": "${JINAAI_APIKEY}"}, "text2vec-weaviate": {"clusterUrl": "https://x.weaviate.cloud"}},
        "collections": [{
            "name": "Doc",
            "properties": [{"name": "title", "type": "TEXT"}, {"name": "image", "type": "BLOB"}],
            "vectors": {
                "clip": {"vectorizer": {"module": "multi2vec-jinaai", "imageFields": ["image"], "baseURL": url}, "index": {"type": "flat"}},
                "nv": {"vectorizer": {"module": "multi2vec-nvidia", "textFields": ["title"]}, "index": {"type": "flat"}},
                "own": {"vectorizer": {"module": "none", "dimensions": 3}, "index": {"type": "flat"}},
            },
        }],
    }
    client = client_factory(write_config(json.dumps(config)))
    meta = client.get("/v1/meta").json()
    assert sorted(meta["modules"]) == ["multi2vec-jinaai", "multi2vec-nvidia", "text2vec-jinaai", "text2vec-weaviate"]
    assert meta["modules"]["multi2vec-jinaai"] == {"name": "Jina AI CLIP text + image embeddings (jina-clip-v2, v1)", "documentationHref": "https://jina.ai/embeddings/"}
    assert meta["modules"]["multi2vec-nvidia"]["documentationHref"].startswith("https://docs.api.nvidia.com/")
    assert KEY not in json.dumps(meta)
