"""How an import shows its progress: a bar on a terminal, a log line now and then otherwise.

The total is the size of the files in bytes (the number of objects is not known
before they are read), so the percentage and the ETA come from bytes read and the
rate from objects stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

log = logging.getLogger("searchd.import")

BAR_WIDTH = 24
LOG_EVERY_S = 10.0  # a line every ten seconds: enough to see it move, few enough to read
DRAW_EVERY_S = 0.2


@dataclass(frozen=True)
class Snapshot:
    done: int  # objects read so far (stored, skipped or failed)
    failed: int
    fraction: float | None  # of the bytes to read; None when the files are empty
    rate: float  # objects per second since the start
    eta_s: float | None

    def describe(self) -> str:
        parts = [f"{self.done:,} object(s)", f"{self.rate:,.0f}/s"]
        if self.fraction is not None:
            parts.insert(0, f"{self.fraction:.0%}")
        if self.eta_s is not None:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        if self.failed:
            parts.append(f"{self.failed:,} failed")
        return ", ".join(parts)


def format_duration(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Told of every batch (``update``); tells ``listener`` each time, else draws or logs at most every so often."""

    def __init__(
        self,
        total_bytes: int,
        terminal: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        listener: Callable[[Snapshot], None] | None = None,
    ) -> None:
        self.total_bytes = total_bytes
        self._terminal = terminal  # a TTY to draw the bar on; None: log lines
        self._clock = clock
        self._listener = listener
        self._started = clock()
        self._shown = self._started
        self.last = Snapshot(0, 0, 0.0 if total_bytes else None, 0.0, None)

    def update(self, done: int, failed: int, bytes_read: int, final: bool = False) -> None:
        now = self._clock()
        elapsed = max(now - self._started, 1e-9)
        fraction = min(1.0, bytes_read / self.total_bytes) if self.total_bytes else None
        eta = elapsed * (1 - fraction) / fraction if fraction and not final else (0.0 if final else None)
        self.last = Snapshot(done, failed, fraction, done / elapsed, eta)
        if self._listener is not None:
            self._listener(self.last)
        if self._terminal is None and self._listener is not None:
            return  # the listener shows it (serve --load: the readiness, in its body and the log)
        interval = DRAW_EVERY_S if self._terminal is not None else LOG_EVERY_S
        if final or now - self._shown >= interval:
            self._shown = now
            self._show(final)

    def _show(self, final: bool) -> None:
        if self._terminal is None:
            log.info("import: %s", self.last.describe())
            return
        filled = int(BAR_WIDTH * (self.last.fraction or 0.0))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self._terminal.write(f"\r[{bar}] {self.last.describe()}\033[K" + ("\n" if final else ""))
        self._terminal.flush()
