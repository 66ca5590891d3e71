"""Shared machinery of the fake providers: request recording, fault injection, latency, concurrency tracking.

A subclass supplies its routes (path -> handler) and its provider's error-body shape (:meth:`FakeProvider.error_response`).
Handlers are synchronous and run in a worker thread: embedding is CPU work, and this keeps the event loop free to
accept concurrent requests, so ``in_flight_max`` measures the client's concurrency, not the fake's.

The server runs in another thread than the test, so every piece of shared state is guarded by one lock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.embeddings import Vector, tokens

DEFAULT_API_KEY = "test-key"
# How often a sleeping request checks whether its client went away (so a "never answers" fault doesn't hold up shutdown).
_DISCONNECT_POLL = 0.05


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case keys
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    received_at: float  # time.monotonic()


@dataclass(frozen=True)
class _Fault:
    status: int | None  # None = malformed 200
    retry_after: str | Callable[[], str] | None  # a callable is asked when the answer is made (an HTTP date, say)
    body: Any
    delay: float


class Reject(Exception):
    """Raised by a handler to answer with ``response`` (an error in the provider's own shape)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


Handler = Callable[[RecordedRequest], Response]


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(payload, status_code=status, headers=dict(headers or {}))


class FakeProvider:
    """Base class of the fakes. Attributes tests may set directly: ``api_keys``, ``latency``; ``hold()`` makes a barrier."""

    def __init__(self, api_keys: Iterable[str] = (DEFAULT_API_KEY,), latency: float = 0.0) -> None:
        self._default_api_keys = frozenset(api_keys)
        self._default_latency = latency
        self.api_keys: set[str] = set(self._default_api_keys)
        self.latency = latency
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the last request in flight is answered
        self._requests: list[RecordedRequest] = []
        self._faults: deque[_Fault] = deque()
        self._in_flight = 0
        self._in_flight_max = 0
        self._hold: tuple[int, float] | None = None  # (requests, seconds): see hold()
        self._open = threading.Event()  # cleared by pause(): requests wait until resume()
        self._open.set()
        routes = [Route(path, self._endpoint(handler), methods=["POST"]) for path, handler in self.routes().items()]
        # Catch-all so that requests to a wrong path or with a wrong method are recorded too.
        routes.append(Route("/{path:path}", self._endpoint(self._not_found), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
        self.app = Starlette(routes=routes)

    # --- to be provided by subclasses -------------------------------------------------------------

    def routes(self) -> dict[str, Handler]:
        """Path -> handler for POST requests."""
        raise NotImplementedError

    def error_response(self, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Response:
        """An error answer in this provider's shape."""
        return json_response({"detail": message}, status, headers)

    # --- test-facing API ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order, including failed ones (a snapshot copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def in_flight_max(self) -> int:
        """The largest number of requests observed being handled at the same time."""
        with self._lock:
            return self._in_flight_max

    def bodies(self) -> list[Any]:
        return [r.body for r in self.requests]

    def fail_next(self, status: int, times: int = 1, *, retry_after: str | Callable[[], str] | None = None, body: Any = None, delay: float = 0.0) -> None:
        """Answer the next ``times`` requests with ``status`` (provider error shape, or ``body`` if given).

        ``retry_after`` sets a Retry-After header (a callable: its value when the answer is made). ``delay`` sleeps before answering; longer than the client's timeout
        means "never answers". A ``status`` below 400 means "answer normally, after ``delay``".
        """
        with self._lock:
            self._faults.extend(_Fault(status, retry_after, body, delay) for _ in range(times))

    def malformed_next(self, times: int = 1) -> None:
        """Answer the next ``times`` requests with 200 and a body that is not JSON."""
        with self._lock:
            self._faults.extend(_Fault(None, None, None, 0.0) for _ in range(times))

    def hold(self, count: int, timeout: float = 30.0) -> None:
        """Hold the next requests unanswered until ``count`` are in flight at once, then answer them all (a barrier).

        Makes "the client sends N requests side by side" deterministic: ``in_flight_max`` then reaches ``count``
        whatever the machine's load.  A client that never gets that far is answered after ``timeout``, so the test
        fails on its ``in_flight_max`` assertion instead of hanging.
        """
        with self._lock:
            self._hold = (count, timeout)

    def pause(self) -> None:
        """Hold every request that arrives from now on, unanswered, until ``resume()`` (a provider that stopped answering).

        Makes "a re-vectorization is half-way" last as long as a test needs (then it kills the server, say).
        """
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no request is being handled (one a previous test gave up on may still be sleeping)."""
        with self._idle:
            assert self._idle.wait_for(lambda: self._in_flight == 0, timeout), f"{self._in_flight} request(s) still in flight"

    def reset(self) -> None:
        """Forget recorded requests and queued faults; restore api_keys, latency and in_flight_max."""
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._in_flight_max = self._in_flight
            self._hold = None
        self._open.set()
        self.api_keys = set(self._default_api_keys)
        self.latency = self._default_latency

    # --- machinery ------------------------------------------------------------------------------------

    def _not_found(self, call: RecordedRequest) -> Response:
        return self.error_response(404, f"Not Found: {call.method} {call.path}")

    def _endpoint(self, handler: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            call = RecordedRequest(
                method=request.method,
                path=request.url.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=_parse_json(raw),
                received_at=time.monotonic(),
            )
            with self._lock:
                self._requests.append(call)
                fault = self._faults.popleft() if self._faults else None
                self._in_flight += 1
                self._in_flight_max = max(self._in_flight_max, self._in_flight)
                hold = self._hold
            try:
                while not self._open.is_set():
                    await asyncio.sleep(0.005)
                if hold is not None:
                    await self._barrier(*hold)
                if self.latency > 0 and await _sleep_unless_disconnected(request, self.latency):
                    return Response(status_code=499)  # nobody is listening any more
                if fault is not None:
                    if fault.delay > 0 and await _sleep_unless_disconnected(request, fault.delay):
                        return Response(status_code=499)
                    if fault.status is None:
                        return Response(b"<html><body>502 Bad Gateway</body></html>", media_type="application/json")
                    if fault.status >= 400:
                        return self._fault_response(fault)
                return await run_in_threadpool(self._run, handler, call)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    if not self._in_flight:
                        self._idle.notify_all()

        return endpoint

    async def _barrier(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._hold is None or self._in_flight >= count:
                    self._hold = None  # reached: this request and every one waiting go on
                    return
            await asyncio.sleep(0.005)

    def _run(self, handler: Handler, call: RecordedRequest) -> Response:
        try:
            return handler(call)
        except Reject as exc:
            return exc.response

    def _fault_response(self, fault: _Fault) -> Response:
        assert fault.status is not None
        retry_after = fault.retry_after() if callable(fault.retry_after) else fault.retry_after
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if fault.body is None:
            return self.error_response(fault.status, _default_message(fault.status), headers=headers)
        if isinstance(fault.body, (str, bytes)):
            return Response(fault.body, status_code=fault.status, headers=headers, media_type="text/plain")
        return json_response(fault.body, fault.status, headers)


def _default_message(status: int) -> str:
    if status == 429:
        return "Rate limit exceeded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


async def _sleep_unless_disconnected(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; return True early if the client disconnected meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, _DISCONNECT_POLL))
        if await request.is_disconnected():
            return True
    return False


# --- wire helpers shared by the providers ------------------------------------------------------------

_B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
# Magic numbers of the formats Pillow is likely to be handed: tells a base64 image from a base64-looking word.
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


def b64decode_strict(value: str) -> bytes | None:
    """Decode standard base64 (whitespace allowed), or None if ``value`` is not valid base64."""
    compact = "".join(value.split())
    if not compact or not _B64_RE.match(compact):
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None


def looks_like_base64_image(value: str) -> bool:
    """True when ``value`` is base64 whose bytes start like an image file (a plain word never does)."""
    data = b64decode_strict(value) if len(value) >= 16 else None
    return data is not None and data.startswith(_IMAGE_MAGIC)


def clip_tokens(text: str, limit: int, *, keep_end: bool = False) -> str:
    """The text cut to ``limit`` tokens, keeping its start (or its end)."""
    words = tokens(text)
    if len(words) <= limit:
        return text
    return " ".join(words[-limit:] if keep_end else words[:limit])


def token_count(text: str) -> int:
    return max(1, len(tokens(text)))


def encode_vector(vector: Vector, embedding_type: str) -> Any:
    """A vector in one of the wire encodings: float list, base64 float32 LE, bit-packed int8 ("binary") / uint8 ("ubinary")."""
    if embedding_type == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    if embedding_type == "ubinary":
        return np.packbits(vector > 0).tolist()
    if embedding_type == "binary":  # int8 = uint8 - 128; clients undo it with (x + 128).astype(uint8)
        return (np.packbits(vector > 0).astype(np.int16) - 128).tolist()
    return vector.tolist()
