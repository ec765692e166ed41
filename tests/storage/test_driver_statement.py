"""``DriverStatement``: a hot statement on a pooled asyncpg connection, and how it fails.

A database that cannot be reached is ``ConnectionError`` (the endpoints answer 503),
whether the socket is refused or PostgreSQL itself refuses the connection; an error in
the statement stays what it is (a bug is a 500, not an outage) and costs its connection.
"""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import bindparam, func, literal, select
from sqlalchemy.engine import make_url

from server.storage.driver import DriverStatement
from server.storage.engine import make_engine
from tests.helpers import TestDatabase, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.postgres_only]

_BACKEND = DriverStatement(select(func.pg_backend_pid().label("pid")))
_ECHO = DriverStatement(select(bindparam("value", type_=None).label("value"), literal(7).label("seven")))


async def test_a_row_comes_back_and_the_connection_goes_back_to_the_pool(postgres_database: TestDatabase) -> None:
    engine = make_engine(postgres_database.url, pool_size=1, timeout=2)
    try:
        for value in ("a", "b", "c"):  # one connection in the pool: each call must return it
            row = await _ECHO.fetchrow(engine, {"value": value})
            assert row is not None and dict(row) == {"value": value, "seven": 7}
        assert engine.sync_engine.pool.checkedout() == 0
    finally:
        await engine.dispose()


def _unreachable(url: str, case: str) -> str:
    if case == "database PostgreSQL refuses":
        return make_url(url).set(database="ostiary_no_such_database").render_as_string(hide_password=False)
    return make_url(url).set(host="127.0.0.1", port=free_port()).render_as_string(hide_password=False)


@pytest.mark.parametrize("case", ["database PostgreSQL refuses", "refused socket"])
async def test_an_unreachable_database_is_a_connection_error(postgres_database: TestDatabase, case: str) -> None:
    engine = make_engine(_unreachable(postgres_database.url, case), timeout=2)
    try:
        with pytest.raises(ConnectionError):
            await _ECHO.fetchrow(engine, {"value": "x"})
        assert engine.sync_engine.pool.checkedout() == 0
    finally:
        await engine.dispose()


async def test_a_failing_statement_keeps_its_error_and_discards_its_connection(
    postgres_database: TestDatabase,
) -> None:
    failing = DriverStatement(select((literal(1) / bindparam("zero")).label("x")))
    engine = make_engine(postgres_database.url, pool_size=1, timeout=2)
    try:
        before = await _BACKEND.fetchrow(engine, {})
        assert before == await _BACKEND.fetchrow(engine, {})  # one pooled connection, reused
        with pytest.raises(asyncpg.DivisionByZeroError):
            await failing.fetchrow(engine, {"zero": 0})
        assert engine.sync_engine.pool.checkedout() == 0
        after = await _BACKEND.fetchrow(engine, {})  # a new connection serves
        assert before is not None and after is not None and after["pid"] != before["pid"]
    finally:
        await engine.dispose()
