"""Shared fixtures: configs written to tmp dirs, in-process clients, example paths."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from starlette.testclient import TestClient

from searchd.server import create_app, open_services
from tests import pgcluster

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MULTIMODAL = EXAMPLES / "multimodal"
QUICKSTART = EXAMPLES / "quickstart" / "searchd.yaml"

ClientFactory = Callable[..., TestClient]


class HttpResponse(Protocol):
    """What the tests read of a response, whichever client got it: httpx's (from a ``searchd serve`` child) or the
    in-process TestClient's, which starlette builds on httpx2 where that is installed (a test extra pulls it in), so
    it is no ``httpx.Response``."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    def json(self, **kwargs: Any) -> Any: ...


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never depend on the developer's data dir or proxies.
    monkeypatch.delenv("SEARCHD_DATA", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# A module runs its tests on both storage backends with:
#     pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)
# Every server such a test starts (in process, or a `searchd serve` child: it inherits the environment) keeps its
# objects in that backend: PostgreSQL through $SEARCHD_DATABASE_URL, a fresh database per test.
BACKENDS = ["sqlite", "postgres"]
# Or test by test, where a module also has tests that never open a store (those run once, on SQLite):
ON_BOTH_BACKENDS = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pgcluster.Cluster]:
    why = pgcluster.missing()
    if why is not None:
        if pgcluster.required():
            pytest.fail(f"PostgreSQL is required here (CI or SEARCHD_REQUIRE_POSTGRES=1): {why}")
        pytest.skip(why)
    cluster = pgcluster.Cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(autouse=True, scope="module")
def storage_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend the module's servers use: sqlite unless the module parametrizes it (see BACKENDS).

    Module-scoped, so a module's shared server runs once per backend, on a database of its own.
    """
    backend: str = getattr(request, "param", "sqlite")
    with pytest.MonkeyPatch.context() as patch:
        if backend != "postgres":
            patch.delenv("SEARCHD_DATABASE_URL", raising=False)  # not the developer's database
            yield backend
            return
        cluster: pgcluster.Cluster = request.getfixturevalue("pg_cluster")
        database = cluster.new_database()
        patch.setenv("SEARCHD_DATABASE_URL", cluster.url(database))
        yield backend
    cluster.drop_database(database)


@pytest.fixture(autouse=True)
def _fresh_database(storage_backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """On PostgreSQL, a database per test for the servers it starts (a module's shared server keeps the module's)."""
    if storage_backend != "postgres":
        yield
        return
    cluster: pgcluster.Cluster = request.getfixturevalue("pg_cluster")
    database = cluster.new_database()
    monkeypatch.setenv("SEARCHD_DATABASE_URL", cluster.url(database))
    yield
    cluster.drop_database(database)


DatabaseFor = Callable[[Path], None]


@pytest.fixture
def database_for(storage_backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabaseFor]:
    """Before a server starts on a data directory: on PostgreSQL, point $SEARCHD_DATABASE_URL at that directory's database.

    A data directory stands for a whole store, so a second directory in one test gets a database of its own (the
    first takes the test's); a restart on the same directory finds the same database.
    """
    known: dict[Path, str] = {}
    created: list[str] = []
    cluster: pgcluster.Cluster | None = request.getfixturevalue("pg_cluster") if storage_backend == "postgres" else None

    def use(data_dir: Path) -> None:
        if cluster is None:
            return
        key = data_dir.resolve()
        if key not in known:
            if known:
                created.append(cluster.new_database())
                known[key] = cluster.url(created[-1])
            else:
                known[key] = os.environ["SEARCHD_DATABASE_URL"]
        monkeypatch.setenv("SEARCHD_DATABASE_URL", known[key])

    yield use
    for database in created:
        assert cluster is not None
        cluster.drop_database(database)


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
def client_factory(tmp_path: Path, database_for: DatabaseFor) -> Iterator[ClientFactory]:
    """Start an in-process server on a config path with its own data dir; all are closed at the end."""
    clients: list[TestClient] = []

    def make(config: str | Path, data_dir: str | Path | None = None) -> TestClient:
        data = Path(data_dir) if data_dir else tmp_path / f"data{len(clients)}"
        database_for(data)
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


T = TypeVar("T")
WAIT_S = 30.0  # generous: a condition that is not met by then never will be


def wait_for(condition: Callable[[], T | None], what: str, deadline_s: float = WAIT_S) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail after ``deadline_s`` (never a timing assertion)."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def next_millisecond() -> None:
    """Return once the wall clock shows a later millisecond than at the call (what ms timestamps tell apart)."""
    start = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == start:
        time.sleep(0.0002)
