"""The one place where async HTTP meets Authlib's synchronous server.

Authlib's server is synchronous and calls its storage hooks deep inside one call. An
endpoint reads the body first (Starlette's reads are async), builds an
:class:`~server.oauth.request.OstiaryRequest`, and hands the Authlib call to one of two
runners here:

- :func:`in_transaction`: in one database transaction (:func:`server.storage.transactions.run`),
  the hooks reaching its session as ``request.extras.db``. The I/O still runs on the
  event loop through asyncpg or aiosqlite, so nothing blocks and no thread is used.
- :func:`detached`: with no database at all, on one of a few :class:`Threads` when the
  worker has them: an RSA signature releases the GIL, so while one request signs, the
  event loop serves others and one worker process uses more than one core.

Authlib's ``query_client(client_id)`` is the one hook given no request; it reads the
request of the transaction in progress from :func:`current_request`, a context variable
set here and nowhere else (SQLAlchemy runs the greenlet in the caller's context, so it is
reset on the way out, lest it leak to the next request).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from ..storage import AsyncSession, Session, async_sessionmaker, transactions
from .request import OstiaryRequest

T = TypeVar("T")

_current: ContextVar[OstiaryRequest] = ContextVar("ostiary_oauth_request")


def current_request() -> OstiaryRequest | None:
    """The request whose Authlib call runs in a transaction right now (for ``query_client``)."""
    return _current.get(None)


async def in_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
    request: OstiaryRequest,
    call: Callable[[], T],
    *,
    commit_on: Callable[[T], bool] | None = None,
    retry_serialization: int = 0,
    read_only: bool = False,
) -> T:
    """``call()`` in one transaction (committed unless ``commit_on(result)`` says no; see
    :func:`server.storage.transactions.run` for the options). Then, when it raised or was
    not committed, ``request.extras.after_failure``: each write in a transaction of its own."""
    extras = request.extras

    def work(db: Session) -> T:
        extras.after_failure.clear()  # a retry decides again what must be written
        extras.db, token = db, _current.set(request)
        try:
            return call()
        finally:
            _current.reset(token)
            extras.db = None

    committed = True

    def decide(result: T) -> bool:  # commit_on asked once, its answer kept
        nonlocal committed
        committed = commit_on is None or commit_on(result)
        return committed

    try:
        result = await transactions.run(
            sessionmaker, work, commit_on=decide, retry_serialization=retry_serialization, read_only=read_only
        )
    except Exception:
        await _after_failure(sessionmaker, request)
        raise
    if not committed:
        await _after_failure(sessionmaker, request)
    return result


async def _after_failure(sessionmaker: async_sessionmaker[AsyncSession], request: OstiaryRequest) -> None:
    writes, request.extras.after_failure = request.extras.after_failure, []
    for write in writes:
        await transactions.run(sessionmaker, write)


async def detached(threads: Threads | None, call: Callable[[], T]) -> T:
    """``call()`` without a database: on one of ``threads``, or right here when None."""
    if threads is None:
        return call()
    return await threads.run(call)


_Job = tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Callable[[], Any]]


class Threads:
    """``count`` daemon threads taking calls from one queue, until :meth:`close`.

    ``loop.run_in_executor`` on a ``ThreadPoolExecutor`` costs, per call, a
    ``concurrent.futures.Future`` with its condition variable, the executor's semaphore and
    work-item objects, and a second future chained to the first: on two cores that was most
    of what a grant on a thread cost above one on the loop. Here a call is one tuple on a
    ``queue.SimpleQueue`` (C, no Python lock) and one ``call_soon_threadsafe`` back.
    """

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
