"""End to end: real ``searchd serve`` processes on 127.0.0.1, driven over HTTP.

Every server runs as a child process with its stdout/stderr captured to files
in tmp_path (shown in assertion messages); every child is killed in the
fixture's teardown; every wait is bounded in both iterations and time.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.conftest import MULTIMODAL, ON_BOTH_BACKENDS, ROOT, DatabaseFor

READY_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 30.0
ID_NAMESPACE = uuid.UUID("6f1c1c62-6a4e-4c1e-9a57-0e2e5e7d0001")

ARTICLE_CONFIG = """\
# A small text collection for the end-to-end tests; its data dir is its own.
server:
  host: 127.0.0.1
  dataDir: config-data
collections:
  - name: Article
    properties:
      - {name: title, type: TEXT}
      - {name: body, type: TEXT}
    vectors:
      text:
        vectorizer: {module: text2vec-hash, dimensions: 512, textFields: [title]}
        index: {type: flat, distance: cosine}
"""


# -- helpers ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def searchd_module() -> list[str]:
    return [sys.executable, "-m", "searchd"]


def searchd_script() -> list[str]:
    """The installed console script (what a user types), beside this interpreter."""
    script = Path(sys.executable).parent / "searchd"
    if not script.exists():
        pytest.skip(f"no 'searchd' console script beside {sys.executable}")
    return [str(script)]


def child_env() -> dict[str, str]:
    env = dict(os.environ)  # conftest's autouse fixture already removed SEARCHD_DATA and proxies
    env["PYTHONUNBUFFERED"] = "1"
    return env


def write_article_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "searchd.yaml"
    path.write_text(ARTICLE_CONFIG, encoding="utf-8")
    return path


def article_id(batch: int, position: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"article-{batch}-{position}"))


def article_title(object_id: str) -> str:
    # Two tokens nobody else has: nearText on the exact title must rank this object first.
    hexed = uuid.UUID(object_id).hex
    return f"crash article {hexed[:10]} {hexed[10:20]}"


def article_batch(batch: int, size: int) -> list[dict[str, Any]]:
    objects = []
    for position in range(size):
        object_id = article_id(batch, position)
        objects.append(
            {
                "class": "Article",
                "id": object_id,
                "properties": {"title": article_title(object_id), "body": f"batch {batch}, object {position}"},
            }
        )
    return objects


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path
    files: list[IO[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        out = []
        for label, path in (("stderr", self.stderr_path), ("stdout", self.stdout_path)):
            text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else "<missing>"
            out.append(f"--- server {label} ({path}) ---\n{text[-6000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
        finally:
            for handle in self.files:
                handle.close()
            self.files.clear()


def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=HTTP_TIMEOUT_S, trust_env=False)


def wait_ready(server: Server, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll /v1/.well-known/ready until 200; fail at once if the process exits."""
    deadline = time.monotonic() + timeout_s
    last_error = "no attempt"
    with httpx.Client(base_url=server.url, timeout=1.0, trust_env=False) as http:
        for _ in range(int(timeout_s / 0.05) + 1):
            if server.process.poll() is not None:
                pytest.fail(f"server exited with {server.process.returncode} before it was ready\n{server.logs()}")
            try:
                response = http.get("/v1/.well-known/ready")
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                last_error = repr(exc)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
    pytest.fail(f"server not ready on {server.url} after {timeout_s}s (last: {last_error})\n{server.logs()}")


StartServer = Callable[..., Server]


