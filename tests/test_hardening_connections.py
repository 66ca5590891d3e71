"""Connection hygiene and start-up failures against real ``searchd serve`` processes (issue #13).

Each server runs with the limits the test sets (open files through ``preexec_fn``, short
timeouts in ``server.connections``); every wait is on a condition (a socket reads EOF, a
probe answers) with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import resource
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_e2e_server import Server, child_env, free_port, searchd_module, wait_ready

DEADLINE_S = 30.0
CONFIG = """\
server:
  limits: {maxBodyBytes: 1048576}
  connections: {connections}
collections:
  - name: Article
    properties:
      - {name: title, type: TEXT}
    vectors:
      text:
        vectorizer: {module: text2vec-hash, dimensions: 32, textFields: [title]}
        index: {type: flat, distance: cosine}
"""

Launch = Callable[..., Server]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start a server on CONFIG with the given server.connections and open-file limit; stopped at teardown."""
    servers: list[Server] = []

    def start(connections: str, open_files: int | None = None) -> Server:
        number = len(servers)
        config = tmp_path / f"config{number}" / "searchd.yaml"
        config.parent.mkdir()
        config.write_text(CONFIG.replace("{connections}", connections), encoding="utf-8")
        port = free_port()
        stdout_path, stderr_path = tmp_path / f"server{number}.stdout", tmp_path / f"server{number}.stderr"
        stdout, stderr = open(stdout_path, "wb"), open(stderr_path, "wb")  # noqa: SIM115 (the server process holds them)

        def limit_files() -> None:
            if open_files is not None:  # soft and hard: the server cannot raise it
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        args = [*searchd_module(), "serve", str(config), "--data", str(tmp_path / f"data{number}"), "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0"]
        process = subprocess.Popen(args, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=child_env(), preexec_fn=limit_files)  # noqa: PLW1509 (setrlimit only)
        server = Server(process, port, stdout_path, stderr_path, [stdout, stderr])
        servers.append(server)
        wait_ready(server)
        return server

    yield start
    for server in servers:
        server.stop()


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)
    return sock


