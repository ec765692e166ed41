"""``access_tokens``: is an access token still good, and whose is it, on both databases.

Each check comes in two forms: in the caller's session, and as a read of its own
(``*_alone``: on PostgreSQL one statement on a pooled connection, with no session). Both
must give the same answer in every case, the one the module promises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.storage import access_tokens
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import Client, Grant, RevokedAccessToken, User
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def tokens_db(database: TestDatabase) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Clients "app" and "off" (disabled); users "s1" and "s2" (disabled); grants "live",
    "revoked", "of-disabled-user" and "of-disabled-client"; the ``jti`` "denied" on the
    deny list."""
    engine = make_engine(database.url)
    client = {"name": "c", "grant_types": [], "scopes": [], "redirect_uris": [], "audiences": [], "created_at": NOW}
    user = {"created_at": NOW, "updated_at": NOW}
    grant = {"scope": "openid", "created_at": NOW}
    async with engine.begin() as db:
        await db.execute(insert(Client).values(client_id="app", **client))
        await db.execute(insert(Client).values(client_id="off", disabled_at=NOW, **client))
        await db.execute(insert(User).values(id=1, sub="s1", username="u1", username_key="u1", **user))
        await db.execute(insert(User).values(id=2, sub="s2", username="u2", username_key="u2", disabled_at=NOW, **user))
        await db.execute(insert(Grant).values(id="live", client_id="app", user_id=1, **grant))
        await db.execute(insert(Grant).values(id="revoked", client_id="app", user_id=1, revoked_at=NOW, **grant))
        await db.execute(insert(Grant).values(id="of-disabled-user", client_id="app", user_id=2, **grant))
        await db.execute(insert(Grant).values(id="of-disabled-client", client_id="off", user_id=1, **grant))
        await db.execute(insert(RevokedAccessToken).values(jti="denied", expires_at=NOW + timedelta(hours=1)))
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("jti", "grant_id", "client_id", "active"),
    [
        ("j", None, "app", True),  # a client's own token
        ("denied", None, "app", False),
        ("j", None, "off", False),
        ("j", None, "unknown", False),
        ("j", "live", "app", True),  # a user's token
        ("denied", "live", "app", False),
        ("j", "revoked", "app", False),
        ("j", "of-disabled-user", "app", False),
        ("j", "of-disabled-client", "off", False),
        ("j", "unknown", "app", False),
    ],
)
async def test_a_token_is_active_in_both_forms_alike(
    tokens_db: async_sessionmaker[AsyncSession], jti: str, grant_id: str | None, client_id: str, active: bool
) -> None:
    async with tokens_db() as session:
        in_session = await session.run_sync(lambda db: access_tokens.is_active(db, jti, grant_id, client_id))
    alone = await access_tokens.is_active_alone(tokens_db, jti, grant_id, client_id)
    assert (in_session, alone) == (active, active)


@pytest.mark.parametrize(
    ("jti", "grant_id", "sub", "user_id"),
    [
        ("j", "live", "s1", 1),
        ("j", "live", "s2", None),  # not the grant's user
        ("denied", "live", "s1", None),
        ("j", "revoked", "s1", None),
        ("j", "of-disabled-user", "s2", None),
        ("j", "of-disabled-client", "s1", None),
        ("j", "unknown", "s1", None),
    ],
)
async def test_a_tokens_user_is_found_in_both_forms_alike(
    tokens_db: async_sessionmaker[AsyncSession], jti: str, grant_id: str, sub: str, user_id: int | None
) -> None:
    async with tokens_db() as session:
        in_session = await session.run_sync(lambda db: access_tokens.active_user(db, jti, grant_id, sub))
    alone = await access_tokens.active_user_alone(tokens_db, jti, grant_id, sub)
    assert in_session == alone
    if user_id is None:
        assert alone is None
    else:
        assert alone is not None and (alone.id, alone.sub, alone.created_at) == (user_id, "s1", NOW)
