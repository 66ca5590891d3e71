"""Bad input that once gave 500s or was stored half-checked (issue #13): strings, nesting, ids, filters, shapes.

Each refusal is checked for its status and exact message, and for leaving the store as it was.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from searchd.errors import QueryError, StorageError
from searchd.server.bodies import MAX_JSON_DEPTH
from searchd.storage.failures import storage_error
from tests.conftest import EXAMPLES, QUICKSTART, ClientFactory, example_objects, graphql
from tests.fakes import FakeJina, serving
from tests.fakes.embeddings import late_chunk_vectors, truncate_dims

FIRST = "6f1c1c62-6a4e-4c1e-9a57-0e2e5e7d0001"
SECOND = "6f1c1c62-6a4e-4c1e-9a57-0e2e5e7d0002"
LONE = '"a lone \\udfff surrogate"'  # a JSON string whose escape is half of a UTF-16 pair
SURROGATE_MESSAGE = (
    "property 'title' holds a lone UTF-16 surrogate (\\udfff), which is not valid Unicode (send valid Unicode: a character outside "
    "the Basic Multilingual Plane is written as a pair of escapes (e.g. \\ud83d\\ude00), never half of one)"
)
JINA_KEY = "jina_unit-test-key-hardening"


@pytest.fixture
def quickstart(client_factory: ClientFactory, tmp_path: Path) -> TestClient:
    client = client_factory(QUICKSTART, tmp_path / "data")
    response = client.post("/v1/objects", json={"class": "Article", "id": FIRST, "properties": {"title": "kept as it was", "wordCount": 3}})
    assert response.status_code == 200, response.text
    return client


def sub(template: str, *values: object) -> str:
    """The template with each @ replaced by the next value (JSON and GraphQL are full of braces)."""
    parts = template.split("@")
    assert len(parts) == len(values) + 1
    return parts[0] + "".join(str(value) + part for value, part in zip(values, parts[1:]))


def listing(client: TestClient) -> list[dict[str, Any]]:
    response = client.get("/v1/objects?class=Article&limit=100")
    assert response.status_code == 200, response.text
    objects: list[dict[str, Any]] = response.json()["objects"]
    return [{"id": o["id"], "properties": o["properties"]} for o in objects]


def post_raw(client: TestClient, path: str, body: bytes) -> Any:
    return client.request("POST" if not path.startswith("PUT ") else "PUT", path.removeprefix("PUT "), content=body, headers={"content-type": "application/json"})


def message(response: Any) -> str:
    text: str = response.json()["error"][0]["message"]
    return text


# -- strings are valid Unicode or refused ------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/objects", sub('{"class": "Article", "id": "@", "properties": {"title": @}}', SECOND, LONE)),
        ("PUT /v1/objects/Article/" + FIRST, sub('{"class": "Article", "properties": {"title": @}}', LONE)),
        ("/v1/batch/objects", sub('{"objects": [{"class": "Article", "id": "@", "properties": {"title": "fine"}}, {"class": "Article", "properties": {"title": @}}]}', SECOND, LONE)),
    ],
    ids=["create", "replace", "batch"],
)
def test_lone_surrogate_is_refused_naming_the_property_and_nothing_is_stored(quickstart: TestClient, path: str, body: str) -> None:
    before = listing(quickstart)
    response = post_raw(quickstart, path, body.encode())
    assert response.status_code == 422
    assert message(response) == SURROGATE_MESSAGE
    assert listing(quickstart) == before


def test_lone_surrogate_in_a_patch_and_in_query_strings_is_refused(quickstart: TestClient) -> None:
    before = listing(quickstart)
    patch = quickstart.patch(f"/v1/objects/Article/{FIRST}", content=(sub('{"properties": {"title": @}}', LONE)).encode(), headers={"content-type": "application/json"})
    assert patch.status_code == 422 and message(patch) == SURROGATE_MESSAGE
    variables = post_raw(quickstart, "/v1/graphql", b'{"query": "query($q: String!) { Get { Article(bm25: {query: $q}) { title } } }", "variables": {"q": "\\udfff"}}')
    assert variables.status_code == 422
    assert message(variables).startswith("'variables.q' holds a lone UTF-16 surrogate (\\udfff), which is not valid Unicode")
    literal = graphql(quickstart, '{ Get { Article(where: {path: ["title"], operator: Equal, valueText: "\\udfff"}) { title } } }')
    assert literal["data"] is None and literal["errors"][0]["message"] == "Syntax Error: Invalid Unicode escape sequence: '\\udfff'."
    assert listing(quickstart) == before


def test_lone_surrogate_from_a_lenient_reader_is_refused_by_the_write_path(quickstart: TestClient) -> None:
    """`searchd serve --load` reads JSONL with the standard library, which accepts lone surrogates: the engine refuses them too."""
    services: Any = quickstart.app.state.services  # type: ignore[attr-defined]
    payload = json.loads(sub('{"class": "Article", "id": "@", "properties": {"title": @}}', SECOND, LONE))
    before = listing(quickstart)
    (outcome,) = quickstart.portal.call(services.engine.batch, services.holder.current, [payload])  # type: ignore[union-attr]
    assert str(outcome) == (
        "property 'title' holds a lone UTF-16 surrogate (\\udfff) at character 7, which is not valid Unicode (send valid Unicode: a "
        "character outside the Basic Multilingual Plane is a pair of escapes (e.g. \\ud83d\\ude00), never half of one)"
    )
    assert listing(quickstart) == before


def stored_with_a_lone_surrogate(client_factory: ClientFactory, data: Path) -> TestClient:
    """A data directory as the old bug left it (FIRST holding lone surrogates), served again."""
    client = client_factory(QUICKSTART, data)
    created = client.post("/v1/objects", json={"class": "Article", "id": FIRST, "properties": {"title": "placeholder", "tags": ["x"]}})
    assert created.status_code == 200, created.text
    client.__exit__(None, None, None)
    with sqlite3.connect(data / "objects.sqlite3") as db:
        (tag,) = db.execute("SELECT tag FROM collections WHERE name = 'Article'").fetchone()
        # What the store held when such a value got through: json.dumps escapes it as ASCII.
        stored = json.dumps({"title": "caf\udfff bar", "tags": ["\ud800x", "ok \U0001f600"]})
        assert "\\udfff" in stored
        changed = db.execute(f"UPDATE o{tag} SET properties = ? WHERE id = ?", (stored, FIRST)).rowcount
        assert changed == 1
    return client_factory(QUICKSTART, data)


def test_a_stored_lone_surrogate_reads_as_a_replacement_character(client_factory: ClientFactory, tmp_path: Path) -> None:
    """A data directory written before surrogates were refused stays readable: listed, fetched and queried, never a 500."""
    reopened = stored_with_a_lone_surrogate(client_factory, tmp_path / "data")
    expected = {"title": "caf\ufffd bar", "tags": ["\ufffdx", "ok \U0001f600"]}
    assert listing(reopened) == [{"id": FIRST, "properties": expected}]
    fetched = reopened.get(f"/v1/objects/Article/{FIRST}")
    assert fetched.status_code == 200 and fetched.json()["properties"] == expected
    found = graphql(reopened, "{ Get { Article(limit: 5) { title tags _additional { id } } } }")
    assert found == {"data": {"Get": {"Article": [{"title": "caf\ufffd bar", "tags": ["\ufffdx", "ok \U0001f600"], "_additional": {"id": FIRST}}]}}}


# -- nesting depth --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/objects", "/v1/batch/objects", "/v1/graphql", "/v1/graphql/batch", "PUT /v1/objects/Article/" + FIRST])
def test_deeply_nested_json_is_refused_with_422(quickstart: TestClient, path: str) -> None:
    before = listing(quickstart)
    deep = "[" * 5000 + "]" * 5000
    body = sub('{"class": "Article", "properties": {"title": "x", "body": @}, "query": "{ Get { Article { title } } }", "objects": @}', deep, deep)
    response = post_raw(quickstart, path, body.encode())
    assert response.status_code == 422
    assert message(response) == f"the request body nests JSON objects and arrays more than {MAX_JSON_DEPTH} levels deep (send a flatter document)"
    assert listing(quickstart) == before


def test_nesting_up_to_the_limit_is_parsed(quickstart: TestClient) -> None:
    """Just within the limit the body is read, and the value meets the ordinary type check (its preview stays short)."""
    nested = "[" * (MAX_JSON_DEPTH - 3) + "1" + "]" * (MAX_JSON_DEPTH - 3)
    response = post_raw(quickstart, "/v1/objects", (sub('{"class": "Article", "properties": {"title": @}}', nested)).encode())
    assert response.status_code == 422
    assert message(response) == "property 'title' expects a string (TEXT), got list [[[...]]] (send the value with the type declared in the config)"


def test_deeply_nested_vector_literal_in_graphql_is_refused_before_parsing(quickstart: TestClient) -> None:
    """graphql-core's parser is recursive: the nesting is counted before it runs (query.cost.check_tokens)."""
    query = "{ Get { Article(nearVector: {vector: " + "[" * 3000 + "1" + "]" * 3000 + "}) { title } } }"
    response = quickstart.post("/v1/graphql", json={"query": query})
    assert response.status_code == 422
    assert message(response) == (
        "this query nests brackets more than 66 levels deep, deeper than any query can within the limits of 30 (server.limits.maxQueryDepth) "
        "and 10 (server.limits.maxFilterDepth) (flatten the filter: And and Or take any number of operands)"
    )


