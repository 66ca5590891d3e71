"""API-key authentication and roles, as Weaviate clients send them: ``Authorization: Bearer <key>``.

Keys come from the catalog being served, so a reload rotates them.  Every declared key
is compared (in constant time) so the time taken does not tell which key came close.
Only the key's *name* is ever logged or put on the request.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from searchd.config.spec import ApiKeySpec, AuthSpec, Role
from searchd.server.errors import error_response

OPEN_PATHS = frozenset({"/v1/.well-known/live", "/v1/.well-known/ready", "/", "/console", "/console/"})
# The console's own files load without a key (it asks for one); its data calls are API calls like any other.
OPEN_PREFIXES = ("/console/static/",)
# POSTs that only read: GraphQL here has queries, no mutations.
READ_POSTS = frozenset({"/v1/graphql", "/v1/graphql/batch"})


def required_role(method: str, path: str) -> Role | None:
    """None: open to anyone."""
    if path in OPEN_PATHS or (method in ("GET", "HEAD") and path.startswith(OPEN_PREFIXES)):
        return None
    if method in ("GET", "HEAD", "OPTIONS") or (method == "POST" and path in READ_POSTS):
        return Role.READ
    return Role.ADMIN


def find_key(auth: AuthSpec, presented: str) -> ApiKeySpec | None:
    found = None
    for candidate in auth.api_keys:
        if hmac.compare_digest(candidate.key.encode(), presented.encode()):
            found = candidate
    return found


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class Authentication:
    """ASGI middleware: 401 without a valid key, 403 when the key's role may not do this."""

    def __init__(self, app: ASGIApp, auth: Callable[[], AuthSpec]) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        auth = self.auth()
        needed = required_role(scope["method"], scope["path"])
        if not auth.enabled or needed is None:
            await self.app(scope, receive, send)
            return
        presented = bearer(scope["headers"])
        key = find_key(auth, presented) if presented else None
        if key is None:
            problem = "this server needs an API key" if presented is None else "the API key is not valid"
            response = error_response(401, f"{problem} (send 'Authorization: Bearer <key>' with a key declared under server.auth.apiKeys)")
            response.headers["WWW-Authenticate"] = 'Bearer realm="searchd"'
            await response(scope, receive, send)
            return
        if needed is Role.ADMIN and key.role is not Role.ADMIN:
            response = error_response(403, f"key '{key.name}' has the read role; {scope['method']} {scope['path']} needs an admin key")
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["api_key_name"] = key.name
        await self.app(scope, receive, send)
