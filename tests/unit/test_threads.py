"""``server.oauth.threads.Threads``: the hop a token grant takes to a signing thread."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from server.oauth.calls import Threads

pytestmark = pytest.mark.anyio

_probe: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="unset")


async def test_calls_run_on_the_threads_and_return_their_results() -> None:
    threads = Threads(2, "test-threads")
    try:
        names = await asyncio.gather(*(threads.run(lambda: threading.current_thread().name) for _ in range(20)))
    finally:
        threads.close()
    assert set(names) <= {"test-threads-0", "test-threads-1"}
    assert threading.current_thread().name not in names


async def test_calls_run_at_the_same_time() -> None:
    # Both threads must be inside a call at once for the barrier to open; one thread (or
    # calls run one after the other) would time out and raise BrokenBarrierError.
    threads = Threads(2, "test-threads")
    barrier = threading.Barrier(2, timeout=10)
    try:
        await asyncio.gather(threads.run(barrier.wait), threads.run(barrier.wait))
    finally:
        threads.close()


async def test_an_exception_reaches_the_caller() -> None:
    threads = Threads(1, "test-threads")

    def fail() -> None:
        raise LookupError("from the thread")

    try:
        with pytest.raises(LookupError, match="from the thread"):
            await threads.run(fail)
        # the thread survived it
        assert await threads.run(lambda: 42) == 42
    finally:
        threads.close()


async def test_stop_iteration_becomes_a_runtime_error() -> None:
    threads = Threads(1, "test-threads")

    def stop() -> None:
        raise StopIteration

    try:
        with pytest.raises(RuntimeError, match="StopIteration"):
            await threads.run(stop)
    finally:
        threads.close()


async def test_a_cancelled_caller_leaves_the_thread_serving() -> None:
    threads = Threads(1, "test-threads")
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(10)
        return "late"

    try:
        waiting = asyncio.ensure_future(threads.run(slow))
        await asyncio.to_thread(started.wait, 10)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        assert await threads.run(lambda: "next") == "next"
    finally:
        threads.close()


async def test_a_call_runs_in_the_context_it_is_given() -> None:
    threads = Threads(1, "test-threads")
    token = _probe.set("caller")
    try:
        context = contextvars.copy_context()
        assert await threads.run(lambda: context.run(_probe.get)) == "caller"
        assert await threads.run(_probe.get) == "unset"  # a bare call sees the thread's own
    finally:
        _probe.reset(token)
        threads.close()


async def test_close_stops_every_thread() -> None:
    threads = Threads(3, "test-closing")
    await threads.run(lambda: None)
    threads.close()
    for thread in threads._threads:
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_at_least_one_thread() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Threads(0, "none")


async def test_a_call_whose_caller_was_cancelled_while_queued_is_skipped() -> None:
    threads = Threads(1, "test-threads")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def busy() -> None:
        started.set()
        release.wait(10)

    try:
        blocking = asyncio.ensure_future(threads.run(busy))
        await asyncio.to_thread(started.wait, 10)
        queued = asyncio.ensure_future(threads.run(lambda: ran.append("queued")))
        await asyncio.sleep(0)  # let it reach the queue
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        release.set()
        await blocking
        assert await threads.run(lambda: "after") == "after"  # one thread: runs after the skipped call
        assert ran == []
    finally:
        threads.close()


async def test_a_call_after_close_is_refused() -> None:
    threads = Threads(1, "test-threads")
    threads.close()
    with pytest.raises(RuntimeError, match="closed"):
        await threads.run(lambda: None)
