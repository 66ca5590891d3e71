"""What every remote embedding module shares: settings, keys, one HTTP client, retries.

A module describes its provider once (``Provider``: env var, request header, limits)
and sends each request through ``ProviderClient.post``, which bounds concurrency,
retries 429 / 5xx / timeouts with exponential backoff and jitter (honouring
Retry-After), and turns every refusal into a ``ProviderError`` whose message says
how to fix it — without ever echoing the key.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from searchd.errors import ProviderError, ProviderRejectedInput, ProviderUnavailable

if TYPE_CHECKING:
    # Imported where a request is made: httpx with what it pulls in (its CLI's click, rich and pygments when they are
    # installed) holds about 7 MB that a server whose vectorizers are all offline never uses.
    import httpx

log = logging.getLogger("searchd.modules")

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_WAIT_S = 60.0


@dataclass(frozen=True)
class Provider:
    """Facts about one provider that do not change per request."""

    name: str  # "Jina AI"
    default_base_url: str
    env_var: str  # JINAAI_APIKEY
    key_header: str  # X-JinaAI-Api-Key (per-request key, as Weaviate clients send it)
    max_batch: int  # items per request the provider accepts
    config_key: str = "apiKey"


@dataclass(frozen=True)
class ProviderSettings:
    """A module's settings from the YAML (``modules.<name>``) with the defaults filled in."""

    base_url: str
    api_key: str | None
    timeout_s: float = 30.0
    max_retries: int = 5
    max_concurrency: int = 4
    batch_size: int = 64

    @classmethod
    def from_config(cls, provider: Provider, settings: Mapping[str, Any], environ: Mapping[str, str], base_url: str | None = None) -> ProviderSettings:
        key = settings.get(provider.config_key) or environ.get(provider.env_var) or None
        return cls(
            base_url=(base_url or settings.get("baseURL") or provider.default_base_url).rstrip("/"),
            api_key=key,
            timeout_s=float(settings.get("timeoutSeconds", 30.0)),
            max_retries=int(settings.get("maxRetries", 5)),
            max_concurrency=int(settings.get("maxConcurrency", 4)),
            batch_size=min(int(settings.get("batchSize", provider.max_batch)), provider.max_batch),
        )


def header_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """The per-request provider credentials among a request's headers (lower-cased names)."""
    return {name.lower(): value for name, value in headers.items() if name.lower().startswith("x-") and name.lower() != "x-request-id"}


