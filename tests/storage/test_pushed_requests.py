"""Pushed authorization requests (RFC 9126): kept under a digest, taken once, only by the
client that pushed them and only before they expire, swept after; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.storage import AsyncSession, async_sessionmaker, pushed_requests as store, transactions
from server.storage.base import utcnow
from server.storage.cleanup import sweep
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import PushedAuthorizationRequest
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio

REFERENCE = "a-random-reference"
DIGEST = hashlib.sha256(REFERENCE.encode()).digest()
PARAMETERS = {
    "client_id": "photos",
    "response_type": "code",
    "redirect_uri": "https://rp.example.com/callback",
    "scope": "openid profile",
    "state": "a b&c=d/é",
}


@pytest.fixture
async def db(database: TestDatabase) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database.url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _push(
    sessionmaker: async_sessionmaker[AsyncSession], ttl: int = 60, digest: bytes = DIGEST, client_id: str = "photos"
) -> None:
    now = utcnow()
    await transactions.run(
        sessionmaker,
        lambda s: store.insert(
            s,
            digest=digest,
            client_id=client_id,
            parameters=PARAMETERS,
            now=now,
            expires_at=now + timedelta(seconds=ttl),
        ),
    )


async def _take(
    sessionmaker: async_sessionmaker[AsyncSession], client_id: str = "photos", digest: bytes = DIGEST
) -> dict[str, str] | None:
    now = utcnow()
    return await transactions.run(sessionmaker, lambda s: store.take(s, digest, client_id, now))


async def _rows(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int((await session.execute(select(func.count()).select_from(PushedAuthorizationRequest))).scalar_one())


async def test_a_pushed_request_is_kept_by_its_digest_and_taken_once(db: async_sessionmaker[AsyncSession]) -> None:
    await _push(db)
    async with db() as session:
        row = (await session.execute(select(PushedAuthorizationRequest))).scalar_one()
    assert row.digest == DIGEST
    assert row.client_id == "photos"
    assert row.expires_at > row.created_at
    assert await _take(db) == PARAMETERS
    assert await _take(db) is None
    assert await _rows(db) == 0


async def test_another_clients_take_gets_nothing_and_leaves_the_request(db: async_sessionmaker[AsyncSession]) -> None:
    await _push(db)
    assert await _take(db, client_id="intruder") is None
    assert await _take(db, digest=hashlib.sha256(b"another").digest()) is None
    assert await _take(db) == PARAMETERS


async def test_an_expired_request_is_not_taken_and_is_swept(db: async_sessionmaker[AsyncSession]) -> None:
    await _push(db, ttl=-1)
    await _push(db, digest=hashlib.sha256(b"fresh").digest())
    assert await _take(db) is None
    deleted = await sweep(db)
    assert deleted.get("pushed_authorization_requests") == 1
    assert await _rows(db) == 1


async def test_of_concurrent_takes_exactly_one_wins(db: async_sessionmaker[AsyncSession]) -> None:
    await _push(db)
    results = await asyncio.gather(*(_take(db) for _ in range(4)))
    assert sorted(result is not None for result in results) == [False, False, False, True]


async def test_two_open_transactions_cannot_both_take_one_request(postgres_database: TestDatabase) -> None:
    """The second DELETE waits for the first transaction, then finds the row gone."""
    engine = make_engine(postgres_database.url)
    try:
        sessionmaker = create_sessionmaker(engine)
        await _push(sessionmaker)
        now = utcnow()
        async with sessionmaker() as first, sessionmaker() as second:
            taken = await first.run_sync(lambda s: store.take(s, DIGEST, "photos", now))
            racing = asyncio.create_task(second.run_sync(lambda s: store.take(s, DIGEST, "photos", now)))
            await asyncio.sleep(0.3)
            assert not racing.done()  # held by the first transaction's row lock
            await first.commit()
            assert await asyncio.wait_for(racing, 10) is None
            await second.commit()
        assert taken == PARAMETERS
        assert await _rows(sessionmaker) == 0
    finally:
        await engine.dispose()
