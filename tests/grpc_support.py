"""A real ``searchd serve`` child with HTTP and gRPC on free loopback ports, for the weaviate-client tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.conftest import MULTIMODAL
from tests.test_e2e_server import Server, child_env, free_port, searchd_module, wait_ready

weaviate = pytest.importorskip("weaviate", reason="the weaviate-client test extra is not installed")

ID_NAMESPACE = uuid.UUID("6f0c8d64-0d3e-4f43-9d59-4a3b2c1d0e0f")

ARTICLE_YAML = """\
server:
  host: 127.0.0.1
  limits: {{maxBodyBytes: 1048576, maxBatchObjects: 50, queryLimitMax: 500}}
{auth}
modules:
  multi2vec-local: {{}}
  text2vec-hash: {{}}
collections:
  - name: Article
    properties:
      - {{name: title, type: TEXT}}
      - {{name: body, type: TEXT}}
      - {{name: tags, type: "TEXT[]"}}
      - {{name: wordCount, type: INT}}
      - {{name: rating, type: NUMBER}}
      - {{name: published, type: BOOLEAN}}
      - {{name: publishedAt, type: DATE}}
      - {{name: ref, type: UUID}}
      - {{name: cover, type: BLOB}}
    vectors:
      text:
        vectorizer: {{module: text2vec-hash, dimensions: 64, textFields: [title, body]}}
        index: {{type: flat, distance: cosine}}
  - name: Scratch
    properties:
      - {{name: title, type: TEXT}}
      - {{name: wordCount, type: INT}}
    vectors:
      text:
        vectorizer: {{module: text2vec-hash, dimensions: 16, textFields: [title]}}
        index: {{type: flat, distance: cosine}}
  - name: Passage
    properties:
      - {{name: text, type: TEXT}}
    vectors:
      colbert:
        vectorizer: {{module: none, dimensions: 4}}
        index: {{type: multivector, distance: cosine}}
"""

WORDS = ["red apples", "green pears", "ripe fruit", "fast cars", "blue sky", "old maps", "quiet river", "loud city"]
TAGS = ["food", "travel", "nature", "city"]


def article_id(number: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"article-{number}"))


def articles() -> list[dict[str, Any]]:
    """Twenty articles with every property type; some properties left out, so that nulls occur."""
    objects = []
    for n in range(20):
        properties: dict[str, Any] = {
            "title": f"{WORDS[n % len(WORDS)]} number {n}",
            "body": f"{WORDS[(n * 3) % len(WORDS)]} and {WORDS[(n * 5 + 1) % len(WORDS)]}",
            "tags": [TAGS[n % 4], TAGS[(n + 1) % 4]] if n % 5 else [TAGS[n % 4]],
            "wordCount": n * 10,
            "rating": round(1.0 + (n % 7) * 0.5, 1),
            "published": n % 3 == 0,
            "ref": str(uuid.uuid5(ID_NAMESPACE, f"ref-{n % 4}")),
        }
        if n % 4:
            properties["publishedAt"] = f"2024-0{1 + n % 9}-1{n % 10}T08:00:00Z"
        if n == 0:
            properties["cover"] = "aGVsbG8="
        objects.append({"class": "Article", "id": article_id(n), "properties": properties})
    return objects


def write_config(directory: Path, auth: str = "") -> Path:
    """A config directory: the articles' file and the multimodal example's Artwork collection."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "searchd.yaml").write_text(ARTICLE_YAML.format(auth=auth), encoding="utf-8")
    shutil.copy(MULTIMODAL / "collections" / "artwork.yaml", directory / "artwork.yaml")
    data = directory.parent / "objects.jsonl"
    lines = [json.dumps(o) for o in articles()] + (MULTIMODAL / "objects.jsonl").read_text(encoding="utf-8").splitlines()
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@contextmanager
def running(base: Path, auth: str = "", env: dict[str, str] | None = None, config_yaml: str | None = None) -> Iterator[tuple[Server, int]]:
    """Start a server on the test config (with its data loaded) or on ``config_yaml``; yield it and its gRPC port; stop it."""
    if config_yaml is None:
        config = write_config(base / "config", auth)
        load = ["--load", str(base / "objects.jsonl")]
    else:
        config, load = base / "searchd.yaml", []
        config.write_text(config_yaml, encoding="utf-8")
    for attempt in range(3):
        port, grpc_port = free_port(), free_port()
        out, err = base / f"server-{attempt}.stdout", base / f"server-{attempt}.stderr"
        files: list[IO[bytes]] = [open(out, "wb"), open(err, "wb")]  # noqa: SIM115 (the server process holds them)
        args = [*searchd_module(), "serve", str(config), "--data", str(base / f"data-{attempt}"), "--host", "127.0.0.1"]
        args += ["--port", str(port), "--grpc-port", str(grpc_port), *load]
        process = subprocess.Popen(args, stdout=files[0], stderr=files[1], stdin=subprocess.DEVNULL, cwd=base, env={**child_env(), **(env or {})})
        server = Server(process, port, out, err, files)
        try:
            wait_ready(server)
        except pytest.fail.Exception:
            server.stop()
            if "address already in use" in server.logs().lower():
                continue  # a port was taken between choosing and binding it
            raise
        try:
            yield server, grpc_port
        finally:
            server.stop()
        return
    pytest.fail("could not find free ports in 3 attempts")


