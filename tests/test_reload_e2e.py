"""Hot reload end to end: real ``searchd serve`` processes, real file edits, the real watcher.

Every change class of DESIGN.md §3 (in place, re-vectorize, destructive) is made by
editing the config file of a running server and waiting — bounded, by polling
``GET /v1/config/status`` — until the reload it triggers is recorded.  Remote
re-vectorizations run against a FakeJina served in this test process, slowed down
with its ``latency`` so that a rebuild can be written to, or killed, while it runs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from tests.conftest import BACKENDS
from tests.fakes import FakeJina, serving
from tests.fakes.embeddings import text_vector, truncate_dims
from tests.test_e2e_server import Server, StartServer, client, list_all_ids
from tests.test_e2e_server import start_server as start_server  # noqa: PLC0414  (re-exported: the fixture, used by name)

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

DEADLINE_S = 30.0  # a bound on every wait, not a performance expectation
POLL_S = 0.02

BASE = """\
# Reload tests: the config a running server is edited away from.
server:
  host: 127.0.0.1
collections:
  - name: Article
    description: Articles for the reload tests.
    properties:
      - {name: title, type: TEXT}
      - {name: body, type: TEXT}
      - {name: slug, type: TEXT, indexSearchable: false}
      - {name: year, type: INT}
    invertedIndex:
      bm25: {k1: 1.2, b: 0.75}
    vectors:
      text:
        default: true
        vectorizer: {module: text2vec-hash, dimensions: 256, textFields: [title, body]}
        index: {type: hnsw, distance: cosine}
"""

N_ARTICLES = 40


def article(i: int) -> dict[str, Any]:
    return {
        "class": "Article",
        "id": f"10000000-0000-4000-8000-{i:012d}",
        "properties": {
            "title": f"article {i} about w{i:03d}x topics",
            "body": f"the body of article number {i}, filed under q{i % 5}",
            "slug": f"zslug{i:03d}",
            "year": 2000 + i % 20,
        },
    }


ARTICLES = [article(i) for i in range(N_ARTICLES)]


# -- helpers -----------------------------------------------------------------------


def replaced(text: str, *edits: tuple[str, str]) -> str:
    for old, new in edits:
        assert text.count(old) == 1, f"edit does not match the config exactly once: {old!r}"
        text = text.replace(old, new)
    return text


def edit(path: Path, *edits: tuple[str, str]) -> str:
    """Edit the config file in place, as an editor saving it does (not an atomic rename)."""
    text = replaced(path.read_text(encoding="utf-8"), *edits)
    path.write_text(text, encoding="utf-8")
    return text


def write_jsonl(path: Path, objects: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return path


def start_base(
    tmp_path: Path, start_server: StartServer, text: str = BASE, objects: list[dict[str, Any]] = ARTICLES
) -> tuple[Server, Path]:
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text, encoding="utf-8")
    server = start_server(config, tmp_path / "data", "--load", str(write_jsonl(tmp_path / "objects.jsonl", objects)))
    return server, config


def status(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/v1/config/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_status(http: httpx.Client, done: Callable[[dict[str, Any]], bool], what: str, logs: Callable[[], str]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            now = status(http)
        except httpx.TransportError as exc:  # the server stopped answering: its log says why
            pytest.fail(f"{what}: /v1/config/status failed ({exc!r})\n{logs()}")
        if done(now):
            return now
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {DEADLINE_S}s; last status:\n{json.dumps(now, indent=1)[:4000]}\n{logs()}")
        time.sleep(POLL_S)


def reload_at(now: dict[str, Any]) -> float:
    return float((now["lastReload"] or {}).get("at") or 0.0)


def wait_reload(http: httpx.Client, before: dict[str, Any], logs: Callable[[], str], result: str | None = None) -> dict[str, Any]:
    """The status once a reload later than ``before``'s is recorded; with ``result``, check how it ended."""
    since = reload_at(before)
    now = wait_status(http, lambda s: reload_at(s) > since, "a reload after the edit", logs)
    if result is not None:
        assert now["lastReload"]["result"] == result, f"reload result {now['lastReload']}\n{logs()}"
    return now


def rebuilds_ended(now: dict[str, Any]) -> bool:
    return all(r["state"] != "running" for r in now["rebuilds"])


def wait_rebuilds(http: httpx.Client, logs: Callable[[], str]) -> dict[str, Any]:
    now = wait_status(http, rebuilds_ended, "the background rebuilds to end", logs)
    assert all(r["state"] == "done" for r in now["rebuilds"]), f"{now['rebuilds']}\n{logs()}"
    return now


def gql(http: httpx.Client, query: str, logs: Callable[[], str] = lambda: "") -> dict[str, Any]:
    response = http.post("/v1/graphql", json={"query": query})
    assert response.status_code == 200, f"GraphQL HTTP {response.status_code}: {response.text}\n{logs()}"
    body: dict[str, Any] = response.json()
    return body


def hits(http: httpx.Client, query: str, logs: Callable[[], str], cls: str = "Article") -> list[dict[str, Any]]:
    body = gql(http, query, logs)
    assert not body.get("errors"), f"GraphQL errors: {body['errors']}\n{logs()}"
    found: list[dict[str, Any]] = body["data"]["Get"][cls]
    return found


