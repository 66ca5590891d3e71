"""Numbers are finite (issue #13): NaN and infinity are refused everywhere with a line number, and a
re-vectorization whose vectors come out NaN reports the objects as failed and keeps the old vectors."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from searchd.config import load_spec
from searchd.config.loader import Locator
from searchd.config.semantic import non_finite_issues
from searchd.errors import ConfigError
from searchd.modules import default_registry
from tests.conftest import ClientFactory, wait_for
from tests.fakes import FakeJina, serving

DEADLINE_S = 30.0

CONFIG = """\
server:
  reload: {watch: false}
  limits: {maxBodyBytes: 1048576}
modules:
  text2vec-jinaai: {timeoutSeconds: 30}
collections:
  - name: Article
    properties:
      - {name: title, type: TEXT}
      - {name: body, type: TEXT}
    invertedIndex:
      bm25: {k1: 1.2, b: 0.75}
    vectors:
      v:
        vectorizer: {module: text2vec-hash, dimensions: 32, textFields: [title, body], weights: {title: 1.0, body: 0.5}}
        index: {type: hnsw, ef: 64}
"""

# (the text replaced, the path of the value)
PLACES = [
    pytest.param("k1: 1.2", "collections[0].invertedIndex.bm25.k1", id="k1"),
    pytest.param("b: 0.75", "collections[0].invertedIndex.bm25.b", id="b"),
    pytest.param("title: 1.0", "collections[0].vectors.v.vectorizer.weights.title", id="weight"),
    pytest.param("ef: 64", "collections[0].vectors.v.index.ef", id="ef"),
    pytest.param("dimensions: 32", "collections[0].vectors.v.vectorizer.dimensions", id="dimensions"),
    pytest.param("maxBodyBytes: 1048576", "server.limits.maxBodyBytes", id="limit"),
    pytest.param("timeoutSeconds: 30", "modules.text2vec-jinaai.timeoutSeconds", id="module-timeout"),
]


def rebuild_when(client: TestClient, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The first rebuild's progress once ``done`` says so (else None, to be polled again)."""
    progress: dict[str, Any] = client.get("/v1/config/status").json()["rebuilds"][0]
    return progress if done(progress) else None


def resumed_and_done(progress: dict[str, Any]) -> bool:
    assert progress["state"] in ("running", "restarting", "done"), progress
    return bool(progress["state"] == "done")


def position(text: str) -> tuple[int, int]:
    """1-based line and column of the value in ``text``'s place in CONFIG."""
    (line,) = [n for n, row in enumerate(CONFIG.splitlines(), 1) if text in row]
    row = CONFIG.splitlines()[line - 1]
    return line, row.index(text) + len(text.split(":")[0]) + 3


