"""The one exception hierarchy of searchd.

    SearchdError            root; carries a stable ``code``, a message and a hint
    ├── ConfigError         the YAML config is invalid; carries every ConfigIssue found
    ├── ConfigRefused       the config is valid but would drop stored data, and that is not allowed
    ├── InvalidInput        a request's content is wrong (bad type, bad base64, bad vector …)
    ├── NotFound            a collection, object or property does not exist
    ├── AlreadyExists       an object with that id is already stored
    ├── PayloadTooLarge     a request body is larger than the configured limit
    ├── QueryError          a GraphQL query cannot be answered as written
    ├── LimitExceeded       a request is over a server.limits setting (cost, searches, filter size …); refused before any work
    ├── RateLimited         an API key made more requests than its rate allows (carries retry_after)
    ├── Overloaded          no query slot came free in time (carries retry_after)
    ├── QueryTimeout        a query ran past server.limits.queryTimeout and was cancelled
    ├── StorageError        the data directory cannot be read or written
    ├── NotReady            the server is still starting (loading objects, opening indexes)
    └── ProviderError       an embedding provider refused a request (bad key, bad input)
        ├── ProviderRejectedInput  … because of what one request held (splitting the batch may help)
        └── ProviderUnavailable    … or did not answer in time, after every retry

Nothing here knows about HTTP: status codes are mapped once, in ``searchd.server.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass


class SearchdError(Exception):
    code = "internal"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.problem = message
        self.hint = hint

    @property
    def message(self) -> str:
        """What went wrong and how to fix it; graphql-core reads this attribute for error messages."""
        return f"{self.problem} ({self.hint})" if self.hint else self.problem

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, located as precisely as the loader allows."""

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str = ""

    def render(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.column}: {self.path or '<root>'}: {self.message}{hint}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


class ConfigError(SearchdError):
    code = "invalid_config"

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        lines = "\n".join(issue.render() for issue in issues)
        super().__init__(f"the config has {len(issues)} error(s):\n{lines}")


class InvalidInput(SearchdError):
    code = "invalid_input"


class NotFound(SearchdError):
    code = "not_found"


class AlreadyExists(SearchdError):
    code = "already_exists"


class PayloadTooLarge(SearchdError):
    code = "payload_too_large"


class QueryError(SearchdError):
    code = "invalid_query"


class LimitExceeded(SearchdError):
    """The message names the measured amount, the limit and its setting: 'this query has 120 searches; the limit is 100 (server.limits.maxSearchesPerQuery)'."""

    code = "limit_exceeded"


class RateLimited(SearchdError):
    code = "rate_limited"

    def __init__(self, message: str, hint: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class Overloaded(SearchdError):
    code = "overloaded"

    def __init__(self, message: str, hint: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class QueryTimeout(SearchdError):
    code = "query_timeout"


class StorageError(SearchdError):
    code = "storage"


class NotReady(SearchdError):
    """The server answers before its indexes are open or its --load files are in: data requests wait for readiness."""

    code = "not_ready"


class ProviderError(SearchdError):
    code = "provider_error"


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"


class ProviderRejectedInput(ProviderError):
    code = "provider_rejected_input"


class ConfigRefused(SearchdError):
    code = "config_refused"


class ConfigChanged(SearchdError):
    """A request met a config swap half-way (its vectors were made for settings no longer served): send it again."""

    code = "config_changed"
