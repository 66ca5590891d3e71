"""The Jina AI modules end to end: the running app against the fake Jina API on a local port.

Every test checks the exact bodies the fake received and compares the stored vectors with
the ones the fake's pure embedding functions give (tests/fakes/embeddings.py).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from searchd.config import load_spec
from searchd.errors import ConfigError
from searchd.modules import default_registry
from tests.conftest import ClientFactory, graphql
from tests.fakes import FakeJina, serving
from tests.fakes.base import RecordedRequest
from tests.fakes.embeddings import image_matrix, image_vector, late_chunk_vectors, normalise, text_vector, token_matrix, truncate_dims

KEY = "jina_unit-test-key-5f1c2a"
WriteConfig = Callable[..., Path]


@dataclass
class Served:
    fake: FakeJina
    url: str


@pytest.fixture(scope="module")
def served_jina() -> Iterator[Served]:
    fake = FakeJina(api_keys=[KEY])
    with serving(fake.app) as url:
        yield Served(fake, url)


@pytest.fixture
def jina(served_jina: Served, monkeypatch: pytest.MonkeyPatch) -> Served:
    served_jina.fake.reset()
    monkeypatch.setenv("JINAAI_APIKEY", KEY)
    return served_jina


# --- helpers -------------------------------------------------------------------------------------------


def png(colour: tuple[int, int, int], size: int = 32, kind: str = "PNG") -> str:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, kind)
    return base64.b64encode(out.getvalue()).decode()


def raw(b64: str) -> bytes:
    return base64.b64decode(b64)


def serve(write_config: WriteConfig, client_factory: ClientFactory, url: str, collection: dict[str, Any], modules: dict[str, Any] | None = None) -> TestClient:
    """A server for one collection; every Jina module points at the fake, keyed by ${JINAAI_APIKEY}."""
    settings = {"baseURL": url, "apiKey": "${JINAAI_APIKEY}"}
    config = {
        "modules": modules if modules is not None else {m: dict(settings) for m in ("text2vec-jinaai", "multi2vec-jinaai", "multi2multivec-jinaai", "text2multivec-jinaai")},
        "collections": [collection],
    }
    return client_factory(write_config(json.dumps(config)))


def import_ok(client: TestClient, cls: str, objects: list[dict[str, Any]]) -> list[str]:
    response = client.post("/v1/batch/objects", json={"objects": [{"class": cls, "properties": p} for p in objects]})
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["result"]["status"] for r in results] == ["SUCCESS"] * len(objects), results
    return [r["id"] for r in results]


def stored(client: TestClient, cls: str, object_id: str) -> dict[str, np.ndarray]:
    body = client.get(f"/v1/objects/{cls}/{object_id}?include=vector").json()
    return {name: np.asarray(v, dtype=np.float32) for name, v in body["vectors"].items()}


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    rows = np.asarray(matrix, dtype=np.float32)
    return np.asarray(rows / np.linalg.norm(rows, axis=-1, keepdims=True), dtype=np.float32)


def weighted(parts: Sequence[tuple[float, np.ndarray]]) -> np.ndarray:
    """What a weighted multi-field vector must be: normalise(sum w_f * unit(v_f) / sum w_f)."""
    total = sum(w for w, _ in parts)
    combined = np.sum([w * normalise(v) for w, v in parts], axis=0) / total
    return normalise(combined)


def near(client: TestClient, cls: str, argument: str, vector: str, fields: str = "title") -> list[dict[str, Any]]:
    argument = argument.replace("@TV@", f'targetVectors: ["{vector}"]')
    result = graphql(client, "{ Get { " + cls + "(" + argument + ", limit: 5) { " + fields + " _additional { distance } } } }")
    assert "errors" not in result, result
    hits: list[dict[str, Any]] = result["data"]["Get"][cls]
    return hits


def embeddings_calls(fake: FakeJina, path: str = "/v1/embeddings") -> list[RecordedRequest]:
    calls = fake.requests
    assert all(c.path == path for c in calls), [c.path for c in calls]
    assert all(c.headers.get("authorization") == f"Bearer {KEY}" for c in calls)
    assert all(c.headers.get("content-type", "").startswith("application/json") for c in calls)
    return calls


# --- text2vec-jinaai: per-model request fields ---------------------------------------------------------


@pytest.mark.parametrize(("model", "dims"), [(None, 768), ("jina-embeddings-v2-small-en", 512)])
def test_v2_models_get_no_task_no_dimensions_no_normalized(jina: Served, write_config: WriteConfig, client_factory: ClientFactory, model: str | None, dims: int) -> None:
    vectorizer = {"module": "text2vec-jinaai", **({"model": model} if model else {})}
    client = serve(write_config, client_factory, jina.url, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}, {"name": "body", "type": "TEXT"}],
        "vectors": {"v": {"vectorizer": vectorizer, "index": {"type": "flat"}}},
    })
    docs = [{"title": "Sourdough starter", "body": "Feed it flour and water"}, {"title": "Espresso crema"}]
    ids = import_ok(client, "Doc", docs)
    name = model or "jina-embeddings-v2-base-en"  # the default model
    (call,) = embeddings_calls(jina.fake)
    # Each object's TEXT fields in order; unique inputs only, one request.
    assert call.body == {"model": name, "input": ["Sourdough starter", "Feed it flour and water", "Espresso crema"], "embedding_type": "float"}
    first = stored(client, "Doc", ids[0])["v"]
    assert first.shape == (dims,)
    assert np.allclose(first, weighted([(1, text_vector("Sourdough starter", dims)), (1, text_vector("Feed it flour and water", dims))]), atol=1e-5)
    assert np.allclose(stored(client, "Doc", ids[1])["v"], text_vector("Espresso crema", dims), atol=1e-5)

    jina.fake.reset()
    hits = near(client, "Doc", 'nearText: {concepts: ["espresso"], @TV@}', "v")
    assert hits[0]["title"] == "Espresso crema"
    (query,) = embeddings_calls(jina.fake)
    assert query.body == {"model": name, "input": ["espresso"], "embedding_type": "float"}


def test_v3_sends_tasks_normalized_dimensions_and_truncate(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = serve(write_config, client_factory, jina.url, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}, {"name": "tags", "type": "TEXT[]"}],
        "vectors": {"v": {"vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 256, "truncate": "END"}, "index": {"type": "flat"}}},
    })
    ids = import_ok(client, "Doc", [{"title": "Organic skincare", "tags": ["sensitive", "skin"]}])
    (call,) = embeddings_calls(jina.fake)
    assert call.body == {
        "model": "jina-embeddings-v3",
        "input": ["Organic skincare", "sensitive skin"],  # a TEXT[] is one input, its elements joined
        "embedding_type": "float",
        "task": "retrieval.passage",
        "normalized": True,
        "dimensions": 256,
        "truncate": True,
    }
    # Matryoshka: the fake computes 1024 and keeps the first 256, renormalised.
    parts = [(1, truncate_dims(text_vector(t, 1024, salt="retrieval.passage"), 256)) for t in ("Organic skincare", "sensitive skin")]
    vector = stored(client, "Doc", ids[0])["v"]
    assert vector.shape == (256,)
    assert np.allclose(vector, weighted(parts), atol=1e-5)

    jina.fake.reset()
    hits = near(client, "Doc", 'nearText: {concepts: ["skincare"], @TV@}', "v")
    (query,) = embeddings_calls(jina.fake)
    assert query.body == {
        "model": "jina-embeddings-v3",
        "input": ["skincare"],
        "embedding_type": "float",
        "task": "retrieval.query",
        "normalized": True,
        "dimensions": 256,
        "truncate": True,
    }
    expected_query = truncate_dims(text_vector("skincare", 1024, salt="retrieval.query"), 256)
    assert hits[0]["_additional"]["distance"] == pytest.approx(1 - float(expected_query @ vector), abs=1e-4)


def test_v3_truncate_none_is_sent_as_false(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = serve(write_config, client_factory, jina.url, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"v": {"vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "truncate": "NONE"}, "index": {"type": "flat"}}},
    })
    ids = import_ok(client, "Doc", [{"title": "short"}])
    (call,) = embeddings_calls(jina.fake)
    assert call.body == {"model": "jina-embeddings-v3", "input": ["short"], "embedding_type": "float", "task": "retrieval.passage", "normalized": True, "truncate": False}
    assert np.allclose(stored(client, "Doc", ids[0])["v"], text_vector("short", 1024, salt="retrieval.passage"), atol=1e-5)


def test_v4_gets_task_and_dimensions_but_no_normalized(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = serve(write_config, client_factory, jina.url, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"v": {"vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v4", "dimensions": 512}, "index": {"type": "hnsw"}}},
    })
    ids = import_ok(client, "Doc", [{"title": "Quarterly invoice totals"}, {"title": "Holiday photos"}])
    (call,) = embeddings_calls(jina.fake)
    assert call.body == {
        "model": "jina-embeddings-v4",
        "input": ["Quarterly invoice totals", "Holiday photos"],
        "embedding_type": "float",
        "task": "retrieval.passage",
        "dimensions": 512,
    }
    assert np.allclose(stored(client, "Doc", ids[0])["v"], truncate_dims(text_vector("Quarterly invoice totals", 2048, salt="retrieval.passage"), 512), atol=1e-5)
    jina.fake.reset()
    assert near(client, "Doc", 'nearText: {concepts: ["invoice"], @TV@}', "v")[0]["title"] == "Quarterly invoice totals"
    (query,) = embeddings_calls(jina.fake)
    assert query.body == {"model": "jina-embeddings-v4", "input": ["invoice"], "embedding_type": "float", "task": "retrieval.query", "dimensions": 512}


# --- config validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vectorizer", "properties", "index", "message"),
    [
        ({"module": "multi2vec-jinaai", "dimensions": 2000, "imageFields": ["image"]}, None, "flat", "2000 is outside jina-clip-v2's range 64..1024"),
        ({"module": "multi2vec-jinaai", "model": "jina-clip-v2", "dimensions": 32, "imageFields": ["image"]}, None, "flat", "32 is outside jina-clip-v2's range 64..1024"),
        ({"module": "multi2vec-jinaai", "model": "jina-clip-v1", "dimensions": 512, "imageFields": ["image"]}, None, "flat", "512 is outside jina-clip-v1's range 768..768"),
        ({"module": "text2vec-jinaai", "lateChunking": True}, None, "flat", "model jina-embeddings-v2-base-en does not take 'lateChunking'"),
        ({"module": "text2vec-jinaai", "model": "jina-embeddings-v2-small-en", "truncate": "END"}, None, "flat", "model jina-embeddings-v2-small-en does not take 'truncate'"),
        ({"module": "text2vec-jinaai", "model": "jina-embeddings-v2-base-en", "dimensions": 256}, None, "flat", "256 is outside jina-embeddings-v2-base-en's range 768..768"),
        ({"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 2048}, None, "flat", "2048 is outside jina-embeddings-v3's range 32..1024"),
        ({"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "truncate": "START"}, None, "flat", "Jina AI can only cut over-long input at the end"),
        ({"module": "text2vec-jinaai", "model": "jina-embeddings-v5"}, None, "flat", "module 'text2vec-jinaai' has no model 'jina-embeddings-v5'"),
        ({"module": "text2multivec-jinaai", "dimensions": 100}, None, "multivector", "jina-colbert-v2 does not offer 100 dimensions; it offers 128 or 96 or 64"),
        ({"module": "text2multivec-jinaai"}, None, "flat", "module 'text2multivec-jinaai' produces multi-vectors"),
        ({"module": "multi2vec-jinaai", "imageFields": ["image"], "weights": {"picture": 1}}, None, "flat", "weights names 'picture', which is not one of this vector's fields"),
    ],
)
def test_config_validation_rejects_what_the_model_cannot_do(
    write_config: WriteConfig, vectorizer: dict[str, Any], properties: Any, index: str, message: str
) -> None:
    config = {
        "modules": {vectorizer["module"]: {"baseURL": "http://127.0.0.1:9"}},
        "collections": [
            {
                "name": "Doc",
                "properties": properties or [{"name": "title", "type": "TEXT"}, {"name": "image", "type": "BLOB"}],
                "vectors": {"v": {"vectorizer": vectorizer, "index": {"type": index}}},
            }
        ],
    }
    with pytest.raises(ConfigError) as raised:
        load_spec(write_config(json.dumps(config)), default_registry(), environ={})
    assert message in str(raised.value)


def test_validate_cli_names_the_bad_dimensions(write_config: WriteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    from searchd.cli import main

    config = {
        "collections": [{
            "name": "Doc",
            "properties": [{"name": "image", "type": "BLOB"}],
            "vectors": {"v": {"vectorizer": {"module": "multi2vec-jinaai", "model": "jina-clip-v2", "dimensions": 2000, "imageFields": ["image"]}}},
        }]
    }
    assert main(["validate", str(write_config(json.dumps(config)))]) != 0
    out = capsys.readouterr()
    assert "collections[0].vectors.v.vectorizer.dimensions: 2000 is outside jina-clip-v2's range 64..1024" in out.out + out.err


# --- multi2vec-jinaai (CLIP) ----------------------------------------------------------------------------


CLIP_COLLECTION = {
    "name": "Art",
    "properties": [{"name": "title", "type": "TEXT"}, {"name": "description", "type": "TEXT"}, {"name": "image", "type": "BLOB"}],
}


def test_clip_v2_weights_by_field_name_and_matryoshka(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    # textFields order differs from the weights' order: weights go by name, never by position.
    vectorizer = {"module": "multi2vec-jinaai", "dimensions": 64, "textFields": ["description", "title"], "imageFields": ["image"], "weights": {"image": 1.3, "title": 0.5, "description": 0.2}}
    client = serve(write_config, client_factory, jina.url, {**CLIP_COLLECTION, "vectors": {"clip": {"vectorizer": vectorizer, "index": {"type": "flat"}}}})
    red, blue = png((220, 20, 20)), png((20, 20, 220))
    ids = import_ok(client, "Art", [
        {"title": "Red square", "description": "a bold field of colour", "image": red},
        {"title": "Blue square", "image": blue},  # no description: it does not count
    ])
    calls = embeddings_calls(jina.fake)
    assert len(calls) == 2  # texts and images go in separate batches
    texts = next(c for c in calls if "text" in c.body["input"][0])
    images = next(c for c in calls if "image" in c.body["input"][0])
    common = {"model": "jina-clip-v2", "embedding_type": "float", "normalized": True, "dimensions": 64}
    assert texts.body == {**common, "input": [{"text": "a bold field of colour"}, {"text": "Red square"}, {"text": "Blue square"}]}
    assert images.body == {**common, "input": [{"image": red}, {"image": blue}]}  # raw base64, no data: prefix

    def clip_text(t: str) -> np.ndarray:
        return truncate_dims(text_vector(t, 1024), 64)

    def clip_image(b64: str) -> np.ndarray:
        return truncate_dims(image_vector(raw(b64), 1024), 64)

    first = stored(client, "Art", ids[0])["clip"]
    assert first.shape == (64,)
    expected = weighted([(0.5, clip_text("Red square")), (0.2, clip_text("a bold field of colour")), (1.3, clip_image(red))])
    assert np.allclose(first, expected, atol=1e-5)
    assert np.allclose(stored(client, "Art", ids[1])["clip"], weighted([(0.5, clip_text("Blue square")), (1.3, clip_image(blue))]), atol=1e-5)

    # nearImage: the query image as raw base64, no task (CLIP has none).
    jina.fake.reset()
    query_image = png((200, 30, 30), size=40)
    hits = near(client, "Art", f'nearImage: {{image: "{query_image}", @TV@}}', "clip")
    assert hits[0]["title"] == "Red square"
    (call,) = embeddings_calls(jina.fake)
    assert call.body == {**common, "input": [{"image": query_image}]}
    jina.fake.reset()
    assert near(client, "Art", 'nearText: {concepts: ["blue image"], @TV@}', "clip")[0]["title"] == "Blue square"
    (call,) = embeddings_calls(jina.fake)
    assert call.body == {**common, "input": [{"text": "blue image"}]}


def test_clip_v1_never_gets_dimensions(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    vectorizer = {"module": "multi2vec-jinaai", "model": "jina-clip-v1", "dimensions": 768, "textFields": ["title"], "imageFields": ["image"]}
    client = serve(write_config, client_factory, jina.url, {**CLIP_COLLECTION, "vectors": {"clip": {"vectorizer": vectorizer, "index": {"type": "flat"}}}})
    green = png((20, 160, 20), kind="JPEG")
    ids = import_ok(client, "Art", [{"title": "Meadow", "image": green}])
    bodies = sorted((c.body for c in embeddings_calls(jina.fake)), key=lambda b: "image" in b["input"][0])
    assert bodies == [
        {"model": "jina-clip-v1", "input": [{"text": "Meadow"}], "embedding_type": "float", "normalized": True},
        {"model": "jina-clip-v1", "input": [{"image": green}], "embedding_type": "float", "normalized": True},
    ]
    vector = stored(client, "Art", ids[0])["clip"]
    assert vector.shape == (768,)
    assert np.allclose(vector, weighted([(1, text_vector("Meadow", 768)), (1, image_vector(raw(green), 768))]), atol=1e-5)
    jina.fake.reset()
    query_image = png((30, 150, 30))
    assert near(client, "Art", f'nearImage: {{image: "{query_image}", @TV@}}', "clip")[0]["title"] == "Meadow"
    (call,) = embeddings_calls(jina.fake)
    assert call.body == {"model": "jina-clip-v1", "input": [{"image": query_image}], "embedding_type": "float", "normalized": True}


# --- multi-vector modules ----------------------------------------------------------------------------


def test_v4_multivector_text_and_images(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    vectorizer = {"module": "multi2multivec-jinaai", "textFields": ["title"], "imageFields": ["image"]}
    client = serve(write_config, client_factory, jina.url, {**CLIP_COLLECTION, "vectors": {"mv": {"vectorizer": vectorizer, "index": {"type": "multivector"}}}})
    red, yellow = png((220, 20, 20)), png((240, 230, 20))
    ids = import_ok(client, "Art", [{"title": "invoice page", "image": red}, {"title": "sunny beach", "image": yellow}])
    calls = embeddings_calls(jina.fake)
    common = {"model": "jina-embeddings-v4", "embedding_type": "float", "task": "retrieval.passage", "return_multivector": True}
    assert sorted((c.body for c in calls), key=lambda b: "image" in b["input"][0]) == [
        {**common, "input": [{"text": "invoice page"}, {"text": "sunny beach"}]},
        {**common, "input": [{"image": red}, {"image": yellow}]},
    ]
    matrix = stored(client, "Art", ids[0])["mv"]
    # One 128-d row per token, then the image's rows.
    expected = np.vstack([token_matrix("invoice page", 128, salt="retrieval.passage"), unit_rows(image_matrix(raw(red), 128))])
    assert matrix.shape == expected.shape and matrix.shape[1] == 128
    assert np.allclose(matrix, expected, atol=1e-5)

    jina.fake.reset()
    assert near(client, "Art", 'nearText: {concepts: ["sunny beach"], @TV@}', "mv")[0]["title"] == "sunny beach"
    (call,) = embeddings_calls(jina.fake)
    assert call.body == {**common, "task": "retrieval.query", "input": [{"text": "sunny beach"}]}
    jina.fake.reset()
    assert near(client, "Art", f'nearImage: {{image: "{red}", @TV@}}', "mv")[0]["title"] == "invoice page"
    (call,) = embeddings_calls(jina.fake)
    assert call.body == {**common, "task": "retrieval.query", "input": [{"image": red}]}


@pytest.mark.parametrize("dims", [128, 96])
def test_colbert_uses_the_multi_vector_endpoint(jina: Served, write_config: WriteConfig, client_factory: ClientFactory, dims: int) -> None:
    client = serve(write_config, client_factory, jina.url, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"cb": {"vectorizer": {"module": "text2multivec-jinaai", "dimensions": dims}, "index": {"type": "multivector"}}},
    })
    ids = import_ok(client, "Doc", [{"title": "late interaction retrieval"}, {"title": "baking bread"}])
    (call,) = embeddings_calls(jina.fake, "/v1/multi-vector")
    assert call.body == {"model": "jina-colbert-v2", "input": ["late interaction retrieval", "baking bread"], "embedding_type": "float", "dimensions": dims, "input_type": "document"}
    matrix = stored(client, "Doc", ids[0])["cb"]
    assert np.allclose(matrix, truncate_dims(token_matrix("late interaction retrieval", 128, salt="document"), dims), atol=1e-5)
    jina.fake.reset()
    assert near(client, "Doc", 'nearText: {concepts: ["bread"], @TV@}', "cb")[0]["title"] == "baking bread"
    (call,) = embeddings_calls(jina.fake, "/v1/multi-vector")
    assert call.body == {"model": "jina-colbert-v2", "input": ["bread"], "embedding_type": "float", "dimensions": dims, "input_type": "query"}


# --- late chunking ----------------------------------------------------------------------------------------


LATE_DOCS: list[dict[str, Any]] = [
    {"title": "Berlin", "chunks": ["Berlin is the capital of Germany.", "It has 3.8 million inhabitants."]},
    {"title": "Paris", "chunks": ["Paris is the capital of France.", "Its population is about 2 million.", "The Seine runs through it."]},
]


@pytest.mark.parametrize("index", ["multivector", "flat"])
def test_late_chunking_sends_each_document_alone_with_its_chunks_in_order(
    jina: Served, write_config: WriteConfig, client_factory: ClientFactory, index: str
) -> None:
    vectorizer = {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "lateChunking": True, "textFields": ["title", "chunks"]}
    client = serve(write_config, client_factory, jina.url, {
        "name": "City",
        "properties": [{"name": "title", "type": "TEXT"}, {"name": "chunks", "type": "TEXT[]"}],
        "vectors": {"late": {"vectorizer": vectorizer, "index": {"type": index}}},
    })
    ids = import_ok(client, "City", LATE_DOCS)
    calls = embeddings_calls(jina.fake)
    documents = [[str(doc["title"]), *doc["chunks"]] for doc in LATE_DOCS]
    common = {"model": "jina-embeddings-v3", "embedding_type": "float", "task": "retrieval.passage", "normalized": True, "late_chunking": True}
    assert sorted((c.body for c in calls), key=lambda b: len(b["input"])) == [{**common, "input": chunks} for chunks in documents]
    for object_id, chunks in zip(ids, documents):
        rows = np.stack(late_chunk_vectors(chunks, 1024, salt="retrieval.passage"))
        vector = stored(client, "City", object_id)["late"]
        if index == "multivector":
            assert vector.shape == (len(chunks), 1024)  # one row per chunk
            assert np.allclose(vector, rows, atol=1e-5)
        else:
            assert vector.shape == (1024,)  # the mean of the chunk vectors
            assert np.allclose(vector, normalise(rows.mean(axis=0)), atol=1e-5)
    jina.fake.reset()
    assert near(client, "City", 'nearText: {concepts: ["Seine river France"], @TV@}', "late")[0]["title"] == "Paris"
    (call,) = embeddings_calls(jina.fake)
    # A query is not chunked.
    assert call.body == {"model": "jina-embeddings-v3", "input": ["Seine river France"], "embedding_type": "float", "task": "retrieval.query", "normalized": True}


def test_late_chunking_neighbours_change_a_chunk(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    """The same chunk in two documents gets two vectors: it was embedded in context."""
    vectorizer = {"module": "text2vec-jinaai", "model": "jina-embeddings-v4", "lateChunking": True, "dimensions": 256}
    client = serve(write_config, client_factory, jina.url, {
        "name": "City",
        "properties": [{"name": "chunks", "type": "TEXT[]"}],
        "vectors": {"late": {"vectorizer": vectorizer, "index": {"type": "multivector"}}},
    })
    ids = import_ok(client, "City", [{"chunks": ["It is big.", "Berlin is in Germany."]}, {"chunks": ["It is big.", "Lyon is in France."]}])
    bodies = [c.body for c in embeddings_calls(jina.fake)]
    assert len(bodies) == 2 and all(b["late_chunking"] is True and b["dimensions"] == 256 and "normalized" not in b for b in bodies)
    a, b = (stored(client, "City", i)["late"] for i in ids)
    assert not np.allclose(a[0], b[0], atol=1e-3)
    expected = truncate_dims(np.stack(late_chunk_vectors(["It is big.", "Berlin is in Germany."], 2048, salt="retrieval.passage")), 256)
    assert np.allclose(a, expected, atol=1e-5)


# --- endpoints -------------------------------------------------------------------------------------------


def test_vector_base_url_overrides_the_module_base_url(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    modules = {"text2vec-jinaai": {"baseURL": "http://127.0.0.1:9", "apiKey": "${JINAAI_APIKEY}", "maxRetries": 0}}
    client = serve(write_config, client_factory, jina.url, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"v": {"vectorizer": {"module": "text2vec-jinaai", "baseURL": jina.url + "/"}, "index": {"type": "flat"}}},
    }, modules=modules)
    import_ok(client, "Doc", [{"title": "hello"}])
    (call,) = embeddings_calls(jina.fake)
    assert call.body["input"] == ["hello"]


def test_env_key_is_used_when_the_config_names_none(jina: Served, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = serve(write_config, client_factory, jina.url, {
        "name": "Doc",
        "properties": [{"name": "title", "type": "TEXT"}],
        "vectors": {"v": {"vectorizer": {"module": "text2vec-jinaai"}, "index": {"type": "flat"}}},
    }, modules={"text2vec-jinaai": {"baseURL": jina.url}})
    import_ok(client, "Doc", [{"title": "hello"}])
    (call,) = embeddings_calls(jina.fake)  # checks Authorization: Bearer KEY, read from JINAAI_APIKEY
    assert call.body["model"] == "jina-embeddings-v2-base-en"
