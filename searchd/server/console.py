"""The browser console (#17): its static files, the root page that links to it, and the one JSON call it adds.

The static files (``searchd/console/static``) are our own HTML, CSS and JavaScript modules, served as they are:
no build step, nothing fetched from another host.  They load without an API key (auth.py leaves ``/`` and
``/console`` open); every data call the page makes is an ordinary API call and needs one when keys are set.

``GET /v1/console/collections`` tells the console what the Weaviate-shaped ``/v1/schema`` does not: each
collection's object count, each vector's module, model and dimensions and what a query may be (text, image),
the BM25 settings, the limits a request must keep to, and the YAML block each collection was declared in
(file, line and text, read from the config files now: the block as it is on disk).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from searchd.catalog import Catalog, CompiledCollection, CompiledVector
from searchd.config.loader import read_documents
from searchd.server.routes import _catalog, _services

STATIC_PACKAGE = ("searchd.console", "static")
# The page runs only its own files: scripts, styles and connections to this origin; images also as data: URLs
# (a BLOB property's thumbnail is its base64 shown as is).  No frames, no forms posted elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # A new searchd version ships new files under the same names: the browser asks again each time.
    "Cache-Control": "no-cache",
}
ROOT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>searchd</title></head>
<body><h1>searchd</h1>
<ul><li><a href="/console">Console</a>: collections, search, GraphQL, config and reloads</li>
<li><a href="/v1/meta">/v1/meta</a></li><li><a href="/v1/openapi.json">/v1/openapi.json</a></li>
<li><a href="/v1/.well-known/ready">/v1/.well-known/ready</a></li></ul></body></html>
"""


def _index_html() -> Path:
    # Where the package's static files are installed (an editable install or a wheel alike).
    return Path(str(importlib.resources.files(STATIC_PACKAGE[0]).joinpath(STATIC_PACKAGE[1], "index.html")))


class ConsoleFiles(StaticFiles):
    """The console's static files, with the security headers on every answer."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *[(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]]
            await send(message)

        await super().__call__(scope, receive, send_with_headers)


async def root(request: Request) -> Response:
    """A browser gets a page linking to the console; an API client gets the same links as JSON."""
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(ROOT_PAGE, headers=SECURITY_HEADERS)
    links = [
        {"name": "console", "href": "/console"},
        {"name": "meta", "href": "/v1/meta"},
        {"name": "openapi", "href": "/v1/openapi.json"},
        {"name": "graphql", "href": "/v1/graphql"},
    ]
    return JSONResponse({"links": links})  # no version: this answers without a key


async def console_page(request: Request) -> Response:
    return FileResponse(_index_html(), headers=SECURITY_HEADERS)


def _vector_json(vector: CompiledVector) -> dict[str, Any]:
    spec = vector.spec
    return {
        "name": vector.name,
        "default": spec.default,
        "module": spec.vectorizer.module,
        "model": spec.vectorizer.model or vector.module.default_model,
        "dimensions": vector.dimensions,
        "multiVector": vector.is_multi,
        "textFields": list(spec.vectorizer.text_fields or ()),
        "imageFields": list(spec.vectorizer.image_fields or ()),
        # What a query on this vector may be: nearText needs "text", nearImage "image"; none: nearVector only.
        "queries": sorted(vector.module.queries) if vector.vectorizer is not None else [],
        "index": {"type": spec.index.type, "distance": spec.index.distance.value},
    }


def _collection_json(collection: CompiledCollection, count: int, source: dict[str, Any] | None) -> dict[str, Any]:
    spec = collection.spec
    inverted = spec.inverted_index
    default = collection.default_vector
    return {
        "name": collection.name,
        "description": spec.description,
        "count": count,
        "defaultVector": default.name if default is not None else None,
        "properties": [
            {
                "name": p.name,
                "type": p.type.value,
                "description": p.description,
                "tokenization": p.tokenization.value if p.searchable else None,
                "searchable": p.searchable,
                "filterable": p.filterable,
                "image": p.name in collection.image_fields,
            }
            for p in spec.properties
        ],
        "vectors": [_vector_json(v) for v in collection.vectors.values()],
        "bm25": {"k1": inverted.k1, "b": inverted.b, "stopwords": inverted.stopword_preset},
        "source": source,
    }


def _block(lines: list[str], start: int, column: int) -> str:
    """The lines of the YAML node that starts at ``start`` (1-based) and ``column``: up to the next line indented less."""
    end = start
    for number in range(start, len(lines)):  # 0-based index of the line after ``start``
        text = lines[number]
        if text.strip() and len(text) - len(text.lstrip(" ")) < column - 1:
            break
        end = number + 1
    block = lines[start - 1 : end]
    while len(block) > 1 and not block[-1].strip():
        block.pop()
    return "\n".join(block)


def collection_sources(config_path: str) -> dict[str, dict[str, Any]]:
    """Where each collection is declared in the config files as they are now: {name: {file, line, text}}."""
    documents, _issues = read_documents(Path(config_path))  # a file that does not parse now just shows no block
    found: dict[str, dict[str, Any]] = {}
    for document in documents:
        collections = document.data.get("collections") if isinstance(document.data, dict) else None
        if not isinstance(collections, list):
            continue
        lines = Path(document.file).read_text(encoding="utf-8").splitlines()
        for index, collection in enumerate(collections):
            name = collection.get("name") if isinstance(collection, dict) else None
            if not isinstance(name, str) or name in found:
                continue
            file, line, column = document.locator.find(("collections", index))
            found[name] = {"file": file, "line": line, "text": _block(lines, line, column)}
    return found


def _collections_body(services: Any, catalog: Catalog) -> dict[str, Any]:
    sources = collection_sources(services.config_path)
    limits = catalog.spec.server.limits
    return {
        "configPath": services.config_path,
        "authEnabled": catalog.spec.server.auth.enabled,
        # For the copied Python snippet (the client wants a gRPC port); a --grpc-port given at start is not known here.
        "grpcPort": catalog.spec.server.grpc.port if catalog.spec.server.grpc.enabled else None,
        "limits": {
            "maxBodyBytes": limits.max_body_bytes,
            "queryLimitDefault": limits.query_limit_default,
            "queryLimitMax": limits.query_limit_max,
        },
        "collections": [_collection_json(c, services.engine.count(c.name), sources.get(c.name)) for c in catalog.collections.values()],
    }


async def console_collections(request: Request) -> Response:
    catalog = _catalog(request)
    body = await anyio.to_thread.run_sync(_collections_body, _services(request), catalog)
    return JSONResponse(body)


CONSOLE_ROUTES: list[BaseRoute] = [
    Route("/", root, methods=["GET"]),
    Route("/console", console_page, methods=["GET"]),
    Route("/console/", console_page, methods=["GET"]),
    Mount("/console/static", app=ConsoleFiles(packages=[STATIC_PACKAGE]), name="console-static"),
    Route("/v1/console/collections", console_collections, methods=["GET"]),
]
