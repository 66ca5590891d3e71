"""The config manager's state (searchd.reload.manager) and what it reports of it: ``GET /v1/config/status``,
the drift report and each reload's outcome."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from searchd.catalog import Catalog
from searchd.config.revision import revision
from searchd.config.spec import Spec
from searchd.engine import Engine
from searchd.modules.base import ModuleRuntime
from searchd.reload.leader import Coordinator, Shared, drift
from searchd.reload.plan import Plan
from searchd.reload.rebuild import Progress
from searchd.reload.served import Key
from searchd.storage.applied import Applied

log = logging.getLogger("searchd.reload")


class ReloadStatus:
    """What the manager's parts (searchd.reload.rebuild_tasks, searchd.reload.following) share, and its report."""

    def __init__(
        self, config_path: Path, engine: Engine, runtime: ModuleRuntime, on_reload: Callable[[str], None] | None, prepare_catalog: Callable[[Catalog], None]
    ) -> None:
        self.config_path = config_path
        self._on_reload = on_reload
        self._prepare_catalog = prepare_catalog
        self.engine = engine
        self.runtime = runtime
        self.applied: Applied | None = engine.store.load_applied()
        self.target: Spec | None = None
        self.served: Spec | None = None
        self.last: dict[str, Any] | None = None
        self.rebuilds: dict[Key, Progress] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._inputs: dict[Key, Any] = {}  # what each running rebuild was started from (see _unaffected)
        self._lock: asyncio.Lock | None = None
        # Replicas on one database coordinate reloads (searchd.reload.leader); None on SQLite.
        self.coordinator = Coordinator(engine.store.reload_ledger()) if isinstance(engine.store, Shared) else None
        # The config files as last loaded valid (their secrets serve a spec read from the database), and whether they still are.
        self.files_spec: Spec | None = None
        self.files_valid = False
        self.files_problem: str | None = None  # why the files' revision does not serve, when it does not

    def status(self) -> dict[str, Any]:
        body = {
            "configPath": str(self.config_path),
            "revision": self.applied.revision if self.applied else None,
            "appliedAt": self.applied.applied_at if self.applied else None,
            "lastReload": self.last,
            "rebuilds": [p.as_dict() for p in list(self.rebuilds.values())],  # a copy: the manager's thread adds to it
            "drift": self.drift(),
        }
        if self.coordinator is not None:
            body["replicas"] = self.coordinator.status()
        return body

    def drift(self) -> dict[str, Any]:
        """Whether the config files hold the applied revision (with replicas: the one they all converge to)."""
        files = revision(self.files_spec) if self.files_spec is not None and self.files_valid else None
        if self.coordinator is not None:
            problem = self.files_problem or (self.coordinator.superseded_problem(self.files_spec) if files is not None and self.files_spec else None)
            return drift(files, self.coordinator.applied_revision, problem, self.coordinator.secrets)
        return drift(files, revision(self.target) if self.target is not None else None, self.files_problem, [])

    def record_outcome(self, trigger: str, result: str, problem: str | None = None) -> dict[str, Any]:
        """A reload that did not apply this replica's files (another replica leads, or they were superseded), and why."""
        self.files_problem = problem  # shown in the drift report: coordination, not an error
        if problem:
            log.info("config reload (%s): %s", trigger, problem)
        return self._record(trigger, result)

    def _record(self, trigger: str, result: str, plan: Plan | None = None, errors: list[str] | None = None) -> dict[str, Any]:
        self.last = {
            "at": time.time(),
            "trigger": trigger,
            "result": result,
            "errors": errors or [],
            "plan": plan.to_json() if plan else None,
            "revision": self.applied.revision if self.applied else None,
        }
        if self._on_reload is not None:
            self._on_reload(result)
        if errors:
            log.error("config reload (%s) %s: %s", trigger, result, "; ".join(errors))
        elif result == "applied" and plan is not None and (plan.revectorize or plan.reindex) and self.target is not None:
            # The applied revision is what serves (old vectors until the rebuilds swap in): name the target too.
            pending = ", ".join(f"{c}.{v}" for c, v in dict.fromkeys([*plan.revectorize, *plan.reindex]))
            log.info(
                "config reload (%s): applied revision %s; rebuilding %s in the background (serving revision %s until done)",
                trigger, revision(self.target), pending, self.last["revision"],
            )
        else:
            log.info("config reload (%s): %s, revision %s", trigger, result, self.last["revision"])
        return self.last

    def _invalid(self, trigger: str, errors: list[str]) -> dict[str, Any]:
        self.files_valid, self.files_problem = False, errors[0] if errors else None
        return self._record(trigger, "invalid", errors=errors)
