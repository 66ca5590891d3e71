"""``where`` filters, ``sort`` and cursor pagination through the in-process server (GraphQL and REST).

One collection ``C`` holds a property of every type (TEXT, TEXT[], INT, NUMBER, BOOLEAN,
DATE, UUID, BLOB) and one bring-your-own vector.  ~60 objects are generated from a fixed
seed, each property missing from some of them, DATEs written with different UTC offsets,
and imported in three batches so that ``_creationTimeUnix`` takes several values.

Every filter result is compared, as an exact id set, with ``matches`` below: a small
reference evaluator written from the documented semantics, not from the SQL:

* a missing property fails every test except ``NotEqual`` and ``ContainsNone`` (which it
  passes) and ``IsNull: true``;
* on TEXT[] a test holds when *some* element passes it (``Equal``, the comparisons,
  ``Like``), ``NotEqual`` / ``ContainsNone`` when *no* element equals / is listed,
  ``ContainsAll`` when every listed value is an element;
* on a scalar, ``ContainsAny`` is "equals one of", ``ContainsAll`` "equals all of";
* ``Equal`` on TEXT is exact (case-sensitive), ``Like`` is case-insensitive with ``*``
  (any run) and ``?`` (one character), anchored at both ends;
* DATE values are compared as instants, whatever offset they were written with;
* ``Not`` is the complement over the whole collection (as Weaviate's bitmap ``Not``).

The module-scoped server is read-only for every test, so it is shared.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import operator
import random
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from starlette.testclient import TestClient

from searchd.query.filters import parse_where
from searchd.server import create_app, open_services
from tests.conftest import BACKENDS, graphql, next_millisecond

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

# -- generated data --------------------------------------------------------------

N = 60
TYPES = {
    "title": "TEXT",
    "tags": "TEXT[]",
    "count": "INT",
    "price": "NUMBER",
    "active": "BOOLEAN",
    "published": "DATE",
    "ref": "UUID",
    "blob": "BLOB",
}
UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
OFFSETS = [UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(-dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=9))]
BASE = dt.datetime(2024, 3, 1, tzinfo=UTC)
ADJECTIVES = ["red", "Red", "RED", "blue", "Blue", "green", "yellow"]
NOUNS = ["apple", "Banana", "cherry", "date", "fig"]
TAG_WORDS = ["alpha", "beta", "gamma", "delta", "Epsilon"]
INJECTION = "x' OR 1=1 --"


def rfc3339(instant: dt.datetime, offset: dt.tzinfo, millis: bool) -> str:
    text = instant.astimezone(offset).isoformat(timespec="milliseconds" if millis else "seconds")
    return text.replace("+00:00", "Z")


def _generate() -> tuple[list[dict[str, Any]], list[str]]:
    rng = random.Random(20240501)
    refs = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(4)]
    objects: list[dict[str, Any]] = []
    for i in range(N):
        object_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        props: dict[str, Any] = {}

        def present(p: float = 0.18) -> bool:
            return rng.random() >= p

        if present():
            props["title"] = f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"
        if present():
            tags = rng.sample(TAG_WORDS, rng.randint(1, 3))
            if rng.random() < 0.15:
                tags.append(tags[0])  # a repeated element
            props["tags"] = tags
        if present():
            props["count"] = rng.randint(-5, 30)
        if present():
            props["price"] = float(rng.randint(0, 100)) if rng.random() < 0.2 else round(rng.uniform(0, 100), 2)
        if present():
            props["active"] = rng.random() < 0.5
        if present():
            instant = BASE + dt.timedelta(minutes=rng.randint(0, 14 * 24 * 60), milliseconds=rng.choice([0, 0, 250, 999]))
            props["published"] = rfc3339(instant, rng.choice(OFFSETS), millis=instant.microsecond != 0)
        if present(0.2):
            ref = rng.choice(refs)
            props["ref"] = ref.upper() if i % 2 else ref  # written either way, stored canonical
        if present(0.2):
            props["blob"] = base64.b64encode(rng.randbytes(9)).decode()
        vector = None if i % 13 == 0 else [rng.gauss(0, 1) for _ in range(4)]
        objects.append({"id": object_id, "props": props, "vector": vector})

    # Hand-placed values the operators need to meet.
    objects[1]["props"]["published"] = "2024-03-05T12:00:00+02:00"
    objects[2]["props"]["published"] = "2024-03-05T10:00:00Z"  # the same instant as objects[1]
    objects[7]["props"]["published"] = "2024-03-06T23:00:00-05:30"  # 2024-03-07T04:30Z: later than [8], sorts first as text
    objects[8]["props"]["published"] = "2024-03-07T01:00:00Z"
    objects[3]["props"]["title"] = "O'Brien apple"
    objects[4]["props"]["title"] = "a.c fig"
    objects[5]["props"]["title"] = "abc fig"
    objects[6]["props"]["title"] = "100% apple"
    objects[9]["props"]["price"] = 50.0
    objects[10]["props"]["price"] = 50.0
    objects[11]["props"]["count"] = 7
    objects[12]["props"]["count"] = 7
    objects[14]["props"]["tags"] = ["alpha", "beta"]
    objects[15]["props"].pop("tags", None)
    objects[16]["props"].pop("count", None)
    objects[17]["props"].pop("active", None)
    objects[18]["props"].pop("published", None)
    objects[19]["props"].pop("title", None)
    return objects, refs


OBJECTS, REFS = _generate()
IDS = sorted(o["id"] for o in OBJECTS)
BY_ID = {o["id"]: o for o in OBJECTS}
WITH_VECTOR = [o for o in OBJECTS if o["vector"] is not None]


def stored(props: dict[str, Any]) -> dict[str, Any]:
    """What the server keeps: canonical UUIDs, NUMBER as float; DATE text as written."""
    out = dict(props)
    if "ref" in out:
        out["ref"] = str(uuid.UUID(out["ref"]))
    if "price" in out:
        out["price"] = float(out["price"])
    return out


def first(name: str, skip: int = 0) -> Any:
    values = [o["props"][name] for o in OBJECTS if name in o["props"]]
    return values[skip]


# -- the reference evaluator --------------------------------------------------------

VALUE_KEYS = ("valueInt", "valueNumber", "valueBoolean", "valueText", "valueString", "valueDate")
COMPARE = {"Equal": operator.eq, "GreaterThan": operator.gt, "GreaterThanEqual": operator.ge, "LessThan": operator.lt, "LessThanEqual": operator.le}


def micros(text: str) -> int:
    """An RFC 3339 instant as exact microseconds since the epoch."""
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.tzinfo is not None
    return (parsed - EPOCH) // dt.timedelta(microseconds=1)


def like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL) is not None


def filter_value(path: str, key: str, value: Any) -> Any:
    if path in ("id", "_id"):
        return str(uuid.UUID(value))
    if path == "_creationTimeUnix":
        return micros(value) // 1000 if key == "valueDate" else int(value)
    kind = TYPES[path]
    if kind == "DATE":
        return micros(value)
    if kind == "UUID":
        return str(uuid.UUID(value))
    return value


def object_values(obj: dict[str, Any], path: str) -> list[Any]:
    """The values a leaf looks at: [] when missing, every element of a TEXT[]."""
    if path in ("id", "_id"):
        return [obj["id"]]
    if path == "_creationTimeUnix":
        return [CREATED[obj["id"]]]
    value = stored(obj["props"]).get(path)
    if value is None:
        return []
    if TYPES[path] == "DATE":
        return [micros(value)]
    return list(value) if TYPES[path] == "TEXT[]" else [value]


def matches(obj: dict[str, Any], where: dict[str, Any]) -> bool:
    op = where["operator"]
    if op == "And":
        return all(matches(obj, w) for w in where["operands"])
    if op == "Or":
        return any(matches(obj, w) for w in where["operands"])
    if op == "Not":
        return not matches(obj, where["operands"][0])
    path = where["path"][0]
    key = next(k for k in VALUE_KEYS if k in where)
    raw = where[key]
    items = object_values(obj, path)
    if op == "IsNull":
        return (not items) is raw
    if op == "Like":
        return any(like(raw, x) for x in items)
    values = [filter_value(path, key, v) for v in (raw if isinstance(raw, list) else [raw])]
    if op == "NotEqual":
        return not any(x == values[0] for x in items)
    if op in COMPARE:
        return any(COMPARE[op](x, values[0]) for x in items)
    if op == "ContainsAny":
        return any(x in values for x in items)
    if op == "ContainsAll":
        return bool(items) and all(v in items for v in values)
    assert op == "ContainsNone"
    return not any(x in values for x in items)


def three_valued(obj: dict[str, Any], where: dict[str, Any]) -> bool | None:
    """What the SQL actually computes: a scalar comparison with a missing property is NULL,
    and NOT NULL stays NULL.  Used to check that the null-sensitive Not cases are in the table."""
    op: str = where["operator"]
    if op in ("And", "Or", "Not"):
        parts = [three_valued(obj, w) for w in where["operands"]]
        if op == "Not":
            return None if parts[0] is None else not parts[0]
        decisive = op == "Or"
        if decisive in parts:
            return decisive
        return None if None in parts else not decisive
    path = where["path"][0]
    missing = not object_values(obj, path)
    scalar = path not in TYPES or TYPES[path] != "TEXT[]"
    if scalar and missing and op not in ("IsNull", "Like", "NotEqual", "ContainsNone"):
        return None
    return matches(obj, where)


def expected_ids(where: dict[str, Any]) -> set[str]:
    return {o["id"] for o in OBJECTS if matches(o, where)}


# -- GraphQL literals, as the v3 client writes them ---------------------------------

ENUM_KEYS = {"operator", "order"}


def literal(value: Any, key: str = "") -> str:
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}: {literal(v, k)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if key in ENUM_KEYS:
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def get(client: TestClient, args: str, fields: str = "_additional { id }") -> dict[str, Any]:
    return graphql(client, f"{{ Get {{ C({args}) {{ {fields} }} }} }}")


def ids_of(body: dict[str, Any]) -> list[str]:
    assert "errors" not in body, body
    return [hit["_additional"]["id"] for hit in body["data"]["Get"]["C"]]


def where_ids(client: TestClient, where: dict[str, Any], extra: str = "limit: 1000") -> list[str]:
    return ids_of(get(client, f"where: {literal(where)} {extra}"))


def leaf(path: str, op: str, key: str | None = None, value: Any = None) -> dict[str, Any]:
    where: dict[str, Any] = {"path": [path], "operator": op}
    if key is not None:
        where[key] = value
    return where


# -- the server ------------------------------------------------------------------

CONFIG = {
    "collections": [
        {
            "name": "C",
            "properties": [{"name": name, "type": kind} for name, kind in TYPES.items()],
            "vectors": {"vec": {"vectorizer": {"module": "none", "dimensions": 4}, "index": {"type": "flat"}}},
        }
    ]
}
CREATED: dict[str, int] = {}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, storage_backend: str) -> Iterator[TestClient]:
    # Naming storage_backend makes pytest start this server again for each backend (otherwise the first one is kept).
    root: Path = tmp_path_factory.mktemp("filters")
    config = root / "searchd.yaml"
    config.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    server = TestClient(create_app(open_services(config, root / "data")))
    server.__enter__()
    try:
        for start in range(0, N, 20):  # three batches, so creation times differ
            if start:
                next_millisecond()
            batch = [
                {"class": "C", "id": o["id"], "properties": o["props"], **({"vector": o["vector"]} if o["vector"] is not None else {})}
                for o in OBJECTS[start : start + 20]
            ]
            response = server.post("/v1/batch/objects", json={"objects": batch})
            assert response.status_code == 200, response.text
            assert [r["result"]["status"] for r in response.json()] == ["SUCCESS"] * len(batch), response.text
        listing = get(server, "limit: 1000", "_additional { id creationTimeUnix }")
        CREATED.clear()
        CREATED.update({h["_additional"]["id"]: int(h["_additional"]["creationTimeUnix"]) for h in listing["data"]["Get"]["C"]})
        assert len(CREATED) == N and len(set(CREATED.values())) == 3
        yield server
    finally:
        server.__exit__(None, None, None)


def creation_times() -> list[int]:
    return sorted(set(CREATED.values()))


# -- 0. the data made it in as expected ------------------------------------------------


def test_stored_data_round_trips(client: TestClient) -> None:
    fields = " ".join(TYPES) + " _additional { id vector }"
    hits = get(client, "limit: 1000", fields)["data"]["Get"]["C"]
    assert [h["_additional"]["id"] for h in hits] == IDS  # plain listing is in id order
    for hit in hits:
        obj = BY_ID[hit["_additional"]["id"]]
        assert {k: v for k, v in hit.items() if k != "_additional" and v is not None} == stored(obj["props"])
        if obj["vector"] is None:
            assert hit["_additional"]["vector"] is None
        else:
            assert hit["_additional"]["vector"] == pytest.approx(obj["vector"], rel=1e-6)
    # The data exercises what it should: every property missing somewhere, offsets mixed,
    # DATE text order different from instant order.
    for name in TYPES:
        assert 0 < sum(name in o["props"] for o in OBJECTS) < N, name
    dates = [o["props"]["published"] for o in OBJECTS if "published" in o["props"]]
    assert {d[-1] for d in dates} >= {"Z", "0"} and any("+02:00" in d for d in dates) and any("-05:30" in d for d in dates)
    assert sorted(dates) != sorted(dates, key=micros)


# -- 1. every operator on every applicable type --------------------------------------

T0, T1 = first("title"), first("title", 3)
C0 = first("count")
P0, P1 = first("price"), first("price", 2)
MID_ID = IDS[N // 2]
DATE_MID = "2024-03-08T00:00:00+01:00"


def _cases() -> list[tuple[str, dict[str, Any]]]:
    d1 = OBJECTS[1]["props"]["published"]
    d8 = OBJECTS[8]["props"]["published"]
    other = first("published", 5)
    return [
        # TEXT
        ("text-equal", leaf("title", "Equal", "valueText", T0)),
        ("text-equal-quote", leaf("title", "Equal", "valueText", "O'Brien apple")),
        ("text-equal-case-sensitive", leaf("title", "Equal", "valueText", T0.swapcase())),
        ("text-equal-valueString", leaf("title", "Equal", "valueString", T1)),
        ("text-notequal", leaf("title", "NotEqual", "valueText", T0)),
        ("text-gt", leaf("title", "GreaterThan", "valueText", "c")),
        ("text-gte", leaf("title", "GreaterThanEqual", "valueText", "blue fig")),
        ("text-lt", leaf("title", "LessThan", "valueText", "Red")),
        ("text-lte", leaf("title", "LessThanEqual", "valueText", T0)),
        ("text-like-prefix", leaf("title", "Like", "valueText", "red*")),
        ("text-like-suffix-ci", leaf("title", "Like", "valueText", "*APPLE")),
        ("text-like-question", leaf("title", "Like", "valueText", "?ed *")),
        ("text-like-both", leaf("title", "Like", "valueText", "*an?n*")),
        ("text-like-dot-is-literal", leaf("title", "Like", "valueText", "a.c*")),
        ("text-like-percent-is-literal", leaf("title", "Like", "valueText", "100%*")),
        ("text-like-sql-wildcards", leaf("title", "Like", "valueText", "%a_c%")),
        ("text-like-star", leaf("title", "Like", "valueText", "*")),
        ("text-isnull-true", leaf("title", "IsNull", "valueBoolean", True)),
        ("text-isnull-false", leaf("title", "IsNull", "valueBoolean", False)),
        ("text-containsany", leaf("title", "ContainsAny", "valueText", [T0, T1, "no such title"])),
        ("text-containsall-one", leaf("title", "ContainsAll", "valueText", [T0])),
        ("text-containsall-two", leaf("title", "ContainsAll", "valueText", [T0, T1])),
        ("text-containsnone", leaf("title", "ContainsNone", "valueText", [T0, T1])),
        # TEXT[]
        ("textarray-equal", leaf("tags", "Equal", "valueText", "alpha")),
        ("textarray-equal-case-sensitive", leaf("tags", "Equal", "valueText", "epsilon")),
        ("textarray-notequal", leaf("tags", "NotEqual", "valueText", "alpha")),
        ("textarray-gt", leaf("tags", "GreaterThan", "valueText", "delta")),
        ("textarray-gte", leaf("tags", "GreaterThanEqual", "valueText", "gamma")),
        ("textarray-lt", leaf("tags", "LessThan", "valueText", "beta")),
        ("textarray-lte", leaf("tags", "LessThanEqual", "valueText", "beta")),
        ("textarray-like", leaf("tags", "Like", "valueText", "*ta")),
        ("textarray-like-ci", leaf("tags", "Like", "valueText", "EPS*")),
        ("textarray-like-question", leaf("tags", "Like", "valueText", "g?mma")),
        ("textarray-isnull-true", leaf("tags", "IsNull", "valueBoolean", True)),
        ("textarray-isnull-false", leaf("tags", "IsNull", "valueBoolean", False)),
        ("textarray-containsany", leaf("tags", "ContainsAny", "valueText", ["alpha", "Epsilon"])),
        ("textarray-containsall", leaf("tags", "ContainsAll", "valueText", ["alpha", "beta"])),
        ("textarray-containsall-repeated", leaf("tags", "ContainsAll", "valueText", ["gamma", "gamma"])),
        ("textarray-containsnone", leaf("tags", "ContainsNone", "valueText", ["alpha", "beta"])),
        # INT
        ("int-equal", leaf("count", "Equal", "valueInt", 7)),
        ("int-notequal", leaf("count", "NotEqual", "valueInt", 7)),
        ("int-gt", leaf("count", "GreaterThan", "valueInt", 10)),
        ("int-gte", leaf("count", "GreaterThanEqual", "valueInt", C0)),
        ("int-lt", leaf("count", "LessThan", "valueInt", 0)),
        ("int-lte", leaf("count", "LessThanEqual", "valueInt", 0)),
        ("int-gt-everything", leaf("count", "GreaterThan", "valueInt", -100)),
        ("int-isnull-true", leaf("count", "IsNull", "valueBoolean", True)),
        ("int-isnull-false", leaf("count", "IsNull", "valueBoolean", False)),
        ("int-containsany", leaf("count", "ContainsAny", "valueInt", [1, 2, 3, 7])),
        ("int-containsall", leaf("count", "ContainsAll", "valueInt", [7, 7])),
        ("int-containsall-two", leaf("count", "ContainsAll", "valueInt", [7, 8])),
        ("int-containsnone", leaf("count", "ContainsNone", "valueInt", [1, 2, 3, 7])),
        # NUMBER
        ("number-equal", leaf("price", "Equal", "valueNumber", P0)),
        ("number-equal-valueInt", leaf("price", "Equal", "valueInt", 50)),
        ("number-equal-integral-valueNumber", leaf("price", "Equal", "valueNumber", 50.0)),
        ("number-notequal", leaf("price", "NotEqual", "valueNumber", 50.0)),
        ("number-gt", leaf("price", "GreaterThan", "valueNumber", 50.5)),
        ("number-gt-valueInt", leaf("price", "GreaterThan", "valueInt", 50)),
        ("number-gte", leaf("price", "GreaterThanEqual", "valueNumber", 50.0)),
        ("number-lt", leaf("price", "LessThan", "valueNumber", 20.25)),
        ("number-lte", leaf("price", "LessThanEqual", "valueNumber", P0)),
        ("number-isnull-true", leaf("price", "IsNull", "valueBoolean", True)),
        ("number-isnull-false", leaf("price", "IsNull", "valueBoolean", False)),
        ("number-containsany", leaf("price", "ContainsAny", "valueNumber", [P0, P1, 50])),
        ("number-containsall", leaf("price", "ContainsAll", "valueNumber", [P0])),
        ("number-containsnone", leaf("price", "ContainsNone", "valueNumber", [P0, P1, 50])),
        # BOOLEAN
        ("bool-equal-true", leaf("active", "Equal", "valueBoolean", True)),
        ("bool-equal-false", leaf("active", "Equal", "valueBoolean", False)),
        ("bool-notequal-true", leaf("active", "NotEqual", "valueBoolean", True)),
        ("bool-notequal-false", leaf("active", "NotEqual", "valueBoolean", False)),
        ("bool-isnull-true", leaf("active", "IsNull", "valueBoolean", True)),
        ("bool-isnull-false", leaf("active", "IsNull", "valueBoolean", False)),
        ("bool-containsany", leaf("active", "ContainsAny", "valueBoolean", [True])),
        ("bool-containsall", leaf("active", "ContainsAll", "valueBoolean", [False])),
        ("bool-containsnone", leaf("active", "ContainsNone", "valueBoolean", [False])),
        # DATE (instants: the same moment written with another offset is Equal)
        ("date-equal-other-offset", leaf("published", "Equal", "valueDate", "2024-03-05T11:00:00+01:00")),
        ("date-equal-valueText", leaf("published", "Equal", "valueText", d1)),
        ("date-equal-millis", leaf("published", "Equal", "valueDate", rfc3339(dt.datetime.fromisoformat(other), OFFSETS[3], millis=True))),
        ("date-notequal", leaf("published", "NotEqual", "valueDate", d1)),
        ("date-gt", leaf("published", "GreaterThan", "valueDate", DATE_MID)),
        ("date-gt-instant-not-text", leaf("published", "GreaterThan", "valueDate", d8)),
        ("date-gte", leaf("published", "GreaterThanEqual", "valueDate", d1)),
        ("date-lt", leaf("published", "LessThan", "valueDate", DATE_MID)),
        ("date-lt-instant-not-text", leaf("published", "LessThan", "valueDate", OBJECTS[7]["props"]["published"])),
        ("date-lte", leaf("published", "LessThanEqual", "valueDate", "2024-03-05T10:00:00.000Z")),
        ("date-isnull-true", leaf("published", "IsNull", "valueBoolean", True)),
        ("date-isnull-false", leaf("published", "IsNull", "valueBoolean", False)),
        ("date-containsany", leaf("published", "ContainsAny", "valueDate", [d1, d8, "1999-01-01T00:00:00Z"])),
        ("date-containsall-same-instant", leaf("published", "ContainsAll", "valueDate", [d1, OBJECTS[2]["props"]["published"]])),
        ("date-containsnone", leaf("published", "ContainsNone", "valueDate", [d1, d8])),
        # UUID
        ("uuid-equal-uppercase", leaf("ref", "Equal", "valueText", REFS[0].upper())),
        ("uuid-notequal", leaf("ref", "NotEqual", "valueText", REFS[0])),
        ("uuid-gt", leaf("ref", "GreaterThan", "valueText", sorted(REFS)[1])),
        ("uuid-lte", leaf("ref", "LessThanEqual", "valueText", sorted(REFS)[1])),
        ("uuid-isnull-true", leaf("ref", "IsNull", "valueBoolean", True)),
        ("uuid-isnull-false", leaf("ref", "IsNull", "valueBoolean", False)),
        ("uuid-containsany", leaf("ref", "ContainsAny", "valueText", [REFS[0], REFS[1].upper()])),
        ("uuid-containsall", leaf("ref", "ContainsAll", "valueText", [REFS[2]])),
        ("uuid-containsnone", leaf("ref", "ContainsNone", "valueText", [REFS[0], REFS[1]])),
        # id
        ("id-equal", leaf("id", "Equal", "valueText", OBJECTS[0]["id"])),
        ("id-equal-uppercase-_id", leaf("_id", "Equal", "valueText", OBJECTS[1]["id"].upper())),
        ("id-equal-valueString", leaf("id", "Equal", "valueString", OBJECTS[2]["id"])),
        ("id-notequal", leaf("id", "NotEqual", "valueText", OBJECTS[0]["id"])),
        ("id-gt", leaf("id", "GreaterThan", "valueText", MID_ID)),
        ("id-gte", leaf("id", "GreaterThanEqual", "valueText", MID_ID)),
        ("id-lt", leaf("id", "LessThan", "valueText", MID_ID)),
        ("id-lte", leaf("id", "LessThanEqual", "valueText", MID_ID)),
        ("id-containsany", leaf("id", "ContainsAny", "valueText", [OBJECTS[0]["id"], OBJECTS[5]["id"], str(uuid.UUID(int=1))])),
        ("id-containsnone", leaf("id", "ContainsNone", "valueText", [OBJECTS[0]["id"], OBJECTS[5]["id"]])),
        # logical
        ("and", {"operator": "And", "operands": [leaf("count", "GreaterThan", "valueInt", 5), leaf("active", "Equal", "valueBoolean", True)]}),
        ("and-single", {"operator": "And", "operands": [leaf("tags", "Equal", "valueText", "beta")]}),
        ("or", {"operator": "Or", "operands": [leaf("tags", "ContainsAny", "valueText", ["alpha"]), leaf("price", "LessThan", "valueNumber", 10)]}),
        ("or-isnull", {"operator": "Or", "operands": [leaf("title", "IsNull", "valueBoolean", True), leaf("count", "IsNull", "valueBoolean", True)]}),
        ("not-like", {"operator": "Not", "operands": [leaf("title", "Like", "valueText", "red*")]}),
        ("not-textarray", {"operator": "Not", "operands": [leaf("tags", "Equal", "valueText", "alpha")]}),
        ("not-isnull", {"operator": "Not", "operands": [leaf("price", "IsNull", "valueBoolean", True)]}),
        ("not-id", {"operator": "Not", "operands": [leaf("id", "LessThan", "valueText", MID_ID)]}),
        ("not-equal-int", {"operator": "Not", "operands": [leaf("count", "Equal", "valueInt", 7)]}),
        ("not-notequal-int", {"operator": "Not", "operands": [leaf("count", "NotEqual", "valueInt", 7)]}),
        ("not-gt-number", {"operator": "Not", "operands": [leaf("price", "GreaterThan", "valueNumber", 50.0)]}),
        ("not-date", {"operator": "Not", "operands": [leaf("published", "LessThan", "valueDate", DATE_MID)]}),
        ("not-containsany-text", {"operator": "Not", "operands": [leaf("title", "ContainsAny", "valueText", [T0, T1])]}),
        ("not-not", {"operator": "Not", "operands": [{"operator": "Not", "operands": [leaf("tags", "Like", "valueText", "*ta")]}]}),
        (
            "not-and",
            {"operator": "Not", "operands": [{"operator": "And", "operands": [leaf("count", "GreaterThan", "valueInt", 5), leaf("active", "Equal", "valueBoolean", True)]}]},
        ),
        (
            "nested-three-levels",
            {
                "operator": "Or",
                "operands": [
                    {
                        "operator": "And",
                        "operands": [
                            leaf("tags", "ContainsAny", "valueText", ["gamma", "delta"]),
                            {"operator": "Not", "operands": [leaf("ref", "IsNull", "valueBoolean", True)]},
                        ],
                    },
                    {"operator": "And", "operands": [leaf("title", "Like", "valueText", "*fig"), leaf("id", "GreaterThan", "valueText", MID_ID)]},
                ],
            },
        ),
    ]


def _time_cases() -> list[tuple[str, Any]]:
    # _creationTimeUnix values only exist once the server ran, so these are built lazily.
    def build(index: int, op: str, key: str, as_value: Any) -> Any:
        return lambda: leaf("_creationTimeUnix", op, key, as_value(creation_times()[index]))

    def iso(ms: int) -> str:
        return rfc3339(EPOCH + dt.timedelta(milliseconds=ms), OFFSETS[1], millis=True)

    return [
        ("time-equal-valueText", build(1, "Equal", "valueText", str)),
        ("time-notequal", build(1, "NotEqual", "valueText", str)),
        ("time-gt", build(0, "GreaterThan", "valueText", str)),
        ("time-gte-valueInt", build(1, "GreaterThanEqual", "valueInt", int)),
        ("time-lt", build(2, "LessThan", "valueText", str)),
        ("time-lte-valueInt", build(1, "LessThanEqual", "valueInt", int)),
        ("time-gte-valueDate", build(1, "GreaterThanEqual", "valueDate", iso)),
        ("time-equal-valueDate", build(2, "Equal", "valueDate", iso)),
        ("time-containsany", build(0, "ContainsAny", "valueText", lambda ms: [str(ms), str(creation_times()[2])])),
        ("time-containsnone", build(0, "ContainsNone", "valueText", lambda ms: [str(ms)])),
        ("time-and-id", lambda: {"operator": "And", "operands": [leaf("_creationTimeUnix", "GreaterThan", "valueText", str(creation_times()[0])), leaf("id", "LessThan", "valueText", MID_ID)]}),
    ]


# Fixed bug, kept as regression cases: Not over a scalar comparison used to drop objects lacking the
# property (SQL three-valued logic: NOT NULL is NULL), so Not(Equal x) differed from NotEqual x.
INTENDED_EMPTY = {"text-equal-case-sensitive", "text-containsall-two", "textarray-equal-case-sensitive", "int-containsall-two", "text-like-sql-wildcards"}
INTENDED_ALL_PRESENT = {"text-like-star", "int-gt-everything"}


def _static_params() -> list[Any]:
    return [pytest.param(where, id=name) for name, where in _cases()]


def _null_sensitive_cases() -> set[str]:
    """Cases where naive SQL three-valued logic would give another answer than the reference."""
    return {name for name, where in _cases() if {o["id"] for o in OBJECTS if three_valued(o, where) is True} != expected_ids(where)}


@pytest.mark.parametrize("where", _static_params())
def test_filter_matches_reference(client: TestClient, where: dict[str, Any], request: pytest.FixtureRequest) -> None:
    expected = expected_ids(where)
    name = request.node.callspec.id.removesuffix(f"-{request.node.callspec.params['storage_backend']}")
    if name in INTENDED_EMPTY:
        assert not expected
    elif name in INTENDED_ALL_PRESENT:
        assert expected == {o["id"] for o in OBJECTS if object_values(o, where["path"][0])}
    else:
        assert 0 < len(expected) < N, f"case {name} is not selective: {len(expected)} of {N}"
    found = where_ids(client, where)
    assert len(found) == len(set(found))
    assert found == sorted(expected)  # exactly the reference set, listed in id order


@pytest.mark.parametrize("where", [*_static_params(), *[pytest.param(b, id=name) for name, b in _time_cases()]])
def test_search_prefilters_and_counts_match_reference(client: TestClient, where: Any) -> None:
    """Searches and Aggregate counts take the allowed set from the in-memory columns, listings from SQL: both must agree."""
    where = where() if callable(where) else where
    expected = expected_ids(where)
    services = client.app.state.services  # type: ignore[attr-defined]
    assert services.engine.table("C").answers(parse_where(services.holder.current.collections["C"], where))  # not the SQL fallback
    body = graphql(client, f"{{ Aggregate {{ C(where: {literal(where)}) {{ meta {{ count }} }} }} }}")
    assert "errors" not in body, body
    assert body["data"]["Aggregate"]["C"][0]["meta"]["count"] == len(expected)
    found = ids_of(get(client, f"nearVector: {{vector: {QUERY_VECTOR}}} where: {literal(where)} limit: 1000"))
    assert sorted(found) == sorted(expected & {o["id"] for o in WITH_VECTOR})


@pytest.mark.parametrize("build", [pytest.param(b, id=name) for name, b in _time_cases()])
def test_creation_time_filter_matches_reference(client: TestClient, build: Any) -> None:
    where = build()
    expected = expected_ids(where)
    assert 0 < len(expected) < N
    assert where_ids(client, where) == sorted(expected)


def test_not_cases_that_need_null_semantics_are_present() -> None:
    # The table holds Not cases that naive three-valued SQL would get wrong, and ones it gets right.
    sensitive = _null_sensitive_cases()
    assert sensitive >= {"not-equal-int", "not-gt-number", "not-date", "not-containsany-text", "not-and"}
    assert "not-textarray" not in sensitive and "not-isnull" not in sensitive


def test_not_equal_is_the_complement_of_equal(client: TestClient) -> None:
    for path, key, value in [("count", "valueInt", 7), ("price", "valueNumber", 50.0), ("published", "valueDate", OBJECTS[1]["props"]["published"]), ("ref", "valueText", REFS[0])]:
        equal = set(where_ids(client, leaf(path, "Equal", key, value)))
        negated = set(where_ids(client, {"operator": "Not", "operands": [leaf(path, "Equal", key, value)]}))
        not_equal = set(where_ids(client, leaf(path, "NotEqual", key, value)))
        assert negated == not_equal == set(IDS) - equal, path


def test_variables_give_the_same_results_as_literals(client: TestClient) -> None:
    query = "query($w: WhereInpObj) { Get { C(where: $w, limit: 1000) { _additional { id } } } }"
    for _name, where in _cases()[::7]:
        assert ids_of(graphql(client, query, {"w": where})) == sorted(expected_ids(where)) == where_ids(client, where)


def test_filter_with_limit_and_offset_pages_the_filtered_set(client: TestClient) -> None:
    where = leaf("tags", "ContainsAny", "valueText", ["alpha", "gamma"])
    expected = sorted(expected_ids(where))
    assert len(expected) > 10
    pages = [where_ids(client, where, f"limit: 4 offset: {offset}") for offset in range(0, len(expected) + 4, 4)]
    assert [i for page in pages for i in page] == expected
    assert pages[-1] == []


# -- 2. filters as pre-filters for near*, bm25 and hybrid -----------------------------

QUERY_VECTOR = [0.3, -1.2, 0.7, 0.25]
PREFILTERS = [
    pytest.param(leaf("active", "Equal", "valueBoolean", True), 5, id="bool"),
    pytest.param(leaf("count", "GreaterThan", "valueInt", 10), 5, id="int-range"),
    pytest.param({"operator": "Or", "operands": [leaf("tags", "Equal", "valueText", "Epsilon"), leaf("title", "Like", "valueText", "*fig")]}, 8, id="or"),
    pytest.param(leaf("published", "LessThan", "valueDate", "2024-03-05T11:00:00+01:00"), 50, id="fewer-than-k"),
    pytest.param(leaf("id", "ContainsAny", "valueText", [o["id"] for o in OBJECTS[:3]]), 10, id="ids-some-without-vector"),
    pytest.param(leaf("title", "Equal", "valueText", "no such title"), 5, id="nothing"),
]


def cosine_order(candidates: Sequence[dict[str, Any]], query: Sequence[float]) -> list[tuple[str, float]]:
    q = np.asarray(query, dtype=np.float64)
    q /= np.linalg.norm(q)
    scored = []
    for o in candidates:
        v = np.asarray(o["vector"], dtype=np.float64)
        scored.append((o["id"], float(1.0 - v @ q / np.linalg.norm(v))))
    return sorted(scored, key=lambda pair: (pair[1], pair[0]))


@pytest.mark.parametrize("where,k", PREFILTERS)
def test_near_vector_is_exact_top_k_among_allowed(client: TestClient, where: dict[str, Any], k: int) -> None:
    allowed = expected_ids(where)
    reference = cosine_order([o for o in WITH_VECTOR if o["id"] in allowed], QUERY_VECTOR)[:k]
    body = get(client, f"nearVector: {{vector: {QUERY_VECTOR}}} where: {literal(where)} limit: {k}", "_additional { id distance }")
    assert "errors" not in body, body
    hits = body["data"]["Get"]["C"]
    assert [h["_additional"]["id"] for h in hits] == [i for i, _ in reference]
    assert [h["_additional"]["distance"] for h in hits] == pytest.approx([d for _, d in reference], abs=1e-5)
    if where["operator"] != "ContainsAny":
        assert len(hits) == min(k, len([o for o in WITH_VECTOR if o["id"] in allowed]))


def test_near_vector_fewer_matches_than_k_and_unfiltered_differs(client: TestClient) -> None:
    where = leaf("count", "Equal", "valueInt", 7)
    allowed = [o for o in WITH_VECTOR if o["id"] in expected_ids(where)]
    assert 0 < len(allowed) < 10
    filtered = ids_of(get(client, f"nearVector: {{vector: {QUERY_VECTOR}}} where: {literal(where)} limit: 10"))
    assert filtered == [i for i, _ in cosine_order(allowed, QUERY_VECTOR)]
    unfiltered = ids_of(get(client, f"nearVector: {{vector: {QUERY_VECTOR}}} limit: 10"))
    assert unfiltered == [i for i, _ in cosine_order(WITH_VECTOR, QUERY_VECTOR)[:10]] != filtered


def test_near_object_with_filter_excludes_the_object_itself(client: TestClient) -> None:
    source = WITH_VECTOR[3]
    where = leaf("id", "NotEqual", "valueText", source["id"])
    hits = ids_of(get(client, f'nearObject: {{id: "{source["id"]}"}} where: {literal(where)} limit: 6'))
    assert hits == [i for i, _ in cosine_order([o for o in WITH_VECTOR if o["id"] != source["id"]], source["vector"])[:6]]


@pytest.mark.parametrize("where,k", PREFILTERS)
def test_bm25_prefilter_keeps_the_unfiltered_ranking(client: TestClient, where: dict[str, Any], k: int) -> None:
    allowed = expected_ids(where)
    everything = ids_of(get(client, 'bm25: {query: "apple fig alpha"} limit: 1000'))
    assert len(everything) > 10
    filtered = ids_of(get(client, f'bm25: {{query: "apple fig alpha"}} where: {literal(where)} limit: {k}'))
    assert set(filtered) <= allowed
    # BM25 statistics do not depend on the filter, so the filtered ranking is the unfiltered one, restricted.
    assert filtered == [i for i in everything if i in allowed][:k]


@pytest.mark.parametrize("fusion", ["rankedFusion", "relativeScoreFusion"])
@pytest.mark.parametrize("where,k", PREFILTERS)
def test_hybrid_prefilter(client: TestClient, where: dict[str, Any], k: int, fusion: str) -> None:
    allowed = expected_ids(where)
    keyword = set(ids_of(get(client, 'bm25: {query: "apple fig"} limit: 1000')))
    args = f'hybrid: {{query: "apple fig", vector: {QUERY_VECTOR}, alpha: 0.5, fusionType: {fusion}}} where: {literal(where)}'
    every = ids_of(get(client, f"{args} limit: 1000"))
    assert set(every) <= allowed
    # Both legs see only allowed ids: the union of what each can find among them.
    assert set(every) == {i for i in allowed if i in keyword or BY_ID[i]["vector"] is not None}
    top = ids_of(get(client, f"{args} limit: {k}"))
    assert top == every[:k]


def test_hybrid_pure_keyword_with_filter(client: TestClient) -> None:
    where = leaf("active", "Equal", "valueBoolean", False)
    bm25 = ids_of(get(client, f'bm25: {{query: "apple"}} where: {literal(where)} limit: 1000'))
    hybrid = ids_of(get(client, f'hybrid: {{query: "apple", alpha: 0, vector: {QUERY_VECTOR}}} where: {literal(where)} limit: 1000'))
    assert hybrid == bm25 and set(hybrid) <= expected_ids(where) and hybrid


# -- 3. bad input: GraphQL errors, never a 500 ---------------------------------------

BAD_FILTERS = [
    pytest.param('where: {path: ["count"], operator: Bogus, valueInt: 1}', "Bogus", id="unknown-operator"),
    pytest.param('where: {path: ["count"], operator: "Equal", valueInt: 1}', "WhereOperatorEnum", id="operator-as-string"),
    pytest.param('where: {path: ["nope"], operator: Equal, valueText: "x"}', "no such prop with name 'nope'", id="unknown-property"),
    pytest.param('where: {path: ["Title"], operator: Equal, valueText: "x"}', "no such prop with name 'Title'", id="property-name-case"),
    pytest.param('where: {path: ["blob"], operator: Equal, valueText: "AAAA"}', "'blob' is a BLOB", id="blob"),
    pytest.param('where: {path: ["blob"], operator: IsNull, valueBoolean: true}', "'blob' is a BLOB", id="blob-isnull"),
    pytest.param('where: {path: ["count"], operator: Equal, valueText: "3"}', "needs exactly one of valueInt", id="valueText-on-int"),
    pytest.param('where: {path: ["count"], operator: Equal, valueNumber: 3.5}', "needs exactly one of valueInt", id="valueNumber-on-int"),
    pytest.param('where: {path: ["title"], operator: Equal, valueInt: 3}', "needs exactly one of valueText", id="valueInt-on-text"),
    pytest.param('where: {path: ["tags"], operator: ContainsAny, valueInt: [1, 2]}', "needs exactly one of valueText", id="valueInt-on-text-array"),
    pytest.param('where: {path: ["active"], operator: Equal, valueText: "true"}', "needs exactly one of valueBoolean", id="valueText-on-boolean"),
    pytest.param('where: {path: ["active"], operator: Equal, valueBoolean: "true"}', "valueBoolean for 'active' must be boolean", id="string-in-valueBoolean"),
    pytest.param('where: {path: ["count"], operator: Equal, valueInt: "3"}', "valueInt for 'count' must be int", id="string-in-valueInt"),
    pytest.param('where: {path: ["count"], operator: Equal, valueInt: 3.5}', "valueInt for 'count' must be int", id="float-in-valueInt"),
    pytest.param('where: {path: ["published"], operator: Equal, valueDate: "yesterday"}', "not an RFC 3339 date", id="non-date-valueDate"),
    pytest.param('where: {path: ["published"], operator: GreaterThan, valueDate: "2024-03-01T10:00:00"}', "not an RFC 3339 date with a time zone", id="date-without-zone"),
    pytest.param('where: {path: ["published"], operator: Equal, valueInt: 1709287200}', "needs exactly one of valueDate", id="valueInt-on-date"),
    pytest.param('where: {path: ["ref"], operator: Equal, valueText: "not-a-uuid"}', "is not a valid UUID", id="uuid-property-bad-value"),
    pytest.param('where: {path: ["id"], operator: Equal, valueText: "42"}', "is not a valid UUID", id="id-bad-value"),
    pytest.param('where: {path: ["id"], operator: Equal, valueInt: 42}', "needs exactly one of valueText", id="id-valueInt"),
    pytest.param('where: {path: ["_creationTimeUnix"], operator: Equal, valueText: "yesterday"}', "not a Unix time in milliseconds", id="time-bad-value"),
    pytest.param('where: {path: ["_creationTimeUnix"], operator: Equal, valueDate: "yesterday"}', "not an RFC 3339 date", id="time-bad-valueDate"),
    pytest.param('where: {path: ["count"], operator: Like, valueText: "1*"}', "needs exactly one of valueInt; got valueText", id="like-on-int"),
    pytest.param('where: {path: ["count"], operator: Like, valueInt: 1}', "Like works on TEXT", id="like-on-int-valueInt"),
    pytest.param('where: {path: ["id"], operator: Like, valueText: "0*"}', "Like works on TEXT", id="like-on-id"),
    pytest.param('where: {path: ["title"], operator: Like, valueText: ["a*", "b*"]}', "takes one value, not a list", id="like-with-list"),
    pytest.param('where: {path: ["active"], operator: GreaterThan, valueBoolean: true}', "GreaterThan does not apply to BOOLEAN 'active'", id="gt-on-boolean"),
    pytest.param('where: {path: ["active"], operator: LessThanEqual, valueBoolean: false}', "does not apply to BOOLEAN", id="lte-on-boolean"),
    pytest.param(
        'where: {operator: Not, operands: [{path: ["count"], operator: Equal, valueInt: 1}, {path: ["count"], operator: Equal, valueInt: 2}]}',
        "Not needs exactly one operand",
        id="not-two-operands",
    ),
    pytest.param("where: {operator: Not}", "Not needs exactly one operand", id="not-no-operands"),
    pytest.param("where: {operator: And}", "And needs operands", id="and-without-operands"),
    pytest.param("where: {operator: Or, operands: []}", "Or needs operands", id="or-empty-operands"),
    pytest.param('where: {operator: And, operands: [{path: ["count"], operator: Equal, valueInt: 1}, {path: ["nope"], operator: Equal, valueInt: 1}]}', "'nope'", id="nested-bad-operand"),
    pytest.param('where: {path: ["ref", "C", "title"], operator: Equal, valueText: "x"}', "filter path must name one property", id="two-element-path"),
    pytest.param('where: {path: [], operator: Equal, valueText: "x"}', "filter path must name one property", id="empty-path"),
    pytest.param('where: {operator: Equal, valueText: "x"}', "filter path must name one property", id="no-path"),
    pytest.param('where: {path: ["title"], operator: IsNull}', "IsNull takes valueBoolean", id="isnull-without-value"),
    pytest.param('where: {path: ["title"], operator: IsNull, valueText: "true"}', "IsNull takes valueBoolean", id="isnull-valueText"),
    pytest.param('where: {path: ["title"], operator: Equal}', "got none", id="no-value"),
    pytest.param('where: {path: ["title"], operator: Equal, valueText: "a", valueString: "a"}', "needs exactly one of", id="two-values"),
    pytest.param('where: {path: ["title"], operator: Equal, valueText: ["a", "b"]}', "takes one value, not a list", id="list-for-equal"),
    pytest.param('where: {path: ["title"], operator: ContainsAny, valueText: []}', "ContainsAny needs at least one value", id="containsany-empty"),
    pytest.param('where: {path: ["title"], operator: Equal, valueText: {a: 1}}', "expected a number, string, boolean or a list of them", id="object-as-value"),
    pytest.param('where: {path: ["title"], operator: Equal, valueText: banana}', "expected a number, string, boolean or a list of them", id="enum-as-value"),
    pytest.param('where: {path: ["title"], operator: Equal, valueText: "x", valueBlob: "y"}', "valueBlob", id="unknown-value-key"),
    pytest.param("where: {path: [\"title') OR 1=1 --\"], operator: Equal, valueText: \"x\"}", "no such prop with name 'title') OR 1=1 --'", id="quote-in-path"),
    pytest.param('where: {path: ["ti\\"tle"], operator: Equal, valueText: "x"}', "no such prop with name 'ti\"tle'", id="double-quote-in-path"),
    pytest.param("where: {path: [\"title', '$') = 1 OR json_extract(properties, '$.title\"], operator: IsNull, valueBoolean: false}", "no such prop", id="json-path-injection"),
]


def assert_graphql_error(body: dict[str, Any], fragment: str) -> str:
    assert body.get("errors"), body
    error = body["errors"][0]
    assert fragment in error["message"], error["message"]
    assert error.get("locations") and {"line", "column"} <= set(error["locations"][0]), error
    data = body.get("data")
    assert data is None or data["Get"]["C"] is None, body
    message: str = error["message"]
    return message


@pytest.mark.parametrize("args,fragment", BAD_FILTERS)
def test_bad_filter_is_a_graphql_error(client: TestClient, args: str, fragment: str) -> None:
    assert_graphql_error(get(client, f"{args} limit: 5"), fragment)


@pytest.mark.parametrize("search", [f"nearVector: {{vector: {QUERY_VECTOR}}}", 'bm25: {query: "apple"}', f'hybrid: {{query: "apple", vector: {QUERY_VECTOR}}}'])
def test_bad_filter_with_a_search_is_a_graphql_error(client: TestClient, search: str) -> None:
    assert_graphql_error(get(client, f'{search} where: {{path: ["blob"], operator: Equal, valueText: "x"}} limit: 3'), "BLOB")
    assert_graphql_error(get(client, f'{search} where: {{path: ["count"], operator: Like, valueInt: 1}} limit: 3'), "Like works on TEXT")


def test_filter_errors_through_variables(client: TestClient) -> None:
    query = "query($w: WhereInpObj) { Get { C(where: $w) { title } } }"
    body = graphql(client, query, {"w": {"path": ["count"], "operator": "Nope", "valueInt": 1}})
    assert body["errors"] and "Nope" in body["errors"][0]["message"] and body["errors"][0]["locations"]
    body = graphql(client, query, {"w": {"path": ["count"], "operator": "Equal", "valueInt": "1"}})
    assert_graphql_error(body, "valueInt for 'count' must be int")
    body = graphql(client, query, {"w": {"path": ["published"], "operator": "Equal", "valueDate": 12}})
    assert_graphql_error(body, "not an RFC 3339 date")


def test_out_of_range_int_names_the_problem(client: TestClient) -> None:
    body = get(client, 'where: {path: ["count"], operator: Equal, valueInt: 1180591620717411303424} limit: 5')
    message = assert_graphql_error(body, "count")
    assert "SQLite" not in message


def test_unicode_digit_creation_time_names_the_problem(client: TestClient) -> None:
    assert_graphql_error(get(client, 'where: {path: ["_creationTimeUnix"], operator: Equal, valueText: "²"} limit: 5'), "not a Unix time in milliseconds")


def test_out_of_range_int_is_still_not_a_500(client: TestClient) -> None:
    # graphql() asserts HTTP 200; whatever the message says, the answer is a GraphQL error.
    body = get(client, 'where: {path: ["count"], operator: GreaterThan, valueInt: 1180591620717411303424} limit: 5')
    assert body["errors"] and body["errors"][0]["locations"] and body["data"]["Get"]["C"] is None


SQL_VALUES = [INJECTION, "'; DROP TABLE objects; --", '") OR 1=1 --', "%", "_", "' OR json_extract(properties, '$.title') IS NOT NULL OR '"]


@pytest.mark.parametrize("value", SQL_VALUES)
def test_sql_in_values_matches_nothing_and_changes_nothing(client: TestClient, value: str) -> None:
    for where in [
        leaf("title", "Equal", "valueText", value),
        leaf("tags", "Equal", "valueText", value),
        leaf("title", "Like", "valueText", value),
        leaf("tags", "Like", "valueText", value),
        leaf("title", "ContainsAny", "valueText", [value, value + "x"]),
        leaf("tags", "ContainsAll", "valueText", [value]),
        leaf("title", "GreaterThan", "valueText", "~" + value),
    ]:
        assert where_ids(client, where) == [], where
    assert ids_of(get(client, f'bm25: {{query: "apple"}} where: {literal(leaf("title", "Equal", "valueText", value))}')) == []
    # NotEqual with the same value is everything: the value was compared, not executed.
    assert where_ids(client, leaf("title", "NotEqual", "valueText", value)) == IDS
    assert ids_of(get(client, "limit: 1000")) == IDS
    assert len(client.get("/v1/objects", params={"class": "C", "limit": 1000}).json()["objects"]) == N


# -- 4. sort ---------------------------------------------------------------------------


def sort_value(obj: dict[str, Any], path: str) -> Any:
    values = object_values(obj, path)
    return values[0] if values else None


def reference_sort(objects: Sequence[dict[str, Any]], keys: Sequence[tuple[str, bool]]) -> list[str]:
    """SQLite ORDER BY: NULL is the smallest value (first asc, last desc); ties by id."""
    ordered = sorted(objects, key=lambda o: o["id"])
    for path, descending in reversed(keys):
        ordered.sort(key=lambda o: (0,) if sort_value(o, path) is None else (1, sort_value(o, path)), reverse=descending)
    return [o["id"] for o in ordered]


def sort_literal(keys: Sequence[tuple[str, bool]]) -> str:
    return literal([{"path": [p], "order": "desc" if d else "asc"} for p, d in keys])


SORTS = [
    pytest.param([("active", True), ("price", False)], id="boolean-desc-number-asc"),
    pytest.param([("count", False)], id="int-asc"),
    pytest.param([("count", True), ("title", False)], id="int-desc-text-asc"),
    pytest.param([("published", False)], id="date-asc"),
    pytest.param([("published", True)], id="date-desc"),
    pytest.param([("title", False)], id="text-asc"),
    pytest.param([("ref", True), ("published", False)], id="uuid-desc-date-asc"),
    pytest.param([("id", False)], id="id-asc"),
    pytest.param([("id", True)], id="id-desc"),
    pytest.param([("_creationTimeUnix", True), ("count", False)], id="creation-desc"),
]


@pytest.mark.parametrize("keys", SORTS)
def test_sort_matches_reference(client: TestClient, keys: list[tuple[str, bool]]) -> None:
    assert ids_of(get(client, f"sort: {sort_literal(keys)} limit: 1000")) == reference_sort(OBJECTS, keys)


def test_sort_on_date_is_by_instant_not_text(client: TestClient) -> None:
    found = ids_of(get(client, 'sort: [{path: ["published"], order: asc}] limit: 1000'))
    dated = [i for i in found if "published" in BY_ID[i]["props"]]
    assert dated == sorted(dated, key=lambda i: (micros(BY_ID[i]["props"]["published"]), i))
    assert dated != sorted(dated, key=lambda i: BY_ID[i]["props"]["published"])
    assert found.index(OBJECTS[8]["id"]) < found.index(OBJECTS[7]["id"])  # 01:00Z before 23:00-05:30 (04:30Z)


def test_missing_values_sort_first_ascending_and_last_descending(client: TestClient) -> None:
    # Implementation choice (SQLite NULL ordering, documented here): objects without the sort
    # property come FIRST for asc and LAST for desc, in id order among themselves either way.
    missing = sorted(o["id"] for o in OBJECTS if "count" not in o["props"])
    assert missing
    ascending = ids_of(get(client, 'sort: [{path: ["count"], order: asc}] limit: 1000'))
    descending = ids_of(get(client, 'sort: [{path: ["count"], order: desc}] limit: 1000'))
    assert ascending[: len(missing)] == missing
    assert descending[-len(missing) :] == missing
    no_order = ids_of(get(client, 'sort: [{path: ["count"]}] limit: 1000'))
    assert no_order == ascending  # order defaults to asc


def test_sort_combined_with_where_and_pages(client: TestClient) -> None:
    where = {"operator": "Or", "operands": [leaf("count", "GreaterThan", "valueInt", 3), leaf("tags", "Equal", "valueText", "alpha")]}
    keys = [("active", True), ("published", False)]
    expected = reference_sort([o for o in OBJECTS if matches(o, where)], keys)
    assert 10 < len(expected) < N
    args = f"where: {literal(where)} sort: {sort_literal(keys)}"
    assert ids_of(get(client, f"{args} limit: 1000")) == expected
    pages = [ids_of(get(client, f"{args} limit: 6 offset: {offset}")) for offset in range(0, len(expected), 6)]
    assert [i for page in pages for i in page] == expected


def test_sort_via_variables(client: TestClient) -> None:
    query = "query($s: [SortInpObj]) { Get { C(sort: $s, limit: 1000) { _additional { id } } } }"
    body = graphql(client, query, {"s": [{"path": ["price"], "order": "desc"}, {"path": ["id"], "order": "desc"}]})
    assert ids_of(body) == reference_sort(OBJECTS, [("price", True), ("id", True)])


BAD_SORTS = [
    pytest.param(f'nearVector: {{vector: {QUERY_VECTOR}}} sort: [{{path: ["count"]}}]', "sort cannot be combined with nearVector", id="with-near-vector"),
    pytest.param(f'nearObject: {{id: "{OBJECTS[1]["id"]}"}} sort: [{{path: ["count"]}}]', "sort cannot be combined with nearObject", id="with-near-object"),
    pytest.param('bm25: {query: "apple"} sort: [{path: ["count"]}]', "sort cannot be combined with bm25", id="with-bm25"),
    pytest.param(f'hybrid: {{query: "apple", vector: {QUERY_VECTOR}}} sort: [{{path: ["count"]}}]', "sort cannot be combined with hybrid", id="with-hybrid"),
    pytest.param('sort: [{path: ["tags"]}]', "cannot be sorted on", id="text-array"),
    pytest.param('sort: [{path: ["blob"]}]', "cannot be sorted on", id="blob"),
    pytest.param('sort: [{path: ["nope"]}]', "no such prop with name 'nope'", id="unknown"),
    pytest.param('sort: [{path: ["ref", "title"]}]', "sort path must name one property", id="two-element-path"),
    pytest.param('sort: [{path: []}]', "sort path must name one property", id="empty-path"),
    pytest.param('sort: [{path: ["count"], order: up}]', "SortOrderEnum", id="bad-order"),
    pytest.param("sort: [{path: [\"count') DESC; DROP TABLE objects; --\"]}]", "no such prop", id="injection-in-path"),
]


@pytest.mark.parametrize("args,fragment", BAD_SORTS)
def test_bad_sort_is_a_graphql_error(client: TestClient, args: str, fragment: str) -> None:
    assert_graphql_error(get(client, f"{args} limit: 5"), fragment)
    assert len(ids_of(get(client, "limit: 1000"))) == N


# -- 5. cursor pagination --------------------------------------------------------------


def walk_graphql(client: TestClient, first_after: str | None) -> list[list[str]]:
    pages: list[list[str]] = []
    after = first_after
    while True:
        args = "limit: 7" if after is None else f'limit: 7 after: "{after}"'
        page = ids_of(get(client, args))
        pages.append(page)
        if not page:
            return pages
        after = page[-1]
        assert len(pages) < 20


@pytest.mark.parametrize("first_after", [None, ""], ids=["no-after", "empty-after"])
def test_graphql_cursor_walks_every_object_once_in_id_order(client: TestClient, first_after: str | None) -> None:
    pages = walk_graphql(client, first_after)
    assert [len(p) for p in pages] == [7] * (N // 7) + [N % 7, 0]
    walked = [i for page in pages for i in page]
    assert walked == IDS and len(set(walked)) == N


def test_graphql_cursor_details(client: TestClient) -> None:
    assert ids_of(get(client, f'limit: 5 after: "{IDS[9].upper()}"')) == IDS[10:15]  # any UUID spelling
    between = str(uuid.UUID(int=uuid.UUID(IDS[20]).int + 1))
    assert between not in BY_ID  # a cursor need not be an existing id
    assert ids_of(get(client, f'limit: 3 after: "{between}"')) == IDS[21:24]
    assert ids_of(get(client, f'limit: 7 after: "{IDS[-1]}"')) == []
    assert ids_of(get(client, f'limit: 0 after: "{IDS[0]}"')) == []


BAD_CURSORS = [
    pytest.param(f'limit: 7 after: "{IDS[3]}" where: {{path: ["count"], operator: GreaterThan, valueInt: 1}}', "other params cannot be set with after and limit", id="with-where"),
    pytest.param(f'limit: 7 after: "{IDS[3]}" offset: 2', "other params cannot be set with after and limit", id="with-offset"),
    pytest.param(f'limit: 7 after: "{IDS[3]}" sort: [{{path: ["count"]}}]', "other params cannot be set with after and limit", id="with-sort"),
    pytest.param(f'limit: 7 after: "{IDS[3]}" nearVector: {{vector: {QUERY_VECTOR}}}', "other params cannot be set with after and limit", id="with-near-vector"),
    pytest.param(f'limit: 7 after: "{IDS[3]}" bm25: {{query: "apple"}}', "other params cannot be set with after and limit", id="with-bm25"),
    pytest.param(f'limit: 7 after: "{IDS[3]}" hybrid: {{query: "apple", vector: {QUERY_VECTOR}}}', "other params cannot be set with after and limit", id="with-hybrid"),
    pytest.param(f'after: "{IDS[3]}"', "other params cannot be set with after and limit", id="without-limit"),
    pytest.param('limit: 7 after: "not-a-uuid"', "after 'not-a-uuid' is not a valid UUID", id="not-a-uuid"),
]


@pytest.mark.parametrize("args,fragment", BAD_CURSORS)
def test_bad_cursor_is_a_graphql_error(client: TestClient, args: str, fragment: str) -> None:
    assert_graphql_error(get(client, args), fragment)


def rest_page(client: TestClient, params: dict[str, Any]) -> list[str]:
    response = client.get("/v1/objects", params={"class": "C", "limit": 7, **params})
    assert response.status_code == 200, response.text
    objects = response.json()["objects"]
    for obj in objects:
        assert obj["class"] == "C" and obj["properties"] == stored(BY_ID[obj["id"]]["props"])
    return [obj["id"] for obj in objects]


def walk_rest(client: TestClient, first_params: dict[str, Any]) -> list[str]:
    walked: list[str] = []
    params = first_params
    for _ in range(20):
        page = rest_page(client, params)
        if not page:
            return walked
        assert len(page) == 7 or len(walked) + len(page) == N
        walked += page
        params = {"after": page[-1]}
    raise AssertionError("the cursor did not end")


def test_rest_cursor_walks_every_object_once(client: TestClient) -> None:
    walked = walk_rest(client, {})
    assert walked == IDS and len(set(walked)) == N


def test_rest_cursor_walk_starting_with_empty_after(client: TestClient) -> None:
    walked = walk_rest(client, {"after": ""})
    assert walked == IDS


def test_rest_cursor_errors(client: TestClient) -> None:
    response = client.get("/v1/objects", params={"class": "C", "limit": 7, "after": IDS[3], "offset": 2})
    assert response.status_code == 422 and "'after' and 'offset' cannot be combined" in response.json()["error"][0]["message"]
    response = client.get("/v1/objects", params={"limit": 7, "after": IDS[3]})
    assert response.status_code == 422 and "needs a 'class'" in response.json()["error"][0]["message"]
    response = client.get("/v1/objects", params={"class": "C", "limit": 7, "after": "nope"})
    assert response.status_code == 422 and "not a valid UUID" in response.json()["error"][0]["message"]
