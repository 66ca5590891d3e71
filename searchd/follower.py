"""A replica's follower: what other searchd processes write to the shared PostgreSQL store reaches this one's indexes.

Every process keeps its own in-memory indexes (vector indexes, BM25, the doc table of filter
columns), and its own writes update them at once.  The follower tracks ``applied``: every change
up to that sequence of the store's change log is reflected here.  It wakes on a notification
(``LISTEN searchd_changes``) and at least once a second (a lost notification costs at most that),
reads the changes after ``applied`` that other processes made, re-reads those objects and applies
them to every index of their collection.  A change to a whole collection, or a log trimmed past
``applied``, rebuilds the collection from the store, as a start without saved indexes does.

Alone on a database, a process hears only its own notifications, each starting right after what it
has applied: it moves on without reading anything (see ``searchd.storage.pgreplicas``).

A second thread sends the heartbeat: the replica's row in ``searchd_replicas`` (what /v1/nodes
lists and trimming respects) with its applied sequence and lag.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from searchd import __version__
from searchd.config.spec import StorageSpec
from searchd.errors import SearchdError
from searchd.storage.base import BULK

if TYPE_CHECKING:
    from searchd.engine import Engine
    from searchd.storage.pgreplicas import Note, ReplicaLog

log = logging.getLogger("searchd.replicas")

POLL_S = 1.0  # the longest a change waits when its notification was lost
READ_CHANGES = 5_000  # log rows read at once
APPLY_DOCS = 500  # objects re-read (with their vectors) and applied under the write lock at once
ERROR_PAUSE_S = 1.0  # after a failed round (the database unreachable): try again, logging once while it lasts
REPLICA_ID_FILE = "replica-id"  # in the data directory: the replica's row outlives a restart


@dataclass(frozen=True)
class Member:
    """A live replica as /v1/nodes lists it."""

    name: str
    healthy: bool  # heard from within three heartbeats
    applied: int
    lag_seqs: int
    lag_seconds: float
    host: str
    port: int | None
    version: str
    this: bool  # the process answering


def replica_id(data_dir: Path) -> str:
    """The data directory's replica id, made on its first start (the directory is this process's, under its lock)."""
    path = data_dir / REPLICA_ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip() or _new_id(path)
    except FileNotFoundError:
        return _new_id(path)


def _new_id(path: Path) -> str:
    made = uuid.uuid4().hex
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(made + "\n", encoding="utf-8")
    return made


class Follower:
    """Applies other replicas' writes to the engine's indexes; reports this replica's progress to the database."""

    def __init__(self, engine: Engine, replicas: ReplicaLog, data_dir: Path, storage: StorageSpec, start_seq: int) -> None:
        self._engine = engine
        self._log = replicas
        self._heartbeat_s = storage.heartbeat_seconds
        self._expiry_s = replicas.expiry_s = storage.replica_expiry_seconds
        self._id = replica_id(data_dir)
        self._host: str = socket.gethostname() or "searchd"
        self._port: int | None = None
        self._name = self._host
        self.applied = start_seq  # written by the follower thread only (and read anywhere: an int is read whole)
        replicas.applied = start_seq  # the store reads it too: it promotes re-vectorized vectors only once others' writes are in
        self._target: int | None = None  # the head when following began: ready once applied reaches it
        self._head = start_seq
        self._pending: deque[tuple[int, float]] = deque()  # (head seen, when): how long the oldest unapplied change waits
        self._lag_lock = threading.Lock()  # _pending is read by the heartbeat and /metrics while the follower moves on
        self.rebuilt = 0  # collections rebuilt from the store since the start (a restart that catches up rebuilds none)
        # The coordinated reload's say on a change to a whole collection (vectors promoted by the leader's re-vectorization
        # under a new revision): True when it takes it (swaps this replica to the revision, then rebuilds); by default the
        # collection is rebuilt here at once with the catalog served now.
        self.on_bulk: Callable[[str], bool] = lambda collection: False
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_error: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._log.register(self._id, self._name, __version__)
        self._target = self._log.head()
        self._saw_head(self._target)
        for target, name in ((self._follow, "searchd-follower"), (self._beat, "searchd-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("following the change log of %s from write %d as replica %s", self._engine.store.where, self.applied, self._id[:8])

    def stop(self) -> None:
        """Stop following, after one last catch-up: the indexes saved next are as current as the log."""
        self._stopping.set()
        for thread in self._threads:
            thread.join()
        if not self._threads:
            return
        try:
            self._catch_up(last=True)
            self._report(stopped=True)  # gone from /v1/nodes at once; trimming still spares its saved indexes until it expires
        except SearchdError as exc:  # the database is gone: the next start replays from the saved sequence
            log.warning("could not catch up before stopping: %s", exc)

    def advertise(self, host: str, port: int) -> None:
        """Where this replica serves HTTP: its name in /v1/nodes becomes <hostname>:<port>."""
        self._host, self._port = host, port
        self._name = f"{socket.gethostname() or 'searchd'}:{port}"

    def caught_up(self) -> tuple[int, int] | None:
        """None once every change logged before following began is applied; until then (applied, that head)."""
        if self._target is None:
            return (self.applied, self.applied)
        return None if self.applied >= self._target else (self.applied, self._target)

    # -- lag -----------------------------------------------------------------------

    def _saw_head(self, head: int) -> None:
        with self._lag_lock:
            if head > self._head:
                self._head = head
                self._pending.append((head, time.monotonic()))

    def lag(self) -> tuple[int, float]:
        """(changes logged but not applied here, seconds the oldest of them has waited since this process heard of it)."""
        with self._lag_lock:
            waiting = self._pending[0][1] if self._pending else None
            return max(0, self._head - self.applied), (time.monotonic() - waiting) if waiting is not None else 0.0

    def _advance(self, seq: int) -> None:
        with self._lag_lock:
            self.applied = self._log.applied = max(self.applied, seq)
            while self._pending and self._pending[0][0] <= self.applied:
                self._pending.popleft()

    # -- following -------------------------------------------------------------------

    def _follow(self) -> None:
        listener = self._log.listener()
        try:
            wake: list[Note | None] | None = None
            while not self._stopping.is_set():
                try:
                    if wake is None or not wake or not self._only_own(wake):
                        self._catch_up()
                    wake = listener.wait(POLL_S)
                    self._last_error = None
                except SearchdError as exc:
                    self._failed(exc)
                    wake = None
                    self._stopping.wait(ERROR_PAUSE_S)
        finally:
            listener.close()

    def _only_own(self, notes: list[Note | None]) -> bool:
        """Move on past this process's own writes without reading the log, while they follow on from ``applied``."""
        for note in notes:
            if note is None:
                return False
            self._saw_head(note.last)
            if note.origin != self._log.origin or note.first > self.applied + 1:
                return False  # another process wrote, or something lies in between (a rolled-back write's numbers, too)
            self._advance(note.last)
        return True

    def _catch_up(self, last: bool = False) -> None:
        while last or not self._stopping.is_set():
            changes = self._log.changes_after(self.applied, READ_CHANGES)
            self._saw_head(changes.head)
            if changes.trimmed:
                self._log.refresh_registry()
                log.warning("the change log was trimmed past write %d (this replica was away longer than the expiry): rebuilding every collection", self.applied)
                for name in list(self._engine.holder.current.collections):
                    self._rebuild(name, "the change log no longer reaches back to this replica's indexes")
                self._advance(changes.head)
                return
            if changes.rows:
                self._log.refresh_registry()  # a collection or vector another replica has just made
                self._apply(changes.rows)
            self._advance(changes.upto)
            if changes.upto >= changes.head:
                return

    def _apply(self, rows: list[tuple[int, str, int]]) -> None:
        by_collection: dict[str, list[int]] = {}
        for _, collection, doc in rows:
            by_collection.setdefault(collection, []).append(doc)
        for collection, docs in by_collection.items():
            if BULK in docs:
                if not self.on_bulk(collection):
                    self._rebuild(collection, "another replica changed it as a whole")
                continue
            unique = list(dict.fromkeys(docs))
            for start in range(0, len(unique), APPLY_DOCS):
                self._engine.apply_changes(collection, unique[start : start + APPLY_DOCS])

    def _rebuild(self, collection: str, why: str) -> None:
        started = time.monotonic()
        if self._engine.rebuild_collection(collection):
            self.rebuilt += 1
            log.info("rebuilt collection %s from the store (%s) in %.1fs", collection, why, time.monotonic() - started)

    def _failed(self, exc: SearchdError) -> None:
        if str(exc) != self._last_error:  # one line while it lasts, not one a second
            log.error("following the other replicas' writes failed; trying again: %s", exc)
        self._last_error = str(exc)

    # -- the heartbeat ----------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stopping.wait(self._heartbeat_s):
            try:
                self._report()
            except SearchdError as exc:
                self._failed(exc)

    def _report(self, stopped: bool = False) -> None:
        lag_seqs, lag_seconds = self.lag()
        self._log.heartbeat(self._name, self._host, self._port, self.applied, lag_seqs, lag_seconds, stopped)

    def members(self) -> list[Member]:
        """The live replicas, this one with its current figures, the others as their last heartbeat left them."""
        head = max(self._log.head(), self._head)
        healthy_within = 3 * self._heartbeat_s
        found = []
        for row in self._log.replicas(self._expiry_s):
            if row.id == self._id:
                lag_seqs, lag_seconds = self.lag()
                found.append(Member(self._name, True, self.applied, lag_seqs, round(lag_seconds, 3), self._host, self._port, row.version, True))
            else:
                lag = max(0, head - row.applied_seq)
                found.append(Member(row.name, row.heard_s <= healthy_within, row.applied_seq, lag, round(row.lag_seconds, 3), row.host, row.port, row.version, False))
        return found
