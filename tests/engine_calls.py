"""Counting (and holding up) the engine work a request does: the cost model's refusals must come before any."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from starlette.testclient import TestClient

# The engine entry points a query's searches and listings go through (searchd.query.search / get / aggregate).
QUERY_WORK = ("search_hits", "keyword_index", "list_objects", "allowed", "count", "objects")


@contextlib.contextmanager
def counted(client: TestClient, hold: Callable[[str, tuple[Any, ...]], None] | None = None) -> Iterator[Counter[str]]:
    """Count calls of the query entry points of the client's engine; ``hold(name, args)`` runs (in the worker thread) before each."""
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def wrap(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counting(*args: Any, **kwargs: Any) -> Any:
            with lock:
                calls[name] += 1
            if hold is not None:
                hold(name, args)
            return method(*args, **kwargs)

        return counting

    originals = {name: getattr(engine, name) for name in QUERY_WORK}
    for name, method in originals.items():
        setattr(engine, name, wrap(name, method))
    try:
        yield calls
    finally:
        for name in QUERY_WORK:
            delattr(engine, name)  # the instance attribute goes; the class's method shows through again
