"""A query past server.limits.queryTimeout stops the work it started, not only its answer (#13).

The scans a query runs in worker threads check the request's deadline (searchd.deadline): the
store's SQL through SQLite's progress handler, the in-memory filter columns every few hundred
rows.  These tests count checks, never time: a deadline whose clock is a counter expires at a
known check, and a scan that stops there has read only the rows before it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from searchd.deadline import CHECK_EVERY, Deadline, current, running_until
from searchd.errors import QueryTimeout
from searchd.query.filters import parse_where
from searchd.where import Filter

OBJECTS = 5000
CONFIG = """\
server:
  reload: {watch: false}
  limits: {queryTimeout: 0.2}
collections:
  - name: Note
    properties:
      - {name: title, type: TEXT}
      - {name: n, type: INT, indexFilterable: false}  # no column, no index: a filter on it scans the store's rows
      - {name: tags, type: "TEXT[]"}
"""
SCANNED_WHERE = {"path": ["n"], "operator": "GreaterThanEqual", "valueInt": 0}
# The in-memory table matches the pattern against every distinct tag, one per note (ids compare in one numpy operation).
TAGS_WHERE = {"path": ["tags"], "operator": "Like", "valueText": "tag-*"}


@pytest.fixture(scope="module")
def notes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One server with OBJECTS notes, shared by the tests (they only read)."""
    from searchd.server import create_app, open_services

    root = tmp_path_factory.mktemp("deadline")
    (root / "searchd.yaml").write_text(CONFIG, encoding="utf-8")
    with TestClient(create_app(open_services(root / "searchd.yaml", root / "data"))) as client:
        objects = [{"class": "Note", "properties": {"title": f"note {i}", "n": i, "tags": [f"tag-{i}"]}} for i in range(OBJECTS)]
        for start in range(0, OBJECTS, 1000):
            assert client.post("/v1/batch/objects", json={"objects": objects[start : start + 1000]}).status_code == 200
        yield client


def engine_of(client: TestClient) -> Any:
    return client.app.state.services.engine  # type: ignore[attr-defined]


def where_of(client: TestClient, where: dict[str, Any]) -> Filter:
    catalog = client.app.state.services.holder.current  # type: ignore[attr-defined]
    parsed = parse_where(catalog.collection("Note"), where)
    assert parsed is not None
    return parsed


def counting_clock(expires_at_check: int) -> tuple[Deadline, Callable[[], int]]:
    """A deadline whose clock is the number of checks so far: it expires at check number ``expires_at_check``."""
    ticks = itertools.count()
    deadline = Deadline(expires_at_check, clock=lambda: float(next(ticks)))
    return deadline, lambda: next(ticks) - 1  # how many checks were made (reading it is not one)


def test_without_a_deadline_the_scans_read_every_row(notes: TestClient) -> None:
    engine = engine_of(notes)
    assert engine.count("Note", where_of(notes, SCANNED_WHERE)) == OBJECTS  # the store's SQL
    assert engine.allowed("Note", where_of(notes, TAGS_WHERE)).count == OBJECTS  # the in-memory table


def test_a_store_scan_stops_at_the_first_check_after_its_deadline(notes: TestClient) -> None:
    deadline, checks = counting_clock(3)
    with running_until(deadline), pytest.raises(QueryTimeout, match=r"ran longer than 3 s and was cancelled \(server.limits.queryTimeout\)"):
        engine_of(notes).count("Note", where_of(notes, SCANNED_WHERE))
    # Two checks passed, the third found the deadline gone and the statement stopped there: no further check, no result.
    assert (checks(), deadline.late_checks) == (3, 1)
    assert engine_of(notes).count("Note", where_of(notes, SCANNED_WHERE)) == OBJECTS  # the reader connection still works


def test_an_in_memory_scan_stops_at_the_first_check_after_its_deadline(notes: TestClient) -> None:
    deadline, checks = counting_clock(3)
    with running_until(deadline), pytest.raises(QueryTimeout):
        engine_of(notes).allowed("Note", where_of(notes, TAGS_WHERE))
    # One check per filter operand, then one every CHECK_EVERY tags: it stopped after 1 * CHECK_EVERY of the 5,000.
    assert (checks(), deadline.late_checks) == (3, 1)
    assert CHECK_EVERY < OBJECTS


def test_listing_the_objects_stops_between_rows(notes: TestClient) -> None:
    deadline, checks = counting_clock(2)
    with running_until(deadline), pytest.raises(QueryTimeout):
        engine_of(notes).list_objects("Note", limit=OBJECTS, vectors=False)
    assert (checks(), deadline.late_checks) == (2, 1)


def test_a_query_past_its_timeout_answers_503_and_its_running_scan_stops(notes: TestClient) -> None:
    """Through the server: the worker is held until the request's deadline has passed, then its scan must stop at once."""
    engine = engine_of(notes)
    outcomes: list[BaseException | int] = []
    seen: list[Deadline] = []

    def held(method: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            request_deadline = current()
            assert request_deadline is not None  # the gate's deadline reached the worker thread
            seen.append(request_deadline)
            limit = time.monotonic() + 30
            while time.monotonic() < request_deadline.at:  # the clock, not .expired: that would count as a check
                assert time.monotonic() < limit
                threading.Event().wait(0.005)
            try:
                result = method(*args, **kwargs)
            except BaseException as exc:
                outcomes.append(exc)
                raise
            outcomes.append(len(result) if hasattr(result, "__len__") else -1)
            return result

        return run

    query = '{ Get { Note(limit: 5000, where: {path: ["n"], operator: GreaterThanEqual, valueInt: 0}) { title } } }'
    originals = ("count", "list_objects", "allowed")
    for name in originals:
        setattr(engine, name, held(getattr(engine, name)))
    try:
        response = notes.post("/v1/graphql", content=orjson.dumps({"query": query}), headers={"Content-Type": "application/json"})
    finally:
        for name in originals:
            delattr(engine, name)
    assert response.status_code == 503, response.text
    assert response.json()["error"][0]["message"].startswith("the query ran longer than 0.2 s and was cancelled (server.limits.queryTimeout)")
    limit = time.monotonic() + 30
    while not outcomes:  # the 503 need not wait for the worker thread: wait here for its scan to end
        assert time.monotonic() < limit, "the scan did not stop"
        threading.Event().wait(0.005)
    assert len(seen) == 1 and len(outcomes) == 1
    assert isinstance(outcomes[0], QueryTimeout)  # the scan stopped instead of reading the 5,000 rows
    assert seen[0].late_checks == 1  # at its first check after the deadline
    assert notes.app.state.services.queries.running == 0  # type: ignore[attr-defined]


def test_work_outside_a_request_has_no_deadline(notes: TestClient) -> None:
    assert current() is None
    assert len(engine_of(notes).list_objects("Note", limit=OBJECTS, vectors=False)) == OBJECTS
