"""The reload API in process: POST /v1/config/reload, GET /v1/config/status, and the start path.

Servers run through TestClient with the file watcher off (``server.reload.watch: false``),
so each reload happens exactly when a test asks for it.  The end-to-end behaviour
(the watcher, SIGHUP, a real process killed mid-rebuild) is in test_reload_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from searchd.config import load_spec
from searchd.config.revision import revision
from searchd.errors import ConfigChanged, ConfigRefused
from searchd.modules import default_registry
from searchd.server import open_services
from searchd.server.app import Services
from searchd.storage import Store, StoredObject
from tests.conftest import BACKENDS, ClientFactory
from tests.fakes import FakeJina, serving

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

DEADLINE_S = 30.0

CONFIG = """\
server:
  reload: {watch: false}
collections:
  - name: Article
    description: Articles.
    properties:
      - {name: title, type: TEXT}
      - {name: year, type: INT}
    vectors:
      text:
        vectorizer: {module: text2vec-hash, dimensions: 64, textFields: [title]}
        index: {type: flat, distance: cosine}
  - name: Note
    properties:
      - {name: text, type: TEXT}
"""

ARTICLES: list[dict[str, Any]] = [
    {"class": "Article", "id": f"20000000-0000-4000-8000-{i:012d}", "properties": {"title": f"article {i} on a{i:03d}z", "year": 1990 + i}}
    for i in range(12)
]
NOTES: list[dict[str, Any]] = [{"class": "Note", "properties": {"text": f"note {i}"}} for i in range(3)]


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config" / "searchd.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(CONFIG, encoding="utf-8")
    return path


def edit(path: Path, *edits: tuple[str, str]) -> str:
    text = path.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, f"edit does not match the config exactly once: {old!r}"
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return text


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def started(client_factory: ClientFactory, config: Path, objects: list[dict[str, Any]] | None = None) -> TestClient:
    client = client_factory(config)
    payload = ARTICLES + NOTES if objects is None else objects
    response = client.post("/v1/batch/objects", json={"objects": payload})
    assert response.status_code == 200 and all(r["result"]["status"] == "SUCCESS" for r in response.json()), response.text
    return client


def reload(client: TestClient, expected_status: int) -> dict[str, Any]:
    response = client.post("/v1/config/reload")
    assert response.status_code == expected_status, response.text
    body: dict[str, Any] = response.json()
    return body


def status(client: TestClient) -> dict[str, Any]:
    response = client.get("/v1/config/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def gql(client: TestClient, query: str) -> dict[str, Any]:
    response = client.post("/v1/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def titles(client: TestClient, query: str, cls: str = "Article") -> list[str]:
    body = gql(client, query)
    assert not body.get("errors"), body
    return [hit["title"] for hit in body["data"]["Get"][cls]]


# -- POST /v1/config/reload: applied, unchanged, invalid, refused ---------------------------


def test_reload_unchanged_then_applied_and_status_shows_it(client_factory: ClientFactory, config_path: Path) -> None:
    client = started(client_factory, config_path)
    first = status(client)
    assert first["configPath"] == str(config_path)
    assert first["lastReload"]["trigger"] == "start" and first["lastReload"]["result"] == "applied"
    assert first["revision"] == revision(load_spec(config_path, default_registry())) and first["rebuilds"] == []

    body = reload(client, 200)
    assert body["result"] == "unchanged" and body["plan"]["empty"] is True and body["errors"] == [] and "error" not in body, body
    assert body["trigger"] == "POST /v1/config/reload" and body["revision"] == first["revision"]

    # The revision is a content hash: comments and layout do not change it.
    edit(config_path, ("collections:\n", "# a comment\ncollections:\n"), ("{name: year, type: INT}", "{name: year,   type: INT}"))
    assert reload(client, 200)["result"] == "unchanged"

    edit(config_path, ("description: Articles.", "description: Articles, reloaded."))
    started_at = time.time()
    body = reload(client, 200)
    assert body["result"] == "applied", body
    assert [(c["kind"], c["action"], c["address"]) for c in body["plan"]["changes"]] == [("in place", "update", "collection Article")]
    assert body["plan"]["changes"][0]["summary"] == "description changed"  # descriptions are named, not quoted
    now = status(client)
    assert now["revision"] == body["revision"] == revision(load_spec(config_path, default_registry())) != first["revision"]
    assert now["lastReload"] == {k: v for k, v in body.items() if k != "error"}
    assert started_at - 1 <= now["lastReload"]["at"] <= time.time() + 1 and now["appliedAt"] >= first["appliedAt"]
    assert client.get("/v1/schema/Article").json()["description"] == "Articles, reloaded."


def test_invalid_config_is_422_with_file_and_line_and_changes_nothing(client_factory: ClientFactory, config_path: Path) -> None:
    client = started(client_factory, config_path)
    first = status(client)
    query = '{ Get { Article(bm25: {query: "a003z"}) { title year } } }'

    text = edit(config_path, ("      - {name: year, type: INT}\n", "      - {name: year, type: INT\n"))
    body = reload(client, 422)
    assert body["result"] == "invalid" and body["plan"] is None, body
    (message,) = [e["message"] for e in body["error"]]
    assert message == body["errors"][0]
    match = re.match(rf"{re.escape(str(config_path))}:(\d+):(\d+): ", message)
    broken = next(n for n, line in enumerate(text.splitlines(), 1) if line.endswith("{name: year, type: INT"))
    assert match and broken <= int(match.group(1)) <= broken + 2, (message, broken)
    assert status(client)["lastReload"]["result"] == "invalid" and status(client)["revision"] == first["revision"]
    assert titles(client, query) == ["article 3 on a003z"]

    # Rejected by the compiler (a textField that is not TEXT): the same 422 and error shape.
    text = edit(config_path, ("type: INT\n", "type: INT}\n"), ("textFields: [title]", "textFields: [year]"))
    body = reload(client, 422)
    line = next(n for n, line in enumerate(text.splitlines(), 1) if "textFields: [year]" in line)
    assert body["error"][0]["message"].startswith(f"{config_path}:{line}:"), body
    assert "year" in body["error"][0]["message"]
    assert status(client)["revision"] == first["revision"]
    assert titles(client, query) == ["article 3 on a003z"]
    assert [p["name"] for p in client.get("/v1/schema/Article").json()["properties"]] == ["title", "year"]


def test_destructive_changes_are_409_until_allowed(client_factory: ClientFactory, config_path: Path) -> None:
    client = started(client_factory, config_path)
    first = status(client)
    obj = ARTICLES[4]

    # A changed property type, a removed collection: each named with the data it would drop.
    edit(
        config_path,
        ("{name: year, type: INT}", "{name: year, type: TEXT}"),
        ("  - name: Note\n    properties:\n      - {name: text, type: TEXT}\n", ""),
    )
    body = reload(client, 409)
    assert body["result"] == "refused", body
    (message,) = [e["message"] for e in body["error"]]
    assert "refusing 2 destructive change(s)" in message, message
    assert f"Article.property year: type INT → TEXT; would drop the 'year' values of {len(ARTICLES)} objects" in message, message
    assert f"collection Note: collection removed; would drop {len(NOTES)} objects" in message, message
    assert "server.reload.allowDestructive: true" in message
    assert body["plan"]["counts"]["destructive"] == 2
    assert status(client)["revision"] == first["revision"]
    assert client.get(f"/v1/objects/Article/{obj['id']}").json()["properties"] == obj["properties"]
    assert len(client.get("/v1/objects", params={"class": "Note"}).json()["objects"]) == len(NOTES)

    edit(config_path, ("reload: {watch: false}", "reload: {watch: false, allowDestructive: true}"))
    body = reload(client, 200)
    assert body["result"] == "applied" and body["plan"]["counts"]["destructive"] == 2, body
    assert client.get(f"/v1/objects/Article/{obj['id']}").json()["properties"] == {"title": obj["properties"]["title"]}
    assert client.get("/v1/schema/Note").status_code == 404
    # The new type takes new values; the old ones are gone.
    response = client.post("/v1/batch/objects", json={"objects": [{**obj, "properties": {**obj["properties"], "year": "MCMXCIV"}}]})
    assert response.json()[0]["result"]["status"] == "SUCCESS", response.text
    assert client.get(f"/v1/objects/Article/{obj['id']}").json()["properties"]["year"] == "MCMXCIV"
    # Declaring Note again gives an empty collection.
    edit(config_path, ("collections:\n", "collections:\n  - name: Note\n    properties:\n      - {name: text, type: TEXT}\n"))
    assert reload(client, 200)["result"] == "applied"
    assert client.get("/v1/objects", params={"class": "Note"}).json()["objects"] == []


def test_module_and_server_settings(
    client_factory: ClientFactory, config_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RELOAD_TEST_KEY_A", "key-a-0123456789abcdef")
    monkeypatch.setenv("RELOAD_TEST_KEY_B", "key-b-0123456789abcdef")
    edit(
        config_path, ("collections:\n", 'modules:\n  text2vec-jinaai: {apiKey: "${RELOAD_TEST_KEY_A}", timeoutSeconds: 5}\ncollections:\n')
    )
    client = started(client_factory, config_path)

    edit(
        config_path,
        ("${RELOAD_TEST_KEY_A}", "${RELOAD_TEST_KEY_B}"),
        ("timeoutSeconds: 5", "timeoutSeconds: 9"),
        ("reload: {watch: false}", "reload: {watch: false}\n  port: 18081\n  limits: {queryLimitDefault: 3}"),
    )
    body = reload(client, 200)
    assert body["result"] == "applied", body
    changes = {c["address"]: c for c in body["plan"]["changes"]}
    assert changes["modules.text2vec-jinaai"]["kind"] == "in place"
    assert changes["modules.text2vec-jinaai"]["summary"] == "settings changed (apiKey, timeoutSeconds)"  # names, never values
    assert changes["server.limits"]["kind"] == "in place"
    # The port is bound at start: reported as needing a restart, not applied live.
    assert [c["address"] for c in body["plan"]["restartRequired"]] == ["server.port"], body["plan"]
    assert len(titles(client, "{ Get { Article { title } } }")) == 3  # limits apply at once

    shown = json.dumps(status(client)) + json.dumps(body)
    on_disk = "".join(p.read_bytes().decode("latin-1") for p in tmp_path.rglob("applied/*") if p.is_file())
    for secret in ("key-a-0123456789abcdef", "key-b-0123456789abcdef"):
        assert secret not in shown and secret not in on_disk


# -- re-vectorize: progress, served spec, final revision ---------------------------------------


def test_revectorization_reports_progress_and_ends_on_the_target_revision(
    client_factory: ClientFactory, config_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="searchd.reload")
    client = started(client_factory, config_path)
    before = {a["id"]: client.get(f"/v1/objects/Article/{a['id']}", params={"include": "vector"}).json()["vector"] for a in ARTICLES}
    edit(config_path, ("dimensions: 64", "dimensions: 32"))
    body = reload(client, 200)
    assert body["plan"]["revectorize"] == [{"collection": "Article", "vector": "text"}], body
    services_of(client).config.wait_for_rebuilds()

    now = status(client)
    (progress,) = now["rebuilds"]
    assert progress == {
        "collection": "Article",
        "target": "text",
        "kind": "re-vectorize",
        "state": "done",
        "done": len(ARTICLES),
        "total": len(ARTICLES),
        "failed": 0,
        "ratePerSecond": progress["ratePerSecond"],
        "etaSeconds": None,
        "error": None,
    }
    assert progress["ratePerSecond"] > 0
    # While it ran, the old vector settings were the applied ones; once swapped, the revision is the config's.
    assert body["revision"] != now["revision"] == revision(load_spec(config_path, default_registry()))
    assert "rebuild of Article.text (re-vectorize) done: 12 objects" in caplog.text
    # The log names the revision being applied, not the one still serving while the rebuild runs.
    target = now["revision"]
    assert (
        f"config reload (POST /v1/config/reload): applied revision {target}; rebuilding Article.text in the background"
        f" (serving revision {body['revision']} until done)"
    ) in caplog.messages, caplog.messages
    assert f"config reload (POST /v1/config/reload): applied, revision {body['revision']}" not in caplog.messages
    assert caplog.messages.index(f"serving revision {target}") > caplog.messages.index("rebuild of Article.text (re-vectorize) done: 12 objects")
    for object_id, old in before.items():
        got = client.get(f"/v1/objects/Article/{object_id}", params={"include": "vector"}).json()
        assert len(old) == 64 and len(got["vector"]) == 32 and set(got["vectors"]) == {"text"}
    assert reload(client, 200)["result"] == "unchanged"


@pytest.fixture
def jina(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeJina, str]]:
    monkeypatch.setenv("JINAAI_APIKEY", "test-key")
    fake = FakeJina()
    with serving(fake.app) as url:
        yield fake, url


@dataclass
class SlowRebuild:
    client: TestClient
    config: Path
    count: int
    progress: dict[str, Any]  # the status entry once the rebuild has made progress


def jina_docs(client_factory: ClientFactory, tmp_path: Path, url: str, settings: str, count: int) -> tuple[TestClient, Path]:
    """A server with one jina-embeddings-v3 vector (256 dimensions) over ``count`` stored documents."""
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir()
    config.write_text(
        textwrap.dedent(
            f"""\
            server: {{reload: {{watch: false}}}}
            modules:
              text2vec-jinaai: {{baseURL: "{url}", {settings}}}
            collections:
              - name: Doc
                properties: [{{name: title, type: TEXT}}]
                vectors:
                  text:
                    vectorizer: {{module: text2vec-jinaai, model: jina-embeddings-v3, dimensions: 256}}
                    index: {{type: flat}}
            """
        ),
        encoding="utf-8",
    )
    docs = [{"class": "Doc", "id": f"30000000-0000-4000-8000-{i:012d}", "properties": {"title": f"doc {i}"}} for i in range(count)]
    return started(client_factory, config, docs), config


@pytest.fixture
def slow_rebuild(client_factory: ClientFactory, tmp_path: Path, jina: tuple[FakeJina, str]) -> SlowRebuild:
    """A re-vectorization (jina-embeddings-v3, dimensions 256 → 128) slowed down by the provider, past its first chunk."""
    fake, url = jina
    count = 400  # more than one re-vectorization chunk (256), so progress moves before the end
    client, config = jina_docs(client_factory, tmp_path, url, "batchSize: 64, maxConcurrency: 1", count)
    fake.latency = 0.3  # the second chunk needs 3 requests: about a second
    edit(config, ("dimensions: 256", "dimensions: 128"))
    assert reload(client, 200)["result"] == "applied"
    deadline = time.monotonic() + DEADLINE_S
    while (progress := status(client)["rebuilds"][0])["done"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    return SlowRebuild(client, config, count, progress)


def test_a_revectorization_keeps_the_providers_concurrent_requests_busy(
    client_factory: ClientFactory, tmp_path: Path, jina: tuple[FakeJina, str]
) -> None:
    fake, url = jina
    # One request per 256-object step: only steps embedded side by side fill the 4 allowed requests.
    client, config = jina_docs(client_factory, tmp_path, url, "batchSize: 256, maxConcurrency: 4", 1024)
    fake.reset()
    fake.hold(4)  # answered once four are in flight: only steps embedded side by side get there
    edit(config, ("dimensions: 256", "dimensions: 128"))
    assert reload(client, 200)["result"] == "applied"
    services_of(client).config.wait_for_rebuilds()
    document_requests = [r.body for r in fake.requests if r.body.get("task") == "retrieval.passage"]
    assert sorted(len(b["input"]) for b in document_requests) == [256] * 4 and {b["dimensions"] for b in document_requests} == {128}
    assert fake.in_flight_max == 4
    (progress,) = status(client)["rebuilds"]
    assert (progress["state"], progress["done"], progress["failed"]) == ("done", 1024, 0), progress


def test_progress_is_visible_while_a_slow_revectorization_runs(slow_rebuild: SlowRebuild) -> None:
    client, progress, count = slow_rebuild.client, slow_rebuild.progress, slow_rebuild.count
    assert progress["state"] == "running" and 0 < progress["done"] < progress["total"] == count, progress
    assert progress["ratePerSecond"] > 0 and progress["etaSeconds"] is not None and progress["etaSeconds"] > 0, progress
    # Meanwhile the old vectors and settings serve.
    probe = json.dumps([0.0] * 255 + [1.0])
    assert client.get("/v1/schema/Doc").json()["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"]["dimensions"] == 256
    found = gql(client, f"{{ Get {{ Doc(nearVector: {{vector: {probe}}}, limit: 3) {{ title }} }} }}")
    assert not found.get("errors") and len(found["data"]["Get"]["Doc"]) == 3, found

    services_of(client).config.wait_for_rebuilds()
    (progress,) = status(client)["rebuilds"]
    assert (progress["state"], progress["done"], progress["total"]) == ("done", count, count), progress
    assert client.get("/v1/schema/Doc").json()["vectorConfig"]["text"]["vectorizer"]["text2vec-jinaai"]["dimensions"] == 128
    found = gql(client, f"{{ Get {{ Doc(nearVector: {{vector: {probe}}}, limit: 3) {{ title }} }} }}")
    assert found.get("errors") and "128" in found["errors"][0]["message"], found


def test_a_reload_with_nothing_changed_leaves_a_running_revectorization_alone(slow_rebuild: SlowRebuild) -> None:
    client, before = slow_rebuild.client, slow_rebuild.progress
    assert before["state"] == "running" and before["done"] > 0, before
    body = reload(client, 200)  # a SIGHUP, a touched file, a POST: the config is what is being applied
    (now,) = status(client)["rebuilds"]
    assert body["result"] == "unchanged" and body["plan"]["revectorize"] == [], body
    assert now["state"] == "running" and now["done"] >= before["done"], now


def test_an_unrelated_change_leaves_a_running_revectorization_alone(slow_rebuild: SlowRebuild, jina: tuple[FakeJina, str]) -> None:
    client, before = slow_rebuild.client, slow_rebuild.progress
    edit(slow_rebuild.config, ("server: {reload: {watch: false}}", "server: {reload: {watch: false}, limits: {queryLimitDefault: 7}}"))
    body = reload(client, 200)
    assert body["result"] == "applied" and body["plan"]["revectorize"] == [{"collection": "Doc", "vector": "text"}], body
    (now,) = status(client)["rebuilds"]
    assert now["state"] == "running" and now["done"] >= before["done"], now
    assert len(gql(client, "{ Get { Doc { title } } }")["data"]["Get"]["Doc"]) == 7  # the change itself is live

    services_of(client).config.wait_for_rebuilds()
    (done,) = status(client)["rebuilds"]
    assert (done["state"], done["done"]) == ("done", slow_rebuild.count), done
    # Not restarted: every document was sent for its new vector exactly once.
    fake = jina[0]
    titles = [t for r in fake.requests if r.body.get("task") == "retrieval.passage" and r.body.get("dimensions") == 128 for t in r.body["input"]]
    assert sorted(titles) == sorted(f"doc {i}" for i in range(slow_rebuild.count))


def test_a_reload_while_a_revectorization_swaps_in_plans_against_the_swapped_spec(
    client_factory: ClientFactory, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = started(client_factory, config_path)
    services = services_of(client)
    promoting, release = threading.Event(), threading.Event()
    backend = type(services.store)  # SqliteStore or PostgresStore
    promote = backend.promote_vectors

    def held_promote(store: Store, *args: Any) -> None:  # the swap, caught half-way
        promoting.set()
        assert release.wait(DEADLINE_S)
        promote(store, *args)

    monkeypatch.setattr(backend, "promote_vectors", held_promote)
    edit(config_path, ("dimensions: 64", "dimensions: 32"))
    assert reload(client, 200)["result"] == "applied"
    assert promoting.wait(DEADLINE_S)
    # An unrelated change arrives while the swap runs; it must not plan against the spec from before the swap.
    edit(config_path, ("  reload: {watch: false}\n", "  reload: {watch: false}\n  limits: {queryLimitDefault: 7}\n"))
    planned = threading.Event()
    plan = services.config.plan

    def noted_plan(spec: Any) -> Any:
        planned.set()
        return plan(spec)

    monkeypatch.setattr(services.config, "plan", noted_plan)
    second = services.config.submit("POST /v1/config/reload")
    # Wait until that reload is queued on the manager's lock, or (without the lock) has planned against the old spec.
    lock = services.config._lock
    deadline = time.monotonic() + DEADLINE_S
    while not planned.is_set() and not getattr(lock, "_waiters", None) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert planned.is_set() or getattr(lock, "_waiters", None), "the second reload never reached the lock"
    release.set()
    assert second.result(timeout=DEADLINE_S)["result"] == "applied"
    services.config.wait_for_rebuilds()

    vector = services.holder.current.collections["Article"].vectors["text"]
    assert vector.dimensions == 32 and services.config.applied is not None
    assert services.config.applied.spec.find_collection("Article").vectors[0].vectorizer.dimensions == 32  # type: ignore[union-attr]
    assert services.engine.index_size("Article", "text") == len(ARTICLES)
    stored = services.store.get("Article", ARTICLES[3]["id"])
    assert stored is not None and stored.vectors["text"].shape == (32,)
    hits = services.engine.search_hits(services.holder.current.collections["Article"], vector, stored.vectors["text"], 1)
    assert services.engine.ids("Article", [h.id for h in hits]) == [ARTICLES[3]["id"]]
    assert reload(client, 200)["result"] == "unchanged"


# -- in-flight work across a re-vectorization's swap ------------------------------------------------


def _swap_dimensions(client: TestClient, config_path: Path) -> None:
    edit(config_path, ("dimensions: 64", "dimensions: 32"))
    assert reload(client, 200)["result"] == "applied"
    services_of(client).config.wait_for_rebuilds()
    assert services_of(client).holder.current.collections["Article"].vectors["text"].dimensions == 32


def test_a_query_that_began_before_a_revectorization_swap_still_answers(client_factory: ClientFactory, config_path: Path) -> None:
    client = started(client_factory, config_path)
    services = services_of(client)
    old = services.holder.current  # what a request in flight holds
    collection, vector = old.collections["Article"], old.collections["Article"].vectors["text"]
    assert vector.vectorizer is not None
    (query,) = asyncio.run(vector.vectorizer.embed_objects([{"title": "article 3 on a003z"}]))
    assert isinstance(query, np.ndarray)

    _swap_dimensions(client, config_path)
    found = services.engine.search_hits(collection, vector, query, 1)  # the rest of the in-flight request
    assert services.engine.ids("Article", [h.id for h in found]) == [ARTICLES[3]["id"]]
    # A query on the new catalog searches the new index; once the grace period is over the old one is gone.
    new = services.holder.current.collections["Article"]
    (fresh,) = asyncio.run(new.vectors["text"].vectorizer.embed_objects([{"title": "article 3 on a003z"}]))  # type: ignore[union-attr]
    assert fresh.shape == (32,) and services.engine.ids("Article", [h.id for h in services.engine.search_hits(new, new.vectors["text"], fresh, 1)]) == [ARTICLES[3]["id"]]
    services.engine.release_retired(older_than=0)
    with pytest.raises(ConfigChanged, match="rebuilt with new settings while this query ran"):
        services.engine.search_hits(collection, vector, query, 1)


def test_a_write_embedded_before_a_revectorization_swap_is_not_stored_with_stale_vectors(
    client_factory: ClientFactory, config_path: Path
) -> None:
    client = started(client_factory, config_path)
    services = services_of(client)
    payload: dict[str, Any] = {"class": "Article", "id": "20000000-0000-4000-8000-000000000999", "properties": {"title": "a late write"}}
    draft = services.engine.draft(services.holder.current, payload)
    assert asyncio.run(services.engine.embed([draft])) == [None]  # the write's embedding, on the old catalog

    _swap_dimensions(client, config_path)
    (refused,) = services.engine.commit([draft])  # the rest of the in-flight write: its vector fits no index now
    assert isinstance(refused, ConfigChanged) and services.engine.store.get("Article", payload["id"]) is None
    # The write path embeds it again for the settings now served, and stores it.
    (stored,) = asyncio.run(services.engine.store_drafts([draft]))
    assert isinstance(stored, StoredObject) and stored.vectors["text"].shape == (32,)
    current = services.holder.current.collections["Article"]
    expected = asyncio.run(current.vectors["text"].vectorizer.embed_objects([payload["properties"]]))[0]  # type: ignore[union-attr]
    np.testing.assert_allclose(stored.vectors["text"], expected, rtol=1e-6)
    hits = services.engine.search_hits(current, current.vectors["text"], stored.vectors["text"], 1)
    assert services.engine.ids("Article", [h.id for h in hits]) == [payload["id"]]


def test_a_write_embedded_before_a_reindex_swap_keeps_its_vector(client_factory: ClientFactory, config_path: Path) -> None:
    client = started(client_factory, config_path)
    services = services_of(client)
    payload: dict[str, Any] = {"class": "Article", "id": "20000000-0000-4000-8000-000000000998", "properties": {"title": "a late write"}}
    draft = services.engine.draft(services.holder.current, payload)
    assert asyncio.run(services.engine.embed([draft])) == [None]
    made = draft.vectors["text"]

    edit(config_path, ("index: {type: flat, distance: cosine}", "index: {type: hnsw, distance: cosine}"))
    assert reload(client, 200)["plan"]["reindex"] == [{"collection": "Article", "vector": "text"}]
    services.config.wait_for_rebuilds()
    assert services.holder.current.collections["Article"].vectors["text"].spec.index.type == "hnsw"
    (stored,) = services.engine.commit([draft])  # same embedding, new index: stored as it is, nothing to embed again
    assert isinstance(stored, StoredObject)
    np.testing.assert_array_equal(stored.vectors["text"], made)
    current = services.holder.current.collections["Article"]
    assert services.engine.ids("Article", [h.id for h in services.engine.search_hits(current, current.vectors["text"], made, 1)]) == [payload["id"]]


# -- the start path: a changed config at start is planned like a reload ------------------------------


def test_a_start_on_a_changed_config_takes_the_reload_path(config_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    services = open_services(config_path, data)
    try:
        asyncio.run(services.engine.batch(services.holder.current, ARTICLES + NOTES))
        applied = services.config.status()["revision"]
    finally:
        services.close()

    # Destructive: the start is refused, naming the change; nothing changes on disk.
    edit(config_path, ("      - {name: year, type: INT}\n", ""))
    with pytest.raises(ConfigRefused) as refused:
        open_services(config_path, data)
    assert f"Article.property year: property removed; would drop the 'year' values of {len(ARTICLES)} objects" in str(refused.value)
    assert applied in str(refused.value.hint)
    # Allowed once (what `searchd apply --allow-destructive` does): applied, values dropped.
    services = open_services(config_path, data, allow_destructive=True, watch=False)
    try:
        last = services.config.status()["lastReload"]
        assert (last["trigger"], last["result"]) == ("start", "applied") and last["plan"]["counts"]["destructive"] == 1, last
        stored = services.store.get("Article", ARTICLES[0]["id"])
        assert stored is not None and "year" not in stored.properties
    finally:
        services.close()

    # A re-vectorization at start runs in the background like a reload's.
    edit(config_path, ("dimensions: 64", "dimensions: 48"))
    services = open_services(config_path, data, watch=False)
    try:
        services.config.wait_for_rebuilds()
        now = services.config.status()
        assert now["lastReload"]["plan"]["revectorize"] == [{"collection": "Article", "vector": "text"}]
        assert [(r["kind"], r["state"], r["done"]) for r in now["rebuilds"]] == [("re-vectorize", "done", len(ARTICLES))]
        stored = services.store.get("Article", ARTICLES[0]["id"])
        assert stored is not None and stored.vectors["text"].shape == (48,)
    finally:
        services.close()