# -- ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["{" + SECOND + "}", "urn:uuid:" + SECOND, SECOND.replace("-", ""), " " + SECOND, SECOND + "0", "6f1c1c62-6a4e-4c1e-9a57-0e2e5e7d000g"],
    ids=["braces", "urn", "no-dashes", "space", "long", "not-hex"],
)
def test_only_the_canonical_uuid_form_is_an_id(quickstart: TestClient, given: str) -> None:
    before = listing(quickstart)
    response = quickstart.post("/v1/objects", json={"class": "Article", "id": given, "properties": {"title": "t"}})
    assert response.status_code == 422
    assert message(response) == f"id {given!r} is not a valid UUID (use the canonical 8-4-4-4-12 hex form, e.g. 8a3a2f5e-7c1d-4b6e-9f0a-2d4c6e8b1a3f)"
    assert quickstart.get(f"/v1/objects/Article/{given}").status_code in (404, 422)
    assert listing(quickstart) == before


def test_upper_case_hex_is_the_same_id(quickstart: TestClient) -> None:
    response = quickstart.get(f"/v1/objects/Article/{FIRST.upper()}")
    assert response.status_code == 200 and response.json()["id"] == FIRST


# -- filters and the store's errors -------------------------------------------------------


def test_a_where_with_thousands_of_operands_answers(quickstart: TestClient) -> None:
    """SQLite refuses an expression tree deeper than 1,000; the filter's SQL is balanced instead of a chain."""
    for count, title in ((10, "ten words"), (2500, "many words")):
        created = quickstart.post("/v1/objects", json={"class": "Article", "properties": {"title": title, "wordCount": count}})
        assert created.status_code == 200, created.text
    operands = ", ".join(sub('{path: ["wordCount"], operator: Equal, valueInt: @}', n) for n in range(5, 2505, 5))
    ored = graphql(quickstart, sub("{ Get { Article(where: {operator: Or, operands: [@]}) { title } } }", operands))
    assert "errors" not in ored, ored
    assert sorted(h["title"] for h in ored["data"]["Get"]["Article"]) == ["many words", "ten words"]
    many = ", ".join(sub('{path: ["wordCount"], operator: NotEqual, valueInt: @}', n) for n in range(1100))
    anded = graphql(quickstart, sub("{ Get { Article(where: {operator: And, operands: [@]}) { title } } }", many))
    assert sorted(h["title"] for h in anded["data"]["Get"]["Article"]) == ["many words"]
    values = ", ".join(str(n) for n in range(0, 3000, 2))
    contains = graphql(quickstart, sub('{ Get { Article(where: {path: ["wordCount"], operator: ContainsAny, valueInt: [@]}) { title } } }', values))
    assert sorted(h["title"] for h in contains["data"]["Get"]["Article"]) == ["many words", "ten words"]
    none = graphql(quickstart, sub('{ Get { Article(where: {path: ["wordCount"], operator: ContainsNone, valueInt: [@]}) { title } } }', values))
    assert sorted(h["title"] for h in none["data"]["Get"]["Article"]) == ["kept as it was"]