def get_object(http: httpx.Client, cls: str, object_id: str, vector: bool = False) -> dict[str, Any]:
    response = http.get(f"/v1/objects/{cls}/{object_id}", params={"include": "vector"} if vector else None)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def schema_class(http: httpx.Client, cls: str) -> dict[str, Any]:
    response = http.get(f"/v1/schema/{cls}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def batch(http: httpx.Client, objects: list[dict[str, Any]]) -> None:
    response = http.post("/v1/batch/objects", json={"objects": objects})
    assert response.status_code == 200, response.text
    failed = [r for r in response.json() if r["result"]["status"] != "SUCCESS"]
    assert not failed, failed[:3]


def error_location(errors: list[str], config: Path) -> list[int]:
    """Line numbers of the ``FILE:LINE:COL:`` errors that name ``config``."""
    return [int(m.group(1)) for e in errors for m in [re.match(rf"{re.escape(str(config))}:(\d+):(\d+): ", e)] if m]


def line_of(text: str, marker: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if marker in line)


# -- in place --------------------------------------------------------------------------


def test_in_place_changes_apply_through_the_watcher(tmp_path: Path, start_server: StartServer) -> None:
    server, config = start_base(tmp_path, start_server)
    logs = server.logs
    with client(server) as http:
        before = status(http)
        assert before["lastReload"]["trigger"] == "start" and before["lastReload"]["result"] == "applied", before
        assert re.fullmatch(r"[0-9a-f]{12}", before["revision"]), before

        edit(
            config,
            ("host: 127.0.0.1\n", "host: 127.0.0.1\n  limits: {queryLimitDefault: 7}\n"),
            ("description: Articles for the reload tests.", "description: Articles, described anew."),
            ("bm25: {k1: 1.2, b: 0.75}", "bm25: {k1: 1.5, b: 0.7}\n      stopwords: {preset: en, additions: [filed]}"),
            ("      - {name: year, type: INT}\n", "      - {name: year, type: INT}\n      - {name: summary, type: TEXT}\n"),
            (
                "        index: {type: hnsw, distance: cosine}\n",
                (
                    "        index: {type: hnsw, distance: cosine}\n"
                    "      short:\n"
                    "        vectorizer: {module: text2vec-hash, dimensions: 64, textFields: [title]}\n"
                    "        index: {type: flat, distance: cosine}\n"
                    "  - name: Note\n"
                    "    properties:\n"
                    "      - {name: text, type: TEXT}\n"
                ),
            ),
        )
        after = wait_reload(http, before, logs, "applied")
        last = after["lastReload"]
        assert last["trigger"] == "file change" and last["errors"] == [], last
        changes = {c["address"]: c for c in last["plan"]["changes"]}
        assert {c["kind"] for c in changes.values()} == {"in place"}, changes
        assert set(changes) == {
            "server.limits",
            "collection Article",
            "Article.property summary",
            "Article.vector short",
            "collection Note",
        }, changes
        assert changes["collection Note"]["action"] == "create" and changes["Article.property summary"]["action"] == "create"
        assert "k1 1.2 → 1.5" in changes["collection Article"]["summary"], changes["collection Article"]
        # The stored objects get the new vector in the background.
        assert last["plan"]["revectorize"] == [{"collection": "Article", "vector": "short"}], last["plan"]
        assert after["revision"] != before["revision"]

        assert last["plan"]["rebuildKeyword"] == ["Article"], last["plan"]  # the new searchable property is backfilled
        after = wait_rebuilds(http, logs)
        progress = {(r["collection"], r["target"], r["kind"]): r for r in after["rebuilds"]}
        assert set(progress) == {("Article", "short", "re-vectorize"), ("Article", "bm25", "bm25")}, after["rebuilds"]
        assert all(r["done"] == r["total"] == N_ARTICLES and r["failed"] == 0 for r in progress.values()), after["rebuilds"]

        article_class = schema_class(http, "Article")
        assert article_class["description"] == "Articles, described anew."
        assert [p["name"] for p in article_class["properties"]] == ["title", "body", "slug", "year", "summary"]
        assert article_class["invertedIndexConfig"]["bm25"] == {"k1": 1.5, "b": 0.7}
        assert article_class["invertedIndexConfig"]["stopwords"]["additions"] == ["filed"]
        assert sorted(article_class["vectorConfig"]) == ["short", "text"]
        assert article_class["vectorConfig"]["short"]["vectorizer"]["text2vec-hash"]["dimensions"] == 64
        assert schema_class(http, "Note")["class"] == "Note"

        # server.limits is read per request: a Get without a limit now returns 7.
        assert len(hits(http, "{ Get { Article { title } } }", logs)) == 7
        # The new named vector was computed for the stored objects in the background.
        found = hits(
            http,
            '{ Get { Article(nearText: {concepts: ["article 3 about w003x topics"], targetVectors: ["short"]}, limit: 1) { title } } }',
            logs,
        )
        assert found == [{"title": ARTICLES[3]["properties"]["title"]}], found
        # The default vector still answers unnamed queries.
        found = hits(http, '{ Get { Article(nearText: {concepts: ["article 5 about w005x topics"]}, limit: 1) { title } } }', logs)
        assert found == [{"title": ARTICLES[5]["properties"]["title"]}], found
        # New collection and new property take writes; the new property is searchable.
        batch(http, [{"class": "Note", "properties": {"text": "a note"}}])
        batch(http, [{**article(99), "properties": {**article(99)["properties"], "summary": "zsummaryword here"}}])
        found = hits(http, '{ Get { Article(bm25: {query: "zsummaryword", properties: ["summary"]}) { title } } }', logs)
        assert found == [{"title": article(99)["properties"]["title"]}], found
        # Nothing stored was lost or changed.
        assert get_object(http, "Article", ARTICLES[0]["id"])["properties"] == ARTICLES[0]["properties"]
        assert len(list_all_ids(http, "Article", 1000, logs)) == N_ARTICLES + 1


def test_newly_searchable_property_is_backfilled_into_bm25(tmp_path: Path, start_server: StartServer) -> None:
    server, config = start_base(tmp_path, start_server)
    logs = server.logs
    with client(server) as http:
        body = gql(http, '{ Get { Article(bm25: {query: "zslug007", properties: ["slug"]}) { title } } }', logs)
        assert body.get("errors") and "not a searchable property" in body["errors"][0]["message"], body
        assert hits(http, '{ Get { Article(bm25: {query: "zslug007"}) { title } } }', logs) == []

        before = status(http)
        edit(config, ("{name: slug, type: TEXT, indexSearchable: false}", "{name: slug, type: TEXT}"))
        last = wait_reload(http, before, logs, "applied")["lastReload"]
        assert [(c["kind"], c["address"]) for c in last["plan"]["changes"]] == [("in place", "Article.property slug")], last["plan"]
        assert last["plan"]["rebuildKeyword"] == ["Article"], last["plan"]
        after = wait_rebuilds(http, logs)
        (progress,) = after["rebuilds"]
        assert (progress["target"], progress["kind"], progress["done"], progress["total"]) == ("bm25", "bm25", N_ARTICLES, N_ARTICLES), (
            progress
        )

        expected = [{"title": ARTICLES[7]["properties"]["title"]}]
        assert hits(http, '{ Get { Article(bm25: {query: "zslug007", properties: ["slug"]}) { title } } }', logs) == expected
        assert hits(http, '{ Get { Article(bm25: {query: "zslug007"}) { title } } }', logs) == expected
        # The other properties' postings survived the rebuild.
        found = hits(http, '{ Get { Article(bm25: {query: "w012x"}) { title } } }', logs)
        assert found == [{"title": ARTICLES[12]["properties"]["title"]}], found


# -- invalid configs ------------------------------------------------------------------------


def test_invalid_config_keeps_the_old_one_serving_and_reports_where(tmp_path: Path, start_server: StartServer) -> None:
    server, config = start_base(tmp_path, start_server)
    logs = server.logs
    query = '{ Get { Article(bm25: {query: "w004x"}) { title year } } }'
    expected = [{"title": ARTICLES[4]["properties"]["title"], "year": 2004}]
    with client(server) as http:
        first = status(http)

        # 1. Broken YAML syntax.
        text = edit(config, ("      - {name: year, type: INT}\n", "      - {name: year, type: INT\n"))
        now = wait_reload(http, first, logs, "invalid")
        assert now["lastReload"]["trigger"] == "file change", now
        assert now["revision"] == first["revision"] and now["lastReload"]["revision"] == first["revision"], now
        lines = error_location(now["lastReload"]["errors"], config)
        broken = line_of(text, "{name: year, type: INT")
        assert lines and all(broken <= n <= broken + 2 for n in lines), (lines, broken, now["lastReload"]["errors"])
        assert hits(http, query, logs) == expected  # the old schema answers
        assert [p["name"] for p in schema_class(http, "Article")["properties"]] == ["title", "body", "slug", "year"]

        # 2. Valid YAML, invalid against the JSON Schema: the error names the line of the bad value.
        text = edit(config, ("      - {name: year, type: INT\n", "      - {name: year, type: INTEGER}\n"))
        now = wait_reload(http, now, logs, "invalid")
        assert error_location(now["lastReload"]["errors"], config) == [line_of(text, "type: INTEGER")], now["lastReload"]["errors"]
        assert "INTEGER" in now["lastReload"]["errors"][0]
        assert hits(http, query, logs) == expected

        # 3. Schema-valid, semantically wrong (a textField that is not TEXT): caught by the compiler, same shape.
        text = edit(config, ("type: INTEGER}", "type: INT}"), ("textFields: [title, body]", "textFields: [title, year]"))
        now = wait_reload(http, now, logs, "invalid")
        errors = now["lastReload"]["errors"]
        assert error_location(errors, config) == [line_of(text, "textFields: [title, year]")], errors
        assert "year" in now["lastReload"]["errors"][0]
        assert now["revision"] == first["revision"]
        assert hits(http, query, logs) == expected

        # 4. Fixed: applied, and the error is gone from the status.
        edit(config, ("textFields: [title, year]", "textFields: [title, body]"), ("Articles for the reload tests.", "Articles, fixed."))
        now = wait_reload(http, now, logs, "applied")
        assert now["lastReload"]["errors"] == [] and now["revision"] != first["revision"], now
        assert schema_class(http, "Article")["description"] == "Articles, fixed."
        assert hits(http, query, logs) == expected


# -- destructive -------------------------------------------------------------------------------


def test_destructive_change_is_refused_until_allowed(tmp_path: Path, start_server: StartServer) -> None:
    server, config = start_base(tmp_path, start_server)
    logs = server.logs
    obj = ARTICLES[2]
    with client(server) as http:
        first = status(http)
        edit(config, ("      - {name: year, type: INT}\n", ""))
        now = wait_reload(http, first, logs, "refused")
        last = now["lastReload"]
        assert last["trigger"] == "file change", last
        (message,) = last["errors"]
        assert "Article.property year: property removed" in message, message
        assert f"would drop the 'year' values of {N_ARTICLES} objects" in message, message
        assert "allowDestructive" in message and "--allow-destructive" in message, message
        assert [(c["kind"], c["address"]) for c in last["plan"]["changes"]] == [("destructive", "Article.property year")]
        assert now["revision"] == first["revision"]
        # Data intact, schema unchanged, year still filterable.
        assert get_object(http, "Article", obj["id"])["properties"] == obj["properties"]
        assert "year" in [p["name"] for p in schema_class(http, "Article")["properties"]]
        found = hits(http, '{ Get { Article(where: {path: ["year"], operator: Equal, valueInt: 2002}) { title } } }', logs)
        assert sorted(h["title"] for h in found) == sorted(a["properties"]["title"] for a in ARTICLES if a["properties"]["year"] == 2002)

        # The same through POST /v1/config/reload: 409 with Weaviate's error body.
        response = http.post("/v1/config/reload")
        assert response.status_code == 409, response.text
        body = response.json()
        assert body["result"] == "refused" and body["trigger"] == "POST /v1/config/reload", body
        assert "Article.property year" in body["error"][0]["message"], body
        assert status(http)["lastReload"]["trigger"] == "POST /v1/config/reload"
        assert get_object(http, "Article", obj["id"])["properties"]["year"] == obj["properties"]["year"]

        # Allowed in the config: applied, and the values are gone.
        before = status(http)
        edit(config, ("host: 127.0.0.1\n", "host: 127.0.0.1\n  reload: {allowDestructive: true}\n"))
        now = wait_reload(http, before, logs, "applied")
        kinds = {(c["kind"], c["address"]) for c in now["lastReload"]["plan"]["changes"]}
        assert ("destructive", "Article.property year") in kinds, kinds
        assert now["revision"] != first["revision"]
        assert get_object(http, "Article", obj["id"])["properties"] == {k: v for k, v in obj["properties"].items() if k != "year"}
        assert "year" not in [p["name"] for p in schema_class(http, "Article")["properties"]]
        body = gql(http, '{ Get { Article(where: {path: ["year"], operator: Equal, valueInt: 2002}) { title } } }', logs)
        assert body.get("errors"), body

        # Declaring it again gives an empty property: the values were dropped, not hidden.
        before = status(http)
        edit(
            config,
            (
                "      - {name: slug, type: TEXT, indexSearchable: false}\n",
                "      - {name: slug, type: TEXT, indexSearchable: false}\n      - {name: year, type: INT}\n",
            ),
        )
        wait_reload(http, before, logs, "applied")
        assert "year" not in get_object(http, "Article", obj["id"])["properties"]
        assert len(list_all_ids(http, "Article", 1000, logs)) == N_ARTICLES  # no object lost


# -- re-vectorize ---------------------------------------------------------------------------


def test_revectorized_vectors_equal_a_fresh_import(tmp_path: Path, start_server: StartServer) -> None:
    server, config = start_base(tmp_path, start_server)
    logs = server.logs
    with client(server) as http:
        before = status(http)
        edit(config, ("dimensions: 256", "dimensions: 128"))
        last = wait_reload(http, before, logs, "applied")["lastReload"]
        (change,) = last["plan"]["changes"]
        assert (change["kind"], change["action"], change["address"]) == ("re-vectorize", "replace", "Article.vector text"), change
        assert "dimensions 256 → 128" in change["summary"], change
        assert last["plan"]["revectorize"] == [{"collection": "Article", "vector": "text"}]
        (progress,) = wait_rebuilds(http, logs)["rebuilds"]
        assert progress["kind"] == "re-vectorize" and progress["done"] == progress["total"] == N_ARTICLES and progress["failed"] == 0, (
            progress
        )
        assert schema_class(http, "Article")["vectorConfig"]["text"]["vectorizer"]["text2vec-hash"]["dimensions"] == 128
        rebuilt = {a["id"]: get_object(http, "Article", a["id"], vector=True) for a in ARTICLES}

    fresh_config = tmp_path / "fresh" / "searchd.yaml"
    fresh_config.parent.mkdir()
    fresh_config.write_text(replaced(BASE, ("dimensions: 256", "dimensions: 128")), encoding="utf-8")
    fresh = start_server(fresh_config, tmp_path / "fresh-data", "--load", str(tmp_path / "objects.jsonl"))
    with client(fresh) as http:
        for object_id, obj in rebuilt.items():
            want = get_object(http, "Article", object_id, vector=True)
            assert set(obj["vectors"]) == {"text"}, obj["vectors"].keys()  # no staging vector leaks out
            assert len(obj["vector"]) == 128
            np.testing.assert_allclose(obj["vector"], want["vector"], atol=1e-6, err_msg=object_id)

    # The index follows: the nearest neighbour of each stored vector is its own object.
    with client(server) as http:
        for object_id in list(rebuilt)[:10]:
            vector = json.dumps(rebuilt[object_id]["vector"])
            found = hits(
                http, f"{{ Get {{ Article(nearVector: {{vector: {vector}}}, limit: 1) {{ _additional {{ id distance }} }} }} }}", logs
            )
            assert found[0]["_additional"]["id"] == object_id and abs(found[0]["_additional"]["distance"]) < 1e-5, found

        # An index type / distance change is in the re-vectorize class too: the index is rebuilt from stored vectors.
        before = status(http)
        edit(config, ("index: {type: hnsw, distance: cosine}", "index: {type: flat, distance: l2-squared}"))
        last = wait_reload(http, before, logs, "applied")["lastReload"]
        assert [c["kind"] for c in last["plan"]["changes"]] == ["re-vectorize"], last["plan"]
        assert last["plan"]["reindex"] == [{"collection": "Article", "vector": "text"}] and last["plan"]["revectorize"] == []
        (progress,) = wait_rebuilds(http, logs)["rebuilds"]
        assert progress["kind"] == "reindex", progress
        assert schema_class(http, "Article")["vectorConfig"]["text"]["vectorIndexConfig"]["distance"] == "l2-squared"
        a, b = ARTICLES[0]["id"], ARTICLES[1]["id"]
        query = json.dumps(rebuilt[a]["vector"])
        found = hits(
            http, f"{{ Get {{ Article(nearVector: {{vector: {query}}}, limit: {N_ARTICLES}) {{ _additional {{ id distance }} }} }} }}", logs
        )
        distances = {h["_additional"]["id"]: h["_additional"]["distance"] for h in found}
        l2 = float(np.sum((np.asarray(rebuilt[a]["vector"]) - np.asarray(rebuilt[b]["vector"])) ** 2))
        assert distances[a] == pytest.approx(0.0, abs=1e-5) and distances[b] == pytest.approx(l2, rel=1e-4), distances
        # The stored vectors themselves did not change.
        assert get_object(http, "Article", b, vector=True)["vector"] == pytest.approx(rebuilt[b]["vector"], abs=1e-7)


# -- concurrent load ------------------------------------------------------------------------------


class BoundedLoad(threading.Thread):
    """Requests in a loop bounded by ``max_seconds`` (and the subclass's own count); records every failure."""

    def __init__(self, base_url: str, max_seconds: float = 60.0) -> None:
        super().__init__(name=f"reload-{type(self).__name__}", daemon=True)
        self.base_url = base_url
        self.deadline = time.monotonic() + max_seconds
        self.stop_requested = threading.Event()
        self.failures: list[str] = []

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=DEADLINE_S, trust_env=False) as http:
                while not self.stop_requested.is_set() and time.monotonic() < self.deadline and self.step(http):
                    pass
        except BaseException:  # noqa: BLE001  (an exception escaping a thread would be lost)
            self.failures.append(traceback.format_exc())

    def step(self, http: httpx.Client) -> bool:
        """One request; False once the loop's own bound is reached."""
        raise NotImplementedError


