"""Many searchd processes on one PostgreSQL database: the change feed each follows, and who is there.

Every write transaction logs its docs in ``searchd_changes`` with ``origin``, the writing process's
id, and sends ``pg_notify('searchd_changes', '<origin> <first seq> <last seq>')`` before COMMIT
(``searchd.storage.postgres``).  PostgreSQL delivers notifications of different transactions in
commit order, and the write lock makes that the order of their sequence numbers, so a process that
hears only its own writes right after what it has applied may move on without reading the log.

``searchd_replicas`` holds one row per replica (a data directory: its id survives restarts), with
the sequence it has applied, the sequence of its saved indexes, its lag and a heartbeat taken from
the database's clock (the replicas' clocks need not agree).  Trimming the log keeps every change a
replica heard from within the expiry still needs: the one that restarts catches up from its saved
indexes instead of rebuilding them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from searchd.storage.pgerrors import connect, pg_error

CHANNEL = "searchd_changes"
SCHEMA = """
ALTER TABLE searchd_changes ADD COLUMN IF NOT EXISTS origin text;
CREATE TABLE IF NOT EXISTS searchd_replicas (
    id text PRIMARY KEY, name text NOT NULL, host text NOT NULL DEFAULT '', port int,
    applied_seq bigint NOT NULL, saved_seq bigint, lag_seqs bigint NOT NULL DEFAULT 0, lag_seconds float8 NOT NULL DEFAULT 0,
    version text NOT NULL, started timestamptz NOT NULL DEFAULT now(), heartbeat timestamptz NOT NULL DEFAULT now(),
    stopped boolean NOT NULL DEFAULT false);
CREATE OR REPLACE FUNCTION searchd_registry_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- A table created, renamed or dropped by any process: the others reload their table registry when they see it.
    INSERT INTO searchd_meta VALUES ('registry', '1') ON CONFLICT (key) DO UPDATE SET value = (searchd_meta.value::bigint + 1)::text;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION searchd_write_lock(k bigint) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(k);
    -- A statement of its own, after the lock (a volatile function's statements each take a fresh snapshot): it sees
    -- every registry change committed before the lock was granted, in the same round trip as the lock.
    RETURN (SELECT value FROM searchd_meta WHERE key = 'registry');
END $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'searchd_collections_changed') THEN
        CREATE TRIGGER searchd_collections_changed AFTER INSERT OR UPDATE OR DELETE ON searchd_collections
            FOR EACH STATEMENT EXECUTE FUNCTION searchd_registry_changed();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'searchd_vector_tables_changed') THEN
        CREATE TRIGGER searchd_vector_tables_changed AFTER INSERT OR UPDATE OR DELETE ON searchd_vector_tables
            FOR EACH STATEMENT EXECUTE FUNCTION searchd_registry_changed();
    END IF;
END $$;
"""
# One statement logs a transaction's changes and announces them (delivered at COMMIT, in commit order).
LOG_CHANGES = (
    f"WITH logged AS (INSERT INTO searchd_changes (collection, doc, origin) SELECT c, d, %(origin)s FROM unnest(%(collections)s::text[], %(docs)s::bigint[]) AS u(c, d) RETURNING seq) "
    f"SELECT pg_notify('{CHANNEL}', %(origin)s::text || ' ' || min(seq) || ' ' || max(seq)) FROM logged"
)
# Everything written up to now: the last logged change, or the last trim when the log is empty since.
HEAD = "SELECT GREATEST((SELECT max(seq) FROM searchd_changes), (SELECT value::bigint FROM searchd_meta WHERE key = 'trimmed'), 0)"
# How long a silent replica keeps its claim on the change log: a restart or a rolling update takes less, and the log
# it holds back meanwhile is a few rows per write (server.storage.replicaExpirySeconds).
DEFAULT_EXPIRY_S = 600.0
_LIVE = "heartbeat > now() - make_interval(secs => %(expiry)s)"


@dataclass(frozen=True)
class Changes:
    """What the log holds after a sequence: other processes' changes, and how far that reading reaches."""

    rows: list[tuple[int, str, int]]  # (seq, collection, doc), in seq order; this process's own left out
    upto: int  # every change up to here was read
    head: int  # the last change logged when this was read
    trimmed: bool  # the log no longer reaches back to the sequence asked for: what was missed is unknown


@dataclass(frozen=True)
class Replica:
    """One row of searchd_replicas as /v1/nodes shows it."""

    id: str
    name: str
    host: str
    port: int | None
    applied_seq: int
    saved_seq: int | None
    lag_seqs: int
    lag_seconds: float
    version: str
    heard_s: float  # seconds since its last heartbeat


@dataclass(frozen=True)
class Note:
    """A notification of a committed write: who wrote it and its sequence numbers."""

    origin: str
    first: int
    last: int


def parse_note(payload: str) -> Note | None:
    parts = payload.split(" ")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None  # not ours (someone else NOTIFYing on the channel): a reason to read the log, no more
    return Note(parts[0], int(parts[1]), int(parts[2]))


