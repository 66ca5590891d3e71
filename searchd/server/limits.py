"""Request limits at the edge: the body size (enforced while it streams in), query admission, per-key rates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from searchd.config.spec import LimitsSpec, RateLimitSpec, RateSpec
from searchd.deadline import Deadline, running_until, timed_out
from searchd.errors import Overloaded, PayloadTooLarge, RateLimited
from searchd.server.auth import OPEN_PATHS
from searchd.server.errors import error_response, status_of

T = TypeVar("T")
ANONYMOUS = "anonymous"  # the bucket of requests made without an API key


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body is larger than the limit of {limit} bytes",
        "send smaller batches, or raise server.limits.maxBodyBytes in the config",
    )


DRAIN_BYTES = 1 << 30  # read and discard at most this much of a refused body before answering


async def _drain(receive: Receive, more_body: bool) -> bool:
    """Read and discard the rest of a refused body; whether it all arrived within DRAIN_BYTES.

    A client that sends its whole body before reading (most do) sees a 413 sent early only
    if the server reads what it sends: closing with data unread resets the connection,
    and the client gets a broken pipe instead of the answer.
    """
    discarded = 0
    while more_body:
        message = await receive()
        if message["type"] != "http.request":
            return False  # the client went away
        discarded += len(message.get("body", b""))
        more_body = bool(message.get("more_body", False))
        if discarded > DRAIN_BYTES:
            return False
    return True


class BodySizeLimit:
    """Refuses a body over the limit with 413: a declared Content-Length at once, a streamed one when it crosses it.

    Nothing of the request is acted on.  The rest of the body is read and discarded
    (up to DRAIN_BYTES) before the answer, so a client that does not read early
    responses gets the 413 rather than a broken pipe; a client that sent
    ``Expect: 100-continue`` has not sent its body, and is answered at once.
    """

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit  # read per request, so a config reload takes effect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            # Not worth reading: a body the client has not sent (100-continue), or one larger than we would discard.
            worth = headers.get(b"expect", b"").lower() != b"100-continue" and int(declared) <= DRAIN_BYTES
            drained = worth and await _drain(receive, True)
            await _refuse(send, limit, close=not drained)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    await _drain(receive, bool(message.get("more_body", False)))
                    raise too_large(limit)
            return message

        await self.app(scope, counting_receive, send)


async def _refuse(send: Send, limit: int, close: bool) -> None:
    body = json.dumps({"error": [{"message": str(too_large(limit))}]}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the body was not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- admission of queries: a bounded number run at once, each for a bounded time -----------------


class QueryGate:
    """At most ``maxConcurrentQueries`` GraphQL requests run at once; the others wait, in order of arrival.

    A request waits at most ``queueTimeout`` seconds for a slot (then Overloaded: 503 with
    Retry-After), and runs at most ``queryTimeout`` seconds (then it is cancelled: searches not yet
    started never start, and those running in worker threads stop at their next check of the deadline).
    The limits are read per request, so a reload changes them for the next one.  Health probes and
    other routes never pass through here.
    """

    def __init__(self) -> None:
        self.running = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """How many requests wait for a slot now."""
        return sum(not w.done() for w in self._waiting)

    def _wake(self, limit: int) -> None:
        while self._waiting and self.running < limit:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot is handed over: counted here, released by its new owner
                self.running += 1

    async def _acquire(self, limits: LimitsSpec) -> None:
        limit = limits.max_concurrent_queries
        if self.running < limit and not self._waiting:
            self.running += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._wake(limit)  # the limit may have grown since the others queued
        try:
            await asyncio.wait((waiter,), timeout=limits.queue_timeout)
        except BaseException:
            self._abandon(waiter, limits)
            raise
        if not waiter.done():
            self._abandon(waiter, limits)
            raise Overloaded(
                f"the server is busy: {self.running} queries are running (server.limits.maxConcurrentQueries is {limit}) "
                f"and this one waited {limits.queue_timeout:g} s for a slot (server.limits.queueTimeout)",
                "retry after a moment, or send fewer queries at once",
            )

    def _abandon(self, waiter: asyncio.Future[None], limits: LimitsSpec) -> None:
        if waiter.done() and not waiter.cancelled():
            self._release(limits)  # the slot came just as this request gave up: hand it on
        else:
            waiter.cancel()
            with contextlib.suppress(ValueError):
                self._waiting.remove(waiter)

    def _release(self, limits: LimitsSpec) -> None:
        self.running -= 1
        self._wake(limits.max_concurrent_queries)

    async def run(self, limits: LimitsSpec, work: Callable[[float], Awaitable[T]]) -> T:
        """``work(deadline)`` in a slot, cancelled at the deadline (a ``time.monotonic()`` value it can check itself).

        The deadline is also published to the work (searchd.deadline), so the loops it runs in worker
        threads stop at their next check instead of running on after the 503.
        """
        await self._acquire(limits)
        try:
            deadline = Deadline(limits.query_timeout)
            with running_until(deadline), anyio.move_on_after(limits.query_timeout):
                result = await work(deadline.at)
                if not deadline.passed:
                    return result
            deadline.cancel()
            raise timed_out(limits.query_timeout)
        finally:
            self._release(limits)


# -- per-key request rates -------------------------------------------------------------------------


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimit:
    """A token bucket per API key name (``server.limits.rateLimit``); 429 with Retry-After when it is empty.

    Runs inside Authentication, which names the key; without API keys every request shares the
    bucket "anonymous".  Health probes are never counted.
    """

    def __init__(self, app: ASGIApp, limits: Callable[[], RateLimitSpec]) -> None:
        self.app = app
        self.limits = limits  # read per request, so a config reload takes effect
        self._buckets: dict[str, _Bucket] = {}

    def _wait(self, name: str, rate: RateSpec) -> float:
        """0 when a request may go now (and takes its token), else the seconds until it may."""
        now = time.monotonic()
        per_second = rate.requests_per_second or 1.0  # of() gives only limited rates
        bucket = self._buckets.setdefault(name, _Bucket(float(rate.capacity), now))
        bucket.tokens = min(float(rate.capacity), bucket.tokens + (now - bucket.updated) * per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / per_second

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        name = str(scope.get("state", {}).get("api_key_name", ANONYMOUS))
        rate = self.limits().of(name)
        wait = self._wait(name, rate) if rate is not None else 0.0
        if rate is not None and wait > 0:
            who = "requests without an API key" if name == ANONYMOUS else f"key '{name}'"
            error = RateLimited(
                f"{who} made more than {rate.requests_per_second:g} requests per second (burst {rate.capacity}); the limit is server.limits.rateLimit",
                f"retry after {math.ceil(wait)} s",
                retry_after=wait,
            )
            response = error_response(status_of(error), str(error))
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