class QueryLoad(BoundedLoad):
    """GraphQL queries in a bounded loop; records every failed or wrongly shaped answer."""

    QUERIES = (
        "{ Get { Article(limit: 5) { title year _additional { id } } } }",
        '{ Get { Article(bm25: {query: "article"}, limit: 5) { title year _additional { id } } } }',
        '{ Get { Article(nearText: {concepts: ["article about topics"]}, limit: 5) { title year _additional { id } } } }',
        '{ Get { Article(hybrid: {query: "article topics"}, limit: 5) { title year _additional { id } } } }',
        '{ Get { Article(where: {path: ["year"], operator: GreaterThanEqual, valueInt: 2000}, limit: 5) { title year _additional { id } } } }',
    )

    def __init__(self, base_url: str, max_requests: int = 20_000) -> None:
        super().__init__(base_url)
        self.max_requests = max_requests
        self.sent = 0

    def step(self, http: httpx.Client) -> bool:
        query = self.QUERIES[self.sent % len(self.QUERIES)]
        self.sent += 1
        try:
            response = http.post("/v1/graphql", json={"query": query})
        except httpx.TransportError as exc:
            self.failures.append(f"{query}: {exc!r}")
        else:
            if problem := self._check(response):
                self.failures.append(f"{query}: {problem}")
        return self.sent < self.max_requests

    @staticmethod
    def _check(response: httpx.Response) -> str | None:
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        body = response.json()
        if body.get("errors"):
            return f"errors {body['errors']}"
        found = body["data"]["Get"]["Article"]
        if len(found) != 5:
            return f"{len(found)} hits, not 5"
        for hit in found:
            if set(hit) != {"title", "year", "_additional"} or not isinstance(hit["title"], str) or not isinstance(hit["year"], int):
                return f"wrongly shaped hit {hit}"
            if set(hit["_additional"]) != {"id"} or not isinstance(hit["_additional"]["id"], str):
                return f"wrongly shaped _additional {hit['_additional']}"
        return None


