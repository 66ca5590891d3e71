"""GraphQL Aggregate through the in-process server: every number checked against numpy / a plain-Python reference."""

from __future__ import annotations

import base64
import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from tests.conftest import BACKENDS, ClientFactory, graphql

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

N = 200
CATEGORIES = ["shoes", "apparel", "books", "toys"]
WORDS = ["red", "blue", "green", "sneaker", "boot", "coat", "novel", "atlas", "puzzle", "kite", "lamp", "mug"]
TAGS = ["sale", "new", "eco", "gift", "limited", "bundle", "classic", "kids"]
REFS = [f"5a0b7c1d-0000-4000-8000-{i:012d}" for i in range(5)]
IDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(N)]
ZONES = ["Z", "+02:00", "-05:30", "+00:00"]
PROPERTIES = [
    {"name": "title", "type": "TEXT"},
    {"name": "tags", "type": "TEXT[]"},
    {"name": "category", "type": "TEXT"},
    {"name": "price", "type": "NUMBER"},
    {"name": "quantity", "type": "INT"},
    {"name": "inStock", "type": "BOOLEAN"},
    {"name": "published", "type": "DATE"},
    {"name": "ref", "type": "UUID"},
    {"name": "image", "type": "BLOB"},
]
KINDS = {p["name"]: p["type"] for p in PROPERTIES}
ALL_FIELDS = """meta { count }
  title { count type topOccurrences { value occurs } }
  tags { count type topOccurrences(limit: 20) { value occurs } }
  category { count type topOccurrences { value occurs } }
  price { count type mean median mode maximum minimum sum }
  quantity { count type mean median mode maximum minimum sum }
  inStock { count type totalTrue totalFalse percentageTrue percentageFalse }
  published { count type minimum maximum mode median }
  ref { count type topOccurrences(limit: 2) { value occurs } }"""


def _date(rng: np.random.Generator, seconds: int) -> str:
    zone = ZONES[int(rng.integers(len(ZONES)))]
    offset = {"Z": 0, "+00:00": 0, "+02:00": 120, "-05:30": -330}[zone]
    instant = dt.datetime(2023, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    local = instant.astimezone(dt.timezone(dt.timedelta(minutes=offset)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if rng.random() < 0.3:
        text += f".{int(rng.integers(1, 1000)):03d}"
    return text + zone


def make_objects() -> list[dict[str, Any]]:
    rng = np.random.default_rng(20240501)
    prices = np.round(rng.uniform(1, 250, size=60), 2)
    seconds = rng.choice(2 * 365 * 86400, size=N, replace=False)
    seconds[10:16] = seconds[3]  # the same instant six times: a clear date mode
    objects = []
    for i in range(N):
        props: dict[str, Any] = {"category": CATEGORIES[int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1]))]}
        if rng.random() > 0.1:
            props["title"] = WORDS[int(rng.choice(len(WORDS), p=np.linspace(2, 0.5, len(WORDS)) / np.linspace(2, 0.5, len(WORDS)).sum()))]
        if rng.random() > 0.1:
            props["tags"] = [TAGS[int(t)] for t in rng.integers(0, len(TAGS), size=int(rng.integers(0, 5)))]  # repeats and [] allowed
        if rng.random() > 0.1:
            props["price"] = float(prices[int(rng.integers(len(prices)))])
        if rng.random() > 0.1:
            props["quantity"] = int(rng.integers(-5, 40))
        if rng.random() > 0.1:
            props["inStock"] = bool(rng.random() < 0.65)
        if rng.random() > 0.1:
            props["published"] = _date(rng, int(seconds[i])) if not 10 <= i < 16 else _date_fixed(int(seconds[3]))
        if rng.random() > 0.2:
            props["ref"] = REFS[int(rng.integers(len(REFS)))]
        if rng.random() > 0.5:
            props["image"] = base64.b64encode(bytes(rng.integers(0, 256, size=8, dtype=np.uint8))).decode()
        vector = rng.normal(size=4).astype(np.float32)
        objects.append({"class": "Article", "id": IDS[i], "properties": props, "vector": vector.tolist()})
    return objects


