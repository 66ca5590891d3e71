"""Keeping a serving engine's saved state fresh: index checkpoints, and memory handed back to the OS.

A restart after ``kill -9`` loads the saved indexes and replays the writes logged since their
sequence, so the cost of a crash is the number of writes since the last save: saving every
CHECKPOINT_CHANGES writes bounds it.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from typing import TYPE_CHECKING

from searchd.errors import SearchdError

if TYPE_CHECKING:
    from searchd.engine import Engine

log = logging.getLogger("searchd")

CHECKPOINT_CHANGES = 5_000  # writes since the last save that make the next one due (a restart replays at most about this many)
CHECKPOINT_SECONDS = 60.0  # and the longest a smaller number of writes waits
# Once writes pause for a tick, this many waiting writes are saved at once rather than up to a minute later, when
# queries may be running: the end of a bulk import is saved while the server is idle.
CHECKPOINT_IDLE_CHANGES = 500
CHECKPOINT_TICK_S = 1.0


def release_free_memory() -> None:
    """Hand memory that Python and numpy freed back to the OS (glibc keeps it in its heaps otherwise).

    An import parses megabytes of JSON per batch and an index restore builds its arrays twice over;
    without this the server's resident size stays at its peak (about 30 MB more at 60,000 objects).
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class Checkpoints:
    """A background thread that saves the engine's indexes when enough writes have piled up since the last save,
    and hands freed memory back once writes pause."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_seq = 0
        self._saved_at = time.monotonic()
        self._seen_seq = self._trimmed_seq = -1
        self._last_error: str | None = None

    def saved(self, seq: int) -> None:
        self._saved_seq, self._saved_at = seq, time.monotonic()

    def due(self, write_seq: int, idle: bool = False) -> bool:
        """Whether to save now; ``idle``: no write came in during the last tick."""
        pending = write_seq - self._saved_seq
        if pending >= CHECKPOINT_CHANGES or (idle and pending >= CHECKPOINT_IDLE_CHANGES):
            return True
        return pending > 0 and time.monotonic() - self._saved_at >= CHECKPOINT_SECONDS

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="searchd-checkpoints", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(CHECKPOINT_TICK_S):
            try:
                self._engine.store.drop_retired()
                write_seq = self._engine.store.write_seq()
                if self.due(write_seq, idle=write_seq == self._seen_seq):
                    started = time.monotonic()
                    seq = self._engine.save_indexes()
                    release_free_memory()  # a save copies an index's arrays while it writes them out
                    log.info("saved the indexes at write %d in %.2fs", seq, time.monotonic() - started)
                if write_seq == self._seen_seq != self._trimmed_seq:  # no write for a tick since the last trim
                    release_free_memory()
                    self._trimmed_seq = write_seq
                self._seen_seq = write_seq
            except SearchdError as exc:  # a known cause (a full disk, no file descriptor left): one line while it lasts, not a traceback a second
                if str(exc) != self._last_error:
                    log.error("saving the indexes failed; will try again: %s", exc)
                self._last_error = str(exc)
            except Exception:  # the store is the truth: a failed save only means a longer replay after a crash
                log.exception("saving the indexes failed; will try again")
            else:
                self._last_error = None
