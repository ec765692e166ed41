"""Engine and session factory, tuned for the token endpoint's hot path.

The pool is small and never overflows: each worker holds a connection for a whole Authlib
call, and pool churn (opening a PostgreSQL backend per burst) cost a quarter of the
throughput when measured (docs/decisions.md, "Processes and the database").

Connections are checked before use only when they sat idle for a while: SQLAlchemy's
``pool_pre_ping`` costs three round trips per checkout on asyncpg (BEGIN, ping, ROLLBACK),
as much as the rest of a refresh. A connection that was in use within the last second
is handed out as is, which is HikariCP's rule too.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import event, exc, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool

from ..settings import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    return make_engine(settings.database_url, pool_size=settings.db_pool_size, timeout=settings.db_pool_timeout)


def make_engine(url: str, *, pool_size: int = 5, timeout: int = 5, ping_after_idle: float = 1.0) -> AsyncEngine:
    if url.startswith("sqlite"):
        _create_private_file(make_url(url).database)
        # hide_parameters: a logged database error never shows the values (hashes, emails).
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    engine = create_async_engine(
        url,
        poolclass=_WaitCountingPool,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=timeout,
        hide_parameters=True,
        connect_args={"timeout": timeout, "command_timeout": 30},
    )
    _ping_when_idle(engine, ping_after_idle)
    return engine


class _WaitCountingPool(AsyncAdaptedQueuePool):
    """SQLAlchemy's pool for asyncio, telling ``on_wait`` of each checkout that finds every
    connection in use and must wait for one (the pool never overflows)."""

    on_wait: Callable[[], None] | None = None
    #: log as SQLAlchemy's pool does (under "sqlalchemy", which stays at WARNING), not
    #: under this module's name
    _sqla_logger_namespace = "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"

    def _do_get(self) -> ConnectionPoolEntry:
        if self.on_wait is not None and self.checkedout() >= self.size():
            self.on_wait()
        return super()._do_get()

    def recreate(self) -> _WaitCountingPool:
        fresh = cast(_WaitCountingPool, super().recreate())
        fresh.on_wait = self.on_wait
        return fresh


def observe_pool(engine: AsyncEngine, *, in_use: Callable[[int], None], waited: Callable[[], None]) -> None:
    """Tell ``in_use`` how many connections are checked out whenever one leaves or returns
    to the pool, and ``waited`` of each checkout that had to wait. Read from the pool itself
    at each event, the count cannot drift when a connection is invalidated on its way."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):  # a pool that keeps no count (none of ours today)
        return

    def checked_out(*_: Any) -> None:
        # the pool of the moment: disposing of the engine replaces it
        in_use(cast(QueuePool, engine.sync_engine.pool).checkedout())

    def checked_in(*_: Any) -> None:
        # The checkin event comes before the connection is back in the pool.
        in_use(cast(QueuePool, engine.sync_engine.pool).checkedout() - 1)

    event.listen(engine.sync_engine, "checkout", checked_out)
    event.listen(engine.sync_engine, "checkin", checked_in)
    if isinstance(pool, _WaitCountingPool):
        pool.on_wait = waited


def _ping_when_idle(engine: AsyncEngine, after: float) -> None:
    """Ping a connection at checkout if it sat unused for more than ``after`` seconds.

    A dead one (the database restarted, a proxy dropped it) is discarded and the pool hands
    out another: SQLAlchemy's pessimistic disconnect handling, minus the ping for
    connections that just proved alive.
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["ostiary_idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("ostiary_idle_since")
        if idle_since is None or time.monotonic() - idle_since <= after:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as error:  # the driver's own error for a dead connection
            raise exc.DisconnectionError(str(type(error).__name__)) from error
        if not alive:
            raise exc.DisconnectionError("ping failed")


def _create_private_file(path: str | None) -> None:
    """Create a new SQLite file readable by its owner only (it holds digests and encrypted keys)."""
    if not path or path.startswith(":"):
        return
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the single writer; busy_timeout makes writers queue
    # instead of failing with "database is locked". SQLAlchemy, not the driver, begins
    # transactions (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A deferred transaction that reads, then writes after another process committed,
    # fails at once with SQLITE_BUSY (busy_timeout does not apply to that upgrade).
    # Taking the write lock up front makes concurrent writers wait their turn instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: an attribute read after commit would reload it lazily, which
    # async SQLAlchemy cannot do outside a greenlet (and would cost a round trip if it could).
    return async_sessionmaker(engine, expire_on_commit=False)


def describe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
