"""Device authorizations (RFC 8628): kept as digests, decided once, redeemed once, swept
after they expire; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from server.storage import AsyncSession, async_sessionmaker, device_authorizations as store, transactions
from server.storage.base import utcnow
from server.storage.cleanup import sweep
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import DeviceAuthorization
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio

DEVICE_CODE, USER_CODE = "device-code-of-the-tv", "BCDFGHJK"


@pytest.fixture
async def db(database: TestDatabase) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(database.url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def _user(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    from server.users.service import create_user

    user = await transactions.run(
        sessionmaker, lambda s: create_user(s, username="alice", email=None, name=None, password_hash="x")
    )
    return int(user.id)


async def _insert(sessionmaker: async_sessionmaker[AsyncSession], ttl: int = 600, **codes: str) -> None:
    await transactions.run(
        sessionmaker,
        lambda s: store.insert(
            s,
            device_code=codes.get("device_code", DEVICE_CODE),
            user_code=codes.get("user_code", USER_CODE),
            client_id="tv",
            scope="openid profile",
            interval=5,
            expires_at=utcnow() + timedelta(seconds=ttl),
        ),
    )


async def _approve(sessionmaker: async_sessionmaker[AsyncSession], key: bytes, user_id: int) -> bool:
    return await transactions.run(
        sessionmaker,
        lambda s: store.approve(
            s, key, user_id=user_id, grant_id="g1", auth_time=utcnow(), acr="urn:x", amr=("pwd", "otp")
        ),
    )


async def test_codes_are_stored_as_digests_and_found_by_either(db: async_sessionmaker[AsyncSession]) -> None:
    await _insert(db)
    async with db() as session:
        row = (await session.execute(select(DeviceAuthorization))).scalar_one()
        found = await session.run_sync(store.find, DEVICE_CODE)
        pending = await session.run_sync(store.pending_by_user_code, USER_CODE)
        assert await session.run_sync(store.find, "another") is None
        assert await session.run_sync(store.pending_by_user_code, "BCDFGHJL") is None
        assert await session.run_sync(store.user_code_taken, USER_CODE)
        assert not await session.run_sync(store.user_code_taken, "BCDFGHJL")
    assert row.device_code_digest == hashlib.sha256(DEVICE_CODE.encode()).digest()
    assert row.user_code_digest == hashlib.sha256(USER_CODE.encode()).digest()
    assert found is not None and pending is not None
    assert (found.status, found.client_id, found.scope, found.interval) == ("pending", "tv", "openid profile", 5)
    assert (found.user_id, found.consumed_at, found.last_polled_at) == (None, None, None)
    assert pending.key == found.key and pending.client_id == "tv"


async def test_a_decision_is_made_once(db: async_sessionmaker[AsyncSession]) -> None:
    await _insert(db)
    user_id = await _user(db)
    key = hashlib.sha256(DEVICE_CODE.encode()).digest()
    assert await _approve(db, key, user_id)
    assert not await _approve(db, key, user_id)
    assert not await transactions.run(db, lambda s: store.deny(s, key, user_id=user_id))
    async with db() as session:
        found = await session.run_sync(store.find, DEVICE_CODE)
        assert await session.run_sync(store.pending_by_user_code, USER_CODE) is None
    assert found is not None
    assert (found.status, found.user_id, found.grant_id, found.acr, found.amr) == (
        "approved",
        user_id,
        "g1",
        "urn:x",
        ("pwd", "otp"),
    )
    assert found.session_sid is None  # a device grant is bound to no browser session


async def test_a_denied_authorization_cannot_be_redeemed(db: async_sessionmaker[AsyncSession]) -> None:
    await _insert(db)
    user_id = await _user(db)
    key = hashlib.sha256(DEVICE_CODE.encode()).digest()
    assert await transactions.run(db, lambda s: store.deny(s, key, user_id=user_id))
    assert not await _approve(db, key, user_id)
    assert not await transactions.run(db, lambda s: store.redeem(s, key))


async def test_two_racing_polls_redeem_once(db: async_sessionmaker[AsyncSession]) -> None:
    await _insert(db)
    key = hashlib.sha256(DEVICE_CODE.encode()).digest()
    assert not await transactions.run(db, lambda s: store.redeem(s, key))  # pending: nothing to redeem
    assert await _approve(db, key, await _user(db))
    results = await asyncio.gather(*(transactions.run(db, lambda s: store.redeem(s, key)) for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    found = await transactions.run(db, lambda s: store.find(s, DEVICE_CODE))
    assert found is not None and found.consumed_at is not None


async def test_an_expired_authorization_is_neither_pending_nor_decided(db: async_sessionmaker[AsyncSession]) -> None:
    await _insert(db)
    user_id = await _user(db)
    key = hashlib.sha256(DEVICE_CODE.encode()).digest()
    assert await _approve(db, key, user_id)
    async with db.begin() as session:
        await session.execute(update(DeviceAuthorization).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert not await transactions.run(db, lambda s: store.redeem(s, key))
    await _insert(db, ttl=-1, device_code="second", user_code="CDFGHJKL")
    async with db() as session:
        assert await session.run_sync(store.pending_by_user_code, "CDFGHJKL") is None
    assert not await _approve(db, hashlib.sha256(b"second").digest(), user_id)


async def test_a_poll_is_recorded_with_its_interval(db: async_sessionmaker[AsyncSession]) -> None:
    await _insert(db)
    key, polled = hashlib.sha256(DEVICE_CODE.encode()).digest(), utcnow()
    await transactions.run(db, lambda s: store.record_poll(s, key, polled, 10))
    found = await transactions.run(db, lambda s: store.find(s, DEVICE_CODE))
    assert found is not None
    assert found.interval == 10
    assert found.last_polled_at is not None
    assert abs((found.last_polled_at - polled).total_seconds()) < 0.001


async def test_expired_authorizations_are_swept_an_hour_later(db: async_sessionmaker[AsyncSession]) -> None:
    await _insert(db, ttl=-2 * 3600, device_code="old", user_code="BBBBBBBB")
    await _insert(db, ttl=-60, device_code="recent", user_code="CCCCCCCC")
    await _insert(db, device_code="live", user_code="DDDDDDDD")
    counts = await sweep(db)
    assert counts["device_authorizations"] == 1
    async with db() as session:
        assert await session.run_sync(store.find, "old") is None
        assert await session.run_sync(store.find, "recent") is not None  # a late poll still hears expired_token
        assert await session.run_sync(store.find, "live") is not None