class HttpPool:
    """One httpx.AsyncClient and one concurrency bound per module, kept across config reloads.

    Clients are per event loop: a connection pool cannot move between loops (the test
    client runs each request on a loop of its own).
    """

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._clients: dict[tuple[int, str], httpx.AsyncClient] = {}
        self._limits: dict[tuple[int, str], asyncio.Semaphore] = {}

    def client(self, module: str) -> httpx.AsyncClient:
        key = (id(asyncio.get_running_loop()), module)
        found = self._clients.get(key)
        if found is None:
            import httpx

            found = self._clients[key] = httpx.AsyncClient(transport=self._transport, limits=httpx.Limits(max_connections=64), follow_redirects=False)
        return found

    def semaphore(self, module: str, limit: int) -> asyncio.Semaphore:
        key = (id(asyncio.get_running_loop()), f"{module}:{limit}")
        found = self._limits.get(key)
        if found is None:
            found = self._limits[key] = asyncio.Semaphore(limit)
        return found

    async def aclose(self) -> None:
        loop = id(asyncio.get_running_loop())
        for (owner, _), client in list(self._clients.items()):
            if owner == loop:
                await client.aclose()
        self._clients = {k: v for k, v in self._clients.items() if k[0] != loop}
        self._limits = {k: v for k, v in self._limits.items() if k[0] != loop}


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_seconds(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with full jitter, but never earlier than the provider asked."""
    jittered = rng.uniform(0, min(MAX_RETRY_WAIT_S, 0.25 * 2**attempt))
    return min(MAX_RETRY_WAIT_S, max(retry_after or 0.0, jittered))


def error_detail(response: httpx.Response) -> str:
    """The provider's own words: Jina/Weaviate say ``detail``, NVIDIA ``message``/``title``."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    if isinstance(body, dict):
        # Jina lists each invalid field beside a generic detail; those say what to fix.
        fields = [f"{e.get('field', '?')}: {e.get('message', '?')}" for e in body.get("errors") or [] if isinstance(e, dict)]
        for key in ("detail", "message", "title", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return "; ".join([str(body[key]), *fields])
    return json.dumps(body)[:300]


def endpoint(base_url: str) -> str:
    """The host and port a URL points at, for errors: never its path, query or user info (which may hold a secret)."""
    import httpx

    url = httpx.URL(base_url)
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return f"{url.host}:{port}" if port else url.host


def redact(text: str, headers: Mapping[str, str]) -> str:
    """``text`` without the credentials sent in ``headers`` (some providers quote a bad key back)."""
    for name, value in headers.items():
        secret = value.partition(" ")[2].strip() or value.strip()  # the token of "Bearer <token>"
        if name.lower() == "authorization" and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class ProviderClient:
    """Sends one module's requests to its provider."""

    def __init__(
        self,
        module: str,
        provider: Provider,
        settings: ProviderSettings,
        pool: HttpPool,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        observe: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self._observe = observe
        self.module = module
        self.provider = provider
        self.settings = settings
        self._pool = pool
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _note(self, outcome: str, started: float) -> None:
        if self._observe is not None:
            self._observe(self.module, outcome, time.perf_counter() - started)

    def api_key(self, keys: Mapping[str, str]) -> str | None:
        """A per-request header wins over the config and the environment."""
        return keys.get(self.provider.key_header.lower()) or self.settings.api_key

    def _refused(self, status: int, detail: str) -> ProviderError:
        who = f"{self.provider.name} ({self.module})"
        if status in (401, 403):
            return ProviderError(
                f"{who} refused the API key: {status} {detail}",
                f"set {self.provider.env_var}, or modules.{self.module}.{self.provider.config_key}: ${{{self.provider.env_var}}} in the config, "
                f"or send the {self.provider.key_header} header",
            )
        if status in (400, 413, 422):
            return ProviderRejectedInput(f"{who} rejected the input: {status} {detail}", "check the object's content, and the model and its parameters in the YAML config")
        return ProviderError(f"{who} refused the request: {status} {detail}", "check baseURL and the model in the YAML config")

    async def post(self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> Any:
        """POST JSON and return the decoded answer, retrying what is worth retrying."""
        import httpx

        url = f"{self.settings.base_url}{path}"
        sent = {"Content-Type": "application/json", "Accept": "application/json", **headers}
        last_problem = ""
        async with self._pool.semaphore(self.module, self.settings.max_concurrency):
            client = self._pool.client(self.module)
            for attempt in range(self.settings.max_retries + 1):
                retry_after: float | None = None
                started = time.perf_counter()
                try:
                    response = await client.post(url, json=body, headers=sent, timeout=self.settings.timeout_s)
                except httpx.TimeoutException:
                    last_problem = f"no answer within {self.settings.timeout_s:g} s from {endpoint(self.settings.base_url)}"
                except httpx.TransportError as exc:
                    last_problem = f"could not connect to {endpoint(self.settings.base_url)} ({type(exc).__name__})"
                else:
                    if response.status_code == 200:
                        try:
                            answer = orjson.loads(response.content)  # large float arrays: ~3x faster than json
                        except orjson.JSONDecodeError:
                            last_problem = "answered 200 with a body that is not JSON"
                        else:
                            self._note("ok", started)
                            return answer
                    elif response.status_code in RETRYABLE_STATUSES:
                        last_problem = f"{response.status_code} {redact(error_detail(response), headers)}"
                        retry_after = retry_after_seconds(response.headers.get("retry-after"))
                    else:
                        self._note("refused", started)
                        raise self._refused(response.status_code, redact(error_detail(response), headers))
                self._note("retried" if attempt < self.settings.max_retries else "failed", started)
                if attempt == self.settings.max_retries:
                    break
                wait = backoff_seconds(attempt, retry_after, self._rng)
                log.warning("%s: %s; retry %d/%d in %.2f s", self.module, last_problem, attempt + 1, self.settings.max_retries, wait)
                await self._sleep(wait)
        raise ProviderUnavailable(
            f"{self.provider.name} ({self.module}) failed after {self.settings.max_retries + 1} attempt(s): {last_problem}",
            f"try again later, or raise modules.{self.module}.maxRetries / timeoutSeconds",
        )
