"""weaviate-client 4.x against a real searchd over HTTP + gRPC: queries, checked against the same queries over GraphQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc
import httpx
import pytest
from weaviate.classes.aggregate import GroupByAggregate
from weaviate.classes.query import Filter, GroupBy, HybridFusion, HybridVector, MetadataQuery, Metrics, Move, Sort
from weaviate.proto.v1 import health_weaviate_pb2

from tests.conftest import BACKENDS
from tests.grpc_support import article_id, get, graphql, module_fixtures, weaviate
from tests.test_e2e_server import Server

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

server, client, http = module_fixtures("grpc-search")


def ids(result: Any) -> list[str]:
    return [str(o.uuid) for o in result.objects]


def graphql_ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["_additional"]["id"] for row in rows]


# -- connecting ----------------------------------------------------------------------


def test_connect_with_default_checks_and_health(client: Any, server: tuple[Server, int], http: httpx.Client) -> None:
    assert client.is_live() and client.is_ready()
    assert http.get("/v1/meta").json()["grpcMaxMessageSize"] == 1048576
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}") as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_weaviate_pb2.WeaviateHealthCheckRequest.SerializeToString,
            response_deserializer=health_weaviate_pb2.WeaviateHealthCheckResponse.FromString,
        )
        assert check(health_weaviate_pb2.WeaviateHealthCheckRequest(), timeout=10).status == health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING


# -- fetching --------------------------------------------------------------------------


FILTERS = [
    (Filter.by_property("title").equal("ripe fruit number 2"), '{path: ["title"], operator: Equal, valueText: "ripe fruit number 2"}'),
    (Filter.by_property("rating").greater_than(3), '{path: ["rating"], operator: GreaterThan, valueInt: 3}'),  # valueInt on a NUMBER
    (Filter.by_property("rating").less_or_equal(2.5), '{path: ["rating"], operator: LessThanEqual, valueNumber: 2.5}'),
    (Filter.by_property("wordCount").greater_or_equal(150), '{path: ["wordCount"], operator: GreaterThanEqual, valueInt: 150}'),
    (Filter.by_property("tags").contains_any(["food", "city"]), '{path: ["tags"], operator: ContainsAny, valueText: ["food", "city"]}'),
    (Filter.by_property("tags").contains_all(["food", "travel"]), '{path: ["tags"], operator: ContainsAll, valueText: ["food", "travel"]}'),
    (Filter.by_property("tags").contains_none(["food"]), '{path: ["tags"], operator: ContainsNone, valueText: ["food"]}'),
    (Filter.by_property("title").like("gre*"), '{path: ["title"], operator: Like, valueText: "gre*"}'),
    (Filter.by_property("published").equal(True), '{path: ["published"], operator: Equal, valueBoolean: true}'),
    (Filter.by_property("published").not_equal(True), '{path: ["published"], operator: NotEqual, valueBoolean: true}'),
    (Filter.by_property("publishedAt", ).is_none(True), '{path: ["publishedAt"], operator: IsNull, valueBoolean: true}'),
    (
        Filter.by_property("publishedAt").greater_than(dt.datetime(2024, 4, 1, tzinfo=dt.UTC)),
        '{path: ["publishedAt"], operator: GreaterThan, valueDate: "2024-04-01T00:00:00Z"}',
    ),
    (Filter.by_id().equal(article_id(3)), f'{{path: ["id"], operator: Equal, valueText: "{article_id(3)}"}}'),
    (Filter.by_id().contains_any([article_id(1), article_id(2)]), f'{{path: ["id"], operator: ContainsAny, valueText: ["{article_id(1)}", "{article_id(2)}"]}}'),
    (
        Filter.by_creation_time().greater_than(dt.datetime(2001, 1, 1, tzinfo=dt.UTC)) & Filter.by_property("wordCount").less_than(30),
        ('{operator: And, operands: [{path: ["_creationTimeUnix"], operator: GreaterThan, valueDate: "2001-01-01T00:00:00Z"},'
        ' {path: ["wordCount"], operator: LessThan, valueInt: 30}]}'),
    ),
    (
        Filter.by_property("ref").equal(uuid.uuid5(uuid.UUID("6f0c8d64-0d3e-4f43-9d59-4a3b2c1d0e0f"), "ref-1")),
        f'{{path: ["ref"], operator: Equal, valueText: "{uuid.uuid5(uuid.UUID("6f0c8d64-0d3e-4f43-9d59-4a3b2c1d0e0f"), "ref-1")}"}}',
    ),
    (
        (Filter.by_property("wordCount").less_than(50) | Filter.by_property("title").equal("sky")) & Filter.by_property("published").equal(False),
        ('{operator: And, operands: [{operator: Or, operands: [{path: ["wordCount"], operator: LessThan, valueInt: 50},'
        ' {path: ["title"], operator: Equal, valueText: "sky"}]}, {path: ["published"], operator: Equal, valueBoolean: false}]}'),
    ),
    (Filter.not_(Filter.by_property("wordCount").less_than(100)), '{operator: Not, operands: [{path: ["wordCount"], operator: LessThan, valueInt: 100}]}'),
]


@pytest.mark.parametrize(("grpc_filter", "where"), FILTERS, ids=[w[:60] for _, w in FILTERS])
def test_fetch_objects_with_filters_matches_graphql(client: Any, http: httpx.Client, grpc_filter: Any, where: str) -> None:
    found = ids(client.collections.use("Article").query.fetch_objects(filters=grpc_filter, limit=100))
    expected = graphql_ids(get(http, "Article", f"where: {where}, limit: 100"))
    assert found == expected
    assert 0 < len(found) < 20  # each filter keeps some, not all


def test_fetch_object_by_id_decodes_every_property_type(client: Any, http: httpx.Client) -> None:
    articles = client.collections.use("Article")
    found = articles.query.fetch_object_by_id(article_id(1), return_properties=["title", "tags", "wordCount", "rating", "published", "publishedAt", "ref", "cover"])
    stored = http.get(f"/v1/objects/Article/{article_id(1)}").json()
    assert found.properties == {
        "title": stored["properties"]["title"],
        "tags": ["travel", "nature"],
        "wordCount": 10,
        "rating": 1.5,
        "published": False,
        "publishedAt": dt.datetime(2024, 2, 11, 8, 0, tzinfo=dt.UTC),
        "ref": uuid.uuid5(uuid.UUID("6f0c8d64-0d3e-4f43-9d59-4a3b2c1d0e0f"), "ref-1"),
    }
    assert found.metadata.creation_time == dt.datetime.fromtimestamp(stored["creationTimeUnix"] / 1000, tz=dt.UTC)
    assert found.metadata.last_update_time == dt.datetime.fromtimestamp(stored["lastUpdateTimeUnix"] / 1000, tz=dt.UTC)
    blob = articles.query.fetch_object_by_id(article_id(0), return_properties=["cover"])
    assert blob.properties == {"cover": "aGVsbG8="}
    assert "cover" not in articles.query.fetch_object_by_id(article_id(0)).properties  # all properties: BLOBs are left out, as Weaviate does
    assert articles.query.fetch_object_by_id(str(uuid.uuid4())) is None


def test_sort_limit_offset_after_and_iterator(client: Any, http: httpx.Client) -> None:
    articles = client.collections.use("Article")
    result = articles.query.fetch_objects(sort=Sort.by_property("rating", ascending=False).by_property("title"), limit=5, offset=2)
    assert ids(result) == graphql_ids(get(http, "Article", 'sort: [{path: ["rating"], order: desc}, {path: ["title"], order: asc}], limit: 5, offset: 2'))
    first = articles.query.fetch_objects(limit=3)
    after = articles.query.fetch_objects(limit=3, after=first.objects[-1].uuid)
    assert ids(after) == graphql_ids(get(http, "Article", f'limit: 3, after: "{first.objects[-1].uuid}"'))
    iterated = [str(o.uuid) for o in articles.iterator()]
    assert sorted(iterated) == sorted(article_id(n) for n in range(20))
    assert len(articles) == 20


# -- vector searches ---------------------------------------------------------------------


def test_near_vector_default_and_named_vectors(client: Any, http: httpx.Client) -> None:
    artwork = client.collections.use("Artwork")
    stored = http.get("/v1/objects/Artwork/c7128945-0458-5ec1-b321-11f363e1daa9", params={"include": "vector"}).json()
    external = stored["vectors"]["external"]
    result = artwork.query.near_vector(external, target_vector="external", limit=5, return_metadata=MetadataQuery(distance=True), include_vector=["external"])
    rows = get(http, "Artwork", f'nearVector: {{vector: {external}, targetVectors: ["external"]}}, limit: 5', "_additional { id distance vectors { external } }")
    assert ids(result) == graphql_ids(rows)
    assert [o.metadata.distance for o in result.objects] == pytest.approx([r["_additional"]["distance"] for r in rows], abs=1e-6)
    assert result.objects[0].vector["external"] == pytest.approx(external)
    assert result.objects[0].metadata.distance == pytest.approx(0.0, abs=1e-6)
    default = stored["vectors"]["multimodal"]
    near_default = artwork.query.near_vector(default, limit=4, return_metadata=MetadataQuery(distance=True, certainty=True))
    rows = get(http, "Artwork", f"nearVector: {{vector: {default}}}, limit: 4", "_additional { id distance certainty }")
    assert ids(near_default) == graphql_ids(rows)
    assert [o.metadata.certainty for o in near_default.objects] == pytest.approx([r["_additional"]["certainty"] for r in rows], abs=1e-6)
    by_name = artwork.query.near_vector({"external": external}, target_vector="external", limit=5)  # sent as vector_for_targets
    assert ids(by_name) == ids(result)
    hybrid = artwork.query.hybrid("red", vector=external, target_vector="external", alpha=0.5, limit=5)
    assert ids(hybrid) == graphql_ids(get(http, "Artwork", f'hybrid: {{query: "red", vector: {external}, targetVectors: ["external"], alpha: 0.5}}, limit: 5'))
    within = artwork.query.near_vector(default, distance=0.2, limit=50)
    assert ids(within) == graphql_ids(get(http, "Artwork", f"nearVector: {{vector: {default}, distance: 0.2}}, limit: 50"))


def test_near_vector_on_a_multi_vector(client: Any) -> None:
    passages = client.collections.use("Passage")
    inserted = passages.data.insert_many(
        [
            weaviate.classes.data.DataObject(properties={"text": "one"}, vector={"colbert": [[1, 0, 0, 0], [0, 1, 0, 0]]}),
            weaviate.classes.data.DataObject(properties={"text": "two"}, vector={"colbert": [[0, 0, 1, 0]]}),
        ]
    )
    assert not inserted.errors
    result = passages.query.near_vector([[0.0, 0.0, 1.0, 0.0]], target_vector="colbert", limit=2, include_vector=True)
    assert [o.properties["text"] for o in result.objects] == ["two", "one"]
    assert result.objects[1].vector["colbert"] == [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]


def test_near_text_near_object_and_near_image_match_graphql(client: Any, http: httpx.Client) -> None:
    articles = client.collections.use("Article")
    result = articles.query.near_text("green pears", limit=5, return_metadata=MetadataQuery(distance=True))
    rows = get(http, "Article", 'nearText: {concepts: ["green pears"]}, limit: 5')
    assert ids(result) == graphql_ids(rows)
    assert [o.metadata.distance for o in result.objects] == pytest.approx([r["_additional"]["distance"] for r in rows], abs=1e-6)
    moved = articles.query.near_text("fruit", move_to=Move(force=0.5, concepts=["cars"]), move_away=Move(force=0.3, objects=[article_id(1)]), limit=5)
    assert ids(moved) == graphql_ids(
        get(http, "Article", f'nearText: {{concepts: ["fruit"], moveTo: {{force: 0.5, concepts: ["cars"]}}, moveAwayFrom: {{force: 0.3, objects: [{{id: "{article_id(1)}"}}]}}}}, limit: 5')
    )
    near_object = articles.query.near_object(article_id(4), limit=3)
    assert ids(near_object) == graphql_ids(get(http, "Article", f'nearObject: {{id: "{article_id(4)}"}}, limit: 3'))
    assert ids(near_object)[0] == article_id(4)
    artwork = client.collections.use("Artwork")
    image = http.get("/v1/objects/Artwork/c7128945-0458-5ec1-b321-11f363e1daa9").json()["properties"]["image"]
    pictured = artwork.query.near_image(image, limit=3, return_metadata=MetadataQuery(distance=True))
    assert ids(pictured) == graphql_ids(get(http, "Artwork", f'nearImage: {{image: "{image}"}}, limit: 3'))
    words = artwork.query.near_text("red circle", target_vector="words", limit=3)
    assert ids(words) == graphql_ids(get(http, "Artwork", 'nearText: {concepts: ["red circle"], targetVectors: ["words"]}, limit: 3'))


def test_bm25_with_operator_and_properties_matches_graphql(client: Any, http: httpx.Client) -> None:
    articles = client.collections.use("Article")
    cases = [
        (articles.query.bm25("fruit apples", limit=10, return_metadata=MetadataQuery(score=True, explain_score=True)), 'bm25: {query: "fruit apples"}, limit: 10'),
        (articles.query.bm25("fruit apples", query_properties=["title^2"], limit=10, return_metadata=MetadataQuery(score=True)), 'bm25: {query: "fruit apples", properties: ["title^2"]}, limit: 10'),
        (
            articles.query.bm25("ripe fruit", operator=weaviate.classes.query.BM25Operator.and_(), limit=10, return_metadata=MetadataQuery(score=True)),
            'bm25: {query: "ripe fruit", searchOperator: {operator: And}}, limit: 10',
        ),
        (
            articles.query.bm25("ripe fruit sky", operator=weaviate.classes.query.BM25Operator.or_(minimum_match=2), limit=10, return_metadata=MetadataQuery(score=True)),
            'bm25: {query: "ripe fruit sky", searchOperator: {operator: Or, minimumOrTokensMatch: 2}}, limit: 10',
        ),
    ]
    for result, arguments in cases:
        rows = get(http, "Article", arguments, "_additional { id score explainScore }")
        assert ids(result) == graphql_ids(rows), arguments
        assert [o.metadata.score for o in result.objects] == pytest.approx([float(r["_additional"]["score"]) for r in rows], rel=1e-6)
    explained = cases[0][0].objects[0].metadata.explain_score
    assert explained and explained == get(http, "Article", cases[0][1], "_additional { explainScore }")[0]["_additional"]["explainScore"]


def test_hybrid_matches_graphql(client: Any, http: httpx.Client) -> None:
    articles = client.collections.use("Article")
    vector = http.get(f"/v1/objects/Article/{article_id(2)}", params={"include": "vector"}).json()["vectors"]["text"]
    cases = [
        (articles.query.hybrid("fruit apples", alpha=0.5, limit=8), 'hybrid: {query: "fruit apples", alpha: 0.5}, limit: 8'),
        (articles.query.hybrid("fruit apples", alpha=0.3, fusion_type=HybridFusion.RANKED, limit=8), 'hybrid: {query: "fruit apples", alpha: 0.3, fusionType: rankedFusion}, limit: 8'),
        (articles.query.hybrid("fruit", vector=vector, alpha=0.6, limit=8), f'hybrid: {{query: "fruit", vector: {vector}, alpha: 0.6}}, limit: 8'),
        (
            articles.query.hybrid("fruit", vector=HybridVector.near_text("blue sky"), alpha=0.7, limit=8),
            'hybrid: {query: "fruit", alpha: 0.7, searches: [{nearText: {concepts: ["blue sky"]}}]}, limit: 8',
        ),
        (
            articles.query.hybrid("fruit", vector=HybridVector.near_vector(vector), alpha=0.7, limit=8),
            f'hybrid: {{query: "fruit", alpha: 0.7, searches: [{{nearVector: {{vector: {vector}}}}}]}}, limit: 8',
        ),
        (articles.query.hybrid("fruit", alpha=0.5, max_vector_distance=0.6, limit=8), 'hybrid: {query: "fruit", alpha: 0.5, maxVectorDistance: 0.6}, limit: 8'),
        (
            articles.query.hybrid("fruit", alpha=0.5, filters=Filter.by_property("published").equal(True), limit=8),
            'hybrid: {query: "fruit", alpha: 0.5}, where: {path: ["published"], operator: Equal, valueBoolean: true}, limit: 8',
        ),
    ]
    for result, arguments in cases:
        for o in result.objects:
            assert o.metadata.score is None  # not asked for
        rows = get(http, "Article", arguments, "_additional { id score }")
        assert ids(result) == graphql_ids(rows), arguments
        assert result.objects, arguments
    scored = articles.query.hybrid("fruit apples", alpha=0.5, limit=8, return_metadata=MetadataQuery(score=True, explain_score=True))
    rows = get(http, "Article", 'hybrid: {query: "fruit apples", alpha: 0.5}, limit: 8', "_additional { id score explainScore }")
    assert [o.metadata.score for o in scored.objects] == pytest.approx([float(r["_additional"]["score"]) for r in rows], rel=1e-6)
    assert [o.metadata.explain_score for o in scored.objects] == [r["_additional"]["explainScore"] for r in rows]


def test_autocut_and_group_by_match_graphql(client: Any, http: httpx.Client) -> None:
    articles = client.collections.use("Article")
    cut = articles.query.near_text("red apples", auto_limit=1)
    assert ids(cut) == graphql_ids(get(http, "Article", 'nearText: {concepts: ["red apples"]}, autocut: 1'))
    grouped = articles.query.near_text("fruit", group_by=GroupBy(prop="published", number_of_groups=2, objects_per_group=3), return_metadata=MetadataQuery(distance=True))
    rows = get(
        http,
        "Article",
        'nearText: {concepts: ["fruit"]}, groupBy: {path: ["published"], groups: 2, objectsPerGroup: 3}',
        "_additional { group { groupedBy { value } count minDistance maxDistance hits { _additional { id distance } } } }",
    )
    expected = {r["_additional"]["group"]["groupedBy"]["value"]: r["_additional"]["group"] for r in rows}
    assert set(grouped.groups) == set(expected) and len(expected) == 2
    for name, group in grouped.groups.items():
        assert [str(o.uuid) for o in group.objects] == [h["_additional"]["id"] for h in expected[name]["hits"]]
        assert group.number_of_objects == expected[name]["count"]
        assert group.min_distance == pytest.approx(expected[name]["minDistance"], abs=1e-6)
        assert group.max_distance == pytest.approx(expected[name]["maxDistance"], abs=1e-6)


# -- aggregate -------------------------------------------------------------------------------


def test_aggregate_over_all_group_by_and_near_match_graphql(client: Any, http: httpx.Client) -> None:
    articles = client.collections.use("Article")
    metrics = [Metrics("rating").number(), Metrics("wordCount").integer(), Metrics("tags").text(limit=2), Metrics("published").boolean(), Metrics("publishedAt").date_()]
    over_all = articles.aggregate.over_all(total_count=True, return_metrics=metrics, filters=Filter.by_property("wordCount").less_than(120))
    fields = (
        "meta { count } rating { count mean median mode maximum minimum sum } wordCount { count mean median mode maximum minimum sum }"
        " tags { count topOccurrences(limit: 2) { value occurs } } published { count totalTrue totalFalse percentageTrue percentageFalse }"
        " publishedAt { count minimum maximum median mode }"
    )
    (row,) = graphql(http, f'{{ Aggregate {{ Article(where: {{path: ["wordCount"], operator: LessThan, valueInt: 120}}) {{ {fields} }} }} }}')["Aggregate"]["Article"]
    assert over_all.total_count == row["meta"]["count"] == 12
    rating, words, tags, published, dates = (over_all.properties[n] for n in ("rating", "wordCount", "tags", "published", "publishedAt"))
    assert (rating.count, rating.mean, rating.median, rating.mode, rating.maximum, rating.minimum, rating.sum_) == tuple(row["rating"][k] for k in ("count", "mean", "median", "mode", "maximum", "minimum", "sum"))
    assert (words.count, words.mean, words.median, words.mode, words.maximum, words.minimum, words.sum_) == tuple(row["wordCount"][k] for k in ("count", "mean", "median", "mode", "maximum", "minimum", "sum"))
    assert [(t.value, t.count) for t in tags.top_occurrences] == [(t["value"], t["occurs"]) for t in row["tags"]["topOccurrences"]]
    assert (published.total_true, published.total_false, published.percentage_true) == (row["published"]["totalTrue"], row["published"]["totalFalse"], row["published"]["percentageTrue"])
    assert dates.count == row["publishedAt"]["count"]
    assert (dates.minimum, dates.maximum, dates.median, dates.mode) == tuple(row["publishedAt"][k] for k in ("minimum", "maximum", "median", "mode"))
    grouped = articles.aggregate.over_all(group_by=GroupByAggregate(prop="published"), total_count=True, return_metrics=[Metrics("wordCount").integer(sum_=True)])
    rows = graphql(http, "{ Aggregate { Article(groupBy: [\"published\"]) { meta { count } groupedBy { value } wordCount { sum } } } }")["Aggregate"]["Article"]
    assert sorted((str(g.grouped_by.value).lower(), g.total_count, g.properties["wordCount"].sum_) for g in grouped.groups) == sorted(
        (r["groupedBy"]["value"], r["meta"]["count"], r["wordCount"]["sum"]) for r in rows
    )
    near = articles.aggregate.near_text("fruit", object_limit=5, total_count=True, return_metrics=[Metrics("wordCount").integer(sum_=True)])
    (row,) = graphql(http, '{ Aggregate { Article(nearText: {concepts: ["fruit"]}, objectLimit: 5) { meta { count } wordCount { sum } } } }')["Aggregate"]["Article"]
    assert (near.total_count, near.properties["wordCount"].sum_) == (row["meta"]["count"], row["wordCount"]["sum"]) == (5, row["wordCount"]["sum"])