@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf", ".NaN", "+.Inf"])
@pytest.mark.parametrize(("text", "path"), PLACES)
def test_nan_and_infinity_are_refused_with_their_line(tmp_path: Path, text: str, path: str, bad: str) -> None:
    line, column = position(text)
    config = tmp_path / "searchd.yaml"
    key = text.split(":")[0]
    config.write_text(CONFIG.replace(text, f"{key}: {bad}"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_spec(config, default_registry(), environ={})
    shown = {".nan": "nan", ".NaN": "nan", ".inf": "inf", "+.Inf": "inf", "-.inf": "-inf"}[bad]
    assert [i.render() for i in caught.value.issues] == [
        f"{config}:{line}:{column}: {path}: {shown} is not a finite number (NaN and infinity are not allowed here; write a finite number, e.g. 1.2)"
    ]


def test_an_environment_reference_cannot_bring_nan(tmp_path: Path) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text(CONFIG.replace("bm25: {k1: 1.2, b: 0.75}", "bm25:\n        k1: ${K1}"), encoding="utf-8")
    assert load_spec(config, default_registry(), environ={"K1": "1.5"}).collections[0].inverted_index.k1 == 1.5
    with pytest.raises(ConfigError) as caught:
        load_spec(config, default_registry(), environ={"K1": ".nan"})
    assert [(i.path, i.line, i.message) for i in caught.value.issues] == [("collections[0].invertedIndex.bm25.k1", position("k1: 1.2")[0] + 1, "nan is not a finite number")]


def test_the_semantic_check_finds_non_finite_numbers_anywhere() -> None:
    locator = Locator(positions={("a", "b", 1): ("f.yaml", 3, 7)}, default_file="f.yaml")
    data: Mapping[str, Any] = {"a": {"b": [1.0, float("-inf"), "x"]}, "c": 2, "d": float("nan")}
    assert sorted(i.render() for i in non_finite_issues(data, locator)) == [
        "f.yaml:1:1: d: nan is not a finite number (NaN and infinity are not allowed; write a finite number)",
        "f.yaml:3:7: a.b[1]: -inf is not a finite number (NaN and infinity are not allowed; write a finite number)",
    ]


def test_the_published_schema_bounds_every_number() -> None:
    """JSON cannot hold NaN, but an editor validating YAML can see .inf: every number in the schema has a finite maximum."""
    from searchd.config.validate import config_schema

    def numbers(node: Any) -> list[dict[str, Any]]:
        if isinstance(node, dict):
            here = [node] if node.get("type") == "number" else []
            return here + [n for v in node.values() for n in numbers(v)]
        return [n for v in node for n in numbers(v)] if isinstance(node, list) else []

    found = numbers(config_schema())
    assert len(found) >= 4, found
    unbounded = [n for n in found if "maximum" not in n or not ("minimum" in n or "exclusiveMinimum" in n)]
    assert unbounded == [], unbounded


# -- a re-vectorization that cannot embed its objects -------------------------------------------


def test_a_revectorization_that_fails_to_embed_keeps_the_old_vectors(client_factory: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the rebuild said `done, failed N` and promoted, dropping those objects' vectors (nearVector found nothing)."""
    monkeypatch.setenv("JINAAI_APIKEY", "test-key")
    fake = FakeJina()
    with serving(fake.app) as url:
        config = tmp_path / "config" / "searchd.yaml"
        config.parent.mkdir()
        config.write_text(JINA_CONFIG.format(url=url), encoding="utf-8")
        client = client_factory(config)
        docs = [{"class": "Doc", "id": f"30000000-0000-4000-8000-{i:012d}", "properties": {"title": f"doc {i}"}} for i in range(6)]
        response = client.post("/v1/batch/objects", json={"objects": docs})
        assert response.status_code == 200 and all(r["result"]["status"] == "SUCCESS" for r in response.json()), response.text
        old = client.get(f"/v1/objects/Doc/{docs[2]['id']}?include=vector").json()["vectors"]["text"]
        query = f"{{ Get {{ Doc(nearVector: {{vector: {json.dumps(old)}}}, limit: 1) {{ title }} }} }}"
        assert client.post("/v1/graphql", json={"query": query}).json()["data"]["Get"]["Doc"] == [{"title": "doc 2"}]

        fake.fail_next(400, times=1000)  # the provider rejects every input from now on
        config.write_text(JINA_CONFIG.format(url=url).replace("dimensions: 256", "dimensions: 128"), encoding="utf-8")
        assert client.post("/v1/config/reload").json()["result"] == "applied"
        progress = wait_for(lambda: rebuild_when(client, lambda p: p["state"] != "running"), "the failing rebuild to stop", DEADLINE_S)
        assert (progress["state"], progress["failed"], progress["total"]) == ("failed", 6, 6), progress
        assert progress["error"].startswith("6 object(s) could not be embedded, so the old vectors keep serving; the last error: Jina AI"), progress
        assert "(fix the config or those objects, then reload: the objects already embedded are not embedded again)" in progress["error"]

        # Nothing was dropped: the old 256-dimension vectors are stored and searched as before.
        assert client.get(f"/v1/objects/Doc/{docs[2]['id']}?include=vector").json()["vectors"]["text"] == old
        assert client.post("/v1/graphql", json={"query": query}).json()["data"]["Get"]["Doc"] == [{"title": "doc 2"}]

        # Once the provider answers again, a reload resumes and completes the rebuild.
        fake.reset()
        assert client.post("/v1/config/reload").json()["result"] == "applied"
        wait_for(lambda: rebuild_when(client, resumed_and_done), "the resumed rebuild to finish", DEADLINE_S)
        assert len(client.get(f"/v1/objects/Doc/{docs[2]['id']}?include=vector").json()["vectors"]["text"]) == 128


JINA_CONFIG = """\
server: {{reload: {{watch: false}}}}
modules:
  text2vec-jinaai: {{baseURL: "{url}", maxRetries: 0}}
collections:
  - name: Doc
    properties: [{{name: title, type: TEXT}}]
    vectors:
      text:
        vectorizer: {{module: text2vec-jinaai, model: jina-embeddings-v3, dimensions: 256}}
        index: {{type: flat}}
"""
