"""What the reload ledger of replicas holds (``searchd.storage.pgreload`` keeps it in PostgreSQL).

Plain records, apart from the database driver: a replica on SQLite (the embedded default) imports
the reload code without loading psycopg.
"""

from __future__ import annotations

from dataclasses import dataclass

from searchd.storage.applied import Applied, read_applied


@dataclass(frozen=True)
class Target:
    """What the replicas converge to: a spec some leader made the target, finished or still being applied."""

    revision: str
    document: bytes  # the redacted spec, as ``searchd_applied`` holds one
    revectorize: tuple[tuple[str, str], ...]
    replica: str  # who made it the target (host:pid)
    started: float
    finished: float | None
    failed: str | None = None  # why its leader could not apply it (then it let go, and no replica takes it over)

    def applied(self, where: str) -> Applied:
        return read_applied(where, self.document)


@dataclass(frozen=True)
class Ledger:
    """One read of the ledger: the target (None before any replica led), the revisions ever targeted, the spec serving."""

    target: Target | None
    history: frozenset[str]
    applied_revision: str | None
