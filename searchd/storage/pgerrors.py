"""Connecting to PostgreSQL, and its failures as errors that name their cause and fix without the URL's password."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from searchd.errors import QueryError, SearchdError, StorageError

CONNECT_TIMEOUT_S = 10
# Limits one statement meets with a filter of too many operands or values.
_TOO_LARGE = ("stack depth limit exceeded", "too many", "number of parameters must be between", "out of memory")


def safe_url(url: str) -> str:
    """The URL as it may be shown: user, host, port and database, never the password (nor other parameters)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(an unreadable URL)"
    host = str(parts.get("host") or "localhost")
    where = f"{host}:{parts['port']}" if parts.get("port") and not host.startswith("/") else host
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{where}/{parts.get('dbname') or ''}"


def _scrubbed(text: str, url: str) -> str:
    """An error text with the URL (and its password) taken out, wherever a driver might have echoed them."""
    if url:
        text = text.replace(url, safe_url(url))
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.Error:
        password = None
    return text.replace(str(password), "***") if password else text


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit connection (transactions are explicit); a StorageError without the URL's password when it fails."""
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.ProgrammingError:  # a malformed URL: the driver's message may quote it, password and all
        raise StorageError("the object store URL cannot be read", "write it as postgresql://user:password@host:5432/dbname") from None
    except psycopg.Error as exc:
        raise StorageError(
            f"cannot connect to the object store at {safe_url(url)}: {_scrubbed(str(exc).strip(), url)}",
            "check server.storage.url (its environment variable), that PostgreSQL is running, and that the database exists",
        ) from None


def pg_error(exc: psycopg.Error, where: str) -> SearchdError:
    """The error to report for a failed statement on the database ``where`` (already without a password)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (psycopg.errors.StatementTooComplex, psycopg.errors.ProgramLimitExceeded)) or any(m in text for m in _TOO_LARGE):
        return QueryError(
            f"the filter is too large for the object store ({text})",
            "use fewer operands: list many values in one ContainsAny condition instead of many Equal conditions",
        )
    if isinstance(exc, psycopg.errors.DiskFull):
        return StorageError(f"the object store ({where}) cannot write: its disk is full: {text}", "free space on the database server; nothing was written")
    if isinstance(exc, psycopg.OperationalError):
        return StorageError(f"the object store ({where}) is unreachable: {text}", "check that PostgreSQL is running and reachable; the write was not acknowledged")
    return StorageError(f"the object store ({where}) failed: {text}", "the server log and PostgreSQL's log have the details")
