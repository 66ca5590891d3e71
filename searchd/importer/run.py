"""Importing files of Weaviate objects, in batches, into a target: the engine core (check → skip if stored unchanged →
embed → store) or a running server (``searchd.importer.remote``).

The same code serves ``searchd import`` (a stopped server's data directory, or
``--url``) and ``searchd serve --load`` (while the server answers ``ready: false``).  Each bad
object fails alone, reported as ``file:line: id …: reason`` and, when asked,
copied to a reject file that can be fixed and imported again.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, TextIO

import anyio.to_thread
import orjson

from searchd.drafts import Draft
from searchd.engine import Engine
from searchd.errors import InvalidInput, SearchdError
from searchd.importer.progress import Progress, Snapshot
from searchd.importer.reader import FileError, ObjectFile, Record

log = logging.getLogger("searchd.import")

BATCH_OBJECTS = 256  # objects checked, looked up and stored together: one transaction, provider-sized batches


def open_files(paths: Sequence[str | Path]) -> list[ObjectFile]:
    """Every file to import, checked before anything is imported: a typo in the last name costs nothing."""
    files = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise InvalidInput(f"{path}: no such file", "check the path; a relative one starts from the current directory")
        if path.is_dir():
            raise InvalidInput(f"{path}: is a directory", "name the .jsonl or .json files in it")
        if not os.access(path, os.R_OK):  # not by opening it: a named pipe would block until its writer comes
            raise InvalidInput(f"{path}: cannot be read", "check its permissions")
        files.append(ObjectFile(path))
    return files


@dataclass
class Summary:
    stored: int = 0
    skipped: int = 0  # already stored unchanged (a resumed import)
    failed: int = 0  # objects that failed, and files that could not be read on

    @property
    def done(self) -> int:
        return self.stored + self.skipped + self.failed

    def describe(self) -> str:
        return f"{self.stored:,} stored, {self.skipped:,} already stored unchanged, {self.failed:,} failed"


def given_id(payload: Any) -> str | None:
    value = payload.get("id") if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None


STORED, SKIPPED = "stored", "skipped"
Outcome = str | SearchdError  # STORED, SKIPPED (already stored unchanged), or why the object failed


class Target(Protocol):
    """Where imported objects go: a data directory through the engine, or a running server over HTTP."""

    async def put(self, payloads: Sequence[Any]) -> list[Outcome]:
        """One outcome per payload, in order."""
        ...


class EngineTarget:
    """The engine core of an open data directory: each object is checked, skipped when stored unchanged, embedded and stored."""

    def __init__(self, engine: Engine, resume: bool = True) -> None:
        self.engine = engine
        self.resume = resume

    async def put(self, payloads: Sequence[Any]) -> list[Outcome]:
        catalog = self.engine.holder.current
        outcomes: list[Outcome] = [SKIPPED] * len(payloads)
        drafts: list[tuple[int, Draft]] = []

        def check() -> list[bool]:
            for position, payload in enumerate(payloads):
                try:
                    drafts.append((position, self.engine.draft(catalog, payload)))
                except SearchdError as exc:
                    outcomes[position] = exc
            return self.engine.unchanged([d for _, d in drafts]) if self.resume else [False] * len(drafts)

        unchanged = await anyio.to_thread.run_sync(check)  # decoding images and reading the store: off the event loop
        todo = [pair for pair, same in zip(drafts, unchanged) if not same]
        results = await self.engine.store_drafts([d for _, d in todo])
        for (position, _), result in zip(todo, results):
            outcomes[position] = result if isinstance(result, SearchdError) else STORED
        return outcomes


class Importer:
    def __init__(
        self,
        target: Target,
        rejects: IO[bytes] | None = None,
        terminal: TextIO | None = None,
        listener: Callable[[Snapshot], None] | None = None,
        stop: threading.Event | None = None,
        batch_objects: int = BATCH_OBJECTS,
    ) -> None:
        self.target = target
        self.rejects = rejects
        self.terminal = terminal  # a TTY for the progress bar; None: log lines
        self.listener = listener
        self.stop = stop or threading.Event()
        self.batch_objects = batch_objects
        self.summary = Summary()

    async def run(self, files: Sequence[ObjectFile]) -> Summary:
        progress = Progress(sum(f.size for f in files), self.terminal, listener=self.listener)
        read_before = 0
        for file in files:
            batch: list[Record] = []
            broken: str | None = None
            try:
                for record in file:
                    batch.append(record)
                    if len(batch) >= self.batch_objects:
                        await self._store(batch)
                        batch = []
                        progress.update(self.summary.done, self.summary.failed, read_before + file.position)
                        if self.stop.is_set():
                            return self.summary
            except FileError as exc:
                broken = str(exc)
            except OSError as exc:
                broken = f"{file.name}: could not be read on ({exc.strerror or exc})"
            await self._store(batch)  # the objects read before a break are imported too
            if broken is not None:
                self._report(broken)
                self.summary.failed += 1
            read_before += file.size
            progress.update(self.summary.done, self.summary.failed, read_before)
        progress.update(self.summary.done, self.summary.failed, read_before, final=True)
        return self.summary

    def _report(self, message: str) -> None:
        if self.terminal is not None:  # the error goes on a line of its own, not over the bar
            self.terminal.write("\r\033[K")
        log.error("%s", message)

    def _fail(self, record: Record, object_id: str | None, reason: str) -> None:
        self.summary.failed += 1
        self._report(f"{record.where}: {f'id {object_id}: ' if object_id else ''}{reason}")
        if self.rejects is not None:  # one object per line, whatever the input's layout (a JSON array's element spans lines)
            line = orjson.dumps(record.payload) if record.error is None else b" ".join(record.raw.splitlines())
            self.rejects.write(line + b"\n")

    async def _store(self, records: Sequence[Record]) -> None:
        readable = [r.payload for r in records if r.error is None]
        outcomes = iter(await self.target.put(readable) if readable else [])
        for record in records:  # reported in the file's order
            outcome = record.error if record.error is not None else next(outcomes)
            if isinstance(outcome, SearchdError):
                self._fail(record, given_id(record.payload), str(outcome))
            elif record.error is not None:
                self._fail(record, None, record.error)
            elif outcome == SKIPPED:
                self.summary.skipped += 1
            else:
                self.summary.stored += 1
