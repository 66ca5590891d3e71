"""Issue #7: API keys and roles, and the request limits (body size, batch size, query depth, result counts).

Every server here serves the quickstart example (Article, hash vectorizer: no network) with
``reload.watch`` off, so a config file edited by a test is applied only by its explicit reload.
Keys are read from the environment (``${VAR}``), as the config language requires.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from searchd.config import load_spec
from searchd.errors import ConfigError
from searchd.modules import default_registry
from searchd.server import create_app, open_services
from searchd.server.observe import JsonFormatter
from tests.conftest import QUICKSTART, ClientFactory, HttpResponse, example_objects

WriteConfig = Callable[..., Path]

ADMIN_KEY = "adm-3f9c2e71b4d8a6051c7e"
READ_KEY = "rd-8b1d5c09e2f4a7736d01"
NEXT_ADMIN_KEY = "adm-next-6a2f0d9e4c1b7358"
WRONG_KEY = "not-a-key-0000000000000"
ALL_KEYS = (ADMIN_KEY, READ_KEY, NEXT_ADMIN_KEY)
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READER = {"Authorization": f"Bearer {READ_KEY}"}
OBJECTS = example_objects(QUICKSTART.parent / "objects.jsonl")
FIRST_ID = OBJECTS[0]["id"]
NEW_ID = "00000000-0000-4000-8000-0000000000ff"
KEYED_AUTH = {"apiKeys": [{"name": "ops", "key": "${SEARCHD_TEST_ADMIN_KEY}", "role": "admin"}, {"name": "dashboard", "key": "${SEARCHD_TEST_READ_KEY}", "role": "read"}]}


def quickstart_config(write_config: WriteConfig, **server: Any) -> Path:
    """The quickstart collection with the given ``server`` settings (and no file watcher)."""
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {"reload": {"watch": False}, **server}
    path: Path = write_config(json.dumps(data))
    return path


def snapshot(client: TestClient, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    # Paged with the `after` cursor: some configs here set a small queryLimitMax.
    objects: list[dict[str, Any]] = []
    after = ""
    while True:
        params: dict[str, str | int] = {"class": "Article", "include": "vector", "limit": 5, "after": after}
        response = client.get("/v1/objects", params=params, headers=headers or {})
        assert response.status_code == 200, response.text
        page = response.json()["objects"]
        objects.extend(page)
        if len(page) < 5:
            return objects
        after = page[-1]["id"]


def import_quickstart(client: TestClient, headers: dict[str, str] | None = None) -> None:
    response = client.post("/v1/batch/objects", json={"objects": OBJECTS}, headers=headers or {})
    assert response.status_code == 200, response.text
    assert all(r["result"]["status"] == "SUCCESS" for r in response.json())


def error_message(response: HttpResponse) -> str:
    body = response.json()
    assert isinstance(body.get("error"), list) and body["error"], body
    message: str = body["error"][0]["message"]
    return message


# -- authentication and roles ---------------------------------------------------


@pytest.fixture
def keyed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEARCHD_TEST_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("SEARCHD_TEST_READ_KEY", READ_KEY)
    monkeypatch.setenv("SEARCHD_TEST_NEXT_ADMIN_KEY", NEXT_ADMIN_KEY)


@pytest.fixture
def keyed(keyed_env: None, write_config: WriteConfig, client_factory: ClientFactory) -> TestClient:
    """A server with an admin and a read key, the quickstart objects imported (by the admin)."""
    client = client_factory(quickstart_config(write_config, auth=KEYED_AUTH))
    import_quickstart(client, ADMIN)
    return client


@pytest.fixture(scope="module")
def shared_keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """Like ``keyed``, shared by the tests that only read or are refused (each checks that nothing changed)."""
    root = tmp_path_factory.mktemp("shared-keyed")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("SEARCHD_TEST_ADMIN_KEY", ADMIN_KEY), ("SEARCHD_TEST_READ_KEY", READ_KEY)):
            patch.setenv(name, value)
        path = quickstart_config(lambda text: _write(root / "searchd.yaml", text), auth=KEYED_AUTH)
        with TestClient(create_app(open_services(path, root / "data"))) as client:
            import_quickstart(client, ADMIN)
            yield client


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# (method, path, body) for every route, with what each role may do.
READS: list[tuple[str, str, Any]] = [
    ("GET", "/v1/meta", None),
    ("GET", "/v1/schema", None),
    ("GET", "/v1/schema/Article", None),
    ("GET", "/v1/objects", None),
    ("GET", f"/v1/objects/Article/{FIRST_ID}", None),
    ("HEAD", f"/v1/objects/Article/{FIRST_ID}", None),
    ("GET", "/v1/config/status", None),
    ("GET", "/v1/openapi.json", None),
    ("GET", "/metrics", None),
    ("POST", "/v1/graphql", {"query": "{ Get { Article { title } } }"}),
    ("POST", "/v1/graphql/batch", [{"query": "{ Get { Article(limit: 1) { title } } }"}]),
]
WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/objects", {"class": "Article", "id": NEW_ID, "properties": {"title": "Intruder"}}),
    ("PUT", f"/v1/objects/Article/{FIRST_ID}", {"class": "Article", "id": FIRST_ID, "properties": {"title": "Replaced"}}),
    ("PATCH", f"/v1/objects/Article/{FIRST_ID}", {"properties": {"title": "Patched"}}),
    ("DELETE", f"/v1/objects/Article/{FIRST_ID}", None),
    ("POST", "/v1/batch/objects", {"objects": [{"class": "Article", "id": NEW_ID, "properties": {"title": "Batched"}}]}),
    ("POST", "/v1/config/reload", None),
    ("POST", "/v1/schema", {"class": "Other"}),
    ("DELETE", "/v1/schema/Article", None),
]


def send(client: TestClient, method: str, path: str, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    response: HttpResponse = client.request(method, path, json=body, headers=headers or {}) if body is not None else client.request(method, path, headers=headers or {})
    return response


@pytest.mark.parametrize("authorization", [None, f"Bearer {WRONG_KEY}", "Bearer", f"Basic {ADMIN_KEY}", f"Token {ADMIN_KEY}", f"Bearer {ADMIN_KEY}x"])
def test_missing_or_wrong_key_is_401_with_www_authenticate(shared_keyed: TestClient, authorization: str | None) -> None:
    keyed = shared_keyed
    before = snapshot(keyed, ADMIN)
    for method, path, body in [*READS, *WRITES, ("GET", "/v1/no-such-route", None)]:
        response = send(keyed, method, path, body, {"Authorization": authorization} if authorization else {})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
        if method != "HEAD":
            message = error_message(response)
            assert "Authorization: Bearer" in message
            assert ("needs an API key" in message) if authorization in (None, "Bearer") or not authorization.startswith("Bearer") else ("not valid" in message)
            assert ADMIN_KEY not in response.text and WRONG_KEY not in response.text
    assert snapshot(keyed, ADMIN) == before


def test_bearer_scheme_is_case_insensitive(shared_keyed: TestClient) -> None:
    keyed = shared_keyed
    assert keyed.get("/v1/meta", headers={"Authorization": f"bearer {READ_KEY}"}).status_code == 200
    assert keyed.get("/v1/meta", headers={"Authorization": f"BEARER  {READ_KEY} "}).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), READS)
def test_read_key_may_query_and_list(shared_keyed: TestClient, method: str, path: str, body: Any) -> None:
    keyed = shared_keyed
    response = send(keyed, method, path, body, READER)
    assert response.status_code in (200, 204), response.text
    if path == "/v1/graphql":
        assert "errors" not in response.json() and len(response.json()["data"]["Get"]["Article"]) == len(OBJECTS)


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_read_key_may_not_write_403_and_nothing_changes(shared_keyed: TestClient, method: str, path: str, body: Any) -> None:
    keyed = shared_keyed
    before = snapshot(keyed, READER)
    status_before = keyed.get("/v1/config/status", headers=READER).json()
    response = send(keyed, method, path, body, READER)
    assert response.status_code == 403, response.text
    message = error_message(response)
    assert "'dashboard'" in message and "read role" in message and "admin key" in message and f"{method} {path}" in message
    assert READ_KEY not in response.text
    assert "www-authenticate" not in response.headers
    assert snapshot(keyed, READER) == before
    assert keyed.get("/v1/config/status", headers=READER).json() == status_before  # no reload ran


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_admin_key_may_write(keyed: TestClient, method: str, path: str, body: Any) -> None:
    response = send(keyed, method, path, body, ADMIN)
    expected = 405 if path.startswith("/v1/schema") else 200 if method in ("POST", "PUT") else 204
    assert response.status_code == expected, response.text


def test_admin_writes_are_stored(keyed: TestClient) -> None:
    assert keyed.post("/v1/objects", json=WRITES[0][2], headers=ADMIN).status_code == 200
    assert keyed.patch(f"/v1/objects/Article/{FIRST_ID}", json={"properties": {"title": "Patched"}}, headers=ADMIN).status_code == 204
    assert keyed.get(f"/v1/objects/Article/{FIRST_ID}", headers=READER).json()["properties"]["title"] == "Patched"
    assert keyed.get(f"/v1/objects/Article/{NEW_ID}", headers=READER).status_code == 200


@pytest.mark.parametrize("path", ["/v1/.well-known/live", "/v1/.well-known/ready"])
def test_health_checks_stay_open(shared_keyed: TestClient, path: str) -> None:
    keyed = shared_keyed
    assert keyed.get(path).status_code == 200
    assert keyed.get(path, headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 200
    assert keyed.head(path).status_code == 200


def test_without_keys_access_is_anonymous(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = client_factory(quickstart_config(write_config))
    import_quickstart(client)
    assert client.get("/v1/meta").status_code == 200
    assert client.delete(f"/v1/objects/Article/{FIRST_ID}").status_code == 204


def test_a_literal_key_is_a_config_error_with_a_hint(write_config: WriteConfig) -> None:
    literal = "literal-key-written-in-the-file"
    path = quickstart_config(write_config, auth={"apiKeys": [{"name": "ops", "key": literal, "role": "admin"}]})
    with pytest.raises(ConfigError) as caught:
        load_spec(path, default_registry(), environ={})
    # (A second issue follows from the refused value being blanked: "'' is too short".)
    issue = caught.value.issues[0]
    assert issue.path == "server.auth.apiKeys[0].key"
    assert "secrets are never written in the config" in issue.message
    assert "${" in issue.hint
    assert literal not in str(caught.value)


def test_a_key_from_an_unset_variable_is_a_config_error(write_config: WriteConfig) -> None:
    path = quickstart_config(write_config, auth={"apiKeys": [{"name": "ops", "key": "${SEARCHD_TEST_UNSET_KEY}"}]})
    with pytest.raises(ConfigError, match="SEARCHD_TEST_UNSET_KEY is not set"):
        load_spec(path, default_registry(), environ={})


def test_a_key_without_a_role_is_read_only(keyed_env: None, write_config: WriteConfig, client_factory: ClientFactory) -> None:
    auth = {"apiKeys": [{"name": "ops", "key": "${SEARCHD_TEST_ADMIN_KEY}", "role": "admin"}, {"name": "viewer", "key": "${SEARCHD_TEST_READ_KEY}"}]}
    client = client_factory(quickstart_config(write_config, auth=auth))
    assert client.get("/v1/objects", headers=READER).status_code == 200
    assert client.post("/v1/objects", json=WRITES[0][2], headers=READER).status_code == 403


def test_a_too_short_key_is_refused_without_echoing_it(keyed_env: None, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    short = "sh0rt-k3y"
    monkeypatch.setenv("SEARCHD_TEST_SHORT_KEY", short)
    path = quickstart_config(write_config, auth={"apiKeys": [{"name": "ops", "key": "${SEARCHD_TEST_SHORT_KEY}", "role": "admin"}]})
    with pytest.raises(ConfigError) as caught:
        load_spec(path, default_registry())
    assert "apiKeys[0].key" in str(caught.value)
    assert short not in str(caught.value)


def test_reload_rotates_keys(keyed: TestClient, write_config: WriteConfig, caplog: pytest.LogCaptureFixture) -> None:
    """Edit the config to reference another variable, reload: the new key works, the old one is refused at once."""
    caplog.set_level(logging.DEBUG)
    before = snapshot(keyed, READER)
    rotated = {"apiKeys": [{"name": "ops-2025", "key": "${SEARCHD_TEST_NEXT_ADMIN_KEY}", "role": "admin"}, KEYED_AUTH["apiKeys"][1]]}
    quickstart_config(write_config, auth=rotated)
    response = keyed.post("/v1/config/reload", headers=ADMIN)  # the old key is still the one in force
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "applied"
    for key in ALL_KEYS:
        assert key not in response.text
    assert keyed.get("/v1/meta", headers=ADMIN).status_code == 401
    assert keyed.post("/v1/objects", json=WRITES[0][2], headers=ADMIN).status_code == 401
    nxt = {"Authorization": f"Bearer {NEXT_ADMIN_KEY}"}
    assert keyed.get("/v1/meta", headers=nxt).status_code == 200
    assert keyed.get("/v1/meta", headers=READER).status_code == 200  # unchanged keys keep working
    assert snapshot(keyed, nxt) == before  # the rejected write stored nothing
    assert keyed.post("/v1/objects", json=WRITES[0][2], headers=nxt).status_code == 200
    # Back again, by the new admin.
    quickstart_config(write_config, auth=KEYED_AUTH)
    assert keyed.post("/v1/config/reload", headers=nxt).json()["result"] == "applied"
    assert keyed.get("/v1/meta", headers=nxt).status_code == 401
    assert keyed.get("/v1/meta", headers=ADMIN).status_code == 200
    assert_no_key_logged(caplog)


def test_a_reload_that_is_invalid_keeps_the_old_keys(keyed: TestClient, write_config: WriteConfig) -> None:
    quickstart_config(write_config, auth={"apiKeys": [{"name": "ops", "key": "${SEARCHD_TEST_UNSET_KEY}", "role": "admin"}]})
    response = keyed.post("/v1/config/reload", headers=ADMIN)
    assert response.status_code == 422
    assert "SEARCHD_TEST_UNSET_KEY is not set" in error_message(response)
    assert keyed.get("/v1/meta", headers=ADMIN).status_code == 200
    assert keyed.get("/v1/meta").status_code == 401


def test_removing_every_key_reopens_anonymous_access_after_reload(keyed: TestClient, write_config: WriteConfig) -> None:
    quickstart_config(write_config)
    assert keyed.post("/v1/config/reload", headers=ADMIN).json()["result"] == "applied"
    assert keyed.get("/v1/meta").status_code == 200


def assert_no_key_logged(caplog: pytest.LogCaptureFixture) -> None:
    formatter = JsonFormatter()
    for record in caplog.records:
        rendered = formatter.format(record) + repr(vars(record))
        for key in ALL_KEYS:
            assert key not in rendered, f"key leaked in log record {record.name}: {record.getMessage()}"


def test_keys_are_never_logged_or_echoed(keyed: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    for headers in ({}, READER, ADMIN, {"Authorization": f"Bearer {WRONG_KEY}"}):
        for method, path, body in [*READS, *WRITES[:2], WRITES[4]]:
            response = send(keyed, method, path, body, headers)
            bodies.append(response.text + repr(dict(response.headers)))
    access = [r for r in caplog.records if r.name == "searchd.access"]
    assert len(access) >= 4 * (len(READS) + 3)
    assert {getattr(r, "key", None) for r in access} >= {None, "ops", "dashboard"}
    assert_no_key_logged(caplog)
    for text in bodies:
        for key in (*ALL_KEYS, WRONG_KEY):
            assert key not in text
    for key in ALL_KEYS:
        assert key not in repr(load_spec(QUICKSTART, default_registry()))  # ApiKeySpec hides the key from repr


# -- limits ---------------------------------------------------------------------


def test_default_limits_are_weaviates() -> None:
    limits = load_spec(QUICKSTART, default_registry()).server.limits
    assert (limits.max_body_bytes, limits.query_limit_default, limits.query_limit_max, limits.max_batch_objects, limits.max_query_depth) == (
        10 * 1024 * 1024, 100, 10_000, 10_000, 30,
    )


@pytest.fixture
def limited(write_config: WriteConfig, client_factory: ClientFactory) -> TestClient:
    limits = {"maxBodyBytes": 4096, "maxBatchObjects": 3, "maxQueryDepth": 5, "queryLimitDefault": 4, "queryLimitMax": 6}
    client = client_factory(quickstart_config(write_config, limits=limits))
    for chunk in (OBJECTS[:3], OBJECTS[3:6], OBJECTS[6:]):
        assert client.post("/v1/batch/objects", json={"objects": chunk}).status_code == 200
    return client


def big_object() -> dict[str, Any]:
    return {"class": "Article", "id": NEW_ID, "properties": {"title": "Big", "body": "word " * 1000}}


def test_body_over_the_limit_is_413(limited: TestClient) -> None:
    before = snapshot(limited)
    for path in ("/v1/objects", "/v1/batch/objects", "/v1/graphql"):
        body = {"objects": [big_object()]} if "batch" in path else {"query": "{ Get { Article { title } } }" + " " * 5000} if "graphql" in path else big_object()
        response = limited.post(path, json=body)
        assert response.status_code == 413, (path, response.text)
        message = error_message(response)
        assert "larger than the limit of 4096 bytes" in message and "server.limits.maxBodyBytes" in message
    response = limited.put(f"/v1/objects/Article/{FIRST_ID}", json={**big_object(), "id": FIRST_ID})
    assert response.status_code == 413
    assert snapshot(limited) == before
    assert limited.post("/v1/objects", json={**big_object(), "properties": {"title": "Small"}}).status_code == 200


def test_streamed_body_over_the_limit_is_413(limited: TestClient) -> None:
    """No Content-Length: the limit is enforced while the body arrives."""
    before = snapshot(limited)
    payload = json.dumps(big_object()).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    response = limited.post("/v1/objects", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "server.limits.maxBodyBytes" in error_message(response)
    assert snapshot(limited) == before


def test_batch_over_the_limit_is_413_and_stores_nothing(limited: TestClient) -> None:
    before = snapshot(limited)
    objects = [{"class": "Article", "id": f"00000000-0000-4000-8000-0000000001{i:02d}", "properties": {"title": f"t{i}"}} for i in range(4)]
    response = limited.post("/v1/batch/objects", json={"objects": objects})
    assert response.status_code == 413
    message = error_message(response)
    assert "4 objects" in message and "limit of 3" in message and "server.limits.maxBatchObjects" in message
    assert snapshot(limited) == before
    assert limited.post("/v1/batch/objects", json={"objects": objects[:3]}).status_code == 200


def depth_error(client: TestClient, query: str) -> str | None:
    response = client.post("/v1/graphql", json={"query": query})
    assert response.status_code == 200
    body = response.json()
    errors = body.get("errors") or []
    depth = [e["message"] for e in errors if "levels deep" in e["message"]]
    if depth:
        assert body["data"] is None
        message: str = depth[0]
        return message
    assert "errors" not in body, body
    return None


def test_query_depth_limit(limited: TestClient) -> None:
    assert depth_error(limited, "{ Get { Article { title _additional { id } } } }") is None  # depth 4
    assert depth_error(limited, "{ Get { Article(limit: 1) { _additional { id } } } }") is None
    message = depth_error(limited, "{ Get { Article { _additional { a { b { c } } } } } }")
    assert message is not None
    assert "nests 6 levels deep" in message and "maximum of 5" in message and "server.limits.maxQueryDepth" in message
    # Depth is checked before the schema: unknown fields do not get past it either.
    assert "nests 7 levels" in (depth_error(limited, "{ a { b { c { d { e { f { g } } } } } } }") or "")


def test_query_depth_limit_follows_fragments(limited: TestClient) -> None:
    shallow_parts = """
        query { Get { ...G } }
        fragment G on GetObjectsObj { Article { ...A } }
        fragment A on Article { title _additional { ...X } }
        fragment X on ArticleAdditionalObj { id }
    """
    assert depth_error(limited, shallow_parts) is None  # 4 levels, spread over four definitions
    deep = """
        query { Get { ...G } }
        fragment G on GetObjectsObj { Article { ...A } }
        fragment A on Article { _additional { x { ...Y } } }
        fragment Y on Whatever { y { z } }
    """
    message = depth_error(limited, deep)
    assert message is not None and "nests 6 levels deep" in message and "maximum of 5" in message
    inline = "{ Get { Article { _additional { ... on Whatever { x { ... on Y { y { z } } } } } } } }"
    assert "nests 6 levels deep" in (depth_error(limited, inline) or "")  # inline fragments add no level


def test_fragment_cycles_and_chains_are_answered_not_crashed(limited: TestClient) -> None:
    cycle = "{ Get { ...A } } fragment A on GetObjectsObj { Article { title } ...B } fragment B on GetObjectsObj { ...A }"
    response = limited.post("/v1/graphql", json={"query": cycle})
    assert response.status_code == 200 and "errors" in response.json()


def test_long_and_branching_fragment_chains_do_not_crash_or_hang(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    """A chain of 1,500 spreads once exhausted the recursion limit (500); 40 doubling spreads took 2^40 steps."""
    client = client_factory(quickstart_config(write_config))
    n = 1500
    chain = "{ Get { ...F0 } }\n" + "".join(f"fragment F{i} on GetObjectsObj {{ ...F{i + 1} }}\n" for i in range(n)) + f"fragment F{n} on GetObjectsObj {{ Article {{ title }} }}"
    response = client.post("/v1/graphql", json={"query": chain})
    assert response.status_code == 200, response.text
    n = 40
    doubling = "{ Get { ...F0 } }\n" + "".join(f"fragment F{i} on GetObjectsObj {{ ...F{i + 1} ...F{i + 1} }}\n" for i in range(n)) + f"fragment F{n} on GetObjectsObj {{ Article {{ title }} }}"
    # 2^40 steps would never end: the request runs where a (generous) deadline watches it, not a stopwatch.
    answers: list[Any] = []
    asking = threading.Thread(target=lambda: answers.append(client.post("/v1/graphql", json={"query": doubling})), daemon=True)
    asking.start()
    asking.join(timeout=60.0)
    assert answers, "a query of 40 doubling fragment spreads did not finish"
    (response,) = answers
    assert response.status_code == 200
    assert response.json() == {"data": {"Get": {"Article": []}}}
    deep = "{ Get { ...F0 } }\n" + "".join(f"fragment F{i} on GetObjectsObj {{ a{i} {{ ...F{i + 1} }} }}\n" for i in range(n)) + f"fragment F{n} on GetObjectsObj {{ x }}"
    response = client.post("/v1/graphql", json={"query": deep})
    assert "nests 42 levels deep" in response.json()["errors"][0]["message"]


def test_default_query_depth_is_30(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = client_factory(quickstart_config(write_config))
    query = "{" + " a {" * 30 + " x" + " }" * 31
    response = client.post("/v1/graphql", json={"query": query})
    assert "nests 31 levels deep, above the maximum of 30" in response.json()["errors"][0]["message"]


def get_titles(client: TestClient, arguments: str = "") -> Any:
    response = client.post("/v1/graphql", json={"query": "{ Get { Article" + (f"({arguments})" if arguments else "") + " { title } } }"})
    assert response.status_code == 200
    return response.json()


def test_configured_result_limits(limited: TestClient) -> None:
    assert len(get_titles(limited)["data"]["Get"]["Article"]) == 4  # queryLimitDefault
    assert len(get_titles(limited, 'bm25: {query: "bread databases search garden"}')["data"]["Get"]["Article"]) <= 4
    assert len(get_titles(limited, "limit: 6")["data"]["Get"]["Article"]) == 6
    for arguments, total in (("limit: 7", 7), ("limit: 3, offset: 4", 7), ('limit: 7, nearText: {concepts: ["bread"]}', 7)):
        body = get_titles(limited, arguments)
        assert body["data"]["Get"]["Article"] is None
        (error,) = body["errors"]
        assert f"limit + offset is {total}, above the maximum of 6" in error["message"]
    assert "must not be negative" in get_titles(limited, "limit: -1")["errors"][0]["message"]


def test_weaviate_default_result_limits(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = client_factory(quickstart_config(write_config))
    extra = [{"class": "Article", "properties": {"title": f"Note {i}", "wordCount": i}} for i in range(110)]
    for start in range(0, len(extra), 55):
        assert client.post("/v1/batch/objects", json={"objects": extra[start : start + 55]}).status_code == 200
    assert len(get_titles(client)["data"]["Get"]["Article"]) == 100
    assert len(get_titles(client, "limit: 10000")["data"]["Get"]["Article"]) == 110
    assert "above the maximum of 10000" in get_titles(client, "limit: 10001")["errors"][0]["message"]
    assert "above the maximum of 10000" in get_titles(client, "limit: 2, offset: 9999")["errors"][0]["message"]


def test_rest_listing_respects_the_maximum(limited: TestClient) -> None:
    response = limited.get("/v1/objects", params={"class": "Article", "limit": 7})
    assert response.status_code == 422
    assert "6" in error_message(response)