class Listener:
    """A connection of its own that LISTENs on the change channel (the pool's connections come and go)."""

    def __init__(self, url: str, where: str) -> None:
        self._url, self._where = url, where
        self._db: psycopg.Connection[Any] | None = None

    def wait(self, timeout: float) -> list[Note | None] | None:
        """Notifications that arrive within ``timeout`` seconds ([] if none); None when the connection was lost and made again
        (a notification may have been missed meanwhile: read the log)."""
        fresh = False
        try:
            if self._db is None or self._db.closed or self._db.broken:
                self.close()
                self._db = connect(self._url)
                self._db.execute(f"LISTEN {CHANNEL}")
                fresh = True
            notes = [parse_note(n.payload) for n in self._db.notifies(timeout=timeout, stop_after=1)]
            notes += [parse_note(n.payload) for n in self._db.notifies(timeout=0)]  # whatever queued behind the first
        except psycopg.Error as exc:
            self.close()
            raise pg_error(exc, self._where) from exc
        return None if fresh else notes

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class ReplicaLog:
    """The change feed and the replica table of one database, seen from one process (``origin``)."""

    def __init__(
        self, url: str, where: str, read: Callable[[], AbstractContextManager[psycopg.Connection[Any]]], origin: str, refresh_registry: Callable[[], bool]
    ) -> None:
        self._url, self._where, self._read, self.origin = url, where, read, origin
        self.refresh_registry = refresh_registry  # reload the store's table registry if another replica changed it; whether it did
        self.replica_id: str | None = None  # set once this process registers as a replica
        self.applied: int | None = None  # the last change this process's follower applied (searchd.follower); None: none follows
        self.expiry_s = DEFAULT_EXPIRY_S

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection[Any]]:
        with self._read() as db:
            try:
                yield db
            except psycopg.Error as exc:
                raise pg_error(exc, self._where) from exc

    def listener(self) -> Listener:
        return Listener(self._url, self._where)

    def head(self) -> int:
        with self._db() as db:
            row = db.execute(HEAD).fetchone()
        return int(row[0]) if row else 0

    def changes_after(self, seq: int, limit: int) -> Changes:
        """Changes of other processes after ``seq`` (at most ``limit``)."""
        with self._db() as db:
            # Rows up to the head are committed (sequences commit in order), and no trim reaches past a live replica's
            # applied sequence, so a second statement still finds every one of them.
            row = db.execute(HEAD + ", (SELECT value::bigint FROM searchd_meta WHERE key = 'trimmed')").fetchone()
            assert row is not None
            head, trimmed = int(row[0]), row[1]
            if trimmed is not None and int(trimmed) > seq:
                return Changes([], head, head, True)
            rows = [
                (int(s), str(c), int(d))
                for s, c, d in db.execute(
                    "SELECT seq, collection, doc FROM searchd_changes WHERE seq > %s AND seq <= %s AND origin IS DISTINCT FROM %s ORDER BY seq LIMIT %s",
                    (seq, head, self.origin, limit),
                )
            ]
        return Changes(rows, rows[-1][0] if len(rows) == limit else head, head, False)

    # -- the replica table -----------------------------------------------------

    def register(self, replica_id: str, name: str, version: str) -> int:
        """Join as ``replica_id`` (a restart keeps its row, and so the saved sequence trimming spares); the head now."""
        with self._db() as db:
            row = db.execute(
                f"INSERT INTO searchd_replicas (id, name, applied_seq, version) VALUES (%s, %s, ({HEAD}), %s) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, version = excluded.version, started = now(), heartbeat = now(), stopped = false "
                "RETURNING applied_seq",
                (replica_id, name, version),
            ).fetchone()
        self.replica_id = replica_id
        return int(row[0]) if row else 0

    def heartbeat(self, name: str, host: str, port: int | None, applied: int, lag_seqs: int, lag_seconds: float, stopped: bool = False) -> None:
        if self.replica_id is None:
            return
        with self._db() as db:
            db.execute(
                "UPDATE searchd_replicas SET name = %s, host = %s, port = %s, applied_seq = %s, lag_seqs = %s, lag_seconds = %s, heartbeat = now(), stopped = %s WHERE id = %s",
                (name, host, port, applied, lag_seqs, lag_seconds, stopped, self.replica_id),
            )

    def replicas(self, expiry_s: float) -> list[Replica]:
        """Replicas running and heard from within ``expiry_s`` seconds, by name."""
        with self._db() as db:
            rows = db.execute(
                "SELECT id, name, host, port, applied_seq, saved_seq, lag_seqs, lag_seconds, version, extract(epoch FROM now() - heartbeat)::float8 "
                f"FROM searchd_replicas WHERE NOT stopped AND {_LIVE} ORDER BY name, id",
                {"expiry": expiry_s},
            ).fetchall()
        return [Replica(r[0], r[1], r[2], r[3], int(r[4]), None if r[5] is None else int(r[5]), int(r[6]), float(r[7]), r[8], float(r[9])) for r in rows]

    def trim_floor(self, db: psycopg.Connection[Any], saved: int) -> int:
        """Record that this replica saved its indexes at ``saved``; the highest sequence the log may be trimmed to.

        That is the lowest sequence a replica heard from within the expiry still needs: its saved indexes' (a restart
        replays from there), or, before its first save, what it has applied (its follower reads on from there).
        A replica silent for longer gives up that claim: if it comes back, it rebuilds what the trim took.
        """
        if self.replica_id is not None:
            db.execute("UPDATE searchd_replicas SET saved_seq = %s, heartbeat = now() WHERE id = %s", (saved, self.replica_id))
        row = db.execute(f"SELECT min(COALESCE(saved_seq, applied_seq)) FROM searchd_replicas WHERE {_LIVE}", {"expiry": self.expiry_s}).fetchone()
        floor = row[0] if row is not None else None
        return saved if floor is None else min(saved, int(floor))
