"""Reload applies what it says (issue #13): each change the plan calls "in place" takes effect live,
and BM25 scores after a live reload of k1, b and stopwords equal those after a restart on the same files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from searchd.server.app import Services
from tests.conftest import BACKENDS, ClientFactory
from tests.fakes import FakeJina, serving

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

CONFIG = """\
server:
  reload: {watch: false}
collections:
  - name: Doc
    description: Documents.
    properties:
      - {name: title, type: TEXT, description: The title.}
      - {name: body, type: TEXT}
    invertedIndex:
      bm25: {k1: 1.2, b: 0.75}
    vectors:
      a:
        vectorizer: {module: text2vec-hash, dimensions: 32, textFields: [title]}
        index: {type: hnsw, ef: 64}
      b:
        default: true
        vectorizer: {module: text2vec-hash, dimensions: 16, textFields: [body]}
        index: {type: flat}
"""

BODIES = [
    "the bread and the butter",
    "bread bread bread on a long long table in the kitchen of the old house",
    "butter is not bread",
    "a loaf of bread is the bread of the house",
    "the house of the rising sun",
    "of bread and circuses, the people ask for more",
]
DOCS = [{"class": "Doc", "id": f"40000000-0000-4000-8000-{i:012d}", "properties": {"title": f"doc {i}", "body": body}} for i, body in enumerate(BODIES)]
QUERIES = ["the bread", "bread of the house", "not butter", "the"]


def scores(client: TestClient) -> dict[str, list[tuple[str, str]]]:
    """Each query's hits as (id, score as the server wrote it): equal strings mean equal floats."""
    out = {}
    for query in QUERIES:
        body = client.post("/v1/graphql", json={"query": f'{{ Get {{ Doc(bm25: {{query: "{query}"}}) {{ _additional {{ id score }} }} }} }}'}).json()
        assert not body.get("errors"), body
        out[query] = [(hit["_additional"]["id"], hit["_additional"]["score"]) for hit in body["data"]["Get"]["Doc"]]
    return out


def reload(client: TestClient, result: str = "applied") -> dict[str, Any]:
    body: dict[str, Any] = client.post("/v1/config/reload").json()
    assert body["result"] == result, body
    return body


def started(client_factory: ClientFactory, config: Path, data: Path) -> TestClient:
    client = client_factory(config, data)
    response = client.post("/v1/batch/objects", json={"objects": DOCS})
    assert response.status_code == 200 and all(r["result"]["status"] == "SUCCESS" for r in response.json())
    return client


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(("bm25: {k1: 1.2, b: 0.75}", "bm25: {k1: 2.0, b: 0.2}"), id="k1-and-b"),
        pytest.param(("bm25: {k1: 1.2, b: 0.75}", "bm25: {k1: 1.2, b: 0.75}\n      stopwords: {preset: none}"), id="stopwords-none"),
        pytest.param(("bm25: {k1: 1.2, b: 0.75}", "bm25: {k1: 0.9, b: 1.0}\n      stopwords: {additions: [bread], removals: [not]}"), id="all"),
    ],
)
def test_live_bm25_scores_equal_the_scores_after_a_restart(client_factory: ClientFactory, tmp_path: Path, edit: tuple[str, str]) -> None:
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG, encoding="utf-8")
    data = tmp_path / "data"
    client = started(client_factory, config, data)
    before = scores(client)

    config.write_text(CONFIG.replace(*edit), encoding="utf-8")
    body = reload(client)
    assert [(c["kind"], c["address"]) for c in body["plan"]["changes"]] == [("in place", "collection Doc")] and not body["plan"]["rebuildKeyword"], body
    live = scores(client)
    assert live != before  # the change shows at once

    client.__exit__(None, None, None)  # a restart on the same files and data directory
    restarted = scores(client_factory(config, data))
    assert restarted == live
    fresh = scores(started(client_factory, config, tmp_path / "fresh"))  # and a first start on the new config
    assert fresh == live


def services_of(client: TestClient) -> Services:
    services: Services = client.app.state.services  # type: ignore[attr-defined]
    return services


