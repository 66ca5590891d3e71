"""SQLite and file-system failures as errors that name their cause and its fix.

A SQLite error says what failed, rarely why: a full disk shows as "disk I/O error" as
often as "database or disk is full", and a filter too large for SQL is not a disk problem
at all.  Each class of failure gets its own message here, and the free space of the disk
is checked whenever a write could have failed for want of it.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

from searchd.errors import QueryError, SearchdError, StorageError

LOW_SPACE_BYTES = 1 << 20  # below this, a failed write is put down to a full disk
# SQLite's limits on one statement, met by a filter with too many operands or values.
_TOO_LARGE = ("too many SQL variables", "Expression tree is too large", "too many terms in compound SELECT", "parser stack overflow", "LIKE or GLOB pattern too complex")
_IO = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_READONLY")


def _free_bytes(path: Path) -> int | None:
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def full_disk(path: Path, cause: object, what: str = "the object store") -> StorageError | None:
    """A StorageError saying the disk is full, when it is (or the error says so)."""
    free = _free_bytes(path)
    low = free is not None and free < LOW_SPACE_BYTES
    said_full = isinstance(cause, OSError) and cause.errno == errno.ENOSPC or "disk is full" in str(cause)
    if not (low or said_full):
        return None
    hint = f"free space on that disk (see `df -h {path}`) or move the data directory to a larger disk and pass --data; nothing was written"
    if low or free is None:
        left = "" if free is None else f" ({free} bytes free)"
        return StorageError(f"{what} cannot write: the disk holding {path} is full{left}: {cause}", hint)
    # SQLite says "full" with space left: a quota, or the file system's own limits (inodes, file size).
    return StorageError(f"{what} cannot write: {cause} ({free} bytes are free on the disk holding {path}: a quota or the file system's limits may be what is full)", hint)


def storage_error(exc: sqlite3.Error | OSError, path: Path, what: str = "the object store") -> SearchdError:
    """The error to report for a failure of ``what`` at ``path`` (a file or the data directory)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if any(marker in text for marker in _TOO_LARGE) or name == "SQLITE_TOOBIG":
        return QueryError(
            f"the filter is too large for {what} ({text})",
            "use fewer operands: list many values in one ContainsAny condition instead of many Equal conditions",
        )
    directory = path if path.is_dir() else path.parent
    if isinstance(exc, OSError) or name.startswith(_IO) or "disk I/O error" in text or "unable to open" in text:
        full = full_disk(directory, exc, what)
        if full is not None:
            return full
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE) or name.startswith("SQLITE_CANTOPEN") or "unable to open" in text:
        return StorageError(
            f"{what} cannot open {path}: {text}",
            "check that the data directory exists and is writable, and that the open-file limit (ulimit -n) is not exhausted",
        )
    if name.startswith("SQLITE_READONLY") or "readonly database" in text or isinstance(exc, PermissionError):
        return StorageError(f"{what} cannot write {path}: {text}", "check the data directory's owner and permissions, and that its file system is not mounted read-only")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in text or "not a database" in text:
        return StorageError(f"{what} file {path} is damaged: {text}", "restore the data directory from a backup (searchd backup), or move it aside to start empty")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        return StorageError(f"{what} file {path} is busy: {text}", "retry; if it persists, check that no other program holds the file")
    if name.startswith("SQLITE_IOERR") or "disk I/O error" in text or isinstance(exc, OSError):
        return StorageError(f"{what} has an I/O error on {path}: {text}", "check the disk (dmesg, SMART) and that the data directory is on a local file system")
    if "user-defined function raised exception" in text:
        # Our own SQL functions (searchd.storage.sqlite) log what they failed on before SQLite reports this.
        return StorageError(
            f"{what} could not evaluate a filter or sort on a stored value ({text})",
            "the server log has the details: a line from searchd.storage names the function and the value",
        )
    # Nothing more is known than SQLite said: the message carries all of it (the log has no more).
    code = f"{type(exc).__name__} {name}".strip()
    return StorageError(f"{what} failed on {path}: {text} ({code})", "retry; if it persists, report this message with the server's version")
