"""``refresh.rotate_ahead``: PostgreSQL's rotation as one committed statement, with the scope check inside.

The endpoint runs it before the grant, outside a transaction, so whatever it refuses must
leave nothing written, and whatever it accepts must be committed on its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from server.storage import refresh as refresh_store
from server.storage.engine import make_engine
from server.storage.models import Grant, RefreshToken, User
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio

NOW = datetime.now(UTC)
IDLE_END = NOW + timedelta(days=1)
FAMILY_END = NOW + timedelta(days=30)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@pytest.fixture
async def engine(postgres_database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(postgres_database.url)
    async with engine.begin() as db:
        await db.execute(
            insert(User).values(id=1, sub="s", username="u", username_key="u", created_at=NOW, updated_at=NOW)
        )
        await db.execute(
            insert(Grant),
            [
                {
                    "id": gid,
                    "client_id": "app",
                    "user_id": 1,
                    "scope": scope,
                    "created_at": NOW,
                    "expires_at": FAMILY_END,
                    "amr": ["pwd"],
                    "head_generation": 1,
                }
                for gid, scope in (("family", "openid offline_access api:read"), ("scopeless", ""))
            ],
        )
        await db.execute(
            insert(RefreshToken),
            [
                {
                    "token_digest": _digest(token),
                    "grant_id": gid,
                    "client_id": "app",
                    "generation": 1,
                    "created_at": NOW,
                    "expires_at": IDLE_END,
                }
                for token, gid in (("presented", "family"), ("of-scopeless", "scopeless"))
            ],
        )
    try:
        yield engine
    finally:
        await engine.dispose()


async def _rotate(engine: AsyncEngine, token: str, scopes: tuple[str, ...], client_id: str = "app") -> object:
    return await refresh_store.rotate_ahead(engine, token, client_id, "successor", IDLE_END, scopes)


async def _state(engine: AsyncEngine) -> dict[str, object]:
    async with engine.connect() as db:
        tokens = (await db.execute(select(RefreshToken.token_digest, RefreshToken.consumed_at))).all()
        head = (await db.execute(select(Grant.head_generation).where(Grant.id == "family"))).scalar_one()
    return {"consumed": {digest for digest, consumed in tokens if consumed}, "count": len(tokens), "head": head}


@pytest.mark.parametrize("scopes", [(), ("openid",), ("api:read", "openid", "offline_access")])
async def test_a_granted_scope_rotates_and_commits(engine: AsyncEngine, scopes: tuple[str, ...]) -> None:
    family = await _rotate(engine, "presented", scopes)
    assert isinstance(family, refresh_store.FamilyToken)
    assert (family.grant_id, family.generation, family.scope) == ("family", 1, "openid offline_access api:read")
    assert (family.user.id, family.user.sub, family.amr, family.family_expires_at) == (1, "s", ("pwd",), FAMILY_END)
    # Read on another connection: the rotation is committed, not waiting for a COMMIT.
    assert await _state(engine) == {"consumed": {_digest("presented")}, "count": 3, "head": 2}
    async with engine.connect() as db:
        successor = (
            await db.execute(
                select(RefreshToken.generation, RefreshToken.expires_at, RefreshToken.consumed_at).where(
                    RefreshToken.token_digest == _digest("successor")
                )
            )
        ).one()
    assert tuple(successor) == (2, IDLE_END, None)
    assert await _rotate(engine, "presented", scopes) is None  # consumed: the second one finds nothing


@pytest.mark.parametrize(
    ("token", "scopes", "client_id"),
    [
        ("presented", ("openid", "profile"), "app"),  # profile was never granted
        ("presented", ("openid offline_access",), "app"),  # one scope, not two
        ("of-scopeless", ("openid",), "app"),  # nothing was granted
        ("presented", (), "another-app"),
        ("unknown", (), "app"),
    ],
)
async def test_anything_refused_writes_nothing(
    engine: AsyncEngine, token: str, scopes: tuple[str, ...], client_id: str
) -> None:
    before = await _state(engine)
    assert await _rotate(engine, token, scopes, client_id) is None
    assert await _state(engine) == before == {"consumed": set(), "count": 2, "head": 1}
