"""The in-memory doc table: which filters it answers itself, and that the store answers the rest the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from searchd.config.spec import CollectionSpec, PropertySpec, PropertyType
from searchd.index.table import DocTable
from searchd.where import Condition
from tests.conftest import ClientFactory, graphql

N = 2500


def test_a_text_column_with_a_value_per_document_is_left_to_the_store() -> None:
    spec = CollectionSpec("Doc", (PropertySpec("title", PropertyType.TEXT), PropertySpec("kind", PropertyType.TEXT), PropertySpec("n", PropertyType.INT)))
    table = DocTable(spec)
    for doc in range(1, N + 1):
        table.put(doc, f"id-{doc}", {"title": f"unique title {doc}", "kind": f"k{doc % 7}", "n": doc}, 0, 0)
    assert not table.answers(Condition("title", "Equal", "unique title 5", PropertyType.TEXT))
    assert table.mask_or_none(Condition("title", "Equal", "unique title 5", PropertyType.TEXT)) is None  # the store answers it
    assert table.answers(Condition("kind", "Equal", "k3", PropertyType.TEXT)) and table.answers(Condition("n", "LessThan", 10, PropertyType.INT))
    assert np.flatnonzero(table.mask(Condition("kind", "Equal", "k3", PropertyType.TEXT))).tolist() == [d for d in range(1, N + 1) if d % 7 == 3]
    table.remove(10)
    assert table.doc_of("id-10") is None and table.id_of(10) is None and len(table) == N - 1
    assert np.flatnonzero(table.mask(Condition("n", "LessThanEqual", 10, PropertyType.INT))).tolist() == list(range(1, 10))


def test_filters_on_a_column_left_to_the_store_give_the_same_answers(write_config: Callable[..., Path], client_factory: ClientFactory) -> None:
    config = {
        "collections": [
            {
                "name": "Doc",
                "properties": [{"name": "title", "type": "TEXT"}, {"name": "n", "type": "INT"}],
                "vectors": {"v": {"vectorizer": {"module": "none", "dimensions": 4}}},
            }
        ]
    }
    client = client_factory(write_config(yaml.safe_dump(config)))
    vectors = np.random.default_rng(8).normal(size=(N, 4))
    objects = [{"class": "Doc", "id": f"00000000-0000-4000-8000-{i:012d}", "properties": {"title": f"title {i}", "n": i}, "vector": vectors[i].tolist()} for i in range(N)]
    for start in range(0, N, 500):
        assert client.post("/v1/batch/objects", json={"objects": objects[start : start + 500]}).status_code == 200
    table = client.app.state.services.engine.table("Doc")  # type: ignore[attr-defined]
    assert not table.answers(Condition("title", "Equal", "title 7", PropertyType.TEXT))
    where = '{operator: Or, operands: [{path: ["title"], operator: Like, valueText: "TITLE 12?"}, {path: ["n"], operator: Equal, valueInt: 5}]}'
    body = graphql(client, f"query($v: Vector!) {{ Get {{ Doc(nearVector: {{vector: $v}}, where: {where}, limit: 100) {{ n }} }} }}", {"v": [1.0, 0.0, 0.0, 0.0]})
    assert sorted(hit["n"] for hit in body["data"]["Get"]["Doc"]) == [5, *range(120, 130)]
    count = graphql(client, '{ Aggregate { Doc(where: {path: ["title"], operator: GreaterThan, valueText: "title 998"}) { meta { count } } } }')
    assert count["data"]["Aggregate"]["Doc"][0]["meta"]["count"] == sum(1 for i in range(N) if f"title {i}" > "title 998")
