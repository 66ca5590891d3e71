"""Connection hygiene for the HTTP server: a cap on open connections, deadlines, and fd exhaustion.

uvicorn on its own closes a keep-alive connection only after a response, so a client that
connects and sends nothing (or a header a byte at a time) holds a file descriptor forever;
1,100 of them exhaust the default limit of 1,024 open files, and every failed ``accept``
then logs a traceback.  Here:

* ``maxConnections``: one more connection is answered 503 and closed at once;
* ``idleTimeout``: a connection with no request in progress (just opened, or between
  keep-alive requests) is closed;
* ``headerTimeout`` / ``bodyTimeout``: a request whose headers or body arrive too slowly is
  dropped (slowloris);
* running out of file descriptors anyway (``EMFILE``) logs one line now and then, with a
  count and the fix, instead of a traceback per refused connection.

The soft open-file limit is raised to the hard limit at start, and the default
``maxConnections`` is derived from it (see docs/operations.md).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import os
import resource
import time
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from searchd.config.spec import ConnectionsSpec

log = logging.getLogger("searchd.connections")

FILES_RESERVED = 256  # for the data files, per-thread SQLite readers, index files and provider connections
MAX_DEFAULT_CONNECTIONS = 10_000
MIN_DEFAULT_CONNECTIONS = 64
FD_CHECK_INTERVAL_S = 1.0
FD_HEADROOM = 8  # this close to the limit, an accept or a file open is about to fail
LOG_INTERVAL_S = 10.0  # at most one line per kind of trouble in this time
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})


def _canned(status: str, message: str) -> bytes:
    body = ('{"error":[{"message":"' + message + '"}]}').encode()
    head = f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


_TOO_MANY = _canned("503 Service Unavailable", "the server has too many open connections; retry shortly")
_TOO_SLOW = _canned("408 Request Timeout", "the request headers arrived too slowly; send them at once")


class RateLimitedLog:
    """One log line now, then at most one per interval that counts the events it stood for."""

    def __init__(self, logger: logging.Logger, level: int, interval_s: float = LOG_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.level = level
        self.interval_s = interval_s
        self.clock = clock
        self.last: float | None = None
        self.unlogged = 0

    def event(self, message: str) -> None:
        now = self.clock()
        self.unlogged += 1
        if self.last is not None and now - self.last < self.interval_s:
            return
        since = "" if self.last is None else f" ({self.unlogged} time(s) in the last {now - self.last:.0f} s)"
        self.logger.log(self.level, "%s%s", message, since)
        self.last, self.unlogged = now, 0


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft == hard:
        log.info("open-file limit: %s (already the hard limit)", "unlimited" if soft == resource.RLIM_INFINITY else soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # e.g. an unlimited hard limit the kernel caps lower (macOS)
        log.warning("open-file limit: %d; could not raise it to the hard limit %s (%s)", soft, hard, exc)
        return soft
    log.info("open-file limit: raised from %d to the hard limit %d", soft, hard)
    return hard


def max_connections(settings: ConnectionsSpec, open_files: int) -> int:
    """The configured cap, or one the open-file limit can hold beside the server's own files."""
    room = MAX_DEFAULT_CONNECTIONS + FILES_RESERVED if open_files == resource.RLIM_INFINITY else open_files
    if settings.max_connections is not None:
        if settings.max_connections + FILES_RESERVED > room:
            log.warning(
                "server.connections.maxConnections is %d, but the open-file limit %d leaves room for about %d: "
                "raise the limit (ulimit -n, systemd LimitNOFILE=) to at least %d, or lower maxConnections",
                settings.max_connections, room, max(room - FILES_RESERVED, 0), settings.max_connections + FILES_RESERVED,
            )
        return settings.max_connections
    chosen = max(MIN_DEFAULT_CONNECTIONS, min(MAX_DEFAULT_CONNECTIONS, room - FILES_RESERVED))
    if chosen + FILES_RESERVED > room:
        log.warning("the open-file limit %d is low: raise it (ulimit -n) to at least %d", room, chosen + FILES_RESERVED)
    log.info("at most %d open connections (server.connections.maxConnections)", chosen)
    return chosen