def test_every_in_place_change_takes_effect(client_factory: ClientFactory, tmp_path: Path) -> None:
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG, encoding="utf-8")
    client = started(client_factory, config, tmp_path / "data")
    engine = services_of(client).engine
    text = CONFIG

    def change(old: str, new: str) -> dict[str, Any]:
        nonlocal text
        assert text.count(old) == 1, old
        text = text.replace(old, new)
        config.write_text(text, encoding="utf-8")
        body = reload(client)
        assert body["plan"]["changes"] and all(c["kind"] == "in place" for c in body["plan"]["changes"]), body
        assert not (body["plan"]["revectorize"] or body["plan"]["reindex"] or body["plan"]["restartRequired"]), body
        return body

    # Descriptions of a collection and of a property.
    change("description: Documents.", "description: Papers.")
    change("description: The title.", "description: The heading.")
    schema = client.get("/v1/schema/Doc").json()
    assert schema["description"] == "Papers." and schema["properties"][0]["description"] == "The heading."

    # The default vector: a query without targetVectors searches the one marked default now.
    query = '{ Get { Doc(nearVector: {vector: %s}, limit: 1) { title } } }'
    assert len(client.post("/v1/graphql", json={"query": query % str([0.1] * 16)}).json()["data"]["Get"]["Doc"]) == 1
    change("      b:\n        default: true\n", "      b:\n")
    change("      a:\n        vectorizer", "      a:\n        default: true\n        vectorizer")
    body = client.post("/v1/graphql", json={"query": query % str([0.1] * 32)}).json()
    assert not body.get("errors") and len(body["data"]["Get"]["Doc"]) == 1, body
    body = client.post("/v1/graphql", json={"query": query % str([0.1] * 16)}).json()
    assert body.get("errors") and "32" in body["errors"][0]["message"], body

    # Search-time index settings reach the open index (its content is kept).
    change("index: {type: hnsw, ef: 64}", "index: {type: hnsw, ef: 200}")
    index = engine._indexes[("Doc", "a")].index
    assert index.spec.ef == 200 and index._graph.ef == 200  # type: ignore[attr-defined]  # what hnswlib searches with and len(index) == len(DOCS)

    # A new property and a new collection are served at once.
    change("      - {name: body, type: TEXT}\n", "      - {name: body, type: TEXT}\n      - {name: year, type: INT}\n")
    response = client.post("/v1/objects", json={"class": "Doc", "properties": {"title": "new", "body": "fresh bread", "year": 2026}})
    assert response.status_code == 200, response.text
    change("collections:\n", "collections:\n  - name: Extra\n    properties: [{name: note, type: TEXT}]\n")
    assert client.post("/v1/objects", json={"class": "Extra", "properties": {"note": "hello"}}).status_code == 200

    # Server settings read per request: the default query limit.
    change("  reload: {watch: false}\n", "  reload: {watch: false}\n  limits: {queryLimitDefault: 2}\n")
    body = client.post("/v1/graphql", json={"query": '{ Get { Doc { title } } }'}).json()
    assert len(body["data"]["Get"]["Doc"]) == 2, body


def test_watch_is_reported_as_needing_a_restart(client_factory: ClientFactory, tmp_path: Path) -> None:
    """The watcher is started with the server: the plan says so instead of calling it applied in place."""
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG, encoding="utf-8")
    client = started(client_factory, config, tmp_path / "data")
    config.write_text(CONFIG.replace("reload: {watch: false}", "reload: {watch: true}"), encoding="utf-8")
    body = reload(client)
    assert body["plan"]["changes"] == [] and [(c["address"], c["summary"]) for c in body["plan"]["restartRequired"]] == [("server.reload.watch", "watch false → true")]


JINA = """\
server: {{reload: {{watch: false}}}}
modules:
  text2vec-jinaai: {{baseURL: "{module_url}", apiKey: "${{{key}}}", maxRetries: 0}}
collections:
  - name: Doc
    properties: [{{name: title, type: TEXT}}]
    vectors:
      text:
        vectorizer: {{module: text2vec-jinaai, model: jina-embeddings-v3, dimensions: 64{vector_url}}}
        index: {{type: flat}}
"""


def test_module_settings_and_a_vector_endpoint_take_effect(client_factory: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """modules.* settings and a vector's baseURL are "in place": the next embedding uses the new endpoint and key."""
    monkeypatch.setenv("KEY_A", "key-a-0123456789abcdef")
    monkeypatch.setenv("KEY_B", "key-b-0123456789abcdef")
    first, second = FakeJina(api_keys=["key-a-0123456789abcdef"]), FakeJina(api_keys=["key-b-0123456789abcdef"])
    with serving(first.app) as url_a, serving(second.app) as url_b:
        config = tmp_path / "config" / "searchd.yaml"
        config.parent.mkdir()
        config.write_text(JINA.format(module_url=url_a, key="KEY_A", vector_url=""), encoding="utf-8")
        client = client_factory(config)

        def write(title: str) -> None:
            response = client.post("/v1/objects", json={"class": "Doc", "properties": {"title": title}})
            assert response.status_code == 200, response.text

        write("one")
        assert (len(first.requests), len(second.requests)) == (1, 0)
        # Another endpoint that only takes another key: a write succeeds only if both changes are live.
        config.write_text(JINA.format(module_url=url_b, key="KEY_B", vector_url=""), encoding="utf-8")
        body = reload(client)
        assert [(c["kind"], c["address"], c["summary"]) for c in body["plan"]["changes"]] == [("in place", "modules.text2vec-jinaai", "settings changed (baseURL, apiKey)")]
        write("two")
        assert (len(first.requests), len(second.requests)) == (1, 1)
        # A vector's own endpoint overrides the module's (the key stays the module's: the first fake is given it too).
        first.api_keys.add("key-b-0123456789abcdef")
        config.write_text(JINA.format(module_url=url_b, key="KEY_B", vector_url=f', baseURL: "{url_a}"'), encoding="utf-8")
        body = reload(client)
        assert [(c["kind"], c["address"]) for c in body["plan"]["changes"]] == [("in place", "Doc.vector text")] and not body["plan"]["revectorize"], body
        write("three")
        assert (len(first.requests), len(second.requests)) == (2, 1)
