"""REST objects API through the in-process server: shapes, type checks, and bad input that changes nothing."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.conftest import BACKENDS, MULTIMODAL, QUICKSTART, ClientFactory, example_objects

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

ARTICLE_ID = "00000000-0000-4000-8000-000000000001"


def png(color: tuple[int, int, int]) -> str:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def quickstart(client_factory: ClientFactory) -> TestClient:
    client = client_factory(QUICKSTART)
    response = client.post("/v1/batch/objects", json={"objects": example_objects(QUICKSTART.parent / "objects.jsonl")})
    assert [r["result"]["status"] for r in response.json()] == ["SUCCESS"] * 8
    return client


def error_message(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"} and len(body["error"]) == 1, body
    message: str = body["error"][0]["message"]
    return message


def test_health_meta_and_schema(quickstart: TestClient) -> None:
    assert quickstart.get("/v1/.well-known/live").status_code == 200
    assert quickstart.get("/v1/.well-known/ready").status_code == 200
    meta = quickstart.get("/v1/meta").json()
    assert set(meta["modules"]) == {"text2vec-hash"}
    assert meta["version"] and meta["searchdVersion"]
    classes = quickstart.get("/v1/schema").json()["classes"]
    assert [c["class"] for c in classes] == ["Article"]
    article = quickstart.get("/v1/schema/Article").json()
    assert [(p["name"], p["dataType"]) for p in article["properties"]][:3] == [("title", ["text"]), ("body", ["text"]), ("tags", ["text[]"])]
    # Weaviate's names: a text2vec module's fields are "properties" (tests/test_schema_json.py checks the rest).
    assert article["vectorConfig"]["text"]["vectorizer"] == {
        "text2vec-hash": {"model": "hash-v1", "dimensions": 256, "properties": ["title", "body"], "vectorizeClassName": False, "weights": {"title": 2, "body": 1}}
    }
    assert article["vectorConfig"]["text"]["vectorIndexType"] == "hnsw"
    assert article["vectorConfig"]["text"]["vectorIndexConfig"]["searchd"] == {"type": "hnsw", "distance": "cosine", "maxConnections": 16, "efConstruction": 128, "ef": 64}
    assert quickstart.get("/v1/schema/Nope").status_code == 404


@pytest.mark.parametrize("method,path", [("POST", "/v1/schema"), ("PUT", "/v1/schema/Article"), ("DELETE", "/v1/schema/Article"), ("POST", "/v1/schema/Article/properties")])
def test_schema_writes_point_to_the_yaml(quickstart: TestClient, method: str, path: str) -> None:
    response = quickstart.request(method, path, json={"class": "X"})
    assert response.status_code == 405
    assert "searchd.yaml" in error_message(response) and "edit the config" in error_message(response)
    assert [c["class"] for c in quickstart.get("/v1/schema").json()["classes"]] == ["Article"]


def test_crud_round_trip(quickstart: TestClient) -> None:
    created = quickstart.post("/v1/objects", json={"class": "Article", "properties": {"title": "Fresh", "wordCount": 3.0}})
    assert created.status_code == 200
    body = created.json()
    object_id = body["id"]
    assert body["properties"] == {"title": "Fresh", "wordCount": 3}
    assert len(body["vector"]) == 256 and body["vectors"].keys() == {"text"}
    assert quickstart.head(f"/v1/objects/Article/{object_id}").status_code == 204

    got = quickstart.get(f"/v1/objects/Article/{object_id}").json()
    assert "vector" not in got and got["creationTimeUnix"] == body["creationTimeUnix"]
    assert quickstart.get(f"/v1/objects/Article/{object_id}?include=vector").json()["vector"] == body["vector"]

    replaced = quickstart.put(f"/v1/objects/Article/{object_id}", json={"class": "Article", "properties": {"title": "Replaced"}})
    assert replaced.status_code == 200 and replaced.json()["properties"] == {"title": "Replaced"}
    assert replaced.json()["creationTimeUnix"] == body["creationTimeUnix"]
    assert replaced.json()["vector"] != body["vector"]  # re-vectorized from the new title

    assert quickstart.patch(f"/v1/objects/Article/{object_id}", json={"properties": {"rating": 2.5, "title": None}}).status_code == 204
    assert quickstart.get(f"/v1/objects/Article/{object_id}").json()["properties"] == {"rating": 2.5}

    assert quickstart.delete(f"/v1/objects/Article/{object_id}").status_code == 204
    assert quickstart.head(f"/v1/objects/Article/{object_id}").status_code == 404
    assert quickstart.get(f"/v1/objects/Article/{object_id}").status_code == 404
    assert quickstart.delete(f"/v1/objects/Article/{object_id}").status_code == 404


def test_post_existing_id_is_refused(quickstart: TestClient) -> None:
    response = quickstart.post("/v1/objects", json={"class": "Article", "id": ARTICLE_ID, "properties": {"title": "dup"}})
    assert response.status_code == 422 and "already exists" in error_message(response)
    assert quickstart.get(f"/v1/objects/Article/{ARTICLE_ID}").json()["properties"]["title"] == "Sourdough bread at home"


def test_listing_and_cursor_return_every_object_once(quickstart: TestClient) -> None:
    listed = quickstart.get("/v1/objects?class=Article&limit=3").json()
    assert listed["totalResults"] == 3
    seen: list[str] = []
    after = None
    for _ in range(10):
        url = "/v1/objects?class=Article&limit=3" + (f"&after={after}" if after else "")
        page = quickstart.get(url).json()["objects"]
        if not page:
            break
        seen += [o["id"] for o in page]
        after = page[-1]["id"]
    assert seen == sorted(f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 9))
    assert quickstart.get("/v1/objects?class=Article&offset=6&limit=5").json()["totalResults"] == 2
    assert "vector" in quickstart.get("/v1/objects?class=Article&limit=1&include=vector").json()["objects"][0]
    assert quickstart.get("/v1/objects?class=Nope").status_code == 404
    assert quickstart.get("/v1/objects?after=" + ARTICLE_ID).status_code == 422
    assert quickstart.get("/v1/objects?class=Article&limit=abc").status_code == 422


BAD_WRITES = [
    ({"title": 5}, "property 'title' expects a string"),
    ({"tags": "baking"}, "property 'tags' expects a list of strings"),
    ({"tags": ["a", 1]}, "property 'tags' expects a list of strings"),
    ({"wordCount": 2.5}, "property 'wordCount' expects an integer"),
    ({"wordCount": True}, "property 'wordCount' expects an integer"),
    ({"wordCount": 2**70}, "outside the 64-bit integer range"),
    ({"rating": "high"}, "property 'rating' expects a finite number"),
    ({"published": "yes"}, "property 'published' expects true or false"),
    ({"publishedAt": "yesterday"}, "property 'publishedAt' expects an RFC 3339 date"),
    ({"publishedAt": "2024-01-01T00:00:00"}, "with a time zone"),
    ({"nope": 1}, "no such prop with name 'nope' found in class 'Article'"),
]


@pytest.mark.parametrize("properties,message", BAD_WRITES)
def test_wrong_types_are_refused_and_change_nothing(quickstart: TestClient, properties: dict[str, Any], message: str) -> None:
    before = quickstart.get(f"/v1/objects/Article/{ARTICLE_ID}?include=vector").json()
    for response in (
        quickstart.post("/v1/objects", json={"class": "Article", "properties": properties}),
        quickstart.put(f"/v1/objects/Article/{ARTICLE_ID}", json={"class": "Article", "properties": properties}),
        quickstart.patch(f"/v1/objects/Article/{ARTICLE_ID}", json={"properties": properties}),
    ):
        assert response.status_code == 422
        assert message in error_message(response)
    assert quickstart.get(f"/v1/objects/Article/{ARTICLE_ID}?include=vector").json() == before
    assert quickstart.get("/v1/objects?class=Article&limit=100").json()["totalResults"] == 8


def test_unknown_class_and_bad_ids(quickstart: TestClient) -> None:
    response = quickstart.post("/v1/objects", json={"class": "Nope", "properties": {}})
    assert response.status_code == 422 and "collection 'Nope' is not declared" in error_message(response)
    assert quickstart.get(f"/v1/objects/Nope/{ARTICLE_ID}").status_code == 404
    response = quickstart.post("/v1/objects", json={"class": "Article", "id": "not-a-uuid", "properties": {}})
    assert response.status_code == 422 and "not a valid UUID" in error_message(response)
    assert quickstart.get("/v1/objects/Article/not-a-uuid").status_code == 422
    response = quickstart.post("/v1/objects", content=b"{not json")
    assert response.status_code == 422 and "not valid JSON" in error_message(response)
    response = quickstart.put(f"/v1/objects/Article/{ARTICLE_ID}", json={"class": "Other", "properties": {}})
    assert response.status_code == 422


@pytest.fixture
def multimodal(client_factory: ClientFactory) -> TestClient:
    return client_factory(MULTIMODAL)


def test_blob_checks(multimodal: TestClient) -> None:
    ok = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {"title": "x", "image": png((255, 0, 0))}})
    assert ok.status_code == 200
    not_base64 = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {"image": "%%%not base64"}})
    assert not_base64.status_code == 422 and "property 'image' is not valid base64" in error_message(not_base64)
    not_image = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {"image": base64.b64encode(b"hello world").decode()}})
    assert not_image.status_code == 422 and "property 'image' is not a decodable image" in error_message(not_image)
    truncated = base64.b64encode(base64.b64decode(png((0, 0, 255)))[:40]).decode()
    broken = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {"image": truncated}})
    assert broken.status_code == 422 and "property 'image'" in error_message(broken)
    assert multimodal.get("/v1/objects?class=Artwork").json()["totalResults"] == 1


def test_vectors_are_checked(multimodal: TestClient) -> None:
    wrong_dims = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {"title": "x"}, "vectors": {"external": [1, 2, 3]}})
    assert wrong_dims.status_code == 422 and "vector 'external' has 3 dimensions, but the config declares 4" in error_message(wrong_dims)
    not_numbers = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {}, "vectors": {"external": ["a", 1, 2, 3]}})
    assert not_numbers.status_code == 422
    unknown = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {}, "vectors": {"nope": [1]}})
    assert unknown.status_code == 422 and "no named vector 'nope'" in error_message(unknown)
    # The unnamed vector addresses the default ('multimodal', 512-d); 4 numbers are the wrong length for it.
    unnamed = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {}, "vector": [1, 2, 3, 4]})
    assert unnamed.status_code == 422 and "vector 'multimodal' has 4 dimensions" in error_message(unnamed)
    stored = multimodal.post("/v1/objects", json={"class": "Artwork", "properties": {"title": "blue"}, "vectors": {"external": [0, 0, 1, 0]}})
    assert stored.status_code == 200
    assert stored.json()["vectors"]["external"] == [0, 0, 1, 0]
    assert set(stored.json()["vectors"]) == {"external", "multimodal", "words"}
    assert multimodal.get("/v1/objects?class=Artwork").json()["totalResults"] == 1


def test_batch_bad_objects_fail_alone(multimodal: TestClient) -> None:
    objects = example_objects(MULTIMODAL / "objects.jsonl")[:3]
    batch = [
        objects[0],
        {"class": "Artwork", "properties": {"year": "1999"}},
        objects[1],
        {"class": "Nope", "properties": {}},
        {"class": "Artwork", "properties": {"image": "!!"}},
        "not an object",
        objects[2],
    ]
    response = multimodal.post("/v1/batch/objects", json={"fields": ["ALL"], "objects": batch})
    assert response.status_code == 200
    results = response.json()
    assert [r["result"]["status"] for r in results] == ["SUCCESS", "FAILED", "SUCCESS", "FAILED", "FAILED", "FAILED", "SUCCESS"]
    assert "expects an integer" in results[1]["result"]["errors"]["error"][0]["message"]
    assert [r["id"] for r in results if r["result"]["status"] == "SUCCESS"] == [o["id"] for o in objects]
    listed = multimodal.get("/v1/objects?class=Artwork&limit=100").json()
    assert sorted(o["id"] for o in listed["objects"]) == sorted(o["id"] for o in objects)
    assert multimodal.post("/v1/batch/objects", json={"objects": "x"}).status_code == 422


def test_body_limit_is_configurable(write_config: Callable[..., Path], client_factory: ClientFactory) -> None:
    config = write_config(
        """
        server: {limits: {maxBodyBytes: 2048}}
        collections:
          - name: Note
            properties: [{name: text, type: TEXT}]
            vectors: {v: {vectorizer: {module: text2vec-hash}}}
        """
    )
    client = client_factory(config)
    assert client.post("/v1/objects", json={"class": "Note", "properties": {"text": "small"}}).status_code == 200
    big = client.post("/v1/objects", json={"class": "Note", "properties": {"text": "x" * 5000}})
    assert big.status_code == 413 and "maxBodyBytes" in error_message(big)

    def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
        yield b'{"class": "Note", "properties": {"text": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}}'

    streamed = client.post("/v1/objects", content=chunks())
    assert streamed.status_code == 413
    assert client.get("/v1/objects?class=Note").json()["totalResults"] == 1


def test_unknown_route_uses_the_error_shape(quickstart: TestClient) -> None:
    response = quickstart.get("/v1/nothing")
    assert response.status_code == 404 and "no route" in error_message(response)


def test_schema_shows_search_settings(quickstart: TestClient) -> None:
    article = quickstart.get("/v1/schema/Article").json()
    by_name = {p["name"]: p for p in article["properties"]}
    assert by_name["tags"]["tokenization"] == "field"
    assert by_name["slug"]["indexSearchable"] is False and by_name["wordCount"]["indexFilterable"] is False
    inverted = article["invertedIndexConfig"]
    assert (inverted["bm25"], inverted["stopwords"]) == ({"k1": 1.2, "b": 0.75}, {"preset": "en", "additions": ["how"], "removals": ["not"]})