@pytest.fixture
def start_server(tmp_path: Path, database_for: DatabaseFor) -> Iterator[StartServer]:
    """Start ``searchd serve`` children and wait until they answer; all are stopped at teardown."""
    servers: list[Server] = []

    def start(
        config: str | Path,
        data: str | Path,
        *extra: str,
        command: Sequence[str] | None = None,
        cwd: Path | None = None,
        ready: bool = True,
    ) -> Server:
        database_for((cwd or tmp_path) / data)
        # The port is free when chosen but another process may take it before the
        # server binds: retry a few times, on that error only.
        for _ in range(3):
            number = len(servers)
            port = free_port()
            stdout_path = tmp_path / f"server-{number}.stdout"
            stderr_path = tmp_path / f"server-{number}.stderr"
            stdout, stderr = open(stdout_path, "wb"), open(stderr_path, "wb")  # noqa: SIM115 (the server process holds them)
            args = [*(command or searchd_module()), "serve", str(config), "--data", str(data)]
            args += ["--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0", *extra]
            try:
                process = subprocess.Popen(
                    args, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=cwd or tmp_path, env=child_env()
                )
            except BaseException:
                stdout.close()
                stderr.close()
                raise
            server = Server(process, port, stdout_path, stderr_path, [stdout, stderr])
            servers.append(server)
            if not ready:
                return server
            try:
                wait_ready(server)
                return server
            except pytest.fail.Exception:
                if server.process.poll() is not None and "address already in use" in server.logs().lower():
                    continue
                raise
        pytest.fail(f"could not find a free port in 3 attempts\n{servers[-1].logs()}")

    yield start
    errors = []
    for server in servers:
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001 (stop the others anyway, then report)
            errors.append(f"pid {server.process.pid}: {exc!r}")
    assert not errors, f"could not stop every server: {errors}"


class Importer(threading.Thread):
    """Sends batches until stopped, told to, or the server dies; records what was acknowledged."""

    def __init__(self, base_url: str, batch_size: int, max_batches: int, max_seconds: float, enough_batches: int) -> None:
        super().__init__(name="e2e-importer", daemon=True)
        self.base_url = base_url
        self.batch_size = batch_size
        self.max_batches = max_batches
        self.max_seconds = max_seconds
        self.enough_batches = enough_batches
        self.stop_requested = threading.Event()
        self.enough = threading.Event()
        self._lock = threading.Lock()
        self.acked: dict[str, str] = {}  # id -> title, in acknowledgement order
        self.acked_batches = 0
        self.attempted_batches = 0  # batches whose request was started (the last may be in flight)
        self.ended_by = "running"
        self.transport_error = ""
        self.problems: list[str] = []

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.acked_batches, self.attempted_batches

    def run(self) -> None:
        try:
            self._run()
        except BaseException:  # noqa: BLE001 (an exception escaping a thread would be lost, or a pytest warning)
            self.problems.append(traceback.format_exc())
            self.ended_by = "crash"

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(base_url=self.base_url, timeout=HTTP_TIMEOUT_S, trust_env=False) as http:
            for batch in range(self.max_batches):
                if self.stop_requested.is_set():
                    self.ended_by = "stopped"
                    return
                if time.monotonic() > deadline:
                    self.ended_by = "deadline"
                    return
                objects = article_batch(batch, self.batch_size)
                with self._lock:
                    self.attempted_batches = batch + 1
                try:
                    response = http.post("/v1/batch/objects", json={"objects": objects})
                except httpx.TransportError as exc:
                    self.transport_error = repr(exc)
                    self.ended_by = "transport-error"
                    return
                if response.status_code != 200:
                    self.problems.append(f"batch {batch}: HTTP {response.status_code}: {response.text[:500]}")
                    self.ended_by = "http-error"
                    return
                results = response.json()
                if not isinstance(results, list) or len(results) != len(objects):
                    self.problems.append(f"batch {batch}: expected {len(objects)} results, got {str(results)[:500]}")
                    self.ended_by = "bad-response"
                    return
                acked = {}
                for sent, result in zip(objects, results):
                    status = (result.get("result") or {}).get("status")
                    if status == "SUCCESS" and result.get("id") == sent["id"]:
                        acked[sent["id"]] = sent["properties"]["title"]
                    else:
                        self.problems.append(f"batch {batch}: object {sent['id']} not acknowledged: {json.dumps(result)[:500]}")
                with self._lock:
                    self.acked.update(acked)
                    self.acked_batches += 1
                    if self.acked_batches >= self.enough_batches:
                        self.enough.set()
        self.ended_by = "exhausted"


