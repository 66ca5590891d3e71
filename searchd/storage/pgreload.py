"""The reload ledger of replicas sharing one PostgreSQL database: who leads, what is being applied, what was applied.

Several ``searchd serve`` processes on one database must never apply two different plans.
One of them at a time leads: it holds a session-level advisory lock on a connection of its
own, so the lock ends with the process (a SIGKILL, a lost network) and another replica can
take over.  The leader records here, before it changes anything:

* ``searchd_reload``: the target (its revision and redacted spec document), the vectors it
  re-embeds, who started it, and ``finished`` once every rebuild is promoted.  A target that is
  not finished is resumed by whichever replica takes the lock next;
* ``searchd_revisions``: every revision ever made a target, so a replica can tell a new config
  (never applied: apply it) from a superseded one (an old pod restarting: serve the database's).

The spec that serves (``searchd_applied``, written by the store) is announced with ``NOTIFY
searchd_revision``; replicas LISTEN on another connection and poll as well (a notification
sent while a replica reconnects is lost).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import psycopg

from searchd.errors import StorageError
from searchd.storage.applied import Applied
from searchd.storage.ledger import Ledger, Target
from searchd.storage.pgerrors import connect, pg_error, safe_url
from searchd.storage.postgres import WRITE_LOCK

log = logging.getLogger("searchd.storage")

LEADER_LOCK = 0x5EA2C4D1  # beside the store's write lock (0x5EA2C4D0)
CHANNEL = "searchd_revision"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS searchd_revisions (revision text PRIMARY KEY, at float8 NOT NULL, replica text NOT NULL);
CREATE TABLE IF NOT EXISTS searchd_reload (
    one int PRIMARY KEY CHECK (one = 1), revision text NOT NULL, document bytea NOT NULL, revectorize jsonb NOT NULL,
    replica text NOT NULL, started float8 NOT NULL, finished float8);
ALTER TABLE searchd_reload ADD COLUMN IF NOT EXISTS failed text;
"""


