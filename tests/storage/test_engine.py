"""The PostgreSQL pool pings a connection only when it sat idle, and replaces a dead one;
read-only calls run without a transaction."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy import exc, text

from server.storage import Session, transactions
from server.storage.engine import create_sessionmaker, make_engine
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio


async def _backend_pid(engine: object) -> int:
    async with engine.connect() as connection:  # type: ignore[attr-defined]
        pid: int = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


async def _terminate(database: TestDatabase, pid: int) -> None:
    connection = await asyncpg.connect(database.url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
        for _ in range(100):  # the backend is gone once it no longer shows up
            if not await connection.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                break
            await asyncio.sleep(0.02)
    finally:
        await connection.close()


async def test_an_idle_connection_killed_by_the_server_is_replaced_on_checkout(
    postgres_database: TestDatabase,
) -> None:
    engine = make_engine(postgres_database.url, pool_size=1, ping_after_idle=0.05)
    try:
        killed = await _backend_pid(engine)
        await _terminate(postgres_database, killed)
        await asyncio.sleep(0.1)  # idle past the threshold: the next checkout pings
        assert await _backend_pid(engine) != killed
    finally:
        await engine.dispose()


async def test_a_connection_used_just_now_is_not_pinged(postgres_database: TestDatabase) -> None:
    # The counterpart: without the ping, the dead connection is handed out and the
    # query fails, which shows that the ping (and nothing else) replaced it above.
    engine = make_engine(postgres_database.url, pool_size=1, ping_after_idle=3600)
    try:
        killed = await _backend_pid(engine)
        await _terminate(postgres_database, killed)
        with pytest.raises(exc.DBAPIError) as raised:
            await _backend_pid(engine)
        assert raised.value.connection_invalidated
        assert await _backend_pid(engine) != killed  # and the pool recovers on the next use
    finally:
        await engine.dispose()


def _two_clock_readings(db: Session) -> tuple[object, object]:
    first = db.execute(text("SELECT now()")).scalar_one()
    db.execute(text("SELECT pg_sleep(0.02)"))
    return first, db.execute(text("SELECT now()")).scalar_one()


@pytest.mark.parametrize("read_only", [True, False])
async def test_a_read_only_call_runs_without_a_transaction_on_postgresql(
    postgres_database: TestDatabase, read_only: bool
) -> None:
    # now() is the start of the transaction: two readings agree inside one transaction and
    # differ when every statement is its own (no BEGIN/COMMIT round trips).
    engine = make_engine(postgres_database.url)
    try:
        first, second = await transactions.run(create_sessionmaker(engine), _two_clock_readings, read_only=read_only)
        assert (first != second) is read_only
    finally:
        await engine.dispose()
