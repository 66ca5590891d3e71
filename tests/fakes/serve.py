"""Run an ASGI app on a real local port in a background thread (for httpx clients, benchmarks, timeouts)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

STARTUP_TIMEOUT = 10.0
# Requests still running at shutdown (e.g. a "never answers" fault) are cancelled after this long.
GRACEFUL_SHUTDOWN = 1


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) and yield its base URL, e.g. "http://127.0.0.1:54321"."""
    # Bind the socket here: the port is known before the server starts and no other process can grab it meanwhile.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        ws="none",  # importing the websockets stack can emit DeprecationWarnings, which tests turn into errors
        http="h11",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    server = uvicorn.Server(config)
    # uvicorn installs no signal handlers outside the main thread, so the test process keeps its own.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"fake-server-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"fake server on port {port} did not start")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_TIMEOUT)
        sock.close()