def _sqlite_error(sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Error:
    with sqlite3.connect(":memory:") as db:
        db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 1000)  # builds differ (32,766 upstream, 250,000 in Debian)
        try:
            db.execute(sql, params)
        except sqlite3.Error as exc:
            return exc
    raise AssertionError(f"{sql[:40]} did not fail")


def test_store_errors_name_their_cause(tmp_path: Path) -> None:
    store = tmp_path / "objects.sqlite3"
    store.write_bytes(b"")
    variables = storage_error(_sqlite_error("SELECT 1 WHERE 1 IN (" + ",".join("?" * 2000) + ")", (1,) * 2000), store)
    assert isinstance(variables, QueryError)
    assert str(variables) == (
        "the filter is too large for the object store (too many SQL variables) (use fewer operands: list many values in one "
        "ContainsAny condition instead of many Equal conditions)"
    )
    deep = storage_error(_sqlite_error("SELECT " + "1 OR " * 1200 + "1"), store)
    assert isinstance(deep, QueryError) and "Expression tree is too large" in str(deep)
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"this is not a database file" * 200)
    with sqlite3.connect(damaged) as db:
        try:
            db.execute("SELECT * FROM sqlite_master")
        except sqlite3.Error as exc:
            corrupt = storage_error(exc, damaged)
    assert isinstance(corrupt, StorageError)
    assert str(corrupt) == f"the object store file {damaged} is damaged: file is not a database (restore the data directory from a backup (searchd backup), or move it aside to start empty)"
    missing = storage_error(_sqlite_error_open(tmp_path / "no" / "such" / "dir.sqlite3"), tmp_path / "no" / "such" / "dir.sqlite3")
    assert str(missing).startswith(f"the object store cannot open {tmp_path / 'no' / 'such' / 'dir.sqlite3'}: unable to open database file (check that the data directory exists")
    full = storage_error(OSError(28, "No space left on device"), tmp_path)
    assert isinstance(full, StorageError) and str(full).startswith(f"the object store cannot write: the disk holding {tmp_path} is full") or str(full).startswith("the object store cannot write: [Errno 28] No space left on device")
    assert "free space on that disk" in str(full)