def read_until_eof(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection (the socket's timeout is the deadline)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def wait_for_log(server: Server, needle: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not log_lines(server, needle):
        if time.monotonic() > deadline:
            pytest.fail(f"no log line with {needle!r} within {DEADLINE_S}s\n{server.logs()}")
        time.sleep(0.05)


def log_lines(server: Server, needle: str) -> list[str]:
    return [line for line in server.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines() if needle in line]


def test_connections_over_the_limit_get_503_and_the_server_answers_after(launch: Launch) -> None:
    server = launch("{maxConnections: 20, idleTimeout: 120}", open_files=512)
    held = [connect(server) for _ in range(60)]
    try:
        answers = [read_until_eof(sock) for sock in held[20:]]
        assert all(a.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") for a in answers), answers[:2]
        assert all(a.endswith(b'{"error":[{"message":"the server has too many open connections; retry shortly"}]}') for a in answers)
        with httpx.Client(base_url=server.url, timeout=5.0, trust_env=False) as http:
            assert http.get("/v1/meta").status_code == 503
    finally:
        for sock in held:
            sock.close()
    wait_ready(server)  # answers again
    refusals = log_lines(server, "server.connections.maxConnections")
    assert 1 <= len(refusals) <= 3, refusals
    assert "20 connections are open (server.connections.maxConnections): new ones get 503 and are closed" in refusals[0]
    assert "Traceback" not in server.logs()


def test_running_out_of_file_descriptors_is_logged_once_and_survived(launch: Launch) -> None:
    """1,100 half-open connections against 1,024 open files: the server stays up, answers afterwards, and logs a few lines."""
    server = launch("{maxConnections: 5000, idleTimeout: 120}", open_files=1024)
    warned = log_lines(server, "maxConnections is 5000")
    assert len(warned) == 1 and "raise the limit (ulimit -n, systemd LimitNOFILE=) to at least 5256" in warned[0]
    held: list[socket.socket] = []
    try:
        for _ in range(1100):
            held.append(connect(server))  # the kernel completes the handshake; the server cannot accept them all
        with httpx.Client(base_url=server.url, timeout=2.0, trust_env=False) as http, pytest.raises(httpx.TransportError):
            http.get("/v1/meta")
        wait_for_log(server, "out of file descriptors")
    finally:
        for sock in held:
            sock.close()
    wait_ready(server)  # answers again
    logs = server.logs()
    assert "Traceback" not in logs, logs
    exhausted = log_lines(server, "out of file descriptors")
    assert 1 <= len(exhausted) <= 2, exhausted  # one line, and one more with a count if the hold outlasted the interval
    assert "open-file limit 1024): new connections are being dropped; raise the limit (ulimit -n, systemd LimitNOFILE=) or lower server.connections.maxConnections" in exhausted[0]
    trouble = [line for line in logs.splitlines() if " ERROR " in line or " WARNING " in line]
    assert len(trouble) <= 5, trouble  # the start-up warning, then at most a line or two per kind of trouble


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(launch: Launch, tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard < 2048:
        pytest.skip(f"needs a finite hard limit of at least 2048 (here {hard})")
    config = tmp_path / "raised" / "searchd.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG.replace("{connections}", "{}"), encoding="utf-8")
    port = free_port()
    stderr_path = tmp_path / "raised.stderr"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [*searchd_module(), "serve", str(config), "--data", str(tmp_path / "raised-data"), "--port", str(port), "--grpc-port", "0"],
            stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL, env=child_env(),
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)),  # noqa: PLW1509 (setrlimit only)
        )
        server = Server(process, port, tmp_path / "raised.stdout", stderr_path)
        try:
            wait_ready(server)
            limits = Path(f"/proc/{process.pid}/limits")
            if limits.exists():
                row = next(line for line in limits.read_text().splitlines() if line.startswith("Max open files"))
                assert row.split()[3:5] == [str(hard), str(hard)], row
            lines = log_lines(server, "open-file limit")
            assert f"open-file limit: raised from 1024 to the hard limit {hard}" in lines[0]
            default = min(10_000, hard - 256)
            assert log_lines(server, f"at most {default} open connections (server.connections.maxConnections)")
        finally:
            server.stop()


def test_idle_connections_are_closed_after_the_idle_timeout(launch: Launch) -> None:
    server = launch("{idleTimeout: 0.5}")
    silent = connect(server)
    with silent:
        assert read_until_eof(silent) == b""  # never sent a byte: closed, without an answer
    kept = connect(server)
    with kept:
        kept.sendall(b"GET /v1/.well-known/live HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_until_eof(kept)  # the keep-alive connection is closed after its response
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.count(b"HTTP/1.1") == 1


def test_slow_headers_get_408_and_slow_bodies_are_dropped(launch: Launch) -> None:
    server = launch("{idleTimeout: 60, headerTimeout: 0.5, bodyTimeout: 0.5}")
    slow_headers = connect(server)
    with slow_headers:
        slow_headers.sendall(b"GET /v1/meta HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        answer = read_until_eof(slow_headers)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b'{"error":[{"message":"the request headers arrived too slowly; send them at once"}]}')
    slow_body = connect(server)
    body = b'{"class": "Article", "properties": {"title": "never stored"}}'
    with slow_body:
        slow_body.sendall(b"POST /v1/objects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
        assert read_until_eof(slow_body) == b""
    wait_ready(server)  # answers again
    with httpx.Client(base_url=server.url, timeout=DEADLINE_S, trust_env=False) as http:
        assert http.get("/v1/objects", params={"class": "Article"}).json()["objects"] == []
    assert "Traceback" not in server.logs()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_client_that_sends_a_large_body_before_reading_gets_the_413(launch: Launch, framing: str) -> None:
    server = launch("{}")
    size, chunk = 64 * 1024 * 1024, b"x" * (1024 * 1024)
    with connect(server) as sock:
        length = b"Transfer-Encoding: chunked" if framing == "chunked" else b"Content-Length: %d" % size
        sock.sendall(b"POST /v1/batch/objects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n" + length + b"\r\n\r\n")
        for _ in range(size // len(chunk)):  # all of it, as a client that does not read early answers does
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if framing == "chunked" else chunk)
        if framing == "chunked":
            sock.sendall(b"0\r\n\r\n")
        answer = read_until_eof(sock)
    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer[:200]
    assert answer.endswith(b"request body is larger than the limit of 1048576 bytes (send smaller batches, or raise server.limits.maxBodyBytes in the config)\"}]}")


def test_a_restart_on_a_full_disk_says_so(tmp_path: Path) -> None:
    """The data directory sits on a 4 MB tmpfs (in a private mount namespace) that is filled before the restart."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False).returncode != 0:
        pytest.skip("needs unshare with user and mount namespaces, to mount a small tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    config = tmp_path / "config" / "searchd.yaml"
    config.parent.mkdir()
    config.write_text(CONFIG.replace("{connections}", "{}"), encoding="utf-8")
    searchd = " ".join(searchd_module())
    script = textwrap.dedent(f"""\
        set -u
        mount -t tmpfs -o size=4m tmpfs {mount}
        {searchd} apply {config} --data {mount}/data >/dev/null 2>&1 || {{ echo "apply failed"; exit 3; }}
        dd if=/dev/zero of={mount}/fill bs=64k >/dev/null 2>&1
        {searchd} serve {config} --data {mount}/data --host 127.0.0.1 --port {free_port()} --grpc-port 0
        echo "exit status $?" >&2
    """)
    done = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script], capture_output=True, text=True, env=child_env(), timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == "exit status 1", done.stderr
    assert lines[-2].startswith(f"not starting: the object store cannot write: the disk holding {mount}/data is full ("), done.stderr
    assert lines[-2].endswith(f"(free space on that disk (see `df -h {mount}/data`) or move the data directory to a larger disk and pass --data; nothing was written)")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("extra", [b"Expect: 100-continue\r\nContent-Length: 5000000", b"Content-Length: 5000000000"], ids=["expect-100-continue", "beyond-the-drain-bound"])
def test_a_body_that_is_not_worth_reading_is_refused_at_once(launch: Launch, extra: bytes) -> None:
    """A client waiting for 100 Continue, or declaring more than would be discarded, gets the 413 before it sends the body."""
    server = launch("{}")
    with connect(server) as sock:
        sock.sendall(b"POST /v1/batch/objects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra + b"\r\n\r\n")
        answer = read_until_eof(sock)  # closed after the answer: the unread body cannot be followed by another request
    assert answer.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n"), answer[:200]
    assert b"\r\nconnection: close\r\n" in answer.lower()