class WriteLoad(BoundedLoad):
    """Batches of 4 new articles in a bounded loop; records every failed batch and every acknowledged id."""

    def __init__(self, base_url: str, max_batches: int = 2_000) -> None:
        super().__init__(base_url)
        self.max_batches = max_batches
        self.batches = 0
        self.acknowledged: list[str] = []

    def step(self, http: httpx.Client) -> bool:
        objects = [article(1_000 + 4 * self.batches + k) for k in range(4)]
        self.batches += 1
        response = http.post("/v1/batch/objects", json={"objects": objects})
        statuses = [r.get("result", {}).get("status") for r in response.json()] if response.status_code == 200 else []
        if statuses != ["SUCCESS"] * 4:
            self.failures.append(f"HTTP {response.status_code}: {response.text[:300]}")
        else:
            self.acknowledged.extend(o["id"] for o in objects)
        time.sleep(0.01)  # leave the server time for the reloads
        return self.batches < self.max_batches


def queries_since(load: QueryLoad, sent: int) -> Callable[[dict[str, Any]], bool]:
    return lambda _: load.sent > sent + 5 or not load.is_alive()


def test_reloads_under_concurrent_query_load_fail_no_request(tmp_path: Path, start_server: StartServer) -> None:
    server, config = start_base(tmp_path, start_server)
    logs = server.logs
    # Every change class, including re-vectorizations whose swap changes the dimensions under in-flight nearText queries.
    edits: list[tuple[tuple[tuple[str, str], ...], str]] = [
        ((("bm25: {k1: 1.2, b: 0.75}", "bm25: {k1: 1.4, b: 0.75}"),), "applied"),
        ((("Articles for the reload tests.", "Articles under load."),), "applied"),
        (
            (("      - {name: year, type: INT}\n", "      - {name: year, type: INT}\n      - {name: summary, type: TEXT}\n"),),
            "applied",
        ),  # BM25 backfill
        ((("bm25: {k1: 1.4, b: 0.75}", "bm25: {k1: 1.4, b: 0.75"),), "invalid"),
        ((("bm25: {k1: 1.4, b: 0.75", "bm25: {k1: 1.2, b: 0.6}"),), "applied"),
        ((("{name: slug, type: TEXT, indexSearchable: false}", "{name: slug, type: TEXT}"),), "applied"),  # BM25 rebuild
        (
            (("index: {type: hnsw, distance: cosine}", "index: {type: flat, distance: cosine}"),),
            "applied",
        ),  # vector index rebuilt and swapped
        ((("dimensions: 256, textFields: [title, body]", "dimensions: 128, textFields: [title, body]"),), "applied"),  # re-vectorized
        ((("dimensions: 128, textFields: [title, body]", "dimensions: 256, textFields: [title, body]"),), "applied"),  # and back
        ((("      - {name: summary, type: TEXT}\n", ""),), "refused"),
        ((("Articles under load.", "Articles after the load."),), "refused"),  # still refused: summary
    ]
    load, writes = QueryLoad(server.url), WriteLoad(server.url)
    with client(server) as http:
        load.start()
        writes.start()
        try:
            for changes, result in edits:
                sent_before, before = load.sent, status(http)
                edit(config, *changes)
                wait_reload(http, before, logs, result)
                wait_rebuilds(http, logs)
                # Some queries ran across this reload (bounded wait: the loop is never idle for long).
                wait_status(http, queries_since(load, sent_before), "queries during the reload", logs)
        finally:
            load.stop_requested.set()
            writes.stop_requested.set()
            load.join(timeout=DEADLINE_S)
            writes.join(timeout=DEADLINE_S)
        assert not load.is_alive() and not writes.is_alive()
        assert load.sent > 2 * len(edits), load.sent
        assert not load.failures, f"{len(load.failures)} of {load.sent} queries failed; first: {load.failures[:5]}\n{logs()}"
        assert not writes.failures, f"{len(writes.failures)} batches failed; first: {writes.failures[:5]}\n{logs()}"
        # Every acknowledged write is stored with a vector of the final settings, in the index that serves them.
        assert len(writes.acknowledged) > len(edits), len(writes.acknowledged)
        assert set(writes.acknowledged) <= list_all_ids(http, "Article", N_ARTICLES + len(writes.acknowledged), logs)
        for object_id in writes.acknowledged[:: max(1, len(writes.acknowledged) // 25)]:
            vector = get_object(http, "Article", object_id, vector=True)["vector"]
            assert len(vector) == 256, (object_id, len(vector))
            found = hits(http, f"{{ Get {{ Article(nearVector: {{vector: {json.dumps(vector)}}}, limit: 1) {{ _additional {{ id distance }} }} }} }}", logs)
            assert found[0]["_additional"]["id"] == object_id and abs(found[0]["_additional"]["distance"]) < 1e-5, (object_id, found)


# -- how files change: renames, ConfigMap symlink swaps, unrelated files ---------------------------------


def configmap_update(mount: Path, version: str, text: str) -> None:
    """What the kubelet does to a ConfigMap volume: a new timestamped directory, then an atomic swap of ``..data``."""
    previous = os.readlink(mount / "..data") if (mount / "..data").is_symlink() else None
    (mount / version).mkdir()
    (mount / version / "searchd.yaml").write_text(text, encoding="utf-8")
    (mount / "..data_tmp").symlink_to(version)
    os.replace(mount / "..data_tmp", mount / "..data")
    if previous is not None:
        shutil.rmtree(mount / previous)


def test_the_watcher_follows_renames_configmap_swaps_and_ignores_unrelated_files(tmp_path: Path, start_server: StartServer) -> None:
    # A file config mounted the way Kubernetes mounts a ConfigMap: searchd.yaml -> ..data/searchd.yaml, ..data -> ..v1
    mount = tmp_path / "mount"
    mount.mkdir()
    configmap_update(mount, "..v1", BASE)
    (mount / "searchd.yaml").symlink_to("..data/searchd.yaml")
    server = start_server(mount / "searchd.yaml", tmp_path / "data", "--load", str(write_jsonl(tmp_path / "objects.jsonl", ARTICLES)))
    logs = server.logs
    with client(server) as http:
        text = BASE
        # Two ConfigMap updates in a row: each is applied (the second one swaps away from a path never given at start).
        for version, description in (("..v2", "Articles from ConfigMap v2."), ("..v3", "Articles from ConfigMap v3.")):
            before = status(http)
            text = replaced(text, (text.split("description: ")[1].split("\n")[0], description))
            configmap_update(mount, version, text)
            wait_reload(http, before, logs, "applied")
            assert schema_class(http, "Article")["description"] == description

    # A save by rename (what vim, IDEs and `git checkout` do) onto a plain config file.
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "searchd.yaml").write_text(BASE, encoding="utf-8")
    server_b = start_server(plain / "searchd.yaml", tmp_path / "data-b")
    with client(server_b) as http:
        before = status(http)
        staged = plain / ".searchd.yaml.swp-new"
        staged.write_text(replaced(BASE, ("Articles for the reload tests.", "Saved by rename.")), encoding="utf-8")
        os.replace(staged, plain / "searchd.yaml")
        now = wait_reload(http, before, server_b.logs, "applied")
        assert schema_class(http, "Article")["description"] == "Saved by rename."
        # Files beside the config that it does not consist of: no reload at all, then a real edit is the next one.
        # (No sleep to wait for "nothing": the edit's reload, handled after the noise's events, is the one reload logged.)
        reloads_before = server_b.logs().count("config reload (file change)")
        (plain / "notes.txt").write_text("not config", encoding="utf-8")
        (plain / "other.yaml.bak").write_text("collections: []", encoding="utf-8")
        edit(plain / "searchd.yaml", ("Saved by rename.", "Edited after the noise."))
        after = wait_reload(http, now, server_b.logs, "applied")
        assert after["lastReload"]["trigger"] == "file change"
        deadline = time.monotonic() + DEADLINE_S  # the status is recorded just before the line is logged
        while server_b.logs().count("config reload (file change)") <= reloads_before and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert server_b.logs().count("config reload (file change)") == reloads_before + 1, server_b.logs()
        assert schema_class(http, "Article")["description"] == "Edited after the noise."


# -- SIGHUP --------------------------------------------------------------------------------------------


def test_sighup_triggers_a_reload(tmp_path: Path, start_server: StartServer) -> None:
    text = replaced(BASE, ("host: 127.0.0.1\n", "host: 127.0.0.1\n  reload: {watch: false}\n"))
    server, config = start_base(tmp_path, start_server, text)
    logs = server.logs
    with client(server) as http:
        before = status(http)
        edit(config, ("Articles for the reload tests.", "Articles, after SIGHUP."))
        os.kill(server.process.pid, signal.SIGHUP)
        now = wait_reload(http, before, logs, "applied")
        assert now["lastReload"]["trigger"] == "SIGHUP", now["lastReload"]
        assert schema_class(http, "Article")["description"] == "Articles, after SIGHUP."
        assert server.process.poll() is None
        assert "config reload (SIGHUP): applied" in logs()


# -- remote re-vectorization: writes during it, and a crash in the middle -----------------------------

JINA = """\
server:
  host: 127.0.0.1
modules:
  text2vec-jinaai: {{baseURL: "{url}", batchSize: 64, maxConcurrency: 1, maxRetries: 0}}
collections:
  - name: Doc
    properties:
      - {{name: title, type: TEXT}}
    vectors:
      text:
        vectorizer: {{module: text2vec-jinaai, model: jina-embeddings-v3, dimensions: 256, textFields: [title]}}
        index: {{type: flat, distance: cosine}}
"""
# The import runs with batchSize 64; the edit that starts a rebuild also sets batchSize 4 (an in-place module
# change), so the rebuild sends many small, slowed-down requests: long enough to write to, or kill, mid-way.
SLOW_REBUILD = ("batchSize: 64", "batchSize: 4")
REBUILD_LATENCY_S = 0.02


def doc(i: int, prefix: str = "1") -> dict[str, Any]:
    # Existing docs sort after the ids of docs written during the rebuild ("0..."), so the rebuild's cursor never meets those.
    return {
        "class": "Doc",
        "id": f"{prefix}0000000-0000-4000-8000-{i:012d}",
        "properties": {"title": f"doc {prefix}{i} on {prefix}t{i:04d}q"},
    }


def expected_jina(title: str, dims: int) -> np.ndarray:
    return truncate_dims(text_vector(title, 1024, salt="retrieval.passage"), dims)


def passage_inputs(requests: list[Any], dims: int) -> list[list[str]]:
    """The inputs of each document-embedding request with ``dimensions`` (queries use another task)."""
    return [
        list(r.body["input"])
        for r in requests
        if isinstance(r.body, dict) and r.body.get("task") == "retrieval.passage" and r.body.get("dimensions") == dims
    ]


@pytest.fixture
def jina(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeJina, str]]:
    monkeypatch.setenv("JINAAI_APIKEY", "test-key")  # read by the server children (child_env copies os.environ)
    fake = FakeJina()
    with serving(fake.app) as url:
        yield fake, url


