"""Whether the server is ready, and how far its start-up has got: the body of ``/v1/.well-known/ready``.

The port opens at once; the slow part of a start (opening or rebuilding indexes,
``--load`` files) runs on a thread of its own and reports here.  Until it is done,
``ready`` answers 503 with the phase and its progress, and data requests get a
503 "not ready" (their answers would be partial).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("searchd")

LOG_EVERY_S = 10.0


class Readiness:
    """Written by the start-up thread, read by request handlers: every field is read and written under one lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ready = False
        self._error: str | None = None
        self._phase = "starting"
        self._done = 0
        self._total: int | None = None
        self._fraction: float | None = None
        self._phase_started = self._logged = clock()

    def report(self, phase: str, done: int, total: int | None = None, fraction: float | None = None) -> None:
        """Progress of ``phase``: ``done`` of ``total`` (objects), or ``fraction`` of the input read when the total is not known."""
        now = self._clock()
        with self._lock:
            if phase != self._phase:
                self._phase, self._phase_started = phase, now
                log.info("not ready yet: %s", phase)
            self._done, self._total, self._fraction = done, total, fraction
            if now - self._logged < LOG_EVERY_S:
                return
            self._logged = now
        log.info("not ready yet: %s", self._describe())

    def set_ready(self) -> None:
        with self._lock:
            self._ready = True
        log.info("ready")

    def failed(self, message: str) -> None:
        with self._lock:
            self._error = message

    def _describe(self) -> str:
        body = self.as_json()
        total = f" of {body['total']:,}" if body["total"] is not None else ""
        eta = f", ETA {body['etaSeconds']:.0f}s" if body["etaSeconds"] is not None else ""
        return f"{body['phase']}: {body['done']:,}{total} done ({body['rate']:,.0f}/s{eta})"

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            elapsed = max(self._clock() - self._phase_started, 1e-9)
            rate = self._done / elapsed
            fraction = self._done / self._total if self._total else self._fraction
            eta = elapsed * (1 - fraction) / fraction if fraction and not self._ready else None
            body: dict[str, Any] = {
                "ready": self._ready,
                "phase": "ready" if self._ready else self._phase,
                "done": self._done,
                "total": self._total,
                "rate": round(rate, 1),
                "etaSeconds": round(eta, 1) if eta is not None else None,
            }
            if self._error is not None:
                body["error"] = self._error
            return body
