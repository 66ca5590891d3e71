"""A query's deadline, seen by the long loops of the work it started, in worker threads too.

The query gate (server/limits.py) answers 503 once a request runs past
``server.limits.queryTimeout``, but nothing can stop a function already running in a worker
thread from outside.  So the gate publishes the request's ``Deadline`` in a context variable
for as long as the request runs: the coroutines under it see it, and so do the worker threads
they start (searchd.workers and anyio's ``to_thread.run_sync`` run work in a copy of the caller's context).  The long
loops check it and stop at their next check, raising QueryTimeout: SQLite statements through
the store's progress handler, the in-memory filter scans, BM25 scoring term by term, the
decoding of fetched objects and the groups of an aggregation.  Work outside a request
(rebuilds, imports, checkpoints, the CLI) has no deadline and never stops.

A context variable, not a parameter: the checks sit several calls below the request (engine →
store → a SQLite callback) in code that rebuilds share, and the variable reaches exactly the
threads the request started; it holds one value per request context, never shared state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from searchd.errors import QueryTimeout

T = TypeVar("T")
CHECK_EVERY = 1024  # items between two checks in a Python loop: a few hundred microseconds of work at most


def timed_out(timeout: float) -> QueryTimeout:
    return QueryTimeout(
        f"the query ran longer than {timeout:g} s and was cancelled (server.limits.queryTimeout)",
        "ask for less (fewer searches, smaller limits), or raise server.limits.queryTimeout",
    )


class Deadline:
    """The moment a request's work must stop: ``timeout`` seconds after it was made, or when cancelled.

    ``late_checks`` counts the checks that found it expired: a loop that stops at its first
    check after the deadline leaves it at 1, whatever the clock did (the tests read it).
    """

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.at = clock() + timeout
        self._clock = clock
        self._cancelled = False
        self.late_checks = 0

    def cancel(self) -> None:
        """Stop the work now (the gate calls it when it answers 503)."""
        self._cancelled = True

    @property
    def passed(self) -> bool:
        """Whether the deadline has passed or was cancelled (a look, not counted as a check of the work)."""
        return self._cancelled or self._clock() >= self.at

    @property
    def expired(self) -> bool:
        """The work's check: whether it must stop now."""
        if not self.passed:
            return False
        self._cancelled = True  # once expired, always expired (a clock that steps back changes nothing)
        self.late_checks += 1
        return True

    def check(self) -> None:
        """Raise QueryTimeout when the deadline has passed."""
        if self.expired:
            raise timed_out(self.timeout)


_CURRENT: ContextVar[Deadline | None] = ContextVar("searchd_deadline", default=None)


def current() -> Deadline | None:
    """The deadline of the request this code runs for (None outside a request)."""
    return _CURRENT.get()


@contextmanager
def running_until(deadline: Deadline) -> Iterator[Deadline]:
    """Publish ``deadline`` to the work started inside this block (coroutines and the worker threads they start)."""
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def expired() -> bool:
    """Whether this code runs for a request whose deadline has passed."""
    deadline = _CURRENT.get()
    return deadline is not None and deadline.expired


def check() -> None:
    """Raise QueryTimeout when this code runs for a request whose deadline has passed."""
    deadline = _CURRENT.get()
    if deadline is not None:
        deadline.check()


def checked(items: Iterable[T], every: int = CHECK_EVERY) -> Iterator[T]:
    """``items``, checking the deadline before the first and then every ``every`` items."""
    deadline = _CURRENT.get()
    if deadline is None:
        yield from items
        return
    for position, item in enumerate(items):
        if position % every == 0:
            deadline.check()
        yield item