def _sqlite_error_open(path: Path) -> sqlite3.Error:
    try:
        sqlite3.connect(path)
    except sqlite3.Error as exc:
        return exc
    raise AssertionError(f"{path} opened")


# -- multi-vectors with one row -----------------------------------------------------------


def test_a_one_row_multi_vector_is_a_matrix_over_rest_and_graphql(client_factory: ClientFactory) -> None:
    late = client_factory(EXAMPLES / "late-interaction" / "searchd.yaml")
    row = [0.5, 0.25, 0.0, 0.125, 0.375, 0.75, 1.0, 0.625]  # exact in float32, as stored
    created = late.post("/v1/objects", json={"class": "Passage", "id": FIRST, "properties": {"text": "one row"}, "vectors": {"colbert": [row]}})
    assert created.status_code == 200, created.text
    assert created.json()["vectors"]["colbert"] == [row]
    fetched = late.get(f"/v1/objects/Passage/{FIRST}?include=vector").json()
    assert fetched["vectors"]["colbert"] == [row] and fetched["vector"] == [row]
    listed = late.get("/v1/objects?class=Passage&include=vector").json()["objects"]
    assert [o["vectors"]["colbert"] for o in listed] == [[row]]
    body = graphql(late, "{ Get { Passage { text _additional { vector vectors { colbert } } } } }")
    assert body == {"data": {"Get": {"Passage": [{"text": "one row", "_additional": {"vector": [row], "vectors": {"colbert": [row]}}}]}}}


@pytest.fixture
def jina(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("JINAAI_APIKEY", JINA_KEY)
    with serving(FakeJina(api_keys=[JINA_KEY]).app) as url:
        yield url


def test_a_one_paragraph_late_chunking_object_returns_a_one_row_matrix(jina: str, write_config: Callable[..., Path], client_factory: ClientFactory) -> None:
    config = {
        "modules": {"text2vec-jinaai": {"baseURL": jina, "apiKey": "${JINAAI_APIKEY}"}},
        "collections": [{
            "name": "City",
            "properties": [{"name": "chunks", "type": "TEXT[]"}],
            "vectors": {"late": {"vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v4", "lateChunking": True, "dimensions": 128}, "index": {"type": "multivector"}}},
        }],
    }
    client = client_factory(write_config(json.dumps(config)))
    created = client.post("/v1/objects", json={"class": "City", "id": FIRST, "properties": {"chunks": ["Berlin is the capital of Germany."]}})
    assert created.status_code == 200, created.text
    expected = truncate_dims(np.stack(late_chunk_vectors(["Berlin is the capital of Germany."], 2048, salt="retrieval.passage")), 128)
    rest = client.get(f"/v1/objects/City/{FIRST}?include=vector").json()["vectors"]["late"]
    assert np.asarray(rest).shape == (1, 128) and np.allclose(rest, expected, atol=1e-5)
    body = graphql(client, "{ Get { City { _additional { vectors { late } } } } }")
    shown = body["data"]["Get"]["City"][0]["_additional"]["vectors"]["late"]
    assert np.asarray(shown).shape == (1, 128) and np.allclose(shown, expected, atol=1e-5)


def test_example_object_ids_are_canonical() -> None:
    """The examples shipped with searchd use only ids the stricter check accepts."""
    for path in EXAMPLES.glob("*/objects.jsonl"):
        for obj in example_objects(path):
            if "id" in obj:
                assert str(uuid.UUID(obj["id"])) == obj["id"].lower(), (path, obj["id"])


def test_a_deeply_nested_schema_body_is_still_answered_405(quickstart: TestClient) -> None:
    deep = "[" * 5000 + "]" * 5000
    response = post_raw(quickstart, "/v1/schema", sub('{"class": "Article", "properties": @}', deep).encode())
    assert response.status_code == 405
    assert message(response).startswith("the schema is declared in YAML and cannot be changed through POST /v1/schema")
