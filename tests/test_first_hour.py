"""What a new user meets in the first hour (issue 14): each answer says what Weaviate would, or why not."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import watchfiles
from starlette.testclient import TestClient

from searchd.reload.watcher import config_events
from tests.conftest import ClientFactory, graphql

CONFIG = """\
collections:
  - name: Product
    properties:
      - {name: title, type: TEXT}
      - {name: tags, type: "TEXT[]"}
      - {name: inStock, type: BOOLEAN}
      - {name: price, type: NUMBER}
    vectors:
      own:
        vectorizer: {module: none, dimensions: 3}
        index: {type: flat, distance: cosine}
  - name: Note
    properties:
      - {name: text, type: TEXT}
"""

PRODUCTS: list[dict[str, Any]] = [
    {"id": "30000000-0000-4000-8000-000000000001", "title": "black mug", "tags": ["black", "mug"], "inStock": True, "price": 10.0, "vector": [1.0, 0.0, 0.0]},
    {"id": "30000000-0000-4000-8000-000000000002", "title": "white mug", "tags": ["white", "mug"], "inStock": False, "price": 12.5, "vector": [0.9, 0.1, 0.0]},
    {"id": "30000000-0000-4000-8000-000000000003", "title": "black plate", "tags": ["black"], "inStock": True, "price": 10.0, "vector": [0.0, 1.0, 0.0]},
]
NOTE_ID = "30000000-0000-4000-8000-0000000000aa"


@pytest.fixture
def shop(write_config: Callable[..., Path], client_factory: ClientFactory) -> TestClient:
    client = client_factory(write_config(CONFIG))
    objects = [{"class": "Product", "id": p["id"], "properties": {k: v for k, v in p.items() if k not in ("id", "vector")}, "vector": p["vector"]} for p in PRODUCTS]
    objects.append({"class": "Note", "id": NOTE_ID, "properties": {"text": "a note"}})
    response = client.post("/v1/batch/objects", json={"objects": objects})
    assert [r["result"]["status"] for r in response.json()] == ["SUCCESS"] * 4, response.text
    return client


def groups(client: TestClient, path: str) -> dict[str, list[str]]:
    body = graphql(
        client,
        '{ Get { Product(nearVector: {vector: [1, 0, 0]}, groupBy: {path: ["PATH"], groups: 10, objectsPerGroup: 10}) '
        "{ _additional { group { groupedBy { path value } hits { title } } } } } }".replace("PATH", path),
    )
    assert "errors" not in body, body
    out = {}
    for hit in body["data"]["Get"]["Product"]:
        group = hit["_additional"]["group"]
        assert group["groupedBy"]["path"] == [path]
        out[group["groupedBy"]["value"]] = sorted(h["title"] for h in group["hits"])
    return out


def aggregate_values(client: TestClient, path: str) -> set[str]:
    body = graphql(client, '{ Aggregate { Product(groupBy: ["PATH"]) { groupedBy { value } } } }'.replace("PATH", path))
    assert "errors" not in body, body
    return {g["groupedBy"]["value"] for g in body["data"]["Aggregate"]["Product"]}


def test_get_group_by_renders_values_as_aggregate_and_weaviate_do(shop: TestClient) -> None:
    # Booleans as GraphQL's true/false, numbers as Go's shortest form, each array element a group of its own.
    assert groups(shop, "inStock") == {"true": ["black mug", "black plate"], "false": ["white mug"]}
    assert groups(shop, "price") == {"10": ["black mug", "black plate"], "12.5": ["white mug"]}
    assert groups(shop, "tags") == {"black": ["black mug", "black plate"], "mug": ["black mug", "white mug"], "white": ["white mug"]}
    for path in ("inStock", "price", "tags"):
        assert set(groups(shop, path)) == aggregate_values(shop, path)


def test_hybrid_on_a_bring_your_own_vector_collection(shop: TestClient) -> None:
    body = graphql(shop, '{ Get { Product(hybrid: {query: "mug", vector: [1, 0, 0], alpha: 0.5}) { title } } }')
    assert "errors" not in body, body
    assert [p["title"] for p in body["data"]["Get"]["Product"]][:2] == ["black mug", "white mug"]
    # Without a vector there is nothing to search the vector side with: said plainly, naming what to send.
    body = graphql(shop, '{ Get { Product(hybrid: {query: "mug"}) { title } } }')
    assert body["errors"][0]["message"] == (
        "hybrid needs a vector for its vector side: 'own' brings its own vectors (module: none), so the query text cannot be embedded "
        '(send hybrid: {query: "...", vector: [...]} with 3 numbers, or alpha: 0 for keyword search only)'
    ), body
    keyword_only = graphql(shop, '{ Get { Product(hybrid: {query: "plate", alpha: 0}) { title } } }')
    assert [p["title"] for p in keyword_only["data"]["Get"]["Product"]] == ["black plate"], keyword_only


def test_get_object_without_its_class_is_found_in_any_collection(shop: TestClient) -> None:
    product = shop.get(f"/v1/objects/{PRODUCTS[1]['id']}", params={"include": "vector"})
    assert product.status_code == 200, product.text
    assert product.json()["class"] == "Product" and product.json()["properties"]["title"] == "white mug"
    assert product.json()["vector"] == pytest.approx(PRODUCTS[1]["vector"], abs=1e-6)
    note = shop.get(f"/v1/objects/{NOTE_ID}")
    assert note.status_code == 200 and note.json()["class"] == "Note" and note.json()["properties"] == {"text": "a note"}
    assert shop.head(f"/v1/objects/{NOTE_ID}").status_code == 204

    missing = shop.get("/v1/objects/30000000-0000-4000-8000-0000000000ff")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": [{"message": "no object with id '30000000-0000-4000-8000-0000000000ff' in any collection (check the id, or name its collection: /v1/objects/{className}/{id})"}]
    }
    assert shop.head("/v1/objects/30000000-0000-4000-8000-0000000000ff").status_code == 404
    assert shop.get("/v1/objects/not-a-uuid").status_code == 422


def test_the_config_watcher_ignores_a_data_directory_beside_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server writing its data beside its config must not wake the watcher (nor its "changes detected" log) per write."""
    config_dir = tmp_path / "config"
    (config_dir / "data" / "indexes").mkdir(parents=True)
    (tmp_path / "elsewhere").symlink_to(config_dir / "data")
    monkeypatch.chdir(tmp_path)
    for data_dir in (Path("config/data"), tmp_path / "elsewhere", config_dir / "data"):
        relevant = config_events(config_dir, data_dir)
        for written in ("data/store.sqlite-wal", "data/indexes/Article/text.bin", "data/embeddings.sqlite"):
            assert not relevant(watchfiles.Change.modified, str(config_dir / written)), (data_dir, written)
        assert relevant(watchfiles.Change.modified, str(config_dir / "searchd.yaml"))
        assert relevant(watchfiles.Change.added, str(config_dir / "collections" / "data.yaml"))  # a name like the directory's
        assert relevant(watchfiles.Change.added, str(config_dir / "database.yaml"))
        assert not relevant(watchfiles.Change.modified, str(config_dir / ".git" / "index"))  # the usual noise stays filtered