def graphql(http: httpx.Client, query: str, logs: Callable[[], str]) -> dict[str, Any]:
    response = http.post("/v1/graphql", json={"query": query})
    assert response.status_code == 200, f"GraphQL HTTP {response.status_code}: {response.text}\n{logs()}"
    body: dict[str, Any] = response.json()
    assert not body.get("errors"), f"GraphQL errors: {body['errors']}\n{logs()}"
    return body


def list_all_ids(http: httpx.Client, class_name: str, bound: int, logs: Callable[[], str]) -> set[str]:
    """Every stored id of a class, paged with the 'after' cursor (bounded)."""
    ids: set[str] = set()
    after: str | None = None
    page = 500
    for _ in range(bound // page + 3):
        params: dict[str, str | int] = {"class": class_name, "limit": page}
        if after is not None:
            params["after"] = after
        response = http.get("/v1/objects", params=params)
        assert response.status_code == 200, f"list objects: HTTP {response.status_code}: {response.text}\n{logs()}"
        objects = response.json()["objects"]
        ids.update(o["id"] for o in objects)
        if len(objects) < page:
            return ids
        after = objects[-1]["id"]
    pytest.fail(f"listing {class_name} did not end within {bound} objects\n{logs()}")


# -- 1. crash safety ---------------------------------------------------------------


@ON_BOTH_BACKENDS
def test_sigkill_mid_import_loses_no_acknowledged_object(tmp_path: Path, start_server: StartServer) -> None:
    config = write_article_config(tmp_path / "config")
    data = tmp_path / "data"
    batch_size, max_batches = 50, 4000

    first = start_server(config, data)
    importer = Importer(first.url, batch_size=batch_size, max_batches=max_batches, max_seconds=120.0, enough_batches=5)
    importer.start()
    try:
        got_enough = importer.enough.wait(timeout=60.0)
        assert got_enough, (
            f"fewer than 5 batches acknowledged in 60s (ended by {importer.ended_by}): {importer.problems[:5]}\n{first.logs()}"
        )
        assert importer.is_alive(), f"the import ended ({importer.ended_by}) before the kill; it must still be running\n{first.logs()}"
        os.kill(first.process.pid, signal.SIGKILL)
        killed_status = first.process.wait(timeout=10)
    finally:
        importer.stop_requested.set()
        importer.join(timeout=HTTP_TIMEOUT_S + 10)
    assert not importer.is_alive(), "the importer thread did not stop"
    assert killed_status == -signal.SIGKILL, f"server exited with {killed_status}, not by SIGKILL\n{first.logs()}"
    assert not importer.problems, f"import problems before the kill: {importer.problems[:5]}\n{first.logs()}"
    # The import was cut by the kill (a failed request), not finished or stopped politely.
    assert importer.ended_by in {"transport-error", "stopped"}, f"import ended by {importer.ended_by}"
    acked = dict(importer.acked)
    acked_batches, attempted_batches = importer.snapshot()
    assert len(acked) == acked_batches * batch_size >= 5 * batch_size

    second = start_server(config, data)
    logs = second.logs
    with client(second) as http:
        # Every acknowledged object is stored, unchanged.
        missing, wrong = [], []
        for object_id, title in acked.items():
            response = http.get(f"/v1/objects/Article/{object_id}")
            if response.status_code != 200:
                missing.append((object_id, response.status_code))
            elif response.json()["properties"].get("title") != title:
                wrong.append((object_id, response.json()["properties"]))
        assert not missing and not wrong, (
            f"{len(missing)} of {len(acked)} acknowledged objects missing after SIGKILL + restart (first: {missing[:5]}), "
            f"{len(wrong)} changed (first: {wrong[:3]}); transport error at kill: {importer.transport_error}\n{logs()}"
        )

        # Nothing stored that was never sent; the batch in flight at the kill is all or nothing
        # (one transaction per batch), and every acknowledged batch is complete.
        stored = list_all_ids(http, "Article", bound=max_batches * batch_size, logs=logs)
        sent = {article_id(b, p): b for b in range(attempted_batches) for p in range(batch_size)}
        assert stored <= set(sent), f"ids stored that were never sent: {sorted(stored - set(sent))[:5]}\n{logs()}"
        per_batch: dict[int, int] = {}
        for object_id in stored:
            per_batch[sent[object_id]] = per_batch.get(sent[object_id], 0) + 1
        partial = {b: n for b, n in per_batch.items() if n != batch_size}
        assert not partial, f"batches stored in part (batch: objects stored of {batch_size}): {partial}\n{logs()}"

        # The index is rebuilt from the store: acknowledged objects are found by their own words.
        order = list(acked)
        sample = [order[0], order[-1], *random.Random(1234).sample(order, min(20, len(order)))]
        for object_id in dict.fromkeys(sample):
            title = acked[object_id]
            concepts = json.dumps([title])
            query = f"{{ Get {{ Article(nearText: {{concepts: {concepts}}}, limit: 1) {{ title _additional {{ id distance }} }} }} }}"
            hits = graphql(http, query, logs)["data"]["Get"]["Article"]
            assert hits, f"nearText for {title!r} found nothing after restart\n{logs()}"
            assert hits[0]["_additional"]["id"] == object_id and hits[0]["title"] == title, (
                f"nearText for {title!r} ranked {hits[0]} first, expected {object_id}\n{logs()}"
            )


# -- 2. one server per data dir ----------------------------------------------------------


@ON_BOTH_BACKENDS
def test_second_server_on_same_data_dir_is_refused(tmp_path: Path, start_server: StartServer) -> None:
    config = write_article_config(tmp_path / "config")
    data = tmp_path / "data"
    first = start_server(config, data)
    with client(first) as http:
        response = http.post("/v1/batch/objects", json={"objects": article_batch(0, 3)})
        assert response.status_code == 200, f"{response.text}\n{first.logs()}"

    args = [*searchd_module(), "serve", str(config), "--data", str(data), "--host", "127.0.0.1", "--port", str(free_port()), "--grpc-port", "0"]
    second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path, env=child_env())
    try:
        stdout, stderr = second.communicate(timeout=30)
    finally:
        if second.poll() is None:  # it started serving instead of refusing: stop it
            second.kill()
            second.communicate(timeout=10)
    out, err = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    details = f"second server stdout:\n{out}\nsecond server stderr:\n{err}\nfirst server:\n{first.logs()}"
    assert second.returncode not in (0, None), f"the second server exited with {second.returncode}\n{details}"
    assert re.search(r"data directory .* is in use", err), f"no 'data directory ... is in use' message\n{details}"
    assert str(data) in err, f"the message does not name the data directory\n{details}"

    # The first server is unharmed: still ready, still reads and writes its data.
    assert first.process.poll() is None, f"the first server died\n{first.logs()}"
    with client(first) as http:
        assert http.get("/v1/.well-known/ready").status_code == 200
        assert http.get(f"/v1/objects/Article/{article_id(0, 0)}").status_code == 200, first.logs()
        response = http.post("/v1/batch/objects", json={"objects": article_batch(1, 3)})
        assert response.status_code == 200, f"{response.text}\n{first.logs()}"
        assert all(r["result"]["status"] == "SUCCESS" for r in response.json()), f"{response.text}\n{first.logs()}"


