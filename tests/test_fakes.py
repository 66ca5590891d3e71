"""Tests of the fake embedding providers themselves (tests/fakes), over real HTTP on a local port."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.fakes import FakeJina, FakeNvidia, FakeProvider, FakeWeaviateEmbed, serving
from tests.fakes.embeddings import (
    colour_name,
    image_matrix,
    image_vector,
    late_chunk_vectors,
    text_vector,
    token_matrix,
    token_vector,
    tokens,
    truncate_dims,
)

KEY = "test-key"
CLUSTER = "https://demo.weaviate.cloud"


def png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def vec(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


RED, BLUE = png((230, 10, 10)), png((10, 10, 230))


# --- fixtures: each fake is served once per module, its state reset before every test -------------------------


@pytest.fixture(scope="module")
def jina_server() -> Iterator[tuple[FakeJina, str]]:
    fake = FakeJina()
    with serving(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def nvidia_server() -> Iterator[tuple[FakeNvidia, str]]:
    fake = FakeNvidia()
    with serving(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def weaviate_server() -> Iterator[tuple[FakeWeaviateEmbed, str]]:
    fake = FakeWeaviateEmbed()
    with serving(fake.app) as url:
        yield fake, url


def _client(fake: FakeProvider, url: str, headers: dict[str, str]) -> Iterator[httpx.Client]:
    fake.reset()
    with httpx.Client(base_url=url, headers=headers, timeout=5.0) as client:
        yield client


@pytest.fixture
def jina(jina_server: tuple[FakeJina, str]) -> Iterator[httpx.Client]:
    yield from _client(*jina_server, {"Authorization": f"Bearer {KEY}"})


@pytest.fixture
def nvidia(nvidia_server: tuple[FakeNvidia, str]) -> Iterator[httpx.Client]:
    yield from _client(*nvidia_server, {"Authorization": f"Bearer {KEY}"})


@pytest.fixture
def wembed(weaviate_server: tuple[FakeWeaviateEmbed, str]) -> Iterator[httpx.Client]:
    yield from _client(*weaviate_server, {"Authorization": f"Bearer {KEY}", "X-Weaviate-Cluster-Url": CLUSTER})


def jina_embed(client: httpx.Client, **body: Any) -> list[np.ndarray]:
    r = client.post("/v1/embeddings", json=body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    return [vec(d["embedding"] if "embedding" in d else d["embeddings"]) for d in data]


# --- embeddings.py: pure functions ----------------------------------------------------------------------------


def test_token_vectors_are_stable_unit_float32() -> None:
    a, b = token_vector("apple", 64), token_vector("apple", 64)
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-6)
    assert not np.allclose(a, token_vector("pear", 64))
    assert tokens("Hello, World! it's") == ["hello", "world", "it", "s"]


def test_text_vectors_have_structure() -> None:
    cat, cats, car = (text_vector(t, 512) for t in ("the black cat sleeps", "a black cat sleeps here", "quantum tax law"))
    assert cos(cat, cats) > cos(cat, car) + 0.3
    query, passage = text_vector("black cat", 512, salt="retrieval.query"), text_vector("black cat", 512, salt="retrieval.passage")
    assert not np.allclose(query, passage) and cos(query, passage) > 0.98
    assert token_matrix("black cat", 128).shape == (2, 128)
    assert text_vector("", 32).shape == (32,)


def test_truncate_dims_is_prefix_renormalised() -> None:
    full = text_vector("matryoshka dolls", 1024)
    small = truncate_dims(full, 256)
    assert np.allclose(small, full[:256] / np.linalg.norm(full[:256]))
    assert truncate_dims(token_matrix("a b", 128), 64).shape == (2, 64)


def test_images_land_near_their_caption() -> None:
    assert colour_name(RED) == "red" and colour_name(BLUE) == "blue"
    red = image_vector(RED, 512)
    assert cos(red, text_vector("a red image", 512)) > cos(red, text_vector("a blue image", 512)) + 0.15
    assert image_matrix(RED, 128).shape[1] == 128
    with pytest.raises(ValueError):
        image_vector(b"not an image", 64)


def test_late_chunking_sees_neighbours() -> None:
    a = late_chunk_vectors(["first chunk", "second chunk"], 256)
    b = late_chunk_vectors(["first chunk", "entirely different words"], 256)
    assert not np.allclose(a[0], b[0]) and cos(a[0], b[0]) > 0.8


# --- Jina -----------------------------------------------------------------------------------------------------


def test_jina_auth(jina: httpx.Client) -> None:
    body = {"model": "jina-embeddings-v3", "input": ["x"]}
    missing = jina.post("/v1/embeddings", json=body, headers={"Authorization": ""})
    wrong = jina.post("/v1/embeddings", json=body, headers={"Authorization": "Bearer nope"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert "detail" in missing.json() and "detail" in wrong.json()


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("jina-embeddings-v2-base-en", "task", "retrieval.passage"),
        ("jina-embeddings-v2-small-en", "dimensions", 256),
        ("jina-embeddings-v3", "return_multivector", True),
        ("jina-clip-v1", "task", "retrieval.query"),
        ("jina-clip-v2", "return_multivector", True),
        ("jina-embeddings-v4", "normalized", True),
        ("jina-embeddings-v3", "input_type", "query"),
    ],
)
def test_jina_rejects_fields_a_model_does_not_take(jina: httpx.Client, model: str, field: str, value: Any) -> None:
    r = jina.post("/v1/embeddings", json={"model": model, "input": ["x"], field: value})
    assert r.status_code == 422
    body = r.json()
    assert body["detail"].startswith("[RID: ") and body["detail"].endswith("Validation errors in 1 fields")
    assert body["errors"] == [
        {"field": f"body -> {model} -> {field}", "message": "Extra inputs are not permitted", "type": "extra_forbidden", "input": value}
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "jina-embeddings-v2-base-en", "embedding_type": "float"},
        {
            "model": "jina-embeddings-v3",
            "task": "text-matching",
            "dimensions": 64,
            "normalized": True,
            "late_chunking": False,
            "truncate": True,
        },
        {"model": "jina-clip-v1", "normalized": True, "dimensions": 768},
        {"model": "jina-clip-v2", "task": "retrieval.query", "dimensions": 64, "normalized": True, "truncate": False},
        {"model": "jina-embeddings-v4", "task": "code.query", "dimensions": 128, "truncate": True},
    ],
)
def test_jina_accepts_each_models_own_fields(jina: httpx.Client, body: dict[str, Any]) -> None:
    (v,) = jina_embed(jina, input=["hello"], **body)
    assert v.shape == (body.get("dimensions", 768),)  # only v2-base-en has no `dimensions` here


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "jina-embeddings-v9", "input": ["x"]}, 400, "INPUT_MODEL_NOT_FOUND"),
        ({"model": "jina-colbert-v2", "input": ["x"]}, 400, "/v1/multi-vector"),
        ({"model": "jina-embeddings-v3", "input": []}, 422, "at least 1"),
        ({"model": "jina-embeddings-v3", "input": ["x"] * 513}, 422, "at most 512 items"),
        ({"model": "jina-embeddings-v3", "input": ["x"], "task": "code.query"}, 422, "task"),
        ({"model": "jina-embeddings-v3", "input": ["x"], "dimensions": 2048}, 422, "dimensions"),
        ({"model": "jina-clip-v1", "input": ["x"], "dimensions": 512}, 422, "dimensions"),
        ({"model": "jina-embeddings-v3", "input": [{"image": b64(RED)}]}, 422, "text-only"),
        ({"model": "jina-clip-v2", "input": [{"image": "https://example.com/a.png"}]}, 422, "fetch URLs"),
        ({"model": "jina-clip-v2", "input": [{"image": b64(b"plain bytes, no image")}]}, 422, "image"),
        ({"model": "jina-embeddings-v4", "input": ["x"], "return_multivector": True, "dimensions": 128}, 422, "return_multivector"),
    ],
)
def test_jina_validation_errors(jina: httpx.Client, body: dict[str, Any], status: int, needle: str) -> None:
    r = jina.post("/v1/embeddings", json=body)
    assert r.status_code == status
    assert needle in r.json()["detail"] + str(r.json().get("errors", ""))


def test_jina_batch_of_512_is_accepted(jina: httpx.Client) -> None:
    assert len(jina_embed(jina, model="jina-embeddings-v2-small-en", input=[f"text {i}" for i in range(512)])) == 512


def test_jina_matryoshka_and_task_salt(jina: httpx.Client) -> None:
    text = "organic skincare for sensitive skin"
    (full,) = jina_embed(jina, model="jina-embeddings-v3", input=[text], task="retrieval.passage")
    (small,) = jina_embed(jina, model="jina-embeddings-v3", input=[text], task="retrieval.passage", dimensions=256)
    (query,) = jina_embed(jina, model="jina-embeddings-v3", input=[{"text": text}], task="retrieval.query")
    assert np.allclose(full, text_vector(text, 1024, salt="retrieval.passage"), atol=1e-6)
    assert np.allclose(small, truncate_dims(full, 256), atol=1e-6)
    assert not np.allclose(query, full) and cos(query, full) > 0.98


def test_jina_late_chunking_uses_the_whole_input(jina: httpx.Client) -> None:
    chunks = ["berlin is the capital", "it has many museums"]
    a = jina_embed(jina, model="jina-embeddings-v3", input=chunks, late_chunking=True, task="retrieval.passage")
    b = jina_embed(jina, model="jina-embeddings-v3", input=[chunks[0], "pasta recipes"], late_chunking=True, task="retrieval.passage")
    assert np.allclose(a[0], late_chunk_vectors(chunks, 1024, salt="retrieval.passage")[0], atol=1e-6)
    assert not np.allclose(a[0], b[0])


def test_jina_image_and_caption_are_close(jina: httpx.Client) -> None:
    red_text, blue_text, red_img = jina_embed(
        jina, model="jina-clip-v2", input=[{"text": "a red image"}, "a blue image", {"image": b64(RED)}], dimensions=512
    )
    assert cos(red_img, red_text) > cos(red_img, blue_text)
    assert np.allclose(red_img, truncate_dims(image_vector(RED, 1024), 512), atol=1e-6)


def test_jina_multivector_outputs(jina: httpx.Client) -> None:
    rows = jina_embed(jina, model="jina-embeddings-v4", input=["two words", {"image": b64(RED)}], return_multivector=True)
    assert rows[0].shape == (2, 128) and rows[1].shape[1] == 128
    r = jina.post("/v1/multi-vector", json={"model": "jina-colbert-v2", "input": ["a b c"], "dimensions": 96, "input_type": "query"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["usage"]) == {"total_tokens"} and body["data"][0]["object"] == "embeddings"
    assert np.allclose(vec(body["data"][0]["embeddings"]), truncate_dims(token_matrix("a b c", 128, salt="query"), 96), atol=1e-6)


def test_jina_embedding_types(jina: httpx.Client) -> None:
    (ref,) = jina_embed(jina, model="jina-embeddings-v3", input=["bits"], dimensions=64)
    r = jina.post("/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["bits"], "dimensions": 64, "embedding_type": "binary"})
    bits = np.unpackbits((np.asarray(r.json()["data"][0]["embedding"]) + 128).astype(np.uint8))
    assert np.array_equal(bits.astype(bool), ref > 0)
    r = jina.post("/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["bits"], "dimensions": 64, "embedding_type": "base64"})
    assert np.array_equal(np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4"), ref)


def test_jina_rate_headers_usage_and_recording(jina: httpx.Client, jina_server: tuple[FakeJina, str]) -> None:
    r = jina.post("/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["one two three"]}, headers={"X-Extra": "Yes"})
    assert r.json()["usage"] == {"total_tokens": 3, "prompt_tokens": 3}
    assert int(r.headers["x-ratelimit-remaining-requests"]) == 499 and "x-ratelimit-remaining-tokens" in r.headers
    (rec,) = jina_server[0].requests
    assert (rec.method, rec.path, rec.headers["x-extra"]) == ("POST", "/v1/embeddings", "Yes")
    assert jina_server[0].bodies() == [{"model": "jina-embeddings-v3", "input": ["one two three"]}]


def test_jina_faults(jina: httpx.Client, jina_server: tuple[FakeJina, str]) -> None:
    fake, body = jina_server[0], {"model": "jina-embeddings-v3", "input": ["x"]}
    fake.fail_next(429, retry_after="2")
    fake.fail_next(500, body={"detail": "custom"})
    fake.malformed_next()
    first, second, third, fourth = (jina.post("/v1/embeddings", json=body) for _ in range(4))
    assert (first.status_code, first.headers["retry-after"], first.json()) == (429, "2", {"detail": "Rate limit exceeded"})
    assert (second.status_code, second.json()) == (500, {"detail": "custom"})
    assert third.status_code == 200
    with pytest.raises(ValueError):
        third.json()
    assert fourth.status_code == 200
    assert len(fake.requests) == 4


def test_delay_looks_like_a_server_that_never_answers(jina: httpx.Client, jina_server: tuple[FakeJina, str]) -> None:
    jina_server[0].fail_next(500, delay=30.0)
    with pytest.raises(httpx.ReadTimeout):
        jina.post("/v1/embeddings", json={"model": "jina-embeddings-v3", "input": ["x"]}, timeout=0.2)
    jina_embed(jina, model="jina-embeddings-v3", input=["x"])  # the fault was used up


def test_hold_and_in_flight_max(jina_server: tuple[FakeJina, str]) -> None:
    fake, url = jina_server
    fake.wait_idle()  # a request an earlier test abandoned would count as in flight
    fake.reset()
    fake.hold(4)  # no answer until all four are in flight: side by side whatever the machine's load

    assert asyncio.run(burst_of(url, 4)) == [200] * 4
    assert fake.in_flight_max == 4
    fake.reset()
    assert fake.latency == 0.0 and fake.in_flight_max == 0
    # One request alone is answered once the hold's timeout passes: a client that cannot reach the count fails, not hangs.
    fake.hold(2, timeout=0.05)
    assert asyncio.run(burst_of(url, 1)) == [200]
    assert fake.in_flight_max == 1


async def burst_of(url: str, n: int) -> list[int]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        body = {"model": "jina-embeddings-v2-small-en", "input": ["x"]}
        responses = await asyncio.gather(*(client.post("/v1/embeddings", json=body) for _ in range(n)))
        return [r.status_code for r in responses]


# --- NVIDIA ---------------------------------------------------------------------------------------------------


def data_uri(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{b64(data)}"


def test_nvidia_401_has_no_body_but_www_authenticate(nvidia: httpx.Client) -> None:
    r = nvidia.post("/v1/embeddings", json={"model": "nvidia/nvclip", "input": ["x"]}, headers={"Authorization": "Bearer bad"})
    assert r.status_code == 401 and r.content == b""
    assert r.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


def test_nvidia_e5_input_type_and_response_shape(nvidia: httpx.Client) -> None:
    r = nvidia.post("/v1/embeddings", json={"model": "nvidia/nv-embedqa-e5-v5", "input": "what is love", "input_type": "query"})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"object", "data", "model", "usage"} and body["object"] == "list"
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}
    item = body["data"][0]
    assert (item["index"], item["object"]) == (0, "embedding")
    assert np.allclose(vec(item["embedding"]), text_vector("what is love", 1024, salt="query"), atol=1e-6)
    suffixed = nvidia.post("/v1/embeddings", json={"model": "nvidia/nv-embedqa-e5-v5-passage", "input": ["what is love"]})
    assert np.allclose(vec(suffixed.json()["data"][0]["embedding"]), text_vector("what is love", 1024, salt="passage"), atol=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "nvidia/nv-embedqa-e5-v5", "input": ["x"]}, 400, "input_type"),
        ({"model": "nvidia/nv-embedqa-e5-v5", "input": ["x"], "input_type": "query", "dimensions": 1024}, 400, "extra_forbidden"),
        ({"model": "nvidia/nv-embedqa-e5-v5", "input": ["w " * 600], "input_type": "query"}, 400, "exceeds maximum allowed token size 512"),
        ({"model": "nvidia/nvclip", "input": ["x"], "input_type": "query"}, 400, "extra_forbidden"),
        ({"model": "nvidia/nv-embedqa-e5-v5", "input": [], "input_type": "query"}, 400, "too_short"),
    ],
)
def test_nvidia_400_message_errors(nvidia: httpx.Client, body: dict[str, Any], status: int, needle: str) -> None:
    r = nvidia.post("/v1/embeddings", json=body)
    assert r.status_code == status and set(r.json()) == {"message"} and needle in r.json()["message"]


def test_nvidia_truncate_end_keeps_the_start(nvidia: httpx.Client) -> None:
    words = [f"w{i}" for i in range(600)]
    body = {"model": "nvidia/nv-embedqa-e5-v5", "input": [" ".join(words)], "input_type": "passage", "truncate": "END"}
    r = nvidia.post("/v1/embeddings", json=body)
    assert np.allclose(vec(r.json()["data"][0]["embedding"]), text_vector(" ".join(words[:512]), 1024, salt="passage"), atol=1e-6)


def test_nvidia_nvclip_images(nvidia: httpx.Client) -> None:
    r = nvidia.post("/v1/embeddings", json={"model": "nvidia/nvclip", "input": ["a red image", "a blue image", data_uri(RED)]})
    red_text, blue_text, red_img = (vec(d["embedding"]) for d in r.json()["data"])
    assert cos(red_img, red_text) > cos(red_img, blue_text)
    assert np.allclose(red_img, image_vector(RED, 1024), atol=1e-6)
    assert nvidia.post("/v1/embeddings", json={"model": "nvidia/nvclip", "input": [data_uri(RED, "jpg")]}).status_code == 200


def test_nvidia_nvclip_rejects_bad_images(nvidia: httpx.Client) -> None:
    noise = np.random.default_rng(0).integers(0, 256, size=(300, 300, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    for item, status in [(b64(RED), 422), (data_uri(RED, "gif"), 422), (data_uri(buf.getvalue()), 413)]:
        r = nvidia.post("/v1/embeddings", json={"model": "nvidia/nvclip", "input": [item]})
        assert r.status_code == status
        assert set(r.json()) == {"type", "title", "status", "detail", "requestId"} and r.json()["status"] == status


def test_nvidia_generic_model_and_faults(nvidia: httpx.Client, nvidia_server: tuple[FakeNvidia, str]) -> None:
    body = {"model": "nvidia/llama-3.2-nv-embedqa-1b-v2", "input": ["x"], "input_type": "query", "dimensions": 384}
    assert len(nvidia.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]) == 384
    assert nvidia.post("/v1/embeddings", json={"model": "openai/other", "input": ["x"]}).status_code == 404
    nvidia_server[0].fail_next(429, retry_after="3")
    r = nvidia.post("/v1/embeddings", json=body)
    assert (r.status_code, r.headers["retry-after"], r.json()["title"]) == (429, "3", "Too Many Requests")


# --- Weaviate Embeddings ------------------------------------------------------------------------------------


def test_weaviate_auth_and_cluster_url(wembed: httpx.Client) -> None:
    body = {"model": "Snowflake/snowflake-arctic-embed-l-v2.0", "input": ["x"]}
    cases = [
        ({"Authorization": ""}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"X-Weaviate-Cluster-Url": ""}, 401),
        ({"X-Weaviate-Cluster-Url": "not a url"}, 400),
    ]
    for headers, status in cases:
        r = wembed.post("/v1/embeddings/embed", json=body, headers=headers)
        assert r.status_code == status and "detail" in r.json()


def test_weaviate_text_models(wembed: httpx.Client) -> None:
    model = "Snowflake/snowflake-arctic-embed-l-v2.0"
    r = wembed.post("/v1/embeddings/embed", json={"model": model, "input": ["a", "b c"], "dimensions": 256, "is_search_query": True})
    body = r.json()
    assert set(body) == {"embeddings", "metadata"}
    assert set(body["metadata"]) == {"model", "time_taken_inference", "num_embeddings_inferred", "usage"}
    assert body["metadata"]["num_embeddings_inferred"] == 2 and body["metadata"]["usage"] == {"total_tokens": 3}
    assert np.allclose(vec(body["embeddings"][1]), truncate_dims(text_vector("b c", 1024, salt="query"), 256), atol=1e-6)
    small = wembed.post("/v1/embeddings/embed", json={"model": "Snowflake/snowflake-arctic-embed-m-v1.5", "input": ["x"]})
    assert len(small.json()["embeddings"][0]) == 768
    assert wembed.post("/v1/embeddings/embed", json={"model": model, "input": ["x"], "dimensions": 512}).status_code == 422


def test_weaviate_colmodernvbert(wembed: httpx.Client) -> None:
    model = "ModernVBERT/colmodernvbert"
    docs = wembed.post("/v1/embeddings/embed", json={"model": model, "input": [b64(RED), b64(BLUE)]})
    assert docs.status_code == 200
    red = vec(docs.json()["embeddings"][0])
    assert red.ndim == 2 and red.shape[1] == 128
    query = wembed.post("/v1/embeddings/embed", json={"model": model, "input": ["a red image"], "is_search_query": True})
    q = vec(query.json()["embeddings"][0])
    maxsim = [float((q @ vec(d).T).max(axis=1).sum()) for d in docs.json()["embeddings"]]
    assert maxsim[0] > maxsim[1]
    for body in (
        {"model": model, "input": ["a text document"]},
        {"model": model, "input": [b64(RED)], "is_search_query": True},
        {"model": model, "input": [b64(RED)], "dimensions": 128},
    ):
        r = wembed.post("/v1/embeddings/embed", json=body)
        assert r.status_code == 422 and "detail" in r.json()


# --- serving --------------------------------------------------------------------------------------------------


def test_serving_shuts_down_despite_a_hanging_request() -> None:
    fake = FakeWeaviateEmbed()
    fake.fail_next(500, delay=60.0)
    context = serving(fake.app)
    url = context.__enter__()
    assert url.startswith("http://127.0.0.1:")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/v1/embeddings/embed", json={}, timeout=0.1)
    # Leaving must not wait out the hanging request's 60 s: the exit runs where a (generous) deadline watches it.
    leaving = threading.Thread(target=context.__exit__, args=(None, None, None), daemon=True)
    leaving.start()
    leaving.join(timeout=30.0)
    assert not leaving.is_alive(), "serving() waited for a request whose client had gone"