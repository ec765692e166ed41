"""Telling "the database is unreachable" apart from a bug."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import exc as sa_exc

#: SQLSTATE classes and codes that mean "not now", never "this request is wrong"
#: (PostgreSQL, Appendix A): class 08 connection exceptions, 57P01 admin_shutdown,
#: 57P02 crash_shutdown, 57P03 cannot_connect_now, 57P05 idle_session_timeout,
#: 53300 too_many_connections.
_UNAVAILABLE_CLASSES = frozenset({"08"})
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "57P05", "53300"})


def is_unavailable(error: BaseException) -> bool:
    """True when ``error`` means the database cannot be reached right now (answer 503).

    Connection refused or lost, pool exhausted, a statement cut off by the server going
    away, or the server refusing work while it shuts down, starts up or is full. The error
    may come wrapped by SQLAlchemy, raised by asyncpg itself (the refresh hot path runs on
    the driver), or chained behind another exception: the whole chain is looked at. The
    pool pings idle connections, so the next request after recovery gets a fresh one.
    """
    return any(_means_unavailable(link) for link in _chain(error))


def _means_unavailable(error: BaseException) -> bool:
    if isinstance(error, sa_exc.TimeoutError | ConnectionError | TimeoutError):
        return True
    if isinstance(error, OSError) and not isinstance(error, FileNotFoundError | PermissionError):
        return True
    if isinstance(error, asyncpg.PostgresConnectionError | asyncpg.exceptions.ConnectionDoesNotExistError):
        return True
    if isinstance(error, asyncpg.InternalClientError):
        # A connection whose protocol state an operation cut off by the server going away
        # left broken ("another operation is in progress"): it is discarded, the next works.
        return True
    if isinstance(error, sa_exc.DBAPIError) and (
        error.connection_invalidated or isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
    ):
        return True
    state = _sqlstate(error)
    return state is not None and (state in _UNAVAILABLE_STATES or state[:2] in _UNAVAILABLE_CLASSES)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, the members of an exception group, the driver error SQLAlchemy wrapped,
    and what a database error was raised from (each once).

    Only a database error's own causes are followed: an unrelated bug raised while some
    ``OSError`` was being handled is a bug (500, logged with its traceback), not an outage.
    """
    seen: set[int] = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        links = [getattr(current, "orig", None)]
        if _from_the_database(current):
            links += [current.__cause__, current.__context__]
        pending.extend(link for link in links if isinstance(link, BaseException))


def _from_the_database(error: BaseException) -> bool:
    """Raised by SQLAlchemy or a driver (SQLAlchemy's asyncpg adapter raises errors of its
    own module, chained to asyncpg's)."""
    return isinstance(error, DATABASE_ERRORS) or type(error).__module__.split(".")[0] in _DATABASE_MODULES


_DATABASE_MODULES = frozenset({"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3"})


def _sqlstate(error: BaseException) -> str | None:
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return state if isinstance(state, str) and len(state) == 5 else None


#: Exception types that may mean "unavailable"; handlers still ask :func:`is_unavailable`.
#: asyncpg's own errors are here because the refresh hot path raises them unwrapped.
UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


def is_retryable(error: BaseException) -> bool:
    """A transaction that lost a race and may simply be run again."""
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(getattr(original, "__cause__", None), "sqlstate", None)
    return state in _RETRYABLE_SQLSTATES


#: what a failed database call raises: wrapped by SQLAlchemy, or from a driver directly
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    sqlite3.Error,
)


def describe(error: BaseException) -> str:
    """One line for an operator: what kind of failure, and the database's own first line.

    Never the statement or its values (the engine hides parameters; the SQL is left out).
    """
    original = error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig is not None else error
    lines = str(original).strip().splitlines()
    detail = lines[0] if lines else type(original).__name__
    if is_unavailable(error):
        return f"the database is unavailable: {detail}"
    if isinstance(error, sa_exc.IntegrityError) or isinstance(original, asyncpg.IntegrityConstraintViolationError):
        return f"the database refused the change (a constraint): {detail}"
    return f"database error: {detail}"
