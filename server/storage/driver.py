"""Hot statements that SQLAlchemy compiles once and asyncpg runs on a pooled connection.

SQLAlchemy's execution path (cache key, parameter and result processing, the result
object) cost as much CPU as asyncpg's whole round trip for the refresh rotation: 0.65 ms
against 0.37 ms a call, measured on the development machine (docs/benchmarks.md). A
:class:`DriverStatement` keeps what SQLAlchemy gives (the statement built from the
models, the pool, pings, disposal) and skips the per-call work: the SQL is compiled once
for asyncpg, and each call hands asyncpg the positional arguments.

Only for PostgreSQL, and only for statements that stand alone: asyncpg runs each one in its
own implicit transaction (nothing is begun on the connection, so nothing is left open).
Parameters must be what asyncpg takes as is: timezone-aware datetimes, bytes, lists for
arrays. JSON columns come back decoded (the dialect registers the codecs on connect).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi, dialect as asyncpg_dialect
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_only, greenlet_spawn

from . import AsyncEngine, Session

_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]
#: what a lost or refused connection raises from asyncpg itself: answered as unavailable
_CONNECTION_ERRORS = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
)


class DriverStatement:
    def __init__(self, statement: ClauseElement) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))
        self.sql = str(compiled)
        self._names = tuple(compiled.positiontup or ())
        #: values the statement carries itself (``literal()``), by parameter name
        self._literals = {name: value for name, value in compiled.params.items() if value is not None}

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self._literals[name] for name in self._names]

    async def fetchrow(self, engine: AsyncEngine, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The first row (or None) of the statement run with ``params`` on one of ``engine``'s connections.

        A failed call discards its connection (its state is unknown) and, when the
        database could not be reached, raises ``ConnectionError`` (answered 503).
        """
        return await greenlet_spawn(self._fetchrow, engine.sync_engine.pool, self.arguments(params))

    def fetchrow_sync(self, pool: Pool, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """:meth:`fetchrow` from synchronous code that SQLAlchemy's async bridge runs (inside
        ``AsyncSession.run_sync``), on a connection of ``pool`` other than the session's."""
        return self._fetchrow(pool, self.arguments(params))

    def fetchrow_beside(self, session: Session, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """:meth:`fetchrow_sync` on a connection of ``session``'s engine, not the session's
        own. Call it before the session has used one: otherwise the request holds two, and
        a pool without overflow can run dry waiting on itself."""
        bind = session.get_bind()
        assert isinstance(bind, Engine)
        return self.fetchrow_sync(bind.pool, params)

    def _fetchrow(self, pool: Pool, arguments: list[Any]) -> Mapping[str, Any] | None:
        # The pool itself, not engine.connect(): a Connection and its AsyncConnection
        # wrapper, each begun and closed in a greenlet of its own, cost 55 us of CPU a call
        # here. The pool's checkout and checkin events (the ping after idling) still run.
        try:
            pooled = pool.connect()
        except (*_CONNECTION_ERRORS, AsyncAdapt_asyncpg_dbapi.Error) as error:  # not wrapped by the pool
            raise ConnectionError("no database connection") from error
        try:
            driver = pooled.driver_connection
            assert driver is not None
            record: Mapping[str, Any] | None = await_only(driver.fetchrow(self.sql, *arguments))
            return record
        except Exception as error:
            pooled.invalidate(error)
            if isinstance(error, _CONNECTION_ERRORS):
                raise ConnectionError("the database connection failed") from error
            raise
        finally:
            pooled.close()