def start_jina(tmp_path: Path, start_server: StartServer, url: str, count: int) -> tuple[Server, Path, list[dict[str, Any]]]:
    docs = [doc(i) for i in range(count)]
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(JINA.format(url=url), encoding="utf-8")
    server = start_server(config, tmp_path / "data", "--load", str(write_jsonl(tmp_path / "docs.jsonl", docs)))
    return server, config, docs


def running_rebuild(now: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in now["rebuilds"] if r["state"] == "running"), None)


def test_writes_during_a_slow_revectorization_land_in_both(tmp_path: Path, start_server: StartServer, jina: tuple[FakeJina, str]) -> None:
    fake, url = jina
    server, config, docs = start_jina(tmp_path, start_server, url, 120)
    logs = server.logs
    written = [doc(i, prefix="0") for i in range(6)]
    with client(server) as http:
        fake.latency = REBUILD_LATENCY_S
        before = status(http)
        edit(config, ("dimensions: 256", "dimensions: 128"), SLOW_REBUILD)
        now = wait_reload(http, before, logs, "applied")
        progress = running_rebuild(now)
        assert progress is not None and progress["kind"] == "re-vectorize" and progress["total"] == len(docs), now["rebuilds"]

        # Written while the rebuild runs: the old vectorizer serves them now, the new one is staged for the swap.
        batch(http, written)
        assert running_rebuild(status(http)) is not None, "the rebuild ended before the write was acknowledged: make it slower"
        for obj in written:
            title = obj["properties"]["title"]
            found = hits(http, f'{{ Get {{ Doc(nearText: {{concepts: ["{title}"]}}, limit: 1) {{ title }} }} }}', logs, "Doc")
            assert found == [{"title": title}], (title, found)

        (progress,) = wait_rebuilds(http, logs)["rebuilds"]
        assert progress["done"] == progress["total"] == len(docs) and progress["failed"] == 0, progress
        assert schema_class(http, "Doc")["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"]["dimensions"] == 128
        for obj in [*written, *docs[:5]]:
            got = get_object(http, "Doc", obj["id"], vector=True)
            assert set(got["vectors"]) == {"text"}, got["vectors"].keys()
            np.testing.assert_allclose(got["vector"], expected_jina(obj["properties"]["title"], 128), atol=1e-5, err_msg=obj["id"])
            title = obj["properties"]["title"]
            found = hits(http, f'{{ Get {{ Doc(nearText: {{concepts: ["{title}"]}}, limit: 1) {{ title }} }} }}', logs, "Doc")
            assert found == [{"title": title}], (title, found)
        assert len(list_all_ids(http, "Doc", 1000, logs)) == len(docs) + len(written)

    # Each written doc went to both vectorizers: the serving one (256) and the rebuild's (128).
    sent_old = {t for inputs in passage_inputs(fake.requests, 256) for t in inputs}
    sent_new = [t for inputs in passage_inputs(fake.requests, 128) for t in inputs]
    for obj in written:
        assert obj["properties"]["title"] in sent_old
    # Every doc was embedded once for the new vectors: nothing twice (the cache), nothing skipped.
    assert sorted(sent_new) == sorted(o["properties"]["title"] for o in [*docs, *written])

    # Back to the old dimensions: re-vectorized from the embedding cache, without a single document request.
    with client(server) as http:
        sent_before, before = len(fake.requests), status(http)
        edit(config, ("dimensions: 128", "dimensions: 256"))
        wait_reload(http, before, logs, "applied")
        (progress,) = wait_rebuilds(http, logs)["rebuilds"]
        assert progress["done"] == len(docs) + len(written), progress
        got = get_object(http, "Doc", written[0]["id"], vector=True)["vector"]
        np.testing.assert_allclose(got, expected_jina(written[0]["properties"]["title"], 256), atol=1e-5)
    assert passage_inputs(fake.requests[sent_before:], 256) == []


