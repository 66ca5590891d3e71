"""NVIDIA NIM and Weaviate Embeddings modules end to end: the running app against the fakes on local ports.

Exact request bodies and headers are checked, and stored vectors are compared with the vectors
the fakes' pure embedding functions give (tests/fakes/embeddings.py).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from searchd.config import load_spec
from searchd.errors import ConfigError
from searchd.modules import default_registry
from tests.conftest import ClientFactory
from tests.fakes import FakeNvidia, FakeWeaviateEmbed, serving
from tests.fakes.base import FakeProvider, RecordedRequest
from tests.fakes.embeddings import image_matrix, image_vector, normalise, text_vector, truncate_dims

NV_KEY = "nvapi-unit-test-key-77aa"
WV_KEY = "wcd-unit-test-key-91bb"
CLUSTER = "https://demo-cluster.weaviate.cloud"
WriteConfig = Callable[..., Path]


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, tuple[FakeProvider, str]]]:
    nvidia, weaviate = FakeNvidia(api_keys=[NV_KEY]), FakeWeaviateEmbed(api_keys=[WV_KEY])
    with serving(nvidia.app) as nv_url, serving(weaviate.app) as wv_url:
        yield {"nvidia": (nvidia, nv_url), "weaviate": (weaviate, wv_url)}


@pytest.fixture
def nvidia(served: dict[str, tuple[FakeProvider, str]], monkeypatch: pytest.MonkeyPatch) -> tuple[FakeNvidia, str]:
    fake, url = served["nvidia"]
    assert isinstance(fake, FakeNvidia)
    fake.reset()
    monkeypatch.setenv("NVIDIA_APIKEY", NV_KEY)
    return fake, url


@pytest.fixture
def weaviate(served: dict[str, tuple[FakeProvider, str]], monkeypatch: pytest.MonkeyPatch) -> tuple[FakeWeaviateEmbed, str]:
    fake, url = served["weaviate"]
    assert isinstance(fake, FakeWeaviateEmbed)
    fake.reset()
    monkeypatch.setenv("WEAVIATE_APIKEY", WV_KEY)
    monkeypatch.setenv("WEAVIATE_CLUSTER_URL", CLUSTER)
    return fake, url


# --- helpers -------------------------------------------------------------------------------------------


def picture(colour: tuple[int, int, int], size: int = 32, kind: str = "PNG") -> str:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, kind)
    return base64.b64encode(out.getvalue()).decode()


def raw(b64: str) -> bytes:
    return base64.b64decode(b64)


def serve(write_config: WriteConfig, client_factory: ClientFactory, modules: dict[str, Any], collection: dict[str, Any]) -> TestClient:
    return client_factory(write_config(json.dumps({"modules": modules, "collections": [collection]})))


def batch(client: TestClient, cls: str, objects: list[dict[str, Any]], headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = client.post("/v1/batch/objects", json={"objects": [{"class": cls, "properties": p} for p in objects]}, headers=headers or {})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()
    return results


def import_ok(client: TestClient, cls: str, objects: list[dict[str, Any]], headers: dict[str, str] | None = None) -> list[str]:
    results = batch(client, cls, objects, headers)
    assert [r["result"]["status"] for r in results] == ["SUCCESS"] * len(objects), results
    return [r["id"] for r in results]


def stored(client: TestClient, cls: str, object_id: str) -> dict[str, np.ndarray]:
    body = client.get(f"/v1/objects/{cls}/{object_id}?include=vector").json()
    return {name: np.asarray(v, dtype=np.float32) for name, v in body["vectors"].items()}


def weighted(parts: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
    total = sum(w for w, _ in parts)
    combined = np.sum([w * normalise(v) for w, v in parts], axis=0) / total
    return normalise(combined)


def near(client: TestClient, cls: str, argument: str, fields: str = "title", headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post("/v1/graphql", json={"query": "{ Get { " + cls + "(" + argument + ", limit: 5) { " + fields + " _additional { distance } } } }"}, headers=headers or {})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def hits(result: dict[str, Any], cls: str) -> list[dict[str, Any]]:
    assert "errors" not in result, result
    found: list[dict[str, Any]] = result["data"]["Get"][cls]
    return found


def nv_calls(fake: FakeNvidia, key: str = NV_KEY) -> list[RecordedRequest]:
    calls = fake.requests
    assert all(c.path == "/v1/embeddings" and c.headers.get("authorization") == f"Bearer {key}" for c in calls), [(c.path, c.headers) for c in calls]
    assert all(c.headers.get("accept") == "application/json" and c.headers.get("content-type", "").startswith("application/json") for c in calls)
    return calls


def wv_calls(fake: FakeWeaviateEmbed, key: str = WV_KEY, cluster: str = CLUSTER) -> list[RecordedRequest]:
    calls = fake.requests
    for c in calls:
        assert c.path == "/v1/embeddings/embed"
        assert c.headers.get("authorization") == f"Bearer {key}"
        assert c.headers.get("x-weaviate-cluster-url") == cluster
    return calls


def long_text(words: int) -> str:
    return " ".join(f"word{i}" for i in range(words))


# --- text2vec-nvidia --------------------------------------------------------------------------------------


def test_text2vec_nvidia_input_type_passage_and_query_truncate_end_by_default(nvidia: tuple[FakeNvidia, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = nvidia
    client = serve(write_config, client_factory, {"text2vec-nvidia": {"baseURL": url}}, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}, {"name": "body", "type": "TEXT"}],
        "vectors": {"e5": {"vectorizer": {"module": "text2vec-nvidia", "textFields": ["title"]}, "index": {"type": "flat"}}},
    })
    over_long = long_text(600)  # > 512 tokens: cut at the end by the provider, not an error
    ids = import_ok(client, "Doc", [{"title": "Pittsburgh population", "body": "ignored"}, {"title": over_long}])
    (call,) = nv_calls(fake)
    assert call.body == {"input": ["Pittsburgh population", over_long], "model": "nvidia/nv-embedqa-e5-v5", "encoding_format": "float", "input_type": "passage", "truncate": "END"}
    assert np.allclose(stored(client, "Doc", ids[0])["e5"], text_vector("Pittsburgh population", 1024, salt="passage"), atol=1e-5)
    assert np.allclose(stored(client, "Doc", ids[1])["e5"], text_vector(long_text(512), 1024, salt="passage"), atol=1e-5)
    fake.reset()
    assert hits(near(client, "Doc", 'nearText: {concepts: ["population of Pittsburgh"]}'), "Doc")[0]["title"] == "Pittsburgh population"
    (call,) = nv_calls(fake)
    assert call.body == {"input": ["population of Pittsburgh"], "model": "nvidia/nv-embedqa-e5-v5", "encoding_format": "float", "input_type": "query", "truncate": "END"}


def test_text2vec_nvidia_truncate_none_fails_only_the_over_long_object(nvidia: tuple[FakeNvidia, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = nvidia
    client = serve(write_config, client_factory, {"text2vec-nvidia": {"baseURL": url}}, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"e5": {"vectorizer": {"module": "text2vec-nvidia", "truncate": "NONE"}, "index": {"type": "flat"}}},
    })
    bad = long_text(600)
    titles = ["alpha", "beta", bad, "delta"]
    results = batch(client, "Doc", [{"title": t} for t in titles])
    assert [r["result"]["status"] for r in results] == ["SUCCESS", "SUCCESS", "FAILED", "SUCCESS"]
    message = results[2]["result"]["errors"]["error"][0]["message"]
    assert "NVIDIA NIM (text2vec-nvidia) rejected the input: 400 Input length 600 exceeds maximum allowed token size 512" in message
    # Bisection: the batch, then its halves, then the bad half's halves.
    assert sorted(tuple(c.body["input"]) for c in nv_calls(fake)) == sorted([tuple(titles), ("alpha", "beta"), (bad, "delta"), (bad,), ("delta",)])
    assert all(c.body["truncate"] == "NONE" for c in fake.requests)
    listed = client.get("/v1/objects?class=Doc").json()["objects"]
    assert sorted(o["properties"]["title"] for o in listed) == ["alpha", "beta", "delta"]


def test_llama_embedqa_gets_its_dimensions_in_the_request(nvidia: tuple[FakeNvidia, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    """nvidia/llama-3.2-nv-embedqa-1b-v2 has dynamic embeddings (2048 by default): `dimensions` is sent, and the strict fake takes it."""
    fake, url = nvidia
    model = "nvidia/llama-3.2-nv-embedqa-1b-v2"
    client = serve(write_config, client_factory, {"text2vec-nvidia": {"baseURL": url}}, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {
            "small": {"vectorizer": {"module": "text2vec-nvidia", "model": model, "dimensions": 512}, "index": {"type": "flat"}},
            "full": {"vectorizer": {"module": "text2vec-nvidia", "model": model}, "index": {"type": "flat"}, "default": True},
        },
    })
    ids = import_ok(client, "Doc", [{"title": "matryoshka dolls"}])
    bodies = sorted((c.body for c in nv_calls(fake)), key=lambda b: "dimensions" in b)
    assert bodies == [
        {"input": ["matryoshka dolls"], "model": model, "encoding_format": "float", "input_type": "passage", "truncate": "END"},
        {"input": ["matryoshka dolls"], "model": model, "encoding_format": "float", "input_type": "passage", "truncate": "END", "dimensions": 512},
    ]
    vectors = stored(client, "Doc", ids[0])
    assert np.allclose(vectors["small"], truncate_dims(text_vector("matryoshka dolls", 2048, salt="passage"), 512), atol=1e-5)
    assert np.allclose(vectors["full"], text_vector("matryoshka dolls", 2048, salt="passage"), atol=1e-5)
    fake.reset()
    assert hits(near(client, "Doc", 'nearText: {concepts: ["dolls"], targetVectors: ["small"]}'), "Doc")[0]["title"] == "matryoshka dolls"
    (call,) = nv_calls(fake)
    assert call.body == {"input": ["dolls"], "model": model, "encoding_format": "float", "input_type": "query", "truncate": "END", "dimensions": 512}
    with pytest.raises(ConfigError) as raised:
        collection = {"name": "Doc", "properties": [{"name": "title", "type": "TEXT"}], "vectors": {"v": {"vectorizer": {"module": "text2vec-nvidia", "model": model, "dimensions": 500}}}}
        load_spec(write_config(json.dumps({"collections": [collection]}), "x.yaml"), default_registry(), environ={})
    assert f"{model} does not offer 500 dimensions; it offers 2048 or 1024 or 768 or 512 or 384" in str(raised.value)


def test_nvidia_open_model_needs_dimensions_and_a_wrong_length_fails_per_object(nvidia: tuple[FakeNvidia, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = nvidia
    model = "nvidia/nv-embed-future-v9"  # a NIM model searchd does not know: dimensions states its length, and is not sent
    collection = {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {
            "good": {"vectorizer": {"module": "text2vec-nvidia", "model": model, "dimensions": 1024}, "index": {"type": "flat"}},
        },
    }
    client = serve(write_config, client_factory, {"text2vec-nvidia": {"baseURL": url}}, collection)
    ids = import_ok(client, "Doc", [{"title": "hello"}])
    (call,) = nv_calls(fake)
    assert call.body == {"input": ["hello"], "model": model, "encoding_format": "float", "input_type": "passage", "truncate": "END"}
    assert np.allclose(stored(client, "Doc", ids[0])["good"], text_vector("hello", 1024, salt="passage"), atol=1e-5)

    # The config says 512 but the model returns 1024: that object fails with a clear message, the server stays up.
    collection["vectors"] = {"bad": {"vectorizer": {"module": "text2vec-nvidia", "model": model, "dimensions": 512}, "index": {"type": "flat"}}}
    client = serve(write_config, client_factory, {"text2vec-nvidia": {"baseURL": url}}, collection)
    (result,) = batch(client, "Doc", [{"title": "hello again"}])
    assert result["result"]["status"] == "FAILED"
    assert "returned 1024-dimensional embeddings, but this vector has 512 dimensions" in result["result"]["errors"]["error"][0]["message"]
    assert client.get("/v1/objects?class=Doc").json()["objects"] == []
    answer = near(client, "Doc", 'nearText: {concepts: ["hello"]}')
    assert "returned 1024-dimensional embeddings" in answer["errors"][0]["message"]

    with pytest.raises(ConfigError) as raised:
        load_spec(write_config(json.dumps({"collections": [{**collection, "vectors": {"v": {"vectorizer": {"module": "text2vec-nvidia", "model": model}}}}]}), "x.yaml"), default_registry(), environ={})
    assert f"model '{model}' is not one searchd knows, so its vector length is unknown" in str(raised.value)


# --- multi2vec-nvidia (nvclip) ---------------------------------------------------------------------------


def test_nvclip_texts_and_images_in_separate_calls_images_as_data_uris(nvidia: tuple[FakeNvidia, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = nvidia
    vectorizer = {"module": "multi2vec-nvidia", "textFields": ["title"], "imageFields": ["image"], "weights": {"image": 3, "title": 1}}
    client = serve(write_config, client_factory, {"multi2vec-nvidia": {"baseURL": url}}, {
        "name": "Art",
        "properties": [{"name": "title", "type": "TEXT"}, {"name": "image", "type": "BLOB"}],
        "vectors": {"clip": {"vectorizer": vectorizer, "index": {"type": "flat"}}},
    })
    red, blue = picture((220, 20, 20)), picture((20, 20, 220), kind="JPEG")
    ids = import_ok(client, "Art", [{"title": "Red poster", "image": red}, {"title": "Blue poster", "image": blue}])
    calls = nv_calls(fake)
    assert sorted((c.body for c in calls), key=lambda b: b["input"][0].startswith("data:")) == [
        {"input": ["Red poster", "Blue poster"], "model": "nvidia/nvclip", "encoding_format": "float"},
        {"input": [f"data:image/png;base64,{red}", f"data:image/jpeg;base64,{blue}"], "model": "nvidia/nvclip", "encoding_format": "float"},
    ]
    for object_id, title, image in zip(ids, ("Red poster", "Blue poster"), (red, blue)):
        expected = weighted([(1, text_vector(title, 1024)), (3, image_vector(raw(image), 1024))])
        assert np.allclose(stored(client, "Art", object_id)["clip"], expected, atol=1e-5)

    fake.reset()
    query_image = picture((30, 30, 200), size=48)
    assert hits(near(client, "Art", f'nearImage: {{image: "{query_image}"}}'), "Art")[0]["title"] == "Blue poster"
    (call,) = nv_calls(fake)
    assert call.body == {"input": [f"data:image/png;base64,{query_image}"], "model": "nvidia/nvclip", "encoding_format": "float"}
    fake.reset()
    assert hits(near(client, "Art", 'nearText: {concepts: ["red image"]}'), "Art")[0]["title"] == "Red poster"
    (call,) = nv_calls(fake)
    assert call.body == {"input": ["red image"], "model": "nvidia/nvclip", "encoding_format": "float"}


def test_nvclip_shrinks_an_image_over_the_inline_limit(nvidia: tuple[FakeNvidia, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = nvidia
    client = serve(write_config, client_factory, {"multi2vec-nvidia": {"baseURL": url}}, {
        "name": "Art",
        "properties": [{"name": "image", "type": "BLOB"}],
        "vectors": {"clip": {"vectorizer": {"module": "multi2vec-nvidia", "imageFields": ["image"]}, "index": {"type": "flat"}}},
    })
    noise = np.random.default_rng(7).integers(0, 255, size=(400, 400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, "PNG")
    assert out.tell() > 200 * 1024
    import_ok(client, "Art", [{"image": base64.b64encode(out.getvalue()).decode()}])
    (call,) = nv_calls(fake)
    (sent,) = call.body["input"]
    assert sent.startswith("data:image/jpeg;base64,")
    assert len(base64.b64decode(sent.partition(",")[2])) <= 180_000


def test_nvidia_401_says_how_to_give_the_key(nvidia: tuple[FakeNvidia, str], write_config: WriteConfig, client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = nvidia
    monkeypatch.setenv("NVIDIA_APIKEY", "nvapi-wrong-key-0000")
    client = serve(write_config, client_factory, {"text2vec-nvidia": {"baseURL": url}}, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"e5": {"vectorizer": {"module": "text2vec-nvidia"}, "index": {"type": "flat"}}},
    })
    results = batch(client, "Doc", [{"title": "a"}, {"title": "b"}])
    assert [r["result"]["status"] for r in results] == ["FAILED", "FAILED"]
    message = results[0]["result"]["errors"]["error"][0]["message"]
    assert message.startswith("NVIDIA NIM (text2vec-nvidia) refused the API key: 401")
    assert "NVIDIA_APIKEY" in message and "X-Nvidia-Api-Key" in message
    assert "nvapi-wrong-key-0000" not in json.dumps(results)
    assert len(fake.requests) == 1  # a refused key is not retried, nor bisected
    # The per-request header wins over the environment.
    fake.reset()
    import_ok(client, "Doc", [{"title": "a"}], headers={"X-Nvidia-Api-Key": NV_KEY})
    assert len(nv_calls(fake, NV_KEY)) == 1


# --- text2vec-weaviate ---------------------------------------------------------------------------------


def test_arctic_l_default_sends_no_dimensions_and_is_search_query_only_for_queries(weaviate: tuple[FakeWeaviateEmbed, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = weaviate
    client = serve(write_config, client_factory, {"text2vec-weaviate": {"baseURL": url}}, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"arctic": {"vectorizer": {"module": "text2vec-weaviate"}, "index": {"type": "hnsw"}}},
    })
    ids = import_ok(client, "Doc", [{"title": "A sentence to embed"}, {"title": "Another one"}])
    (call,) = wv_calls(fake)
    assert call.body == {"input": ["A sentence to embed", "Another one"], "model": "Snowflake/snowflake-arctic-embed-l-v2.0"}
    assert np.allclose(stored(client, "Doc", ids[0])["arctic"], text_vector("A sentence to embed", 1024), atol=1e-5)
    fake.reset()
    assert hits(near(client, "Doc", 'nearText: {concepts: ["another"]}'), "Doc")[0]["title"] == "Another one"
    (call,) = wv_calls(fake)
    assert call.body == {"input": ["another"], "model": "Snowflake/snowflake-arctic-embed-l-v2.0", "is_search_query": True}


def test_arctic_m_with_256_dimensions(weaviate: tuple[FakeWeaviateEmbed, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = weaviate
    client = serve(write_config, client_factory, {"text2vec-weaviate": {"baseURL": url}}, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"arctic": {"vectorizer": {"module": "text2vec-weaviate", "model": "Snowflake/snowflake-arctic-embed-m-v1.5", "dimensions": 256}, "index": {"type": "flat"}}},
    })
    ids = import_ok(client, "Doc", [{"title": "matryoshka dolls"}])
    (call,) = wv_calls(fake)
    assert call.body == {"input": ["matryoshka dolls"], "model": "Snowflake/snowflake-arctic-embed-m-v1.5", "dimensions": 256}
    vector = stored(client, "Doc", ids[0])["arctic"]
    assert vector.shape == (256,)
    assert np.allclose(vector, truncate_dims(text_vector("matryoshka dolls", 768), 256), atol=1e-5)
    fake.reset()
    result = near(client, "Doc", 'nearText: {concepts: ["dolls"]}')
    (call,) = wv_calls(fake)
    assert call.body == {"input": ["dolls"], "model": "Snowflake/snowflake-arctic-embed-m-v1.5", "is_search_query": True, "dimensions": 256}
    expected_query = truncate_dims(text_vector("dolls", 768, salt="query"), 256)
    assert hits(result, "Doc")[0]["_additional"]["distance"] == pytest.approx(1 - float(expected_query @ vector), abs=1e-4)


def test_weaviate_keys_and_cluster_from_request_headers(weaviate: tuple[FakeWeaviateEmbed, str], write_config: WriteConfig, client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = weaviate
    monkeypatch.delenv("WEAVIATE_APIKEY")
    monkeypatch.delenv("WEAVIATE_CLUSTER_URL")
    client = serve(write_config, client_factory, {"text2vec-weaviate": {"baseURL": url}}, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"arctic": {"vectorizer": {"module": "text2vec-weaviate"}, "index": {"type": "flat"}}},
    })
    # No cluster URL anywhere: a per-object error saying where to give it, and nothing is sent.
    (result,) = batch(client, "Doc", [{"title": "x"}])
    assert result["result"]["status"] == "FAILED"
    message = result["result"]["errors"]["error"][0]["message"]
    assert "needs the URL of your Weaviate Cloud cluster" in message
    assert "WEAVIATE_CLUSTER_URL" in message and "X-Weaviate-Cluster-Url" in message
    assert fake.requests == []

    other = "https://other.weaviate.cloud"
    headers = {"X-Weaviate-Api-Key": WV_KEY, "X-Weaviate-Cluster-Url": other}
    import_ok(client, "Doc", [{"title": "x"}], headers=headers)
    assert len(wv_calls(fake, WV_KEY, other)) == 1
    fake.reset()
    assert hits(near(client, "Doc", 'nearText: {concepts: ["y"]}', headers=headers), "Doc")
    assert len(wv_calls(fake, WV_KEY, other)) == 1


def test_weaviate_cluster_url_from_config(weaviate: tuple[FakeWeaviateEmbed, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = weaviate
    client = serve(write_config, client_factory, {"text2vec-weaviate": {"baseURL": url, "clusterUrl": "https://configured.weaviate.cloud", "apiKey": "${WEAVIATE_APIKEY}"}}, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"arctic": {"vectorizer": {"module": "text2vec-weaviate"}, "index": {"type": "flat"}}},
    })
    import_ok(client, "Doc", [{"title": "x"}])
    assert len(wv_calls(fake, WV_KEY, "https://configured.weaviate.cloud")) == 1


# --- multi2multivec-weaviate (ColModernVBERT) ------------------------------------------------------------


def test_colmodernvbert_images_two_per_request_text_queries(weaviate: tuple[FakeWeaviateEmbed, str], write_config: WriteConfig, client_factory: ClientFactory) -> None:
    fake, url = weaviate
    client = serve(write_config, client_factory, {"multi2multivec-weaviate": {"baseURL": url}}, {
        "name": "Page",
        "properties": [{"name": "title", "type": "TEXT"}, {"name": "scan", "type": "BLOB"}],
        "vectors": {"pages": {"vectorizer": {"module": "multi2multivec-weaviate", "imageFields": ["scan"]}, "index": {"type": "multivector"}}},
    })
    scans = [picture((220, 20, 20)), picture((20, 160, 20)), picture((240, 230, 20))]
    ids = import_ok(client, "Page", [{"title": t, "scan": s} for t, s in zip(("red", "green", "yellow"), scans)])
    calls = wv_calls(fake)
    # Raw base64 (no data: prefix), two images per request, no is_search_query for documents.
    assert sorted((c.body for c in calls), key=lambda b: -len(b["input"])) == [
        {"input": scans[:2], "model": "ModernVBERT/colmodernvbert"},
        {"input": scans[2:], "model": "ModernVBERT/colmodernvbert"},
    ]
    for object_id, scan in zip(ids, scans):
        matrix = stored(client, "Page", object_id)["pages"]
        expected = image_matrix(raw(scan), 128)
        assert matrix.shape == expected.shape and matrix.shape[1] == 128
        assert np.allclose(matrix, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)

    fake.reset()
    assert hits(near(client, "Page", 'nearText: {concepts: ["yellow image"]}'), "Page")[0]["title"] == "yellow"
    (call,) = wv_calls(fake)
    assert call.body == {"input": ["yellow image"], "model": "ModernVBERT/colmodernvbert", "is_search_query": True}

    fake.reset()
    refused = near(client, "Page", f'nearImage: {{image: "{scans[0]}"}}')
    assert "nearImage needs an image module, but vector 'pages' uses multi2multivec-weaviate" in refused["errors"][0]["message"]
    assert fake.requests == []


# --- config validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vectorizer", "index", "message"),
    [
        ({"module": "text2vec-weaviate", "dimensions": 512}, "flat", "Snowflake/snowflake-arctic-embed-l-v2.0 does not offer 512 dimensions; it offers 1024 or 256"),
        ({"module": "text2vec-weaviate", "model": "Snowflake/snowflake-arctic-embed-m-v1.5", "dimensions": 1024}, "flat", "does not offer 1024 dimensions; it offers 768 or 256"),
        ({"module": "multi2multivec-weaviate", "textFields": ["title"], "imageFields": ["scan"]}, "multivector", "module 'multi2multivec-weaviate' does not embed texts"),
        ({"module": "multi2multivec-weaviate", "imageFields": ["scan"]}, "hnsw", "module 'multi2multivec-weaviate' produces multi-vectors"),
        ({"module": "multi2vec-nvidia", "imageFields": ["scan"], "lateChunking": True}, "flat", "model nvidia/nvclip does not take 'lateChunking'"),
        ({"module": "text2vec-nvidia", "dimensions": 512}, "flat", "512 is outside nvidia/nv-embedqa-e5-v5's range 1024..1024"),
    ],
)
def test_config_validation(write_config: WriteConfig, vectorizer: dict[str, Any], index: str, message: str) -> None:
    config = {
        "collections": [{
            "name": "Page",
            "properties": [{"name": "title", "type": "TEXT"}, {"name": "scan", "type": "BLOB"}],
            "vectors": {"v": {"vectorizer": vectorizer, "index": {"type": index}}},
        }]
    }
    with pytest.raises(ConfigError) as raised:
        load_spec(write_config(json.dumps(config)), default_registry(), environ={})
    assert message in str(raised.value)