def connect(server: Server, grpc_port: int, **options: Any) -> Any:
    """The v4 client, with its default start-up checks.

    One of those checks asks pypi.org for the newest client version (best effort: the client ignores a failure).
    Tests stay on loopback, so https goes through a proxy at a closed local port while it connects.
    """
    with pytest.MonkeyPatch.context() as patch:
        for name in ("HTTPS_PROXY", "https_proxy"):
            patch.setenv(name, "http://127.0.0.1:9")
        for name in ("NO_PROXY", "no_proxy"):
            patch.setenv(name, "127.0.0.1,localhost")
        return weaviate.connect_to_custom(
            http_host="127.0.0.1", http_port=server.port, http_secure=False, grpc_host="127.0.0.1", grpc_port=grpc_port, grpc_secure=False, **options
        )


def graphql(http: httpx.Client, query: str) -> dict[str, Any]:
    response = http.post("/v1/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def graphql_error(http: httpx.Client, query: str) -> str:
    body = http.post("/v1/graphql", json={"query": query}).json()
    assert body.get("errors"), body
    return str(body["errors"][0]["message"])


def get(http: httpx.Client, collection: str, arguments: str, fields: str = "_additional { id distance score }") -> list[dict[str, Any]]:
    """The rows of ``{ Get { collection(arguments) { fields } } }``."""
    rows: list[dict[str, Any]] = graphql(http, f"{{ Get {{ {collection}({arguments}) {{ {fields} }} }} }}")["Get"][collection]
    return rows


def module_fixtures(label: str) -> tuple[Any, Any, Any]:
    """The ``server``, ``client`` (v4, default checks) and ``http`` fixtures of a test module, one server for the module."""

    @pytest.fixture(scope="module", name="server")
    def server_fixture(tmp_path_factory: pytest.TempPathFactory, storage_backend: str) -> Iterator[tuple[Server, int]]:
        # Naming storage_backend starts the server again for each backend a module is parametrised over.
        with running(tmp_path_factory.mktemp(label)) as started:
            yield started

    @pytest.fixture(scope="module", name="client")
    def client_fixture(server: tuple[Server, int]) -> Iterator[Any]:
        with connect(*server) as connected:
            yield connected

    @pytest.fixture(scope="module", name="http")
    def http_fixture(server: tuple[Server, int]) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=server[0].url, timeout=30, trust_env=False) as connected:
            yield connected

    return server_fixture, client_fixture, http_fixture
