"""Request body size limit, enforced while the body streams in (not after it is buffered)."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from searchd.errors import PayloadTooLarge


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
