"""A few threads that run synchronous calls for the event loop, as lean as a hop can be.

``loop.run_in_executor`` on a ``ThreadPoolExecutor`` costs, per call, a
``concurrent.futures.Future`` with its condition variable, the executor's semaphore and
work-item objects, and a second future chained to the first. On the 2-core machines of
docs/benchmarks.md that hop was most of what a client_credentials grant on a thread cost
above one on the loop. Here a call is one tuple on a ``queue.SimpleQueue`` (C, no Python
lock) and one ``call_soon_threadsafe`` back: 12 % more grants per second for one worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]]


class Threads:
    """``count`` daemon threads taking calls from one queue, until :meth:`close`."""

    def __init__(self, count: int, name: str) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(count)]
        for thread in self._threads:
            thread.start()

    async def run(self, call: Callable[[], T]) -> T:
        """The result of ``call()`` on one of the threads (its exception, raised here).

        Cancelling the caller skips a call still queued; one that has started runs to its
        end, and its result is dropped.
        """
        if self._closed:
            raise RuntimeError("the threads are closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, future, call))
        return await future

    def close(self) -> None:
        """Let every thread finish the calls queued before, then stop. Does not wait."""
        self._closed = True
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            loop, future, call = job
            if not future.done():  # done: the caller was cancelled while it waited
                self._run(loop, future, call)
            # what an idle thread still held would keep the request and its answer alive
            del job, loop, future, call

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], call: Callable[[], Any]) -> None:
        error: BaseException | None
        try:
            result, error = call(), None
        except StopIteration as exc:  # a future cannot carry one (as in a coroutine)
            result, error = None, RuntimeError("the call raised StopIteration")
            error.__cause__ = exc
        except BaseException as exc:  # delivered to the caller, whatever it is
            result, error = None, exc
        # a loop closed meanwhile raises RuntimeError: nobody waits for the result then
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