class ConnectionGuard:
    """What every connection of one server shares: its limits and its rate-limited log lines."""

    def __init__(self, settings: ConnectionsSpec, limit: int) -> None:
        self.settings = settings
        self.limit = limit
        self.refusals = RateLimitedLog(log, logging.WARNING)
        self.out_of_files = RateLimitedLog(log, logging.ERROR)
        self.slow = RateLimitedLog(log, logging.INFO)

    def refused(self) -> None:
        self.refusals.event(
            f"{self.limit} connections are open (server.connections.maxConnections): new ones get 503 and are closed"
        )

    def exhausted(self, what: str) -> None:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.out_of_files.event(
            f"out of file descriptors ({what}, open-file limit {soft}): new connections are being dropped; "
            "raise the limit (ulimit -n, systemd LimitNOFILE=) or lower server.connections.maxConnections"
        )

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's error handler: accept() failing for want of file descriptors is one line, not a traceback."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FILES:
            self.exhausted(errno.errorcode.get(exc.errno or 0, "EMFILE"))
            return
        loop.default_exception_handler(context)

    async def watch_files(self) -> None:
        """Say when the process has (nearly) every file descriptor open.

        uvloop drops connections it cannot accept without telling anyone (libuv closes them
        with a spare descriptor), so the count of open descriptors is what shows it.
        """
        listing = next((d for d in ("/proc/self/fd", "/dev/fd") if os.path.isdir(d)), None)
        if listing is None:
            return
        while True:
            await asyncio.sleep(FD_CHECK_INTERVAL_S)
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft == resource.RLIM_INFINITY:
                continue
            try:
                open_now = len(await asyncio.to_thread(os.listdir, listing))
            except OSError:  # listing needs a descriptor too
                open_now = soft
            if open_now >= soft - FD_HEADROOM:
                self.exhausted(f"{open_now} open")

    def protocol(self) -> type[asyncio.Protocol]:
        guard = self

        class GuardedHttp(HttpToolsProtocol):
            """uvicorn's HTTP/1.1 protocol with the guard's cap and deadlines."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                # uvicorn types it int; call_later takes any number of seconds.
                self.timeout_keep_alive = guard.settings.idle_timeout  # type: ignore[assignment]
                self.refused = False
                self.deadline: asyncio.TimerHandle | None = None

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                if len(self.connections) >= guard.limit:
                    self.refused = True
                    self.transport = transport  # connection_lost closes it
                    transport.write(_TOO_MANY)
                    transport.close()
                    guard.refused()
                    return
                super().connection_made(transport)
                self._idle()

            def connection_lost(self, exc: Exception | None) -> None:
                self._clear_deadline()
                super().connection_lost(exc)

            def data_received(self, data: bytes) -> None:
                if self.refused:
                    return
                super().data_received(data)
                # Bytes that start no request (stray CRLFs) must not stop the idle clock.
                if self.deadline is None and (self.cycle is None or self.cycle.response_complete):
                    self._idle()

            def on_message_begin(self) -> None:
                super().on_message_begin()
                self._set_deadline(guard.settings.header_timeout, self._headers_too_slow)

            def on_headers_complete(self) -> None:
                self._clear_deadline()
                super().on_headers_complete()
                self._set_deadline(guard.settings.body_timeout, self._body_too_slow)

            def on_message_complete(self) -> None:
                self._clear_deadline()
                super().on_message_complete()

            def _idle(self) -> None:
                if self.timeout_keep_alive_task is None and not self.transport.is_closing():
                    self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

            def _set_deadline(self, seconds: float, expired: Callable[[], None]) -> None:
                self._clear_deadline()
                self.deadline = self.loop.call_later(seconds, expired)

            def _clear_deadline(self) -> None:
                if self.deadline is not None:
                    self.deadline.cancel()
                    self.deadline = None

            def _headers_too_slow(self) -> None:
                self.deadline = None
                if not self.transport.is_closing():
                    if self.cycle is None or self.cycle.response_complete:  # no earlier response is being written
                        self.transport.write(_TOO_SLOW)
                    self.transport.close()
                    guard.slow.event(f"closed a connection whose request headers took over {guard.settings.header_timeout:g} s (server.connections.headerTimeout)")

            def _body_too_slow(self) -> None:
                self.deadline = None
                if not self.transport.is_closing():
                    self.transport.close()  # the route sees the client gone; nothing of the request is acted on
                    guard.slow.event(f"closed a connection whose request body took over {guard.settings.body_timeout:g} s (server.connections.bodyTimeout)")

        return GuardedHttp


def serve(app: ASGIApp, host: str, port: int, settings: ConnectionsSpec, log_level: str) -> None:
    """Run uvicorn with the guard in place, until SIGINT or SIGTERM."""
    guard = ConnectionGuard(settings, max_connections(settings, raise_open_file_limit()))
    # searchd logs its own access line (with request id and key name), so uvicorn's is off.
    config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, access_log=False, log_config=None,
        http=guard.protocol(), timeout_keep_alive=math.ceil(settings.idle_timeout),
        ws="none",  # no WebSocket routes: an upgrade request is plain HTTP, and the websockets library stays unloaded (2.5 MB)
    )
    server = uvicorn.Server(config)

    async def run() -> None:
        asyncio.get_running_loop().set_exception_handler(guard.loop_exception)
        watcher = asyncio.create_task(guard.watch_files())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(run())
