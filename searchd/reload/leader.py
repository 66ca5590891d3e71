"""Reload with replicas: one leader at a time applies a config; every replica follows what it applied.

Replicas sharing a PostgreSQL database coordinate through its reload ledger
(``searchd.storage.pgreload``).  A replica that wants to apply its config files takes the
leader lock, re-reads the ledger and the applied spec under it, and decides (``decide``):

* its files hold the target revision, or a revision never targeted before (a new config: a
  rolling update's first new pod), or an explicit act on this replica asks for them (its files
  changed while it ran, SIGHUP, ``POST /v1/config/reload``): it applies its files;
* its files hold a revision targeted before and superseded since (an old pod restarting): it
  applies the ledger's target instead (resuming it if its leader died) and reports drift.

The leader keeps the lock until every rebuild of its target is promoted; a replica that finds the
lock free and the target unfinished resumes it (its staged vectors are skipped).  Every replica
polls the ledger (and listens for ``NOTIFY searchd_revision``) and follows the spec that serves:
changed vectors are re-indexed from the promoted vectors in the database, never re-embedded.

A spec read from the database is redacted (no secret is stored): a replica serves it with its
own files' secrets (module settings, API keys, the storage URL) where their digests match, and
says so in its drift report where they do not.  SQLite needs none of this: its data directory's
lock already makes one process the only one.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio.to_thread

from searchd.config.revision import redacted, revision
from searchd.config.spec import Spec
from searchd.errors import SearchdError
from searchd.storage.applied import Applied, applied_document, new_applied
from searchd.storage.ledger import Ledger

if TYPE_CHECKING:
    from searchd.reload.manager import ConfigManager
    from searchd.storage.pgreload import ReloadLedger  # psycopg: loaded only where a PostgreSQL store is chosen

log = logging.getLogger("searchd.reload")

POLL_S = 1.0  # how often a replica reads the ledger when no announcement arrives
# Triggers that are no explicit act on this replica's files: they never apply files of a superseded revision.
# Every other trigger (its files changing while it runs, SIGHUP, POST /v1/config/reload) does.
START = "start"
TAKEOVER = "takeover"  # a poll found the target unfinished and its leader gone
FOLLOW = "follow"  # what a follower records when it serves what the leader applied


@runtime_checkable
class Shared(Protocol):
    """A store that several replicas share (PostgreSQL): it has a reload ledger, and tables other replicas create."""

    def reload_ledger(self) -> ReloadLedger: ...

    def refresh_tables(self) -> None: ...


def failure(manager: ConfigManager) -> str | None:
    """What failed, once no rebuild of the manager runs and one of them failed; None otherwise."""
    rebuilds = list(manager.rebuilds.values())  # a copy: the manager's rebuilds add to it
    if any(p.state == "running" for p in rebuilds):
        return None
    failed = [f"{p.collection}.{p.target} ({p.kind}): {p.error}" for p in rebuilds if p.state == "failed"]
    return "; ".join(failed) or None


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def decide(files_revision: str, forced: bool, seen: Ledger) -> str:
    """What a leader applies: ``files`` (its own config) or ``target`` (the ledger's, its files being superseded)."""
    target = seen.target
    if target is None or files_revision == target.revision or forced or files_revision not in seen.history:
        return "files"
    return "target"


def superseded(seen: Ledger, files_revision: str) -> bool:
    """Whether files of this revision were a target once and another one is now (a start serves the database's)."""
    return seen.target is not None and files_revision != seen.target.revision and files_revision in seen.history


def merged(stored: Spec, own: Spec) -> tuple[Spec, list[str]]:
    """The redacted ``stored`` spec made servable with this replica's secrets; what could not be matched, said in words.

    Module settings, API keys and the storage URL are digests in the database.  This replica's own
    values take their place: the same values where the digests match (then the revision is the
    stored one), its own values otherwise (its revision differs, reported as drift).
    """
    problems = []
    mine = redacted(own)
    for name, settings in stored.modules.items():
        if mine.modules.get(name) != settings:
            problems.append(f"module {name}'s settings differ from the applied revision's (this replica embeds with its own)")
    if mine.server.auth.api_keys != stored.server.auth.api_keys:
        problems.append("server.auth.apiKeys differ from the applied revision's (this replica accepts its own keys)")
    auth = dataclasses.replace(stored.server.auth, api_keys=own.server.auth.api_keys)
    server = dataclasses.replace(stored.server, auth=auth, storage=own.server.storage)
    return dataclasses.replace(stored, modules=own.modules, server=server, base_dir=own.base_dir), problems


def drift(files_revision: str | None, applied_revision: str | None, problem: str | None, secrets: list[str]) -> dict[str, Any]:
    """Whether this replica's config files hold another revision than the applied one, and what that means."""
    if files_revision is None:
        message = f"the config files cannot be loaded ({problem or 'see lastReload.errors'}); revision {applied_revision} keeps serving"
    elif applied_revision is not None and files_revision != applied_revision:
        message = f"the config files hold revision {files_revision}, the applied revision is {applied_revision}: {problem or 'not applied yet'}"
    elif secrets:
        message = "; ".join(secrets)
    else:
        return {"drift": False, "filesRevision": files_revision, "appliedRevision": applied_revision, "message": None}
    return {"drift": True, "filesRevision": files_revision, "appliedRevision": applied_revision, "message": message}


def starting_point(store: object, files: Spec, applied: Applied | None) -> tuple[Spec | None, bool]:
    """Replicas only: the spec to start serving (the applied one, with this replica's secrets), and whether the files
    were superseded (then they are not refused at start: they are not to be applied)."""
    if not isinstance(store, Shared) or applied is None:
        return None, False
    ledger = store.reload_ledger()
    try:
        seen = ledger.read()
    finally:
        ledger.close()
    return merged(applied.spec, files)[0], superseded(seen, revision(files))


class Coordinator:
    """One replica's part in coordinated reloads (PostgreSQL only), driven by its config manager's loop."""

    def __init__(self, ledger: ReloadLedger) -> None:
        self.ledger = ledger
        self.name = replica_name()
        self.seen = Ledger(None, frozenset(), None)
        self.waiting: str | None = None  # a trigger whose files wait for the leader lock
        self.secrets: list[str] = []  # what ``merged`` could not match, last time it served a stored spec

    def close(self, done: bool) -> None:
        """Let go of the ledger; ``done``: nothing of this replica's is left to rebuild, so a target it leads is finished
        (``searchd apply`` stops right after its rebuilds: no poll would mark it)."""
        try:
            target = self.ledger.read().target if done and self.ledger.leading else None
            if target is not None and target.finished is None:
                self.ledger.finish(target.revision)
        except SearchdError as exc:  # another replica takes the unfinished target over, and finds nothing left to do
            log.warning("could not mark the reload finished while stopping: %s", exc)
        finally:
            self.ledger.close()

    def status(self) -> dict[str, Any]:
        target = self.seen.target
        return {
            "replica": self.name,
            "leading": self.ledger.leading,
            "waiting": self.waiting,  # the trigger whose files wait for the lock, if any
            "target": None if target is None else {
                "revision": target.revision,
                "by": target.replica,
                "started": target.started,
                "finished": target.finished,
                "failed": target.failed,
                "revectorize": [{"collection": c, "vector": v} for c, v in target.revectorize],
            },
        }

    @property
    def applied_revision(self) -> str | None:
        """What the replicas converge to: the ledger's target (the spec serving, before any replica led)."""
        return self.seen.target.revision if self.seen.target is not None else self.seen.applied_revision

    # -- the manager's entry points (under its lock, on its loop) ------------------------------

    async def files_changed(self, manager: ConfigManager, spec: Spec, trigger: str) -> dict[str, Any]:
        """A reload of this replica's files: lead and decide, or (another replica leads) follow and wait for the lock."""
        if await anyio.to_thread.run_sync(self.ledger.try_lead):
            self.waiting = None
            return await self._lead(manager, spec, trigger)
        self.seen = await anyio.to_thread.run_sync(self.ledger.read)
        wants = decide(revision(spec), trigger != START, self.seen) == "files" and revision(spec) != self.applied_revision
        self.waiting = trigger if wants else None
        await self._follow(manager, spec)
        if wants:
            return manager.record_outcome(
                trigger, "waiting", problem=f"another replica holds the reload lock (the target is revision {self.applied_revision}); these files are applied once it lets go"
            )
        return manager.record_outcome(trigger, "following")

    async def tick(self, manager: ConfigManager) -> None:
        """Poll: finish a completed lead, follow what serves, and take the lock when a target is orphaned or files wait."""
        self.seen = await anyio.to_thread.run_sync(self.ledger.read)
        if self.ledger.held and not await anyio.to_thread.run_sync(self.ledger.still_leading):
            # The lock's connection dropped, and the lock with it: another replica may lead now, so this one must not promote.
            log.error("lost the reload leader lock (its database connection dropped): stopping this replica's rebuilds; another replica resumes them")
            await manager.stop_rebuilds()
            return
        if self.ledger.leading:
            target = self.seen.target
            if not manager.busy():
                if target is not None and target.finished is None:
                    await anyio.to_thread.run_sync(self.ledger.finish, target.revision)
                    log.info("revision %s is applied on every vector; letting another replica lead", target.revision)
                await anyio.to_thread.run_sync(self.ledger.step_down)
            elif (error := failure(manager)) is not None:
                # Nothing runs and a rebuild failed: the old vectors keep serving.  Say so in the ledger (every replica
                # reports it) and let go, so that a reload or a start on any replica can lead again.
                if target is not None and target.finished is None:
                    await anyio.to_thread.run_sync(self.ledger.fail, target.revision, error)
                    log.error("revision %s could not be applied (%s); letting go of the reload lock", target.revision, error)
                await anyio.to_thread.run_sync(self.ledger.step_down)
            return
        files = manager.files_spec
        if files is None:
            return
        orphaned = self.seen.target is not None and self.seen.target.finished is None and self.seen.target.failed is None
        leads = False
        if orphaned or self.waiting:
            leads = await anyio.to_thread.run_sync(self.ledger.try_lead)
        if leads:
            # Read again under the lock: the leader may have finished (and let go) since the read above.
            self.seen = await anyio.to_thread.run_sync(self.ledger.read)
            target = self.seen.target
            if target is not None and target.finished is None:
                log.info("the reload of revision %s is unfinished and its leader (%s) is gone: taking it over", target.revision, target.replica)
            elif not self.waiting:
                await anyio.to_thread.run_sync(self.ledger.step_down)
                await self._follow(manager, files)
                return
            try:
                await self._lead(manager, files, self.waiting or TAKEOVER)
            finally:
                self.waiting = None  # only now: status shows the files waiting until their outcome is recorded
            return
        await self._follow(manager, files)

    # -- leading and following -------------------------------------------------------------------

    async def _lead(self, manager: ConfigManager, files: Spec, trigger: str) -> dict[str, Any]:
        try:
            self.seen = await anyio.to_thread.run_sync(self.ledger.read)
            # Under the lock: plan against what the database holds now, not what this replica saw last.
            await self._follow(manager, files)  # first serve what the last leader applied (it refreshes the tables)
            await anyio.to_thread.run_sync(self._shared(manager).refresh_tables)
            await manager.reread_applied()
            if decide(revision(files), trigger not in (START, TAKEOVER), self.seen) == "files":
                self.secrets, manager.files_problem = [], None
                outcome = await manager.apply(files, trigger, lead=self)
            else:
                assert self.seen.target is not None
                stored = self.seen.target.applied(f"in {self.ledger.where} (table searchd_reload)").spec
                spec, self.secrets = merged(stored, files)
                outcome = await manager.apply(spec, trigger, lead=self)
            if outcome["result"] != "applied" and not manager.busy():
                await anyio.to_thread.run_sync(self.ledger.step_down)  # nothing of this replica's runs: another may lead
            return outcome
        except BaseException:
            await anyio.to_thread.run_sync(self.ledger.step_down)
            raise

    @staticmethod
    def _shared(manager: ConfigManager) -> Shared:
        store = manager.engine.store
        assert isinstance(store, Shared)  # a coordinator exists only for a shared store
        return store

    def superseded_problem(self, files: Spec) -> str | None:
        target = self.seen.target
        if target is None or revision(files) == target.revision:
            return None
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(target.started))
        return (
            f"revision {target.revision} (applied by {target.replica} at {when}) superseded these files, so this replica serves it; "
            "update this replica's config files, or POST /v1/config/reload here to apply its files again"
        )

    async def _follow(self, manager: ConfigManager, files: Spec) -> None:
        """Serve the spec the database says serves, when it is not what this replica serves."""
        if self.seen.applied_revision is None or manager.follows(self.seen.applied_revision):
            return
        applied = await anyio.to_thread.run_sync(manager.engine.store.load_applied)
        if applied is None:
            return
        await anyio.to_thread.run_sync(self._shared(manager).refresh_tables)  # the tables the leader promoted
        spec, self.secrets = merged(applied.spec, files)
        try:
            await manager.follow(spec, applied)
        except SearchdError as exc:
            log.error("could not serve the applied revision %s: %s", applied.revision, exc)

    def begin(self, target: Spec, revectorize: list[tuple[str, str]]) -> None:
        """Record the target a leader applies (called by the manager before it changes anything)."""
        applied, known = new_applied(target), self.seen.target
        if known is not None and known.revision == applied.revision and known.finished is not None and not revectorize:
            return  # already the target, and done: a start or a reload of the same files records nothing
        self.ledger.begin(applied, applied_document(applied), revectorize, self.name)
