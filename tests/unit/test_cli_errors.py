"""How a database error is told apart and put into words, for the ``ostiary`` command (one
line, never a traceback) and for the HTTP edge (503 for "not now", 500 for a bug).

The errors are the drivers' own: asyncpg's classes with their SQLSTATE (PostgreSQL
Appendix A), as raised on the hot path, and as SQLAlchemy wraps them; sqlite3's from a real
in-memory database.
"""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import create_engine, exc as sa_exc, text

from server.storage.errors import describe, is_unavailable

NOT_NOW = [
    asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),  # 57P03
    asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),  # 57P01
    asyncpg.exceptions.CrashShutdownError("terminating connection due to crash of another server process"),  # 57P02
    asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),  # 53300
    asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),  # 08003
    asyncpg.exceptions.ConnectionFailureError("connection failure"),  # 08006
    asyncpg.exceptions.PostgresConnectionError("connection exception"),  # 08000
]
BUGS = [
    asyncpg.exceptions.UniqueViolationError("duplicate key value violates unique constraint"),
    asyncpg.exceptions.UndefinedColumnError("column does not exist"),
    asyncpg.exceptions.DivisionByZeroError("division by zero"),
    ValueError("not a database error"),
]


def wrapped(error: Exception) -> sa_exc.DBAPIError:
    """``error`` as SQLAlchemy raises it: a generic DBAPIError (not Operational), as the
    asyncpg dialect maps the shutdown errors."""
    return sa_exc.DBAPIError("SELECT 1", None, error)


@pytest.mark.parametrize("error", NOT_NOW, ids=lambda error: type(error).__name__)
def test_shutdown_startup_and_connection_errors_mean_unavailable(error: Exception) -> None:
    assert is_unavailable(error)
    assert is_unavailable(wrapped(error))
    assert is_unavailable(ExceptionGroup("a task group's failures", [ValueError("other"), error]))


def test_a_bug_raised_while_handling_an_outage_is_a_bug() -> None:
    try:
        try:
            raise ConnectionResetError("the database went away")
        except ConnectionResetError:
            raise KeyError("a bug in the handler") from None
    except KeyError as bug:
        assert bug.__context__ is not None
        assert not is_unavailable(bug)
    try:
        raise RuntimeError("a bug that names its cause") from asyncpg.exceptions.AdminShutdownError("shutdown")
    except RuntimeError as chained:
        assert not is_unavailable(chained)


@pytest.mark.parametrize("error", BUGS, ids=lambda error: type(error).__name__)
def test_other_errors_are_not_unavailable(error: Exception) -> None:
    assert not is_unavailable(error)
    assert not is_unavailable(wrapped(error))


def test_a_constraint_is_one_line_without_the_statement_or_its_values() -> None:
    engine = create_engine("sqlite://", hide_parameters=True)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, secret TEXT)"))
        connection.execute(text("INSERT INTO users VALUES (1, 'first')"))
        with pytest.raises(sa_exc.IntegrityError) as raised:
            connection.execute(text("INSERT INTO users VALUES (1, :secret)"), {"secret": "hunter2"})
    line = describe(raised.value)
    assert line == "the database refused the change (a constraint): UNIQUE constraint failed: users.id"
    assert "\n" not in line and "INSERT" not in line and "hunter2" not in line


def test_an_unavailable_database_says_so() -> None:
    error = wrapped(asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"))
    assert describe(error) == "the database is unavailable: the database system is shutting down"


def test_any_other_database_error_is_one_line() -> None:
    error = wrapped(asyncpg.exceptions.UndefinedColumnError('column "x" does not exist\nHINT: something'))
    assert describe(error) == 'database error: column "x" does not exist'
