"""The port opens at once: ``live`` answers while --load files are read and indexes are opened, ``ready`` says 503 with the
phase and its progress until then, and data requests get a 503 "not ready".  Also the start-up warnings for provider modules
without a key, and connection errors that name the host tried.

No sleeps: a named pipe as the --load file (or a hook that waits on an event) holds the start where the test wants it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from starlette.testclient import TestClient

from searchd.server import Services, create_app, open_services
from searchd.server.app import Startup, begin_services
from searchd.server.readiness import Readiness
from tests.conftest import QUICKSTART, ClientFactory, example_objects, wait_for
from tests.test_e2e_server import StartServer, client
from tests.test_e2e_server import start_server as start_server  # noqa: PLC0414  (re-exported: the fixture, used by name)

OBJECTS = example_objects(QUICKSTART.parent / "objects.jsonl")
COUNT_QUERY = {"query": "{ Aggregate { Article { meta { count } } } }"}
DEADLINE_S = 30.0


def not_ready_message(phase: str) -> dict[str, Any]:
    return {"error": [{"message": f"the server is not ready yet: {phase} (wait until GET /v1/.well-known/ready answers 200)"}]}


def test_a_server_loading_a_file_is_live_but_not_ready_until_the_file_is_in(tmp_path: Path, start_server: StartServer) -> None:
    pipe = tmp_path / "objects.jsonl"
    os.mkfifo(pipe)  # the load waits for this test to write the objects
    server = start_server(QUICKSTART, tmp_path / "data", "--load", str(pipe), ready=False)
    with client(server) as http:

        def loading() -> dict[str, Any] | None:
            try:
                response = http.get("/v1/.well-known/ready")
            except httpx.TransportError:
                return None
            body: dict[str, Any] = response.json()
            return body if body["phase"].startswith("loading") else None

        body = wait_for(loading, "the load to begin")
        assert body == {"ready": False, "phase": f"loading {pipe}", "done": 0, "total": None, "rate": 0.0, "etaSeconds": None}
        assert http.get("/v1/.well-known/ready").status_code == 503
        assert http.get("/v1/.well-known/live").status_code == 200
        answer = http.post("/v1/graphql", json=COUNT_QUERY)
        assert (answer.status_code, answer.json()) == (503, not_ready_message(f"loading {pipe}"))
        assert http.get(f"/v1/objects/Article/{OBJECTS[0]['id']}").status_code == 503
        grpc_port = int(re.search(r"gRPC \(weaviate.v1\) listening on 127.0.0.1:(\d+)", server.logs()).group(1))  # type: ignore[union-attr]
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            # The gRPC port is open too: health says NOT_SERVING (status 2) and a call is UNAVAILABLE, which clients retry.
            check = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=bytes, response_deserializer=bytes)
            assert check(b"", timeout=DEADLINE_S) == b"\x08\x02"
            search = channel.unary_unary("/weaviate.v1.Weaviate/Search", request_serializer=bytes, response_deserializer=bytes)
            with pytest.raises(grpc.RpcError) as refused:
                search(b"", timeout=DEADLINE_S)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert refused.value.details() == f"the server is not ready yet: loading {pipe} (GET /v1/.well-known/ready shows its progress)"
            with pipe.open("w", encoding="utf-8") as writer:
                writer.write("".join(json.dumps(o) + "\n" for o in OBJECTS))
            wait_for(lambda: http.get("/v1/.well-known/ready").status_code == 200, "readiness")
            assert check(b"", timeout=DEADLINE_S) == b"\x08\x01"  # SERVING
        body = http.get("/v1/.well-known/ready").json()
        assert (body["ready"], body["phase"], body["done"]) == (True, "ready", len(OBJECTS))
        assert http.post("/v1/graphql", json=COUNT_QUERY).json() == {"data": {"Aggregate": {"Article": [{"meta": {"count": len(OBJECTS)}}]}}}
    logs = server.logs()
    assert f"INFO searchd: not ready yet: loading {pipe}" in logs
    assert f"imported {pipe}: 8 stored, 0 already stored unchanged, 0 failed" in logs
    assert "INFO searchd: ready" in logs


def test_serve_refuses_a_missing_load_file_before_opening_its_port(tmp_path: Path, start_server: StartServer) -> None:
    server = start_server(QUICKSTART, tmp_path / "data", "--load", str(tmp_path / "missing.jsonl"), ready=False)
    assert server.process.wait(timeout=DEADLINE_S) == 1
    assert f"not starting: {tmp_path / 'missing.jsonl'}: no such file (check the path; a relative one starts from the current directory)" in server.logs()


class RecordingReadiness(Readiness):
    def __init__(self) -> None:
        super().__init__()
        self.reports: list[tuple[str, int, int | None]] = []

    def report(self, phase: str, done: int, total: int | None = None, fraction: float | None = None) -> None:
        self.reports.append((phase, done, total))
        super().report(phase, done, total, fraction)


def start_app(config: Path, data: Path, then: Callable[[Services, Readiness, threading.Event], None] | None = None) -> tuple[TestClient, Startup]:
    startup = Startup(begin_services(config, data), then)
    startup.readiness = RecordingReadiness()
    return TestClient(create_app(startup)), startup


def test_requests_wait_for_a_start_held_by_a_hook_and_are_served_once_it_is_done(tmp_path: Path) -> None:
    release = threading.Event()
    held = threading.Event()

    def hold(services: Services, readiness: Readiness, stopping: threading.Event) -> None:
        readiness.report("loading a test's objects", 3, 10)
        held.set()
        release.wait(DEADLINE_S)

    http, _ = start_app(QUICKSTART, tmp_path / "data", hold)
    with http:
        assert held.wait(DEADLINE_S)
        response = http.get("/v1/.well-known/ready")
        body = response.json()
        assert (response.status_code, body["ready"], body["phase"], body["done"], body["total"]) == (503, False, "loading a test's objects", 3, 10)
        for method, path in [("POST", "/v1/graphql"), ("GET", "/v1/meta"), ("GET", "/v1/objects"), ("POST", "/v1/batch/objects"), ("GET", "/v1/config/status")]:
            answer = http.request(method, path, json=COUNT_QUERY)
            assert (answer.status_code, answer.json()) == (503, not_ready_message("loading a test's objects")), path
        assert http.get("/v1/.well-known/live").status_code == 200
        assert "searchd_http_request_duration_seconds" in http.get("/metrics").text  # watchable while starting
        release.set()
        wait_for(lambda: http.get("/v1/.well-known/ready").status_code == 200, "readiness")
        assert http.post("/v1/graphql", json=COUNT_QUERY).json() == {"data": {"Aggregate": {"Article": [{"meta": {"count": 0}}]}}}


def test_a_start_up_index_rebuild_reports_its_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    with TestClient(create_app(open_services(QUICKSTART, data))) as first:
        assert first.post("/v1/batch/objects", json={"objects": OBJECTS}).status_code == 200
    shutil.rmtree(data / "indexes")  # the next start rebuilds every index from the store
    http, startup = start_app(QUICKSTART, data)
    with caplog.at_level(logging.INFO, logger="searchd"), http:
        wait_for(lambda: http.get("/v1/.well-known/ready").status_code == 200, "readiness")
    assert isinstance(startup.readiness, RecordingReadiness)
    opening = [(done, total) for phase, done, total in startup.readiness.reports if phase == "opening indexes"]
    # One doc table, one BM25 index and one vector index, each counting the collection's 8 objects.
    assert opening[-1] == (24, 24)
    assert [done for done, _ in opening] == sorted(done for done, _ in opening)
    assert {8, 16} <= {done for done, _ in opening}
    messages = [r.getMessage() for r in caplog.records]
    assert "not ready yet: opening indexes" in messages
    assert messages.index("not ready yet: opening indexes") < messages.index("ready")


def jina_config(path: Path, base_url: str, api_key: str | None = None) -> Path:
    path.write_text(
        json.dumps({
            "modules": {"text2vec-jinaai": {"baseURL": base_url, "maxRetries": 0, **({"apiKey": api_key} if api_key else {})}},
            "collections": [{
                "name": "Doc",
                "properties": [{"name": "title", "type": "TEXT"}],
                "vectors": {"v": {"vectorizer": {"module": "text2vec-jinaai", "model": "jina-embeddings-v3", "dimensions": 64}, "index": {"type": "flat"}}},
            }],
        }),
        encoding="utf-8",
    )
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it once the socket is closed


def provider_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "API key" in r.getMessage()]


def test_a_provider_module_without_a_key_is_named_at_start_with_its_variable_and_header(
    tmp_path: Path, client_factory: ClientFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JINAAI_APIKEY", raising=False)
    config = jina_config(tmp_path / "jina.yaml", "http://127.0.0.1:9")
    with caplog.at_level(logging.WARNING):
        client_factory(config, tmp_path / "data")
    assert provider_warnings(caplog) == [
        (
            "text2vec-jinaai: no API key for Jina AI: set JINAAI_APIKEY (or modules.text2vec-jinaai.apiKey in the config), "
            "or send the X-JinaAI-Api-Key header with each request; until then its writes and queries fail"
        )
    ]
    caplog.clear()
    monkeypatch.setenv("JINAAI_APIKEY", "from-the-environment")
    with caplog.at_level(logging.WARNING):
        client_factory(config, tmp_path / "data2")
        monkeypatch.delenv("JINAAI_APIKEY")
        monkeypatch.setenv("READINESS_TEST_KEY", "in-the-config")
        client_factory(jina_config(tmp_path / "keyed.yaml", "http://127.0.0.1:9", api_key="${READINESS_TEST_KEY}"), tmp_path / "data3")
    assert provider_warnings(caplog) == []


def test_a_provider_connection_error_names_the_host_and_port_but_no_secret(tmp_path: Path, client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINAAI_APIKEY", "a-key")
    port = closed_port()
    secret = "url-secret-7f3a"
    http = client_factory(jina_config(tmp_path / "jina.yaml", f"http://user:{secret}@127.0.0.1:{port}/v1?token={secret}"), tmp_path / "data")
    response = http.post("/v1/batch/objects", json={"objects": [{"class": "Doc", "properties": {"title": "hello"}}]})
    (error,) = response.json()[0]["result"]["errors"]["error"]
    assert error["message"] == (
        f"Jina AI (text2vec-jinaai) failed after 1 attempt(s): could not connect to 127.0.0.1:{port} (ConnectError) "
        "(try again later, or raise modules.text2vec-jinaai.maxRetries / timeoutSeconds)"
    )
    assert secret not in response.text


def test_a_start_that_fails_after_the_port_opened_says_why_and_stops(tmp_path: Path) -> None:
    stopped = threading.Event()

    def fail(services: Services, readiness: Readiness, stopping: threading.Event) -> None:
        raise RuntimeError("the disk went away")

    http, startup = start_app(QUICKSTART, tmp_path / "data", fail)
    startup.on_failure = stopped.set  # `searchd serve` sends itself SIGTERM here, and exits 1
    with http:
        assert stopped.wait(DEADLINE_S)
        response = http.get("/v1/.well-known/ready")
        assert response.status_code == 503
        assert response.json()["error"] == "the disk went away"
        assert http.post("/v1/graphql", json=COUNT_QUERY).status_code == 503
    assert isinstance(startup.error, RuntimeError)
