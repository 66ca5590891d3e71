"""Strings the checker of issue #13 found still hurting the server: lone surrogates in JSON keys, bytes that are not UTF-8.

A refusal must be a 422 that names the bad string (escaped, as the client wrote it), leave the store as it was, and keep
the connection usable; no error body may ever fail to encode.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from searchd.errors import StorageError
from searchd.server.errors import error_response
from searchd.storage import sqlite as sqlite_store
from searchd.storage.failures import storage_error
from tests import test_e2e_server
from tests.conftest import QUICKSTART, ClientFactory, graphql
from tests.test_e2e_server import StartServer, client, write_article_config
from tests.test_hardening_input import FIRST, SECOND, listing, message, post_raw, stored_with_a_lone_surrogate

start_server = test_e2e_server.start_server  # the fixture: servers started on free ports, stopped at teardown

HINT = "(send valid Unicode: a character outside the Basic Multilingual Plane is written as a pair of escapes (e.g. \\ud83d\\ude00), never half of one)"


@pytest.fixture
def quickstart(client_factory: ClientFactory, tmp_path: Path) -> TestClient:
    client = client_factory(QUICKSTART, tmp_path / "data")
    response = client.post("/v1/objects", json={"class": "Article", "id": FIRST, "properties": {"title": "kept as it was"}})
    assert response.status_code == 200, response.text
    return client


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("/v1/objects", rb'{"class": "Article", "properties": {"ti\udfffle": "x"}}', "the name of property 'ti\\udfffle'"),
        ("/v1/batch/objects", rb'{"objects": [{"class": "Article", "properties": {"ti\udfffle": "x"}}]}', "the name of property 'ti\\udfffle'"),
        ("/v1/objects", rb'{"class": "Article", "properties": {"title": {"ke\ud800y": "x"}}}', "the key 'properties.title.ke\\ud800y'"),
        ("/v1/objects", rb'{"class": "Article", "\udfff": 1, "properties": {"title": "x"}}', "the key '\\udfff'"),
        ("/v1/graphql", rb'{"query": "{ Get { Article { title } } }", "variables": {"\udfff": 1}}', "the key 'variables.\\udfff'"),
        ("PUT /v1/objects/Article/" + FIRST, rb'{"class": "Article", "properties": {"title": "x", "\udc00": "y"}}', "the name of property '\\udc00'"),
    ],
    ids=["create", "batch", "nested-key", "top-level-key", "graphql-variable-name", "replace"],
)
def test_a_lone_surrogate_in_a_key_is_refused_with_the_key_escaped(quickstart: TestClient, path: str, body: bytes, expected: str) -> None:
    before = listing(quickstart)
    response = post_raw(quickstart, path, body)
    assert response.status_code == 422, response.text
    surrogate = expected.split("\\u")[1][:4]
    assert message(response) == f"{expected} holds a lone UTF-16 surrogate (\\u{surrogate}), which is not valid Unicode {HINT}"
    assert listing(quickstart) == before  # the same client (and connection) still answers, and nothing was stored


@pytest.mark.parametrize(
    ("body", "offset", "byte"),
    [
        (b'{"class": "Article", "properties": {"title": "caf\xff"}}', 49, 0xFF),
        (b'{"class": "Article", "properties": {"title": "caf\xe9 au lait"}}', 49, 0xE9),  # Latin-1, not UTF-8
        (b'{"class": "Article", "properties": {"title": "\xed\xbf\xbf"}}', 46, 0xED),  # a surrogate encoded as UTF-8: not UTF-8 either
        (b'\xff{"class": "Article"}', 0, 0xFF),
    ],
    ids=["0xff", "latin-1", "encoded-surrogate", "first-byte"],
)
def test_a_body_that_is_not_utf8_is_refused_naming_the_byte(quickstart: TestClient, body: bytes, offset: int, byte: int) -> None:
    before = listing(quickstart)
    response = post_raw(quickstart, "/v1/objects", body)
    assert response.status_code == 422, response.text
    assert message(response) == (
        f"the request body is not valid UTF-8 at byte {offset} (0x{byte:02x}) (encode the body as UTF-8 (text in another encoding such as "
        "Latin-1 has to be converted first))"
    )
    assert listing(quickstart) == before


def test_an_escaped_lone_surrogate_value_is_still_named_by_its_property(quickstart: TestClient) -> None:
    """The UTF-8 check comes first, but a body that is UTF-8 holding a "\\udfff" escape still gets the surrogate refusal."""
    response = post_raw(quickstart, "/v1/objects", rb'{"class": "Article", "properties": {"title": "a \udfff b"}}')
    assert response.status_code == 422
    assert message(response) == f"property 'title' holds a lone UTF-16 surrogate (\\udfff), which is not valid Unicode {HINT}"


def test_an_error_body_can_always_be_encoded() -> None:
    """Whatever an error quotes, its response encodes: a lone surrogate is written as its escape, other text is kept."""
    response = error_response(422, "property 'ti\udfffle' is not declared; caf\u00e9 \U0001f600")
    assert response.status_code == 422
    assert json.loads(bytes(response.body)) == {"error": [{"message": "property 'ti\\udfffle' is not declared; caf\u00e9 \U0001f600"}]}


def test_a_real_server_refuses_a_surrogate_key_and_the_connection_goes_on(tmp_path: Path, start_server: StartServer) -> None:
    """Over a real socket: the refusal is a 422, the next request on the same keep-alive connection is answered, no traceback."""
    server = start_server(write_article_config(tmp_path / "config"), tmp_path / "data")
    with client(server) as http:
        refused = http.post("/v1/objects", content=rb'{"class": "Article", "properties": {"ti\udfffle": "x"}}', headers={"content-type": "application/json"})
        assert refused.status_code == 422, refused.text
        assert message(refused) == f"the name of property 'ti\\udfffle' holds a lone UTF-16 surrogate (\\udfff), which is not valid Unicode {HINT}"
        listed = http.get("/v1/objects", params={"class": "Article"})
        assert listed.status_code == 200 and listed.json()["objects"] == [], listed.text
    assert "Traceback" not in server.logs(), server.logs()


# -- a lone surrogate stored before they were refused -------------------------------------


def titles_where(client: TestClient, where: str) -> list[str]:
    body = graphql(client, "{ Get { Article(where: " + where + ") { title } } }")
    assert "errors" not in body, body
    return sorted(hit["title"] for hit in body["data"]["Get"]["Article"])


def test_like_reads_a_stored_lone_surrogate_as_a_replacement_character(client_factory: ClientFactory, tmp_path: Path) -> None:
    client = stored_with_a_lone_surrogate(client_factory, tmp_path / "data")
    other = client.post("/v1/objects", json={"class": "Article", "id": SECOND, "properties": {"title": "cafe bar", "tags": ["y"]}})
    assert other.status_code == 200, other.text
    shown = "caf\ufffd bar"
    assert titles_where(client, '{path: ["title"], operator: Like, valueText: "caf*"}') == ["cafe bar", shown]
    # One character stands where the surrogate was (not the three bytes SQLite holds), and it is U+FFFD.
    assert titles_where(client, '{path: ["title"], operator: Like, valueText: "caf? bar"}') == ["cafe bar", shown]
    assert titles_where(client, '{path: ["title"], operator: Like, valueText: "caf\ufffd*"}') == [shown]
    assert titles_where(client, '{path: ["title"], operator: Like, valueText: "*bar"}') == ["cafe bar", shown]
    # TEXT[]: each element is matched on its own.
    assert titles_where(client, '{path: ["tags"], operator: Like, valueText: "?x"}') == [shown]
    assert titles_where(client, '{path: ["tags"], operator: Like, valueText: "ok *"}') == [shown]
    assert titles_where(client, '{path: ["tags"], operator: Like, valueText: "y"}') == ["cafe bar"]
    # Combined with other operators, and under Not.
    assert titles_where(client, '{operator: Not, operands: [{path: ["title"], operator: Like, valueText: "*\ufffd*"}]}') == ["cafe bar"]


def test_a_failing_filter_function_says_so_and_logs_what_it_failed_on(
    client_factory: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's error names the cause (a filter function on a stored value), and the log has the line the message promises."""
    client = client_factory(QUICKSTART, tmp_path / "data")
    assert client.post("/v1/objects", json={"class": "Article", "id": FIRST, "properties": {"title": "some title"}}).status_code == 200

    def broken(pattern: object, value: object) -> bool:
        raise ValueError("a bug in like()")

    monkeypatch.setattr(sqlite_store, "like", broken)
    with caplog.at_level(logging.ERROR, logger="searchd.storage"):
        body = graphql(client, '{ Get { Article(where: {path: ["title"], operator: Like, valueText: "some*"}) { title } } }')
    assert body["data"]["Get"]["Article"] is None
    assert body["errors"][0]["message"] == (
        "the object store could not evaluate a filter or sort on a stored value (user-defined function raised exception) (the server "
        "log has the details: a line from searchd.storage names the function and the value)"
    )
    logged = [r for r in caplog.records if r.name == "searchd.storage"]
    assert logged and logged[0].getMessage() == "the filter function searchd_like failed on the pattern 'some*' and the stored value b'some title'"
    assert logged[0].exc_info is not None and str(logged[0].exc_info[1]) == "a bug in like()"


def test_a_store_error_of_no_known_kind_carries_what_sqlite_said(tmp_path: Path) -> None:
    """The last resort names SQLite's error and code in the message itself: nothing is promised in a log that does not hold it."""
    store = tmp_path / "objects.sqlite3"
    store.write_bytes(b"")
    try:
        with sqlite3.connect(":memory:") as db:
            db.execute("SELECT no_such_function(1)")
    except sqlite3.Error as exc:
        error = storage_error(exc, store)
    assert isinstance(error, StorageError)
    assert str(error) == (
        f"the object store failed on {store}: no such function: no_such_function (OperationalError SQLITE_ERROR) (retry; if it persists, "
        "report this message with the server's version)"
    )
