"""The one way code outside storage/ runs repository functions in a transaction.

The repositories are synchronous functions of a ``Session``; :func:`run` hands one to
``work`` through ``AsyncSession.run_sync`` (its I/O still runs on the event loop) and ends
the transaction by one rule, so the callers differ only in the options they pass:

- ``work`` returns: commit, unless ``commit_on(result)`` says no (Authlib answers errors
  as responses, and a refused request must leave nothing behind).
- ``work`` raises one of ``commit_on_errors``: commit, then re-raise. An error for the
  caller may still carry a write that must stay, such as a wrong code's count toward a
  lockout.
- ``work`` raises anything else: roll back, re-raise.
- ``retry_serialization``: a transaction that lost a race (serialization failure,
  deadlock) is run again from the start, ``work`` included: the client never sees the
  race, and ``work`` must not rely on what an earlier attempt left behind.
- ``read_only``: ``work`` writes nothing, so its session is closed, never committed
  (``commit_on`` is still asked: the caller may act on its answer). On PostgreSQL each
  statement runs on its own (autocommit), saving the BEGIN and COMMIT round trips; only
  for ``work`` whose every read is one statement, as they no longer share a snapshot.

The commit and the close run to their end even when the caller is cancelled meanwhile,
as ``async_sessionmaker.begin()`` does: a COMMIT once sent is not abandoned halfway (the
caller would not know whether it happened), and the connection goes back to the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from .errors import is_retryable

T = TypeVar("T")

_AUTOCOMMIT: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"}


async def run(
    sessionmaker: async_sessionmaker[AsyncSession],
    work: Callable[[Session], T],
    *,
    retry_serialization: int = 0,
    commit_on: Callable[[T], bool] | None = None,
    commit_on_errors: tuple[type[BaseException], ...] = (),
    read_only: bool = False,
) -> T:
    """``work(session)`` in one transaction, ended as the module docstring says."""
    retries = retry_serialization
    while True:
        try:
            session = sessionmaker()
            try:
                if read_only and _on_postgres(session):
                    await session.connection(execution_options=_AUTOCOMMIT)
                result = await session.run_sync(work)
                commit = (commit_on is None or commit_on(result)) and not read_only
            except commit_on_errors:
                await _end(session, commit=True)
                raise
            except BaseException:
                await _end(session, commit=False)
                raise
            await _end(session, commit=commit)
            return result
        except DBAPIError as error:
            if not retries or not is_retryable(error):
                raise
            retries -= 1


def _on_postgres(session: AsyncSession) -> bool:
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


async def _end(session: AsyncSession, *, commit: bool) -> None:
    """Commit or roll back, and close, in a task a cancellation of the caller cannot stop;
    the cancellation is raised once it is done. A session that never began a transaction
    holds no connection and nothing to end (a refresh on PostgreSQL rotates on a connection
    of its own)."""
    if not session.in_transaction():
        return
    task = asyncio.ensure_future(_finish(session, commit))
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError as error:
            if task.done():
                raise
            cancelled = error
        else:
            break
    if cancelled is not None:
        raise cancelled


async def _finish(session: AsyncSession, commit: bool) -> None:
    try:
        if commit:
            await session.commit()
    finally:
        await session.close()  # rolls back what was not committed, returns the connection
