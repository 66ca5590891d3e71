"""The one place where errors become HTTP statuses, in Weaviate's body shape."""

from __future__ import annotations

import logging
import math

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from searchd.errors import (
    AlreadyExists,
    ConfigChanged,
    ConfigError,
    ConfigRefused,
    InvalidInput,
    LimitExceeded,
    NotFound,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ProviderError,
    ProviderUnavailable,
    QueryError,
    QueryTimeout,
    RateLimited,
    SearchdError,
    StorageError,
)

log = logging.getLogger("searchd.server")

STATUS_BY_ERROR: tuple[tuple[type[SearchdError], int], ...] = (
    (InvalidInput, 422),
    (QueryError, 422),
    (LimitExceeded, 422),
    (RateLimited, 429),
    (Overloaded, 503),
    (QueryTimeout, 503),
    (ConfigError, 422),
    (ConfigRefused, 409),
    (AlreadyExists, 422),
    (NotFound, 404),
    (PayloadTooLarge, 413),
    (StorageError, 503),
    (NotReady, 503),
    (ConfigChanged, 503),
    (ProviderUnavailable, 503),
    (ProviderError, 502),
)


def status_of(exc: SearchdError) -> int:
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(exc, kind)), 500)


def escaped(text: str) -> str:
    """The text with each lone surrogate written as its escape (\\udfff): a message quoting a client's string can always be encoded."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_body(message: str) -> dict[str, list[dict[str, str]]]:
    # JSONResponse encodes as UTF-8 and raises on a lone surrogate, which would turn this error into a 500 and drop the connection.
    return {"error": [{"message": escaped(message)}]}


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(message), status_code=status)


async def searchd_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SearchdError)
    status = status_of(exc)
    # Not ready is expected during a start (logged as progress); shedding load is expected, and logging each refusal would add to it.
    if status >= 500 and not isinstance(exc, (NotReady, Overloaded)):
        log.error("%s %s failed: %s", request.method, request.url.path, exc, extra={"request_id": _request_id(request)})
    response = error_response(status, str(exc))
    if isinstance(exc, (RateLimited, Overloaded)):
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route for {request.method} {request.url.path}; see the README for the REST API"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message)


async def client_gone_handler(request: Request, exc: Exception) -> Response:
    """The client closed its connection mid-body (or was dropped for sending too slowly): nothing to answer, nothing to log but the access line."""
    return Response(status_code=499)  # nginx's "client closed request"; the response goes nowhere


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    request_id = _request_id(request)
    log.exception("unexpected error on %s %s", request.method, request.url.path, extra={"request_id": request_id})
    response = error_response(500, f"internal error ({type(exc).__name__}); the server log has the details under request id {request_id}")
    response.headers["X-Request-Id"] = request_id  # this handler runs outside the middleware that adds it
    return response


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))