def staged_in(data_dir: Path) -> set[str]:
    """Ids of Doc objects with a staged ``text#…`` vector, read from the store (SQLite, or the test's PostgreSQL database)."""
    url = os.environ.get("SEARCHD_DATABASE_URL")
    if url:
        with psycopg.connect(url) as pg:
            ((tag,),) = pg.execute("SELECT tag FROM searchd_collections WHERE name = 'Doc'").fetchall()
            ((staging,),) = pg.execute("SELECT tag FROM searchd_vector_tables WHERE collection = 'Doc' AND name LIKE 'text#%%'").fetchall()
            return {row[0] for row in pg.execute(f"SELECT o.id FROM searchd_v{staging} AS v JOIN searchd_o{tag} AS o ON o.doc = v.doc")}
    with contextlib.closing(sqlite3.connect(f"file:{data_dir / 'objects.sqlite3'}?mode=ro", uri=True)) as db:
        ((tag,),) = db.execute("SELECT tag FROM collections WHERE name = 'Doc'").fetchall()
        ((staging,),) = db.execute("SELECT tag FROM vector_tables WHERE collection = 'Doc' AND name LIKE 'text#%'").fetchall()
        return {row[0] for row in db.execute(f"SELECT o.id FROM v{staging} AS v JOIN o{tag} AS o ON o.doc = v.doc")}