class ReloadLedger:
    """The ledger in the database at ``url`` (never logged); its own connections: one holds the lock, one listens."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._where = safe_url(url)
        self._guard = threading.Lock()
        self._leader: psycopg.Connection[Any] | None = None  # the session holding LEADER_LOCK, while leading
        self._listener: psycopg.Connection[Any] | None = None
        with self._connection() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))  # two first starts must not race on CREATE
            db.execute(_SCHEMA)

    @property
    def where(self) -> str:
        return self._where

    def _connection(self) -> psycopg.Connection[Any]:
        return connect(self._url)  # a StorageError without the password when it fails

    def close(self) -> None:
        with self._guard:
            for db in (self._leader, self._listener):
                if db is not None:
                    db.close()
            self._leader = self._listener = None

    # -- leading ---------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether this replica took the lock and has not let go (its session may have died since: ``still_leading``)."""
        return self._leader is not None

    @property
    def leading(self) -> bool:
        return self._leader is not None and not self._leader.closed and not self._leader.broken

    def try_lead(self) -> bool:
        """Take the leader lock if no other replica holds it (this one may hold it already: then True)."""
        with self._guard:
            if self._leader is not None and not (self._leader.closed or self._leader.broken):
                return True
            db = self._connection()
            try:
                row = db.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
            except psycopg.Error as exc:
                db.close()
                raise pg_error(exc, self._where) from exc
            if row is None or not row[0]:
                db.close()
                return False
            self._leader = db
            return True

    def still_leading(self) -> bool:
        """Whether the lock's session is alive (a query on it: a dropped connection shows only when used)."""
        with self._guard:
            if self._leader is None:
                return False
            try:
                self._leader.execute("SELECT 1")
                return True
            except psycopg.Error:
                self._leader.close()
                self._leader = None
                return False

    def step_down(self) -> None:
        """Let another replica lead: unlocked at once (a closed session's lock goes only once its backend has exited)."""
        with self._guard:
            if self._leader is not None:
                try:
                    self._leader.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK,))
                except psycopg.Error as exc:  # the session is gone already, and its lock with it
                    log.debug("unlocking the reload leader lock: %s", exc)
                self._leader.close()
                self._leader = None

    def _leader_session(self) -> psycopg.Connection[Any]:
        if self._leader is None or self._leader.closed or self._leader.broken:
            # The session that held the lock is gone, and with it the lock: another replica may lead by now.
            raise StorageError(
                f"lost the reload leader lock on {self._where} (the connection closed)",
                "the change is not recorded; another replica resumes the reload, or reload this one again",
            )
        return self._leader

    def begin(self, applied: Applied, document: bytes, revectorize: list[tuple[str, str]], replica: str) -> None:
        """Record ``applied`` as the target (unfinished) and in the history; only while leading."""
        with self._guard:
            db = self._leader_session()
            try:
                with db.transaction():
                    db.execute(
                        "INSERT INTO searchd_reload VALUES (1, %s, %s, %s::jsonb, %s, %s, NULL) ON CONFLICT (one) DO UPDATE SET "
                        "revision = excluded.revision, document = excluded.document, revectorize = excluded.revectorize, "
                        "replica = excluded.replica, started = excluded.started, finished = NULL, failed = NULL",
                        (applied.revision, document, json.dumps(revectorize), replica, time.time()),
                    )
                    db.execute(
                        "INSERT INTO searchd_revisions VALUES (%s, %s, %s) ON CONFLICT (revision) DO UPDATE SET at = excluded.at, replica = excluded.replica",
                        (applied.revision, time.time(), replica),
                    )
            except psycopg.Error as exc:
                raise pg_error(exc, self._where) from exc

    def finish(self, revision: str) -> None:
        """Mark the target ``revision`` done (every rebuild promoted); only while leading."""
        with self._guard:
            db = self._leader_session()
            try:
                db.execute("UPDATE searchd_reload SET finished = %s WHERE revision = %s AND finished IS NULL", (time.time(), revision))
            except psycopg.Error as exc:
                raise pg_error(exc, self._where) from exc

    def fail(self, revision: str, error: str) -> None:
        """Record why the target ``revision`` could not be applied (its leader lets go next); only while leading.

        A failed target is no orphan: no replica takes it over (it would fail alike) until a reload or a start sets one.
        """
        with self._guard:
            db = self._leader_session()
            try:
                db.execute("UPDATE searchd_reload SET failed = %s WHERE revision = %s AND finished IS NULL", (error, revision))
            except psycopg.Error as exc:
                raise pg_error(exc, self._where) from exc

    # -- reading and following ---------------------------------------------------------

    def read(self) -> Ledger:
        with self._connection() as db:
            try:
                row = db.execute("SELECT revision, document, revectorize, replica, started, finished, failed FROM searchd_reload WHERE one = 1").fetchone()
                history = frozenset(r[0] for r in db.execute("SELECT revision FROM searchd_revisions"))
                applied = db.execute("SELECT revision FROM searchd_applied WHERE one = 1").fetchone()
            except psycopg.Error as exc:
                raise pg_error(exc, self._where) from exc
        target = None
        if row is not None:
            revectorize = tuple((str(c), str(v)) for c, v in row[2])
            target = Target(str(row[0]), bytes(row[1]), revectorize, str(row[3]), float(row[4]), None if row[5] is None else float(row[5]), row[6])
        return Ledger(target, history, None if applied is None else str(applied[0]))

    def announce(self, revision: str) -> None:
        """Tell the other replicas a new spec serves (they also poll, so a failure only delays them)."""
        try:
            with self._connection() as db:
                db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, revision))
        except (psycopg.Error, StorageError) as exc:
            log.warning("could not announce revision %s to the other replicas (%s); they find it by polling", revision, exc)

    def wait(self, timeout: float) -> bool:
        """Block until an announcement arrives (True) or ``timeout`` seconds pass (False)."""
        try:
            if self._listener is None or self._listener.closed or self._listener.broken:
                self._listener = self._connection()
                self._listener.execute(f"LISTEN {CHANNEL}")
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                return True
        except (psycopg.Error, StorageError) as exc:
            log.warning("listening for config announcements failed (%s); polling instead", exc)
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            time.sleep(timeout)
        return False