def _date_fixed(seconds: int) -> str:
    instant = dt.datetime(2023, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


OBJECTS = make_objects()
VECTORS = np.array([o["vector"] for o in OBJECTS], dtype=np.float32)


# -- reference ------------------------------------------------------------------------


def _instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _utc(instant: dt.datetime) -> str:
    instant = instant.astimezone(dt.UTC)
    fraction = f".{instant.microsecond:06d}".rstrip("0").rstrip(".")
    return instant.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def reference(objects: Sequence[dict[str, Any]], top: dict[str, int]) -> dict[str, Any]:
    """What Aggregate should answer for ALL_FIELDS over these objects."""
    out: dict[str, Any] = {"meta": {"count": len(objects)}}
    for name, kind in KINDS.items():
        values = [o["properties"][name] for o in objects if o["properties"].get(name) is not None]
        if kind in ("TEXT", "TEXT[]", "UUID"):
            items = [x for v in values for x in (v if isinstance(v, list) else [v])]
            ranked = sorted(Counter(items).items(), key=lambda pair: (-pair[1], pair[0]))[: top.get(name, 5)]
            out[name] = {"count": len(items), "type": kind.lower(), "topOccurrences": [{"value": v, "occurs": c} for v, c in ranked]}
        elif kind in ("INT", "NUMBER"):
            array = np.asarray(values, dtype=np.float64)
            entry: dict[str, Any] = {"count": len(values), "type": kind.lower()}
            if len(values):
                unique, counts = np.unique(array, return_counts=True)
                entry |= {
                    "mean": np.mean(array),
                    "median": np.median(array),
                    "mode": unique[np.argmax(counts)],
                    "maximum": np.max(array),
                    "minimum": np.min(array),
                    "sum": np.sum(array),
                }
            else:
                entry |= dict.fromkeys(("mean", "median", "mode", "maximum", "minimum", "sum"))
            out[name] = entry
        elif kind == "BOOLEAN":
            true = sum(values)
            total = len(values)
            out[name] = {
                "count": total,
                "type": "boolean",
                "totalTrue": true,
                "totalFalse": total - true,
                "percentageTrue": true / total if total else 0.0,
                "percentageFalse": (total - true) / total if total else 0.0,
            }
        elif kind == "DATE":
            entry = {"count": len(values), "type": "date"}
            if values:
                ordered = sorted(values, key=lambda v: (_instant(v), v))
                instants = Counter(_instant(v) for v in values)
                mode = min(instants, key=lambda t: (-instants[t], t))
                middle = len(ordered) // 2
                if len(ordered) % 2:
                    median = ordered[middle]
                else:
                    low, high = _instant(ordered[middle - 1]), _instant(ordered[middle])
                    median = ordered[middle - 1] if low == high else _utc(low + (high - low) / 2)
                entry |= {
                    "minimum": ordered[0],
                    "maximum": max(values, key=_instant),
                    "mode": next(v for v in ordered if _instant(v) == mode),
                    "median": median,
                }
            else:
                entry |= dict.fromkeys(("minimum", "maximum", "mode", "median"))
            out[name] = entry
    return out


def assert_matches(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Exact for counts, strings and lists; floats to 1e-12 (numpy's summation order may differ from ours)."""
    assert actual.keys() >= expected.keys() - {"groupedBy"}, (actual.keys(), expected.keys())
    for key, want in expected.items():
        got = actual[key]
        if isinstance(want, dict):
            assert isinstance(got, dict), (key, got)
            assert_matches(got, want)
        elif isinstance(want, (float, np.floating)):
            assert got == pytest.approx(float(want), rel=1e-12, abs=1e-12), (key, got, want)
        else:
            assert got == want, (key, got, want)


def matching(predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    return [o for o in OBJECTS if predicate(o["properties"])]


# -- fixtures ---------------------------------------------------------------------------


def _config(limits: dict[str, Any] | None = None) -> str:
    collection = {
        "name": "Article",
        "properties": PROPERTIES,
        "vectors": {"vec": {"vectorizer": {"module": "none", "dimensions": 4}, "index": {"type": "flat", "distance": "cosine"}}},
    }
    data: dict[str, Any] = {"collections": [collection]}
    if limits:
        data["server"] = {"limits": limits}
    return yaml.safe_dump(data)


def _load(client: TestClient) -> TestClient:
    results = client.post("/v1/batch/objects", json={"objects": OBJECTS}).json()
    assert all(r["result"]["status"] == "SUCCESS" for r in results), results
    return client


@pytest.fixture
def articles(write_config: Callable[..., Path], client_factory: ClientFactory) -> TestClient:
    return _load(client_factory(write_config(_config())))


def aggregate(client: TestClient, arguments: str = "", fields: str = ALL_FIELDS, variables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    args = f"({arguments})" if arguments else ""
    body = graphql(client, f"{{ Aggregate {{ Article{args} {{ {fields} }} }} }}", variables)
    assert "errors" not in body, body["errors"]
    result: list[dict[str, Any]] = body["data"]["Aggregate"]["Article"]
    return result


TOP = {"tags": 20, "ref": 2}


# -- tests ------------------------------------------------------------------------------


def test_every_type_over_the_whole_collection(articles: TestClient) -> None:
    [result] = aggregate(articles, fields=ALL_FIELDS + " groupedBy { value }")
    assert result["groupedBy"] is None
    assert_matches(result, reference(OBJECTS, TOP))
    # the data exercises what the assertions claim: nulls, repeats inside TEXT[], a date mode, ties
    assert result["meta"]["count"] == N > result["price"]["count"]
    assert result["tags"]["count"] > sum(1 for o in OBJECTS if o["properties"].get("tags"))
    assert any(len(set(o["properties"].get("tags", []))) < len(o["properties"].get("tags", [])) for o in OBJECTS)
    assert _instant(result["published"]["mode"]) == _instant(OBJECTS[11]["properties"]["published"])
    assert Counter(o["properties"]["title"] for o in OBJECTS if "title" in o["properties"]).most_common(2)[1][1] == result["title"]["topOccurrences"][0]["occurs"]


def test_mode_ties_pick_the_smallest_value(articles: TestClient) -> None:
    toys = matching(lambda p: p["category"] == "toys")
    [result] = aggregate(articles, 'where: {path: ["category"], operator: Equal, valueText: "toys"}', "price { mode } quantity { mode }")
    for name in ("price", "quantity"):
        counts = Counter(o["properties"][name] for o in toys if name in o["properties"])
        top = max(counts.values())
        tied = [value for value, count in counts.items() if count == top]
        assert len(tied) > 1  # the data has a tie here
        assert result[name]["mode"] == min(tied)


@pytest.mark.parametrize(
    "where,predicate",
    [
        ('{path: ["category"], operator: Equal, valueText: "shoes"}', lambda p: p["category"] == "shoes"),
        ('{path: ["price"], operator: LessThan, valueNumber: 100}', lambda p: p.get("price") is not None and p["price"] < 100),
        (
            '{operator: And, operands: [{path: ["inStock"], operator: Equal, valueBoolean: true}, {path: ["quantity"], operator: GreaterThanEqual, valueInt: 10}]}',
            lambda p: p.get("inStock") is True and p.get("quantity") is not None and p["quantity"] >= 10,
        ),
        ('{path: ["tags"], operator: ContainsAny, valueText: ["eco", "gift"]}', lambda p: bool({"eco", "gift"} & set(p.get("tags") or []))),
        ('{path: ["published"], operator: GreaterThan, valueDate: "2024-01-01T00:00:00Z"}', lambda p: p.get("published") is not None and _instant(p["published"]) > dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        ('{path: ["title"], operator: IsNull, valueBoolean: true}', lambda p: p.get("title") is None),
    ],
)
def test_where_restricts_what_is_aggregated(articles: TestClient, where: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
    subset = matching(predicate)
    assert 0 < len(subset) < N
    [result] = aggregate(articles, f"where: {where}")
    assert_matches(result, reference(subset, TOP))


def test_a_filter_matching_nothing_gives_counts_of_zero_and_null_statistics(articles: TestClient) -> None:
    [result] = aggregate(articles, 'where: {path: ["category"], operator: Equal, valueText: "none-such"}')
    assert_matches(result, reference([], TOP))
    assert result["price"] == {"count": 0, "type": "number", "mean": None, "median": None, "mode": None, "maximum": None, "minimum": None, "sum": None}
    assert result["inStock"]["percentageTrue"] == 0.0 and result["title"]["topOccurrences"] == []
    assert aggregate(articles, 'groupBy: ["category"], where: {path: ["category"], operator: Equal, valueText: "none-such"}') == []


def _groups(objects: Sequence[dict[str, Any]], name: str) -> list[tuple[Any, list[dict[str, Any]]]]:
    members: dict[Any, list[dict[str, Any]]] = {}
    for o in objects:
        value = o["properties"].get(name)
        for item in sorted(set(value if isinstance(value, list) else [value] if value is not None else [])):
            members.setdefault(item, []).append(o)
    return sorted(members.items(), key=lambda pair: (-len(pair[1]), pair[0]))


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(np.format_float_positional(value, trim="-")) if isinstance(value, float) else str(value)


@pytest.mark.parametrize("name", ["category", "tags", "quantity", "inStock", "price", "ref"])
def test_group_by_aggregates_each_group(articles: TestClient, name: str) -> None:
    result = aggregate(articles, f'groupBy: ["{name}"]', ALL_FIELDS + " groupedBy { path value }")
    expected = _groups(OBJECTS, name)[:100]
    assert [g["groupedBy"] for g in result] == [{"path": [name], "value": _label(value)} for value, _ in expected]
    for group, (_, members) in zip(result, expected):
        assert_matches(group, reference(members, TOP))


def test_group_by_with_limit_and_where(articles: TestClient) -> None:
    where = '{path: ["inStock"], operator: Equal, valueBoolean: true}'
    result = aggregate(articles, f'groupBy: ["tags"], limit: 3, where: {where}', ALL_FIELDS + " groupedBy { value }")
    expected = _groups(matching(lambda p: p.get("inStock") is True), "tags")[:3]
    assert len(result) == 3
    assert [g["groupedBy"]["value"] for g in result] == [value for value, _ in expected]
    for group, (_, members) in zip(result, expected):
        assert_matches(group, reference(members, TOP))
    assert aggregate(articles, 'groupBy: ["category"], limit: 0', "meta { count }") == []


def test_top_occurrences_limit_and_tie_order(articles: TestClient) -> None:
    [result] = aggregate(articles, fields="title { top2: topOccurrences(limit: 2) { value occurs } all: topOccurrences(limit: 100) { value occurs } none: topOccurrences(limit: 0) { value } }")
    counts = Counter(o["properties"]["title"] for o in OBJECTS if "title" in o["properties"])
    ranked = [{"value": v, "occurs": c} for v, c in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))]
    assert result["title"]["all"] == ranked and result["title"]["top2"] == ranked[:2] and result["title"]["none"] == []
    assert len(ranked) == len(WORDS)


V3_QUERIES = [
    # literal documents as the v3 Python client builds them (reference §1)
    ('{Aggregate{Article(where: {path: ["category"] operator: Equal valueText: "shoes"} ){meta{count}price { mean maximum }}}}', None),
    ('{Aggregate{Article(groupBy: ["category"]){groupedBy { value }category { count }}}}', None),
    ('{Aggregate{Article(where: {path: ["category"] operator: Equal valueText: "books"} limit: 10){meta{count}}}}', None),
    ('{Aggregate{Article{meta{count}quantity {count sum minimum maximum}inStock {totalTrue percentageTrue}}}}', None),
]


def test_v3_client_literal_queries(articles: TestClient) -> None:
    shoes = matching(lambda p: p["category"] == "shoes")
    prices = [o["properties"]["price"] for o in shoes if "price" in o["properties"]]
    first = graphql(articles, V3_QUERIES[0][0])
    assert first == {"data": {"Aggregate": {"Article": [{"meta": {"count": len(shoes)}, "price": {"mean": pytest.approx(np.mean(prices), rel=1e-12), "maximum": max(prices)}}]}}}
    second = graphql(articles, V3_QUERIES[1][0])["data"]["Aggregate"]["Article"]
    assert second == [{"groupedBy": {"value": value}, "category": {"count": len(members)}} for value, members in _groups(OBJECTS, "category")]
    third = graphql(articles, V3_QUERIES[2][0])["data"]["Aggregate"]["Article"]
    assert third == [{"meta": {"count": len(matching(lambda p: p["category"] == "books"))}}]
    fourth = graphql(articles, V3_QUERIES[3][0])["data"]["Aggregate"]["Article"][0]
    quantities = [o["properties"]["quantity"] for o in OBJECTS if "quantity" in o["properties"]]
    stock = [o["properties"]["inStock"] for o in OBJECTS if "inStock" in o["properties"]]
    assert fourth == {
        "meta": {"count": N},
        "quantity": {"count": len(quantities), "sum": float(sum(quantities)), "minimum": float(min(quantities)), "maximum": float(max(quantities))},
        "inStock": {"totalTrue": sum(stock), "percentageTrue": pytest.approx(sum(stock) / len(stock))},
    }


def _cosine(query: np.ndarray) -> np.ndarray:
    m = VECTORS.astype(np.float64)
    distances: np.ndarray = 1 - (m / np.linalg.norm(m, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    return distances


def test_near_vector_with_object_limit(articles: TestClient) -> None:
    query = np.array([0.3, -1.0, 0.5, 0.2])
    order = np.argsort(_cosine(query), kind="stable")
    [result] = aggregate(articles, "nearVector: {vector: $v}, objectLimit: 25".replace("$v", str(query.tolist())))
    assert_matches(result, reference([OBJECTS[i] for i in order[:25]], TOP))
    # within a filter: the 15 nearest of the matching objects
    shoes = {i for i, o in enumerate(OBJECTS) if o["properties"]["category"] == "shoes"}
    nearest_shoes = [OBJECTS[i] for i in order if i in shoes][:15]
    [filtered] = aggregate(articles, f'nearVector: {{vector: {query.tolist()}}}, objectLimit: 15, where: {{path: ["category"], operator: Equal, valueText: "shoes"}}')
    assert_matches(filtered, reference(nearest_shoes, TOP))
    # grouped near search: groups over the nearest objects
    grouped = aggregate(articles, f"nearVector: {{vector: {query.tolist()}}}, objectLimit: 40, groupBy: [\"category\"]", "groupedBy { value } meta { count } price { mean }")
    expected = _groups([OBJECTS[i] for i in order[:40]], "category")
    assert [(g["groupedBy"]["value"], g["meta"]["count"]) for g in grouped] == [(v, len(m)) for v, m in expected]


def test_near_object_and_certainty(articles: TestClient) -> None:
    distances = _cosine(VECTORS[7].astype(np.float64))
    order = np.argsort(distances, kind="stable")
    [result] = aggregate(articles, f'nearObject: {{id: "{IDS[7]}"}}, objectLimit: 10', "meta { count } quantity { sum mean }")
    want = reference([OBJECTS[i] for i in order[:10]], {})
    assert_matches(result, {"meta": {"count": 10}, "quantity": {"sum": want["quantity"]["sum"], "mean": want["quantity"]["mean"]}})
    # certainty (no objectLimit): every object within the distance
    threshold = float(np.sort(distances)[30]) + 1e-4
    within = [OBJECTS[i] for i in range(N) if distances[i] <= threshold]
    [by_certainty] = aggregate(articles, f'nearObject: {{id: "{IDS[7]}", certainty: {1 - threshold / 2!r}}}', "meta { count }")
    assert by_certainty["meta"]["count"] == len(within) == 31


QUERY_ERRORS = [
    ('groupBy: ["nope"]', "meta { count }", "no property 'nope'"),
    ('groupBy: ["image"]', "meta { count }", "BLOB"),
    ('groupBy: ["title", "x"]', "meta { count }", "exactly one property"),
    ('where: {path: ["image"], operator: Equal, valueText: "x"}', "meta { count }", "BLOB"),
    ('where: {path: ["nope"], operator: Equal, valueText: "x"}', "meta { count }", "no such prop"),
    ("nearVector: {vector: [1, 0, 0, 0]}", "meta { count }", "must provide certainty or objectLimit"),
    ("objectLimit: 5", "meta { count }", "objectLimit can only be used with a near"),
    ("nearVector: {vector: [1, 0, 0, 0]}, objectLimit: 0", "meta { count }", "objectLimit must be a positive integer"),
    ("nearVector: {vector: [1, 0, 0]}, objectLimit: 3", "meta { count }", "nearVector has 3 dimensions"),
    ('nearVector: {vector: [1, 0, 0, 0]}, nearObject: {id: "x"}, objectLimit: 3', "meta { count }", "only one of"),
    ('nearObject: {id: "00000000-0000-4000-8000-999999999999"}, objectLimit: 3', "meta { count }", "no object with id"),
    ('nearText: {concepts: ["x"]}, objectLimit: 3', "meta { count }", "nearText needs a vectorizer"),
    ("limit: -1", "meta { count }", "limit must not be negative"),
    ("", "title { topOccurrences(limit: -2) { value } }", "topOccurrences limit must not be negative"),
    ("", "image { count }", "Cannot query field 'image'"),
    ("", "price { topOccurrences { value } }", "Cannot query field 'topOccurrences'"),
    ("", "inStock { mean }", "Cannot query field 'mean'"),
    ("groupBy: \"title\"", "meta { count }", None),  # a bare string is coerced to a one-element list, as GraphQL lists are
]


@pytest.mark.parametrize("arguments,fields,message", QUERY_ERRORS)
def test_bad_input_is_a_graphql_error_with_a_location(articles: TestClient, arguments: str, fields: str, message: str | None) -> None:
    args = f"({arguments})" if arguments else ""
    body = graphql(articles, f"{{ Aggregate {{ Article{args} {{ {fields} }} }} }}")
    if message is None:
        assert "errors" not in body
        return
    assert body["errors"], body
    assert message in body["errors"][0]["message"], body["errors"]
    assert body["errors"][0]["locations"][0]["line"] == 1


def test_unknown_class_and_introspection(articles: TestClient) -> None:
    body = graphql(articles, "{ Aggregate { Nope { meta { count } } } }")
    assert "Cannot query field 'Nope' on type 'AggregateObjectsObj'" in body["errors"][0]["message"]
    fields = graphql(articles, '{ __type(name: "AggregateArticle") { fields { name } } }')["data"]["__type"]["fields"]
    assert {f["name"] for f in fields} == {"title", "tags", "category", "price", "quantity", "inStock", "published", "ref", "meta", "groupedBy"}


def test_a_collection_larger_than_the_scan_bound_is_refused(write_config: Callable[..., Path], client_factory: ClientFactory) -> None:
    client = _load(client_factory(write_config(_config({"queryLimitMax": 1}))))  # bound: 1 * 100 objects
    body = graphql(client, "{ Aggregate { Article { meta { count } price { mean } } } }")
    assert body["data"]["Aggregate"]["Article"] is None
    assert "200 objects" in body["errors"][0]["message"] and "(100)" in body["errors"][0]["message"]
    # meta { count } alone reads no object: it is counted whatever the bound.
    assert graphql(client, "{ Aggregate { Article { meta { count } } } }")["data"]["Aggregate"]["Article"] == [{"meta": {"count": 200}}]
    [filtered] = aggregate(client, 'where: {path: ["category"], operator: Equal, valueText: "books"}', "meta { count }")
    assert filtered["meta"]["count"] == len(matching(lambda p: p["category"] == "books")) <= 100


def test_near_text_and_near_image_cover_the_same_objects_as_get(multimodal_client: TestClient) -> None:
    from tests.test_graphql import image_b64

    searches = {
        "nearText": '{concepts: ["red circle"]}',
        "nearImage": '{{image: "{}"}}'.format(image_b64((220, 30, 40), "circle", 96)),
    }
    for kind, near in searches.items():
        hits = graphql(multimodal_client, f"{{ Get {{ Artwork({kind}: {near}, limit: 4) {{ title year }} }} }}")["data"]["Get"]["Artwork"]
        body = graphql(multimodal_client, f"{{ Aggregate {{ Artwork({kind}: {near}, objectLimit: 4) {{ meta {{ count }} title {{ topOccurrences(limit: 10) {{ value }} }} year {{ sum }} }} }} }}")
        [result] = body["data"]["Aggregate"]["Artwork"]
        assert result["meta"]["count"] == 4
        assert sorted(t["value"] for t in result["title"]["topOccurrences"]) == sorted(h["title"] for h in hits)
        assert result["year"]["sum"] == sum(h["year"] for h in hits if h["year"] is not None)
