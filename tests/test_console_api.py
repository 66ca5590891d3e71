"""The console's server side without a browser: its files, their headers, what needs a key, and GET /v1/console/collections."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from searchd.server.console import CONTENT_SECURITY_POLICY, _block, collection_sources
from tests.conftest import MULTIMODAL, ROOT, ClientFactory

STATIC = ROOT / "searchd" / "console" / "static"

AUTH_CONFIG = """\
server:
  host: 127.0.0.1
  auth:
    apiKeys:
      - {name: ops, key: "${CONSOLE_TEST_ADMIN}", role: admin}
      - {name: viewer, key: "${CONSOLE_TEST_READ}", role: read}
collections:
  - name: Note
    properties:
      - {name: body, type: TEXT}
    vectors:
      text:
        vectorizer: {module: text2vec-hash, dimensions: 64, textFields: [body]}
        index: {type: flat, distance: cosine}
modules:
  text2vec-hash: {}
"""


def test_every_static_file_is_package_data() -> None:
    """A file the globs in pyproject.toml miss would be absent from a wheel (an editable install hides that)."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["searchd.console"]
    files = sorted(str(p.relative_to(STATIC.parent)) for p in STATIC.rglob("*") if p.is_file())
    assert files, STATIC
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)] == []


def test_root_links_the_console_for_browsers_and_api_clients(multimodal_client: TestClient) -> None:
    page = multimodal_client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<a href="/console">Console</a>' in page.text
    links = multimodal_client.get("/", headers={"Accept": "application/json"})
    assert links.json()["links"][0] == {"name": "console", "href": "/console"}


def test_console_page_and_modules_are_served_with_a_content_security_policy(multimodal_client: TestClient) -> None:
    page = multimodal_client.get("/console")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/console/static/js/main.js"></script>' in page.text
    script = multimodal_client.get("/console/static/js/main.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert multimodal_client.get("/console/static/js/nothing.js").status_code == 404


def test_collections_endpoint_tells_counts_models_limits_and_the_yaml_block(multimodal_client: TestClient) -> None:
    body = multimodal_client.get("/v1/console/collections").json()
    assert body["limits"] == {"maxBodyBytes": 10485760, "queryLimitDefault": 100, "queryLimitMax": 10000}
    assert body["authEnabled"] is False and body["grpcPort"] == 50051
    (artwork,) = body["collections"]
    assert artwork["count"] == 24 and artwork["defaultVector"] == "multimodal"
    assert artwork["bm25"] == {"k1": 1.2, "b": 0.75, "stopwords": "en"}
    vectors = {v["name"]: (v["module"], v["model"], v["dimensions"], v["queries"], v["index"]) for v in artwork["vectors"]}
    assert vectors == {
        "multimodal": ("multi2vec-local", "local-v1", 512, ["image", "text"], {"type": "flat", "distance": "cosine"}),
        "words": ("text2vec-hash", "hash-v1", 256, ["text"], {"type": "annoy", "distance": "cosine"}),
        "external": ("none", None, 4, [], {"type": "hnsw", "distance": "l2-squared"}),
    }
    image = next(p for p in artwork["properties"] if p["name"] == "image")
    assert image == {"name": "image", "type": "BLOB", "description": "PNG bytes, base64 in JSON", "tokenization": None, "searchable": False, "filterable": False, "image": True}
    source = artwork["source"]
    file = MULTIMODAL / "collections" / "artwork.yaml"
    lines = file.read_text(encoding="utf-8").splitlines()
    assert Path(source["file"]).resolve() == file.resolve()
    assert lines[source["line"] - 1] == "  - name: Artwork"
    assert source["text"] == "\n".join(lines[source["line"] - 1 :]).rstrip()


def test_a_yaml_block_ends_where_the_next_item_or_key_begins(write_config: Any) -> None:
    config = write_config(
        """\
        collections:
          - name: A
            properties:

              - {name: t, type: TEXT}
          # B is next
          - {name: B, properties: [{name: t, type: TEXT}]}
        modules:
          text2vec-hash: {}
        """
    )
    sources = collection_sources(str(config))
    assert sources["A"] == {"file": str(config), "line": 2, "text": "  - name: A\n    properties:\n\n      - {name: t, type: TEXT}"}
    assert sources["B"]["line"] == 7 and sources["B"]["text"] == "  - {name: B, properties: [{name: t, type: TEXT}]}"
    assert _block(["- a: 1", "  b: 2", "", ""], 1, 3) == "- a: 1\n  b: 2"


@pytest.fixture
def auth_client(client_factory: ClientFactory, write_config: Any, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("CONSOLE_TEST_ADMIN", "admin-key-for-console-tests")
    monkeypatch.setenv("CONSOLE_TEST_READ", "read-key-for-console-tests")
    return client_factory(write_config(AUTH_CONFIG))


def test_with_keys_the_files_load_without_one_and_every_data_call_needs_one(auth_client: TestClient) -> None:
    for path in ("/", "/console", "/console/", "/console/static/js/api.js", "/console/static/console.css"):
        assert auth_client.get(path).status_code == 200, path
    for path in ("/v1/console/collections", "/v1/config/status", "/v1/schema"):
        response = auth_client.get(path)
        assert response.status_code == 401, path
        assert response.json()["error"][0]["message"].startswith("this server needs an API key")
    # The open prefix is for reading files only.
    assert auth_client.post("/console/static/js/api.js").status_code == 401
    read = {"Authorization": "Bearer read-key-for-console-tests"}
    body = auth_client.get("/v1/console/collections", headers=read).json()
    assert body["authEnabled"] is True and [c["name"] for c in body["collections"]] == ["Note"]
    refused = auth_client.post("/v1/config/reload", headers=read)
    assert refused.status_code == 403
    assert refused.json()["error"][0]["message"] == "key 'viewer' has the read role; POST /v1/config/reload needs an admin key"


def test_the_static_files_name_no_other_host_and_parse_no_html() -> None:
    """No CDN or other host in any file; no script builds markup from strings (what a stored value could abuse)."""
    texts = {str(p.relative_to(STATIC)): p.read_text(encoding="utf-8") for p in STATIC.rglob("*") if p.is_file()}
    assert "js/main.js" in texts and "index.html" in texts
    for name, text in texts.items():
        assert re.findall(r"\b[a-z]+://", text) == [], name
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert sink not in text, (name, sink)
