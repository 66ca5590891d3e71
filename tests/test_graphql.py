"""GraphQL Get through the in-process server, checked against numpy reference computations."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from starlette.testclient import TestClient

from tests.conftest import BACKENDS, MULTIMODAL, ClientFactory, example_objects, graphql

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

VECTORS = np.random.default_rng(7).normal(size=(40, 8)).astype(np.float32)
IDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(40)]


def reference_distance(metric: str, matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    distances: np.ndarray  # numpy's operators are typed as returning Any
    if metric == "cosine":
        m = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        distances = 1 - m @ (query / np.linalg.norm(query))
    elif metric == "dot":
        distances = -(matrix @ query)
    elif metric == "l2-squared":
        distances = ((matrix - query) ** 2).sum(axis=1)
    elif metric == "manhattan":
        distances = np.abs(matrix - query).sum(axis=1)
    else:
        distances = (matrix != query).sum(axis=1).astype(float)
    return distances


@pytest.fixture
def byov(write_config: Callable[..., Path], client_factory: ClientFactory) -> TestClient:
    """A collection with one bring-your-own vector per distance metric."""
    metrics = ["cosine", "dot", "l2-squared", "manhattan", "hamming"]
    collection = {
        "name": "Point",
        "properties": [{"name": "label", "type": "TEXT"}, {"name": "rank", "type": "INT"}],
        "vectors": {m.replace("-", "_"): {"vectorizer": {"module": "none", "dimensions": 8}, "index": {"type": "flat", "distance": m}} for m in metrics},
    }
    config = write_config(yaml.safe_dump({"collections": [collection]}))
    client = client_factory(config)
    objects = [
        {
            "class": "Point",
            "id": IDS[i],
            "properties": {"label": f"p{i}", "rank": i},
            "vectors": {m.replace("-", "_"): (np.round(VECTORS[i]) if m == "hamming" else VECTORS[i]).tolist() for m in metrics},
        }
        for i in range(40)
    ]
    assert all(r["result"]["status"] == "SUCCESS" for r in client.post("/v1/batch/objects", json={"objects": objects}).json())
    return client


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2-squared", "manhattan", "hamming"])
def test_near_vector_matches_numpy(byov: TestClient, metric: str) -> None:
    query = np.random.default_rng(1).normal(size=8).astype(np.float32)
    matrix = VECTORS
    if metric == "hamming":
        query, matrix = np.round(query), np.round(VECTORS)
    expected = reference_distance(metric, matrix.astype(np.float64), query.astype(np.float64))
    order = sorted(range(40), key=lambda i: (round(float(expected[i]), 4), IDS[i]))[:5]
    name = metric.replace("-", "_")
    body = graphql(
        byov,
        "query($v: Vector!, $t: [String]) { Get { Point(nearVector: {vector: $v, targetVectors: $t}, limit: 5) { label _additional { id distance certainty } } } }",
        {"v": query.tolist(), "t": [name]},
    )
    hits = body["data"]["Get"]["Point"]
    assert [h["_additional"]["id"] for h in hits] == [IDS[i] for i in order]
    assert [h["_additional"]["distance"] for h in hits] == pytest.approx([expected[i] for i in order], rel=1e-4, abs=1e-4)
    certainties = [h["_additional"]["certainty"] for h in hits]
    if metric == "cosine":
        assert certainties == pytest.approx([1 - expected[i] / 2 for i in order], abs=1e-4)
    else:
        assert certainties == [None] * 5


def test_limit_offset_distance_and_certainty(byov: TestClient) -> None:
    query = VECTORS[3].tolist()
    q = "query($v: Vector!, $args: Float) { Get { Point(nearVector: {vector: $v, targetVectors: [\"cosine\"], distance: $args}, limit: 40) { _additional { distance } } } }"
    all_hits = graphql(byov, q, {"v": query, "args": None})["data"]["Get"]["Point"]
    assert len(all_hits) == 40
    threshold = all_hits[9]["_additional"]["distance"]
    within = graphql(byov, q, {"v": query, "args": threshold})["data"]["Get"]["Point"]
    assert len(within) == 10
    paged = graphql(byov, f'{{ Get {{ Point(nearVector: {{vector: {query}, targetVectors: ["cosine"]}}, limit: 3, offset: 2) {{ _additional {{ distance }} }} }} }}')
    assert [h["_additional"]["distance"] for h in paged["data"]["Get"]["Point"]] == [h["_additional"]["distance"] for h in all_hits[2:5]]
    certain = graphql(byov, f'{{ Get {{ Point(nearVector: {{vector: {query}, targetVectors: ["cosine"], certainty: {1 - threshold / 2:f}}}) {{ label }} }} }}')
    assert len(certain["data"]["Get"]["Point"]) == 10
    refused = graphql(byov, f'{{ Get {{ Point(nearVector: {{vector: {query}, targetVectors: ["dot"], certainty: 0.5}}) {{ label }} }} }}')
    assert refused["data"]["Get"]["Point"] is None
    assert "certainty" in refused["errors"][0]["message"] and "dot" in refused["errors"][0]["message"]


def test_near_object_and_default_listing(byov: TestClient) -> None:
    body = graphql(byov, f'{{ Get {{ Point(nearObject: {{id: "{IDS[5]}", targetVectors: ["l2_squared"]}}, limit: 2) {{ label _additional {{ distance }} }} }} }}')
    hits = body["data"]["Get"]["Point"]
    assert hits[0] == {"label": "p5", "_additional": {"distance": 0.0}}
    beacon = graphql(byov, f'{{ Get {{ Point(nearObject: {{beacon: "weaviate://localhost/Point/{IDS[5]}", targetVectors: ["l2_squared"]}}, limit: 2) {{ label }} }} }}')
    assert beacon["data"]["Get"]["Point"][0]["label"] == "p5"
    listing = graphql(byov, "{ Get { Point(limit: 3, offset: 1) { label rank _additional { id vectors { cosine } } } } }")
    assert [h["rank"] for h in listing["data"]["Get"]["Point"]] == [1, 2, 3]
    assert listing["data"]["Get"]["Point"][0]["_additional"]["vectors"]["cosine"] == pytest.approx(VECTORS[1].tolist())
    default = graphql(byov, "{ Get { Point { label } } }")
    assert len(default["data"]["Get"]["Point"]) == 40


QUERY_ERRORS = [
    ('{ Get { Point(limit: 2 { label } } }', "Syntax Error"),
    ('{ Get { Nope { label } } }', "Cannot query field 'Nope'"),
    ('{ Get { Point { nope } } }', "Cannot query field 'nope'"),
    ('{ Get { Point(nearVector: {vector: [1, 2]}) { label } } }', "none is the default"),
    ('{ Get { Point(nearVector: {vector: [1, 2], targetVectors: ["cosine"]}) { label } } }', "nearVector has 2 dimensions, but vector 'cosine' has 8"),
    ('{ Get { Point(nearVector: {vector: [1, 2], targetVectors: ["zzz"]}) { label } } }', "no named vector 'zzz'"),
    ('{ Get { Point(nearText: {concepts: ["x"], targetVectors: ["cosine"]}) { label } } }', "nearText needs a vectorizer"),
    ('{ Get { Point(nearObject: {id: "not-a-uuid", targetVectors: ["cosine"]}) { label } } }', "not a valid UUID"),
    ('{ Get { Point(nearObject: {id: "00000000-0000-4000-8000-999999999999", targetVectors: ["cosine"]}) { label } } }', "no object with id"),
    ('{ Get { Point(limit: 20000) { label } } }', "above the maximum of 10000"),
    ('{ Get { Point(limit: -1) { label } } }', "must not be negative"),
    ('{ Get { Point(nearVector: {vector: [1], targetVectors: ["cosine"]}, nearObject: {id: "x"}) { label } } }', "only one of"),
]


@pytest.mark.parametrize("query,message", QUERY_ERRORS)
def test_query_errors_are_graphql_errors_with_locations(byov: TestClient, query: str, message: str) -> None:
    body = graphql(byov, query)
    assert body["errors"], body
    assert message in body["errors"][0]["message"]
    assert body["errors"][0]["locations"][0]["line"] == 1


def test_transport_errors_are_422(byov: TestClient) -> None:
    assert byov.post("/v1/graphql", json={}).status_code == 422
    assert byov.post("/v1/graphql", json={"query": "  "}).status_code == 422
    assert byov.post("/v1/graphql", json={"query": "{ Get { Point { label } } }", "variables": [1]}).status_code == 422
    assert byov.post("/v1/graphql", content=b"nope").status_code == 422
    batch = byov.post("/v1/graphql/batch", json=[{"query": "{ Get { Point(limit: 1) { label } } }"}, {"query": "{ x"}]).json()
    assert batch[0]["data"]["Get"]["Point"] == [{"label": "p0"}] and batch[1]["errors"]


def test_introspection_lists_collections(byov: TestClient) -> None:
    body = graphql(byov, '{ __type(name: "Point") { fields { name } } }')
    assert [f["name"] for f in body["data"]["__type"]["fields"]] == ["label", "rank", "_additional"]


def image_b64(color: tuple[int, int, int], shape: str, size: int = 48) -> str:
    from PIL import ImageDraw

    image = Image.new("RGB", (size, size), (250, 250, 250))
    pen = ImageDraw.Draw(image)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    (pen.ellipse if shape == "circle" else pen.rectangle)(box, fill=color)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_multimodal_example_near_text_and_near_image(multimodal_client: TestClient) -> None:
    text = graphql(multimodal_client, '{ Get { Artwork(nearText: {concepts: ["green triangle"]}, limit: 2) { title } } }')
    assert {h["title"] for h in text["data"]["Get"]["Artwork"]} == {"Green triangle on white", "Green triangle on black"}
    words = graphql(multimodal_client, '{ Get { Artwork(nearText: {concepts: ["yellow square", "black"]}, targetVectors: ["words"], limit: 1) { title } } }')
    assert "errors" in words  # targetVectors belongs inside nearText
    words = graphql(multimodal_client, '{ Get { Artwork(nearText: {concepts: ["yellow square black"], targetVectors: ["words"]}, limit: 1) { title } } }')
    assert words["data"]["Get"]["Artwork"][0]["title"] == "Yellow square on black"
    # A larger redraw of a sample picture finds the original first.
    picture = graphql(multimodal_client, '{{ Get {{ Artwork(nearImage: {{image: "{}"}}, limit: 3) {{ title _additional {{ distance }} }} }} }}'.format(image_b64((220, 30, 40), "circle", 96)))
    assert picture["data"]["Get"]["Artwork"][0]["title"] == "Red circle on white"
    bad = graphql(multimodal_client, '{ Get { Artwork(nearImage: {image: "!!!"}) { title } } }')
    assert "not valid base64" in bad["errors"][0]["message"]
    text_only = graphql(multimodal_client, '{{ Get {{ Artwork(nearImage: {{image: "{}", targetVectors: ["words"]}}) {{ title }} }} }}'.format(image_b64((0, 0, 0), "square")))
    assert "nearImage needs an image module" in text_only["errors"][0]["message"]
    not_image = graphql(multimodal_client, '{ Get { Artwork(nearImage: {image: "aGVsbG8="}) { title } } }')
    assert "not a decodable image" in not_image["errors"][0]["message"]


def test_additional_fields_and_vectors(multimodal_client: TestClient) -> None:
    first = example_objects(MULTIMODAL / "objects.jsonl")[0]
    body = graphql(
        multimodal_client,
        '{{ Get {{ Artwork(nearVector: {{vector: {}, targetVectors: ["external"]}}, limit: 1) {{ title year palette _additional {{ id distance certainty vector vectors {{ external }} creationTimeUnix lastUpdateTimeUnix }} }} }} }}'.format(first["vectors"]["external"]),
    )
    hit = body["data"]["Get"]["Artwork"][0]
    assert hit["_additional"]["distance"] == pytest.approx(0.0, abs=1e-6)
    assert hit["_additional"]["certainty"] is None  # l2-squared: no certainty
    assert hit["_additional"]["vector"] == pytest.approx(first["vectors"]["external"])
    assert hit["palette"] == first["properties"]["palette"] or hit["_additional"]["id"] != first["id"]
    assert hit["_additional"]["creationTimeUnix"].isdigit()