def test_sigkill_during_revectorization_resumes_at_the_next_start(
    tmp_path: Path, start_server: StartServer, jina: tuple[FakeJina, str]
) -> None:
    fake, url = jina
    count = 600  # three re-vectorization steps of up to 256 objects, embedded side by side through one provider slot
    server, config, docs = start_jina(tmp_path, start_server, url, count)
    logs = server.logs
    with client(server) as http:
        fake.latency = REBUILD_LATENCY_S
        before = status(http)
        first_request = len(fake.requests)
        edit(config, ("dimensions: 256", "dimensions: 128"), SLOW_REBUILD)
        wait_reload(http, before, logs, "applied")
        # Kill once a step is staged, while the others are being embedded.
        at_kill = wait_status(http, lambda s: 0 < (running_rebuild(s) or {}).get("done", 0) < count, "a step staged", logs)
        os.kill(server.process.pid, signal.SIGKILL)
        assert server.process.wait(timeout=10) == -signal.SIGKILL
    assert running_rebuild(at_kill) is not None, at_kill["rebuilds"]
    # What the killed run left staged, read from the store it left behind.
    staged_ids = staged_in(tmp_path / "data")
    staged_titles = {d["properties"]["title"] for d in docs if d["id"] in staged_ids}
    assert 0 < len(staged_titles) < count, len(staged_titles)
    first_run = passage_inputs(fake.requests[first_request:], 128)
    assert staged_titles <= {t for inputs in first_run for t in inputs}
    second_request = len(fake.requests)

    second = start_server(config, tmp_path / "data")
    logs = second.logs
    with client(second) as http:
        now = wait_rebuilds(http, logs)
        assert now["lastReload"]["trigger"] == "start" and now["lastReload"]["result"] == "applied", now["lastReload"]
        assert now["lastReload"]["plan"]["revectorize"] == [{"collection": "Doc", "vector": "text"}], now["lastReload"]["plan"]
        (progress,) = now["rebuilds"]
        assert progress["state"] == "done" and progress["done"] == progress["total"] == count and progress["failed"] == 0, progress
        assert schema_class(http, "Doc")["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"]["dimensions"] == 128
        assert list_all_ids(http, "Doc", 1000, logs) == {d["id"] for d in docs}  # no object lost
        for obj in docs:
            got = get_object(http, "Doc", obj["id"], vector=True)
            assert len(got["vector"]) == 128 and set(got["vectors"]) == {"text"}, obj["id"]
            np.testing.assert_allclose(got["vector"], expected_jina(obj["properties"]["title"], 128), atol=1e-5, err_msg=obj["id"])

    # The resumed run sent only what was not staged before the kill.
    second_run = passage_inputs(fake.requests[second_request:], 128)
    resent = {t for inputs in second_run for t in inputs}
    assert not resent & staged_titles, sorted(resent & staged_titles)[:5]
    # (A step killed between its embedding and its staging is in the embedding cache: not sent again either.)
    assert resent <= {d["properties"]["title"] for d in docs} - staged_titles
    full_redo = math.ceil(count / 4)
    assert len(second_run) < full_redo, (len(second_run), full_redo)
