"""The transaction runner's contract, on every database: when a transaction commits, when
it rolls back, when it runs again, and when it is no transaction at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import anyio
import pytest
from sqlalchemy import exc, text

from server.storage import AsyncEngine, AsyncSession, Session, async_sessionmaker, transactions
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.errors import is_retryable
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio


class WrongCode(Exception):
    """Stands for an error whose writes must stay (a wrong code counted toward a lockout)."""


@dataclass
class Db:
    kind: str
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]

    async def rows(self) -> int:
        """Committed rows, read outside the runner."""
        async with self.engine.connect() as connection:
            count: int = (await connection.execute(text("SELECT count(*) FROM probe"))).scalar_one()
        return count


async def _setup(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE probe (n INTEGER NOT NULL)"))
        await connection.execute(text("CREATE TABLE locks (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        await connection.execute(text("INSERT INTO locks (id, n) VALUES (1, 0), (2, 0)"))


@pytest.fixture
async def db(database: TestDatabase) -> AsyncIterator[Db]:
    engine = make_engine(database.url, pool_size=1)
    try:
        await _setup(engine)
        yield Db(database.kind, engine, create_sessionmaker(engine))
        assert engine.sync_engine.pool.checkedout() == 0, "every run gives its connection back"
    finally:
        await engine.dispose()


@pytest.fixture
async def pg(postgres_database: TestDatabase) -> AsyncIterator[Db]:
    engine = make_engine(postgres_database.url, pool_size=2)
    try:
        await _setup(engine)
        yield Db("postgresql", engine, create_sessionmaker(engine))
    finally:
        await engine.dispose()


def insert(db: Session) -> str:
    db.execute(text("INSERT INTO probe (n) VALUES (1)"))
    return "done"


def insert_then(error: BaseException) -> Callable[[Session], str]:
    def work(db: Session) -> str:
        insert(db)
        raise error

    return work


class _LostRace(Exception):
    sqlstate = "40001"


def lose_a_race(db: Session) -> None:
    """A serialization failure raised by the database for a real statement. SQLite never
    raises one (one writer at a time): there, the driver error SQLAlchemy would wrap."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("DO $$ BEGIN RAISE EXCEPTION 'lost a race' USING ERRCODE = '40001'; END $$"))
    raise exc.OperationalError("UPDATE probe SET n = n + 1", None, _LostRace())


def crossing(first: int, second: int, calls: list[int]) -> Callable[[Session], None]:
    """Lock row ``first``, give the other transaction time to lock its own, then ``second``."""

    def work(db: Session) -> None:
        calls.append(first)
        db.execute(text("UPDATE locks SET n = n + 1 WHERE id = :id"), {"id": first})
        db.execute(text("SELECT pg_sleep(0.3)"))
        db.execute(text("UPDATE locks SET n = n + 1 WHERE id = :id"), {"id": second})

    return work


async def test_it_commits_when_work_returns(db: Db) -> None:
    assert await transactions.run(db.sessionmaker, insert) == "done"
    assert await db.rows() == 1


@pytest.mark.parametrize("commit", [True, False])
async def test_commit_on_decides_from_the_result_which_is_returned_either_way(db: Db, commit: bool) -> None:
    seen: list[str] = []

    def decide(result: str) -> bool:
        seen.append(result)
        return commit

    assert await transactions.run(db.sessionmaker, insert, commit_on=decide) == "done"
    assert seen == ["done"]
    assert await db.rows() == (1 if commit else 0)


async def test_an_exception_rolls_back_and_reaches_the_caller(db: Db) -> None:
    with pytest.raises(ValueError, match="bug"):
        await transactions.run(db.sessionmaker, insert_then(ValueError("bug")), commit_on_errors=(WrongCode,))
    assert await db.rows() == 0


async def test_a_listed_error_commits_what_work_wrote_then_reaches_the_caller(db: Db) -> None:
    with pytest.raises(WrongCode):
        await transactions.run(db.sessionmaker, insert_then(WrongCode()), commit_on_errors=(WrongCode,))
    assert await db.rows() == 1


async def test_a_listed_error_commits_even_when_commit_on_would_refuse(db: Db) -> None:
    with pytest.raises(WrongCode):
        await transactions.run(
            db.sessionmaker, insert_then(WrongCode()), commit_on=lambda _: False, commit_on_errors=(WrongCode,)
        )
    assert await db.rows() == 1


async def test_a_transaction_that_lost_a_race_runs_again_from_the_start(db: Db) -> None:
    calls: list[int] = []

    def work(session: Session) -> int:
        calls.append(len(calls))
        insert(session)
        if len(calls) < 3:
            lose_a_race(session)
        return len(calls)

    assert await transactions.run(db.sessionmaker, work, retry_serialization=2) == 3
    assert await db.rows() == 1  # the lost attempts' rows were rolled back


