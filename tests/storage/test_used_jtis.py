"""The used-JWT-id store (``server.storage.jtis``) on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from server.storage import jtis, transactions
from server.storage.base import utcnow
from server.storage.cleanup import sweep
from tests.helpers import Db

pytestmark = pytest.mark.anyio


async def remember(
    db: Db, jti: str, *, issuer: str = "client-1", purpose: str = jtis.CLIENT_ASSERTION, ttl: int = 60
) -> bool:
    now = utcnow()
    return await db(lambda s: jtis.remember(s, purpose, issuer, jti, now + timedelta(seconds=ttl), now))


async def test_an_id_is_remembered_once(db: Db) -> None:
    assert await remember(db, "a")
    assert not await remember(db, "a")
    assert await remember(db, "b")


async def test_each_issuer_and_purpose_has_ids_of_its_own(db: Db) -> None:
    assert await remember(db, "a", issuer="client-1")
    assert await remember(db, "a", issuer="client-2")
    assert await remember(db, "a", issuer="client-1", purpose=jtis.DPOP)
    # the issuer and the id are kept apart: "client-1" + "0a" is not "client-10" + "a"
    assert await remember(db, "0a", issuer="client-1")
    assert await remember(db, "a", issuer="client-10")


async def test_the_id_of_an_expired_token_may_come_again(db: Db) -> None:
    assert await remember(db, "a", ttl=-1)  # its token expired a second ago
    assert await remember(db, "a", ttl=60)  # so its row no longer counts
    assert not await remember(db, "a", ttl=60)


async def test_the_cleanup_sweeps_expired_ids_only(db: Db) -> None:
    assert await remember(db, "old", ttl=-1)
    assert await remember(db, "live", ttl=60)
    counts = await sweep(db.sessionmaker)
    assert counts["used_jtis"] == 1
    assert not await remember(db, "live")


async def test_racing_requests_remember_an_id_once(db: Db) -> None:
    now = utcnow()

    def use(s: object) -> bool:
        return jtis.remember(s, jtis.CLIENT_ASSERTION, "client-1", "raced", now + timedelta(seconds=60), now)  # type: ignore[arg-type]

    results = await asyncio.gather(*(transactions.run(db.sessionmaker, use, retry_serialization=2) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]