# -- 3. the multimodal example, as the quickstart shows it ----------------------------------


@ON_BOTH_BACKENDS
def test_serve_with_load_imports_example_and_answers_curl_query(tmp_path: Path, start_server: StartServer, storage_backend: str) -> None:
    example_data = MULTIMODAL / "../../data/multimodal"
    example_data_existed = example_data.exists()
    objects_file = MULTIMODAL / "objects.jsonl"
    expected = sum(1 for line in objects_file.read_text(encoding="utf-8").splitlines() if line.strip())
    data = tmp_path / "data"

    # Relative paths from the repository root, as in the quickstart.
    server = start_server(
        "examples/multimodal",
        data,
        "--load",
        "examples/multimodal/objects.jsonl",
        command=searchd_script(),
        cwd=ROOT,
    )
    logs = server.logs
    assert f"imported examples/multimodal/objects.jsonl: {expected} stored, 0 already stored unchanged, 0 failed" in logs(), logs()

    with client(server) as http:
        # What `curl -X POST -H 'Content-Type: application/json' -d '{"query": ...}'` sends.
        query = '{ Get { Artwork(nearText: {concepts: ["red circle"]}, limit: 2) { title } } }'
        response = http.post("/v1/graphql", content=json.dumps({"query": query}), headers={"Content-Type": "application/json"})
        assert response.status_code == 200, f"{response.text}\n{logs()}"
        body = response.json()
        assert not body.get("errors"), f"{body}\n{logs()}"
        titles = [hit["title"] for hit in body["data"]["Get"]["Artwork"]]
        assert sorted(titles) == ["Red circle on black", "Red circle on white"], f"{titles}\n{logs()}"

        meta = http.get("/v1/meta")
        assert meta.status_code == 200, f"{meta.text}\n{logs()}"
        assert "multi2vec-local" in meta.json()["modules"], f"{meta.json()}\n{logs()}"

        listed = http.get("/v1/objects", params={"class": "Artwork", "limit": 100})
        assert listed.status_code == 200 and len(listed.json()["objects"]) == expected, f"{listed.text[:500]}\n{logs()}"

    found = sorted(p.name for p in data.iterdir()) if data.exists() else "missing"
    assert (data / "LOCK").exists(), f"--data was not used: {found}"
    assert (data / "objects.sqlite3").exists() == (storage_backend == "sqlite"), f"objects kept in the wrong store: {found}"
    if not example_data_existed:
        assert not example_data.exists(), f"the example's own data dir {example_data.resolve()} was created although --data was given"