@pytest.mark.parametrize("retries", [0, 2])
async def test_it_gives_up_after_the_attempts_allowed(db: Db, retries: int) -> None:
    calls: list[None] = []

    def work(session: Session) -> None:
        calls.append(None)
        insert(session)
        if len(calls) <= 1 + retries:  # a runner that retried without end would then succeed
            lose_a_race(session)

    with pytest.raises(exc.DBAPIError) as raised:
        await transactions.run(db.sessionmaker, work, retry_serialization=retries)
    assert is_retryable(raised.value)
    assert len(calls) == 1 + retries
    assert await db.rows() == 0


async def test_only_a_lost_race_is_run_again(db: Db) -> None:
    calls: list[None] = []

    def work(session: Session) -> None:
        calls.append(None)
        session.execute(text("INSERT INTO locks (id, n) VALUES (1, 0)"))  # a duplicate key

    with pytest.raises(exc.IntegrityError):
        await transactions.run(db.sessionmaker, work, retry_serialization=3)
    assert len(calls) == 1


async def test_a_deadlock_on_postgresql_is_run_again_and_both_commit(pg: Db) -> None:
    # Two transactions lock rows 1 and 2 in opposite orders: PostgreSQL aborts one of them
    # (deadlock_timeout, a second by default), which then runs again once the other is done.
    calls: list[int] = []
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: transactions.run(pg.sessionmaker, crossing(1, 2, calls), retry_serialization=1))
        group.start_soon(lambda: transactions.run(pg.sessionmaker, crossing(2, 1, calls), retry_serialization=1))
    assert sorted(calls) in ([1, 1, 2], [1, 2, 2])  # three attempts: one ran twice
    async with pg.engine.connect() as connection:
        counts = (await connection.execute(text("SELECT n FROM locks ORDER BY id"))).scalars().all()
    assert counts == [2, 2]  # each committed once; the aborted attempt left nothing


async def test_without_retries_a_deadlock_reaches_the_caller(pg: Db) -> None:
    outcomes: list[BaseException | None] = []

    async def attempt(work: Callable[[Session], None]) -> None:
        try:
            await transactions.run(pg.sessionmaker, work)
        except exc.DBAPIError as error:
            outcomes.append(error)
        else:
            outcomes.append(None)

    async with anyio.create_task_group() as group:
        group.start_soon(attempt, crossing(1, 2, []))
        group.start_soon(attempt, crossing(2, 1, []))
    failures = [error for error in outcomes if error is not None]
    assert len(failures) == 1
    assert is_retryable(failures[0])


def two_clock_readings(db: Session) -> tuple[object, object]:
    first = db.execute(text("SELECT now()")).scalar_one()
    db.execute(text("SELECT pg_sleep(0.02)"))
    return first, db.execute(text("SELECT now()")).scalar_one()


@pytest.mark.parametrize("read_only", [True, False])
async def test_read_only_on_postgresql_runs_each_statement_on_its_own(pg: Db, read_only: bool) -> None:
    # now() is the start of the transaction: two readings agree inside one transaction and
    # differ when each statement is its own (no BEGIN, no COMMIT).
    first, second = await transactions.run(pg.sessionmaker, two_clock_readings, read_only=read_only)
    assert (first != second) is read_only


async def test_read_only_is_a_transaction_on_sqlite_and_none_on_postgresql(db: Db) -> None:
    # A write is what shows it: rolled back on SQLite, already done on PostgreSQL.
    with pytest.raises(ValueError, match="probe"):
        await transactions.run(db.sessionmaker, insert_then(ValueError("probe")), read_only=True)
    assert await db.rows() == (1 if db.kind == "postgresql" else 0)


async def test_the_next_transaction_on_the_connection_is_a_transaction_again(db: Db) -> None:
    # The pool holds one connection: the autocommit of a read-only run must not stay on it.
    await transactions.run(db.sessionmaker, lambda s: s.execute(text("SELECT 1")).scalar_one(), read_only=True)
    with pytest.raises(ValueError, match="probe"):
        await transactions.run(db.sessionmaker, insert_then(ValueError("probe")))
    assert await db.rows() == 0


async def test_a_commit_under_way_finishes_when_the_caller_is_cancelled(database: TestDatabase) -> None:
    committing = asyncio.Event()

    class SlowCommit(AsyncSession):
        async def commit(self) -> None:
            committing.set()
            await asyncio.sleep(0.2)
            await super().commit()

    engine = make_engine(database.url, pool_size=1)
    try:
        await _setup(engine)
        db = Db(database.kind, engine, async_sessionmaker(engine, class_=SlowCommit, expire_on_commit=False))
        task = asyncio.ensure_future(transactions.run(db.sessionmaker, insert))
        await committing.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await db.rows() == 1
        assert engine.sync_engine.pool.checkedout() == 0
    finally:
        await engine.dispose()
