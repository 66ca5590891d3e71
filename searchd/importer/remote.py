"""Importing into a running server: batches go to its ``POST /v1/batch/objects``, as any client's would.

The server checks, embeds and stores them (upserts, so a re-run is safe, and its
embedding cache means an object already embedded costs no provider call); there
is no "stored unchanged" check over HTTP, so every object counts as stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from searchd.errors import InvalidInput, SearchdError
from searchd.importer.run import STORED, Outcome
from searchd.modules.provider import endpoint

TIMEOUT_S = 300.0  # a batch waits for its embeddings: a slow provider is not a dead server


def _reason(response: httpx.Response) -> str:
    try:
        errors = response.json()["error"]
        return "; ".join(str(e["message"]) for e in errors)
    except (ValueError, KeyError, TypeError):
        return response.text.strip()[:300] or response.reason_phrase


class HttpTarget:
    def __init__(self, url: str, api_key: str | None, client: httpx.AsyncClient) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {api_key}"} if api_key else {})}
        self.client = client

    def _unreachable(self, exc: httpx.TransportError) -> InvalidInput:
        return InvalidInput(f"could not reach the server at {endpoint(self.url)} ({type(exc).__name__})", "check --url, and that the server runs")

    async def check_ready(self) -> None:
        """Refuse to begin against a server that is down or still starting: every batch would fail."""
        try:
            response = await self.client.get(f"{self.url}/v1/.well-known/ready", timeout=30.0)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code != 200:
            phase = response.json().get("phase", "?") if response.headers.get("content-type", "").startswith("application/json") else response.reason_phrase
            raise InvalidInput(f"the server at {self.url} is not ready ({phase})", "wait until GET /v1/.well-known/ready answers 200, then import")

    async def put(self, payloads: Sequence[Any]) -> list[Outcome]:
        try:
            response = await self.client.post(f"{self.url}/v1/batch/objects", content=orjson.dumps({"objects": list(payloads)}), headers=self.headers, timeout=TIMEOUT_S)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if response.status_code != 200:
            refused = SearchdError(f"the server answered {response.status_code}: {_reason(response)}")
            return [refused] * len(payloads)
        outcomes: list[Outcome] = []
        for result in response.json():
            errors = result.get("result", {}).get("errors") or {}
            messages = [str(e.get("message")) for e in errors.get("error") or []]
            outcomes.append(SearchdError("; ".join(messages)) if messages else STORED)
        return outcomes
