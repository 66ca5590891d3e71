"""searchd.workers: the query path's worker threads (results, errors, context, cancellation, limits, idle ends)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import weakref
from collections.abc import Iterator
from functools import partial

import anyio
import anyio.lowlevel
import pytest

from searchd.workers import WorkerThreads

WAIT_S = 30.0  # a bound on waits for a condition, never a duration the test expects
request_name: contextvars.ContextVar[str] = contextvars.ContextVar("request_name", default="none")


@pytest.fixture
def workers() -> Iterator[WorkerThreads]:
    pool = WorkerThreads(limit=2, idle_s=0.05)
    yield pool
    pool.close()


def test_work_answers_in_another_thread_with_the_callers_context(workers: WorkerThreads) -> None:
    async def main() -> tuple[str, int, str]:
        request_name.set("q-17")
        return await workers.run(lambda: (request_name.get(), threading.get_ident(), threading.current_thread().name))

    name, ident, thread_name = asyncio.run(main())
    assert name == "q-17"
    assert ident != threading.get_ident()
    assert thread_name.startswith("searchd-worker-")


def test_work_goes_to_the_thread_that_went_idle_last() -> None:
    workers = WorkerThreads(limit=2, idle_s=600)  # no thread ends on its own during the test
    started, release = threading.Event(), threading.Event()

    def hold() -> int:
        started.set()
        release.wait(WAIT_S)
        return threading.get_ident()

    async def main() -> tuple[int, int, list[int]]:
        # Two threads at once, then one job at a time: each goes to the thread that finished last.
        first = asyncio.create_task(workers.run(hold))
        # The first job must hold its thread before the second is handed over; otherwise the
        # second can finish first and the first job rightly goes to the thread it left idle.
        assert await asyncio.to_thread(started.wait, WAIT_S)
        second = await workers.run(threading.get_ident)
        release.set()
        held = await first
        after = [await workers.run(threading.get_ident) for _ in range(5)]
        return held, second, after

    try:
        held, second, after = asyncio.run(main())
    finally:
        release.set()
        workers.close()
    assert held != second
    assert after == [held] * 5  # the thread that held the first job went idle last


def test_an_error_of_the_work_is_raised_to_the_caller(workers: WorkerThreads) -> None:
    def fail() -> None:
        raise ValueError("bad vector")

    async def main() -> None:
        await workers.run(fail)

    with pytest.raises(ValueError, match="bad vector"):
        asyncio.run(main())


def test_a_cancelled_caller_waits_for_its_work_to_finish() -> None:
    pool = WorkerThreads(limit=2, idle_s=5)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> int:
        started.set()
        release.wait(WAIT_S)
        finished.set()
        return 1

    async def main() -> list[str]:
        seen: list[str] = []
        task = asyncio.create_task(pool.run(work))
        await asyncio.to_thread(started.wait, WAIT_S)
        task.cancel()
        for _ in range(20):  # the loop turns while the work still runs: the task must not end
            await asyncio.sleep(0)
        seen.append(f"done while running: {task.done()}")
        release.set()
        try:
            await task
        except asyncio.CancelledError:
            seen.append(f"cancelled after the work finished: {finished.is_set()}")
        return seen

    try:
        assert asyncio.run(main()) == ["done while running: False", "cancelled after the work finished: True"]
    finally:
        release.set()
        pool.close()


@pytest.mark.parametrize("cancel_twice", [False, True])
def test_an_error_of_work_whose_caller_was_cancelled_is_not_logged_as_never_retrieved(cancel_twice: bool) -> None:
    # A query cancelled at its queryTimeout leaves work that then fails (with the same timeout): asyncio would log
    # "Future exception was never retrieved" with a traceback when the work's future is freed.
    workers = WorkerThreads(limit=1, idle_s=600)  # one thread: the next job runs once it has let go of this one
    started, release = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        release.wait(WAIT_S)
        raise RuntimeError("late failure")

    async def main() -> list[dict[str, object]]:
        reported: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reported.append(context))
        task = asyncio.create_task(workers.run(work))
        await asyncio.to_thread(started.wait, WAIT_S)
        task.cancel()
        for _ in range(5):
            await asyncio.sleep(0)
        if cancel_twice:  # cancelled again while it waits for the work (as gather cancels its children on a timeout)
            task.cancel()
            for _ in range(5):
                await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        del task
        await workers.run(lambda: None)  # the thread took this job: it holds nothing of the failed one
        gc.collect()  # the failed work's future is freed here: an unretrieved exception would be reported now
        return reported

    try:
        assert [context.get("message") for context in asyncio.run(main())] == []
    finally:
        release.set()
        workers.close()


def test_a_cancelled_anyio_scope_waits_for_the_work_as_well(workers: WorkerThreads) -> None:
    # The query gate's timeout is an anyio scope, which cancels the task again at every await until it ends.
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work() -> str:
        started.set()
        release.wait(WAIT_S)
        finished.set()
        return "late"

    async def main() -> tuple[list[object], list[object]]:
        ended: list[object] = []
        scopes: list[anyio.CancelScope] = []

        async def search() -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                try:
                    await workers.run(work)
                finally:
                    ended.append(finished.is_set())
            ended.append(scope.cancelled_caught)

        async with anyio.create_task_group() as group:
            group.start_soon(search)
            await anyio.to_thread.run_sync(started.wait, WAIT_S)
            scopes[0].cancel()
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            early = list(ended)
            release.set()
        return early, ended

    try:
        assert asyncio.run(main()) == ([], [True, True])
    finally:
        release.set()


def test_at_most_limit_threads_run_and_the_rest_wait_their_turn(workers: WorkerThreads) -> None:
    running: list[int] = []
    most = [0]
    lock = threading.Lock()
    release, two_running = threading.Event(), threading.Event()

    def work(i: int) -> int:
        with lock:
            running.append(i)
            most[0] = max(most[0], len(running))
            if len(running) == 2:
                two_running.set()
        release.wait(WAIT_S)
        with lock:
            running.remove(i)
        return i * i

    async def main() -> list[int]:
        tasks = [asyncio.create_task(workers.run(partial(work, i))) for i in range(5)]
        assert await asyncio.to_thread(two_running.wait, WAIT_S), "two jobs never ran at once"
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(running) == 2  # the limit: three jobs wait in the queue
        release.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
    assert most[0] == 2


def test_idle_threads_end_and_new_work_starts_one_again(workers: WorkerThreads) -> None:
    first = asyncio.run(workers.run(threading.current_thread))
    first.join(WAIT_S)  # idle for idle_s (0.05 s), it ends
    assert not first.is_alive()
    second = asyncio.run(workers.run(threading.current_thread))
    assert second is not first and second.name.startswith("searchd-worker-")


def test_closed_workers_refuse_new_work_and_leave_no_thread() -> None:
    pool = WorkerThreads(limit=3, idle_s=60, name="closing-pool")

    together = threading.Barrier(3, timeout=WAIT_S)  # three jobs that wait for one another need three threads

    def work(i: int) -> int:
        together.wait()
        return i

    async def main() -> list[int]:
        return list(await asyncio.gather(*(pool.run(partial(work, i)) for i in range(3))))

    assert asyncio.run(main()) == [0, 1, 2]
    threads = [t for t in threading.enumerate() if t.name.startswith("closing-pool-")]
    assert len(threads) == 3
    pool.close()
    assert all(not t.is_alive() for t in threads)

    async def again() -> int:
        return await pool.run(lambda: 1)

    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(again())


def test_close_waits_a_bounded_time_for_a_busy_thread_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    pool = WorkerThreads(limit=1, idle_s=60, name="stuck-pool")
    started, release = threading.Event(), threading.Event()

    def work() -> None:
        started.set()
        release.wait(WAIT_S)

    async def main() -> None:
        task = asyncio.create_task(pool.run(work))
        await asyncio.to_thread(started.wait, WAIT_S)
        with caplog.at_level("WARNING", logger="searchd.workers"):
            pool.close(wait_s=0.01)
        release.set()
        await task

    try:
        asyncio.run(main())
    finally:
        release.set()
    assert [r.getMessage() for r in caplog.records] == ["1 worker thread(s) still running after 0.01 s at close: stuck-pool-0"]
    stuck = [t for t in threading.enumerate() if t.name == "stuck-pool-0"]
    for thread in stuck:
        thread.join(WAIT_S)
    assert not any(t.is_alive() for t in stuck)


def test_an_idle_thread_keeps_nothing_of_the_job_it_ran() -> None:
    # A job holds the request's arguments (a query vector, an allow-list): an idle thread must not keep them alive.
    class Work:
        def __call__(self) -> int:
            return 7

    pool = WorkerThreads(limit=1, idle_s=600)
    work = Work()
    released = threading.Event()
    weakref.finalize(work, released.set)
    try:
        assert asyncio.run(pool.run(work)) == 7
        del work
        assert released.wait(WAIT_S), "the idle thread still holds the job it ran"
    finally:
        pool.close()
