"""Worker threads for the query path: a search hands its blocking part to one and awaits it.

A hand-over through anyio's ``to_thread.run_sync`` costs about 80 µs of CPU (its capacity
limiter, cancel scope and per-call checks), as much as a quarter of an unfiltered nearVector
search; this one costs about 45 µs.  It keeps what the query path relies on from anyio's:

* the work runs in a copy of the caller's context, which carries the request's deadline
  (searchd.deadline);
* a cancelled caller (a query timeout, a client gone) waits for the work to finish before it
  goes on: a thread cannot be stopped from outside, and abandoned work must not pile up behind
  timeouts.  The deadline makes the long loops stop soon.

Work goes to the thread that went idle last (its caches are warm, and under a steady load the
same few threads take turns), or to a new one up to ``limit``; beyond that it waits in a
backlog that threads empty before they go idle.  A thread idle for ``idle_s`` ends; ``close``
ends them all.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")
CLOSE_WAIT_S = 60.0  # a query stops at its deadline; only a stuck thread would hold a shutdown longer
log = logging.getLogger("searchd.workers")
_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", contextvars.Context, Callable[[], Any]]


def _settle(future: asyncio.Future[T], value: T | None, error: BaseException | None) -> None:
    if future.done():  # the caller's task was cancelled while the work ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _Thread:
    """One worker thread and the queue its next job arrives on (None: end)."""

    def __init__(self, name: str) -> None:
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.name = name


class WorkerThreads:
    def __init__(self, limit: int = 40, idle_s: float = 10.0, name: str = "searchd-worker") -> None:
        self._limit = limit
        self._idle_s = idle_s
        self._name = name
        self._lock = threading.Lock()
        self._threads: dict[_Thread, threading.Thread] = {}
        self._idle: list[_Thread] = []  # a stack: the last to go idle is the first to work again
        self._backlog: deque[_Job] = deque()
        self._started = 0
        self._closed = False

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread, in a copy of the caller's context."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        # Marked retrieved whatever becomes of the caller: one cancelled meanwhile (a query past its queryTimeout, or
        # cancelled again while it waits below) is gone, and asyncio would log "Future exception was never retrieved"
        # with a traceback when ``done`` is freed.  A caller still waiting gets the error all the same.
        done.add_done_callback(_retrieved)
        self._submit((loop, done, contextvars.copy_context(), work))
        try:
            # Shielded: a cancelled caller must not cancel ``done``, which reports when the thread is free again.
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            if not done.done():
                # anyio cancels a task again at every await while its scope is cancelled: shield the wait.
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([done])
            raise

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker threads were closed")
            if self._idle:
                worker = self._idle.pop()
            elif len(self._threads) < self._limit:
                worker = _Thread(f"{self._name}-{self._started}")
                self._started += 1
                thread = threading.Thread(target=self._serve, args=(worker,), name=worker.name, daemon=True)
                self._threads[worker] = thread
                thread.start()
            else:
                self._backlog.append(job)  # every thread is busy: the first one free takes it
                return
        worker.jobs.put(job)

    def _serve(self, worker: _Thread) -> None:
        while True:
            try:
                job = worker.jobs.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if worker in self._idle:  # nothing was handed to it meanwhile: it ends
                        self._idle.remove(worker)
                        del self._threads[worker]
                        return
                continue  # a job was handed to it as it timed out: it is in its queue
            if job is None:
                return
            self._run(worker, job)
            job = None  # nothing of it stays referenced while the thread waits for the next one

    def _run(self, worker: _Thread, job: _Job) -> None:
        """This job, then the backlog's, until there is none: the thread is idle again."""
        while True:
            loop, done, value, error = self._do(*job)
            with self._lock:
                following = self._backlog.popleft() if self._backlog else None
                if following is None:
                    # Idle before the caller hears of the result: its next job comes to this thread.
                    self._idle.append(worker)
            try:
                loop.call_soon_threadsafe(_settle, done, value, error)
            except RuntimeError:  # the loop was closed meanwhile: nobody waits any more
                pass
            if following is None:
                return
            job = following

    @staticmethod
    def _do(
        loop: asyncio.AbstractEventLoop, done: asyncio.Future[Any], context: contextvars.Context, work: Callable[[], Any]
    ) -> tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]:
        try:
            return loop, done, context.run(work), None
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task, which raises it
            return loop, done, None, exc

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """End every thread once the work handed to it is done (new work is refused); wait up to ``wait_s`` for them."""
        with self._lock:
            self._closed = True
            threads = dict(self._threads)
        for worker in threads:
            worker.jobs.put(None)
        until = time.monotonic() + wait_s
        for thread in threads.values():
            if thread is not threading.current_thread():
                thread.join(max(0.0, until - time.monotonic()))
        busy = [t.name for t in threads.values() if t.is_alive() and t is not threading.current_thread()]
        if busy:
            log.warning("%d worker thread(s) still running after %g s at close: %s", len(busy), wait_s, ", ".join(busy))
