"""Shared fixtures: configs written to tmp dirs, in-process clients, example paths."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from searchd.server import create_app, open_services

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MULTIMODAL = EXAMPLES / "multimodal"
QUICKSTART = EXAMPLES / "quickstart" / "searchd.yaml"

ClientFactory = Callable[..., TestClient]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never depend on the developer's data dir or proxies.
    monkeypatch.delenv("SEARCHD_DATA", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a YAML config (dedented) into tmp_path and return its path."""

    def write(text: str, name: str = "searchd.yaml") -> Path:
        path = tmp_path / "config" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def client_factory(tmp_path: Path) -> Iterator[ClientFactory]:
    """Start an in-process server on a config path with its own data dir; all are closed at the end."""
    clients: list[TestClient] = []

    def make(config: str | Path, data_dir: str | Path | None = None) -> TestClient:
        data = Path(data_dir) if data_dir else tmp_path / f"data{len(clients)}"
        client = TestClient(create_app(open_services(config, data)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def example_objects(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def multimodal_client(client_factory: ClientFactory) -> TestClient:
    """The multimodal example, served with its sample objects imported."""
    client = client_factory(MULTIMODAL)
    response = client.post("/v1/batch/objects", json={"objects": example_objects(MULTIMODAL / "objects.jsonl")})
    assert response.status_code == 200
    assert all(r["result"]["status"] == "SUCCESS" for r in response.json())
    return client


def graphql(client: TestClient, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/v1/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def next_millisecond() -> None:
    """Return once the wall clock shows a later millisecond than at the call (what ms timestamps tell apart)."""
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == start:
        time.sleep(0.0002)