# -- 4. a broken config never starts ----------------------------------------------------------

BROKEN_CONFIGS = {
    "schema-errors": (
        """\
        server:
          dataDir: config-data
        collections:
          - name: Article
            properties:
              - {name: title, type: TXT}
            vectors:
              text:
                vectorizer: {module: text2vec-nope, textFields: [title]}
        """,
        ["type: TXT", "text2vec-nope"],
    ),
    "yaml-syntax": (
        """\
        server:
          dataDir: config-data
        collections:
          - name: Article
            properties: [ {name: title, type: TEXT}
            vectors:
              text: {vectorizer: {module: text2vec-hash}}
        """,
        ["vectors:"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_serve_refuses_invalid_config(tmp_path: Path, case: str) -> None:
    text, markers = BROKEN_CONFIGS[case]
    text = textwrap.dedent(text)
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(text, encoding="utf-8")
    data = tmp_path / "data"
    lines = text.splitlines()
    expected_lines = {next(n for n, line in enumerate(lines, 1) if marker in line) for marker in markers}

    args = [*searchd_script(), "serve", str(config), "--data", str(data), "--host", "127.0.0.1", "--port", str(free_port()), "--grpc-port", "0"]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp_path, env=child_env()
    )
    try:
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # it started serving a broken config: stop it
            process.kill()
            process.communicate(timeout=10)
    err = stderr.decode(errors="replace")
    details = f"stdout:\n{stdout.decode(errors='replace')}\nstderr:\n{err}"

    assert process.returncode == 1, f"exit status {process.returncode}\n{details}"
    located = re.findall(rf"^{re.escape(str(config))}:(\d+):(\d+): ", err, flags=re.MULTILINE)
    assert located, f"no '{config}:line:col:' error on stderr\n{details}"
    assert {int(line) for line, _ in located} == expected_lines, (
        f"errors at lines {located}, expected lines {sorted(expected_lines)}\n{details}"
    )
    assert all(int(column) >= 1 for _, column in located), details
    assert "not starting" in err, details
    assert not data.exists(), f"the data dir was created: {sorted(p.name for p in data.iterdir())}"
    assert not (config.parent / "config-data").exists(), "the config's own dataDir was created"
