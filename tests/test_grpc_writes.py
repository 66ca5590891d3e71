"""weaviate-client 4.x writes through gRPC (insert_many, batches, delete_many) and REST (insert, update, replace, delete)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from weaviate.classes.data import DataObject
from weaviate.classes.query import Filter

from tests.conftest import BACKENDS
from tests.grpc_support import get, module_fixtures, weaviate

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

server, client, http = module_fixtures("grpc-writes")


def stored_titles(http: httpx.Client, collection: str) -> dict[str, Any]:
    return {row["_additional"]["id"]: row["title"] for row in get(http, collection, "limit: 500", "title _additional { id }")}


def test_insert_many_stores_good_objects_and_reports_each_bad_one(client: Any, http: httpx.Client) -> None:
    scratch = client.collections.use("Scratch")
    given = str(uuid.uuid4())
    before = stored_titles(http, "Scratch")
    result = scratch.data.insert_many(
        [
            {"title": "first", "wordCount": 3},
            DataObject(properties={"title": "second", "wordCount": 4.0}, uuid=given),  # a whole number sent as a float
            {"title": "third", "wordCount": "many"},
            DataObject(properties={"title": "fourth"}, vector=[0.5] * 3),
            DataObject(properties={"title": "fifth", "colour": "red"}),
        ]
    )
    assert {i: e.message for i, e in result.errors.items()} == {
        2: "property 'wordCount' expects an integer (INT), got str 'many' (send the value with the type declared in the config)",
        3: "vector 'text' has 3 dimensions, but the config declares 16 (send exactly 16 numbers, or change dimensions in the YAML config)",
        4: http.post("/v1/batch/objects", json={"objects": [{"class": "Scratch", "properties": {"title": "x", "colour": "red"}}]}).json()[0]["result"]["errors"]["error"][0]["message"],
    }
    after = stored_titles(http, "Scratch")
    added = {k: v for k, v in after.items() if k not in before}
    assert sorted(added.values()) == ["first", "second"] and added[given] == "second"
    assert {str(u) for u in result.uuids.values()} == set(added)
    stored = http.get(f"/v1/objects/Scratch/{given}").json()
    assert stored["properties"] == {"title": "second", "wordCount": 4}


def test_insert_many_with_named_and_multi_vectors(client: Any, http: httpx.Client) -> None:
    artwork = client.collections.use("Artwork")
    new_id = str(uuid.uuid4())
    result = artwork.data.insert_many([DataObject(properties={"title": "grey square", "year": 2001}, uuid=new_id, vector={"external": [0.1, 0.2, 0.3, 0.4]})])
    assert not result.errors
    stored = http.get(f"/v1/objects/Artwork/{new_id}", params={"include": "vector"}).json()
    assert stored["vectors"]["external"] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert len(stored["vectors"]["multimodal"]) > 0  # the others were vectorized on the way in
    with pytest.raises(weaviate.exceptions.WeaviateInsertManyAllFailedError, match="collection 'Artwork' has no named vector 'nope' \\(its named vectors are: multimodal, words, external"):
        artwork.data.insert_many([DataObject(properties={"title": "x"}, vector={"nope": [1.0]})])


def test_rest_insert_update_replace_delete(client: Any, http: httpx.Client) -> None:
    scratch = client.collections.use("Scratch")
    object_id = scratch.data.insert({"title": "solo", "wordCount": 1})
    scratch.data.update(object_id, {"wordCount": 2})
    assert scratch.query.fetch_object_by_id(object_id).properties == {"title": "solo", "wordCount": 2}
    scratch.data.replace(object_id, {"title": "replaced"})
    assert scratch.query.fetch_object_by_id(object_id).properties == {"title": "replaced"}
    assert get(http, "Scratch", f'where: {{path: ["id"], operator: Equal, valueText: "{object_id}"}}', "title")[0]["title"] == "replaced"
    scratch.data.delete_by_id(object_id)
    assert scratch.query.fetch_object_by_id(object_id) is None
    assert http.get(f"/v1/objects/Scratch/{object_id}").status_code == 404


def test_delete_many_dry_run_then_real(client: Any, http: httpx.Client) -> None:
    scratch = client.collections.use("Scratch")
    result = scratch.data.insert_many([{"title": f"doomed {n}", "wordCount": 900 + n} for n in range(4)] + [{"title": "kept", "wordCount": 899}])
    assert not result.errors
    doomed = Filter.by_property("wordCount").greater_or_equal(900)
    before = stored_titles(http, "Scratch")
    dry = scratch.data.delete_many(where=doomed, dry_run=True, verbose=True)
    assert (dry.matches, dry.failed) == (4, 0)
    assert sorted(str(o.uuid) for o in dry.objects) == sorted(str(result.uuids[n]) for n in range(4))
    assert stored_titles(http, "Scratch") == before  # a dry run deletes nothing
    real = scratch.data.delete_many(where=doomed)
    assert (real.matches, real.successful, real.failed, real.objects) == (4, 4, 0, None)
    after = stored_titles(http, "Scratch")
    assert set(before) - set(after) == {str(result.uuids[n]) for n in range(4)}
    assert str(result.uuids[4]) in after
    assert scratch.data.delete_many(where=doomed).matches == 0


def test_tenants_get_says_the_collection_has_no_tenants(client: Any) -> None:
    with pytest.raises(weaviate.exceptions.WeaviateTenantGetError, match='multi-tenancy is not enabled for class "Scratch"'):
        client.collections.use("Scratch").tenants.get()


def test_batch_fixed_size_reports_per_object_errors(client: Any, http: httpx.Client) -> None:
    scratch = client.collections.use("Scratch")
    with scratch.batch.fixed_size(batch_size=2) as batch:
        batch.add_object({"title": "batched one"})
        batch.add_object({"title": "batched two", "wordCount": "bad"})
        batch.add_object({"title": "batched three"})
    assert [o.message for o in scratch.batch.failed_objects] == ["property 'wordCount' expects an integer (INT), got str 'bad' (send the value with the type declared in the config)"]
    assert {"batched one", "batched three"} <= set(stored_titles(http, "Scratch").values())


def test_batch_dynamic_imports(client: Any, http: httpx.Client) -> None:
    scratch = client.collections.use("Scratch")
    with scratch.batch.dynamic() as batch:
        for n in range(5):
            batch.add_object({"title": f"dynamic {n}"})
    assert not scratch.batch.failed_objects
    assert {f"dynamic {n}" for n in range(5)} <= set(stored_titles(http, "Scratch").values())


def test_collections_list_and_config(client: Any) -> None:
    assert "Article" in client.collections.list_all()
    assert client.collections.use("Article").config.get().name == "Article"


