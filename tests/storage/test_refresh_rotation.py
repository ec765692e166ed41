"""``refresh.rotate``, the one rotation call, with the scope check inside, on both databases.

Whatever it refuses must leave nothing written; on PostgreSQL, whatever it accepts is
committed on its own (one statement), whatever becomes of the caller's transaction.

Then the grace window's state machine on both databases: a replay of the head's
predecessor replaces the head (RFC 9700 §4.14.2 without forking the family).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from server.storage import refresh as refresh_store
from server.storage.engine import make_engine
from server.storage.models import Grant, RefreshToken, User
from server.storage.refresh import Failure
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio

T = TypeVar("T")

NOW = datetime.now(UTC)
IDLE_END = NOW + timedelta(days=1)
FAMILY_END = NOW + timedelta(days=30)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@pytest.fixture
async def engine(database: TestDatabase) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database.url)
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
    """As the refresh grant calls it, in a session. On PostgreSQL the session is rolled back
    afterwards: what was rotated must be committed all the same. SQLite rotates in the
    caller's transaction, committed here."""
    async with AsyncSession(engine) as session:
        family = await session.run_sync(
            lambda db: refresh_store.rotate(db, token, client_id, "successor", IDLE_END, scopes)
        )
        if engine.dialect.name == "postgresql":
            await session.rollback()
        else:
            await session.commit()
    return family


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


# -- the grace window's state machine, on both databases ------------------------------


@pytest.fixture
async def family_db(database: TestDatabase) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A family (grant "family") whose first token, "t0", is its head."""
    engine = make_engine(database.url)
    async with engine.begin() as db:
        await db.execute(
            insert(User).values(id=1, sub="s", username="u", username_key="u", created_at=NOW, updated_at=NOW)
        )
        await db.execute(
            insert(Grant).values(
                id="family",
                client_id="app",
                user_id=1,
                scope="openid",
                created_at=NOW,
                expires_at=FAMILY_END,
                amr=["pwd"],
                head_generation=1,
            )
        )
        await db.execute(
            insert(RefreshToken).values(
                token_digest=_digest("t0"),
                grant_id="family",
                client_id="app",
                generation=1,
                created_at=NOW,
                expires_at=IDLE_END,
            )
        )
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


class Family:
    """Storage calls as the refresh grant makes them, each in its own transaction."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], grace_seconds: int = 60) -> None:
        self.sessionmaker = sessionmaker
        self.grace_seconds = grace_seconds

    async def _run(self, work: Callable[[Session], T]) -> T:
        async with self.sessionmaker.begin() as db:
            return await db.run_sync(work)

    async def rotate(self, token: str, successor: str) -> bool:
        return await self._run(lambda s: refresh_store.rotate(s, token, "app", successor, IDLE_END)) is not None

    async def diagnose(self, token: str) -> refresh_store.Failure:
        found = await self._run(lambda s: refresh_store.diagnose(s, token, "app", grace_seconds=self.grace_seconds))
        return found.failure

    async def replace(self, token: str, successor: str, max_uses: int = 0) -> bool:
        """The grace path: a replay of ``token`` replacing the head with ``successor``."""
        replaced = await self._run(
            lambda s: refresh_store.use_grace(s, token, "app", successor, IDLE_END, max_uses=max_uses)
        )
        return replaced is not None

    async def usable(self) -> set[bytes]:
        """Digests of the family's unused tokens: the heads of its chains."""
        unused = select(RefreshToken.token_digest).where(RefreshToken.consumed_at.is_(None))
        return await self._run(lambda s: {bytes(digest) for digest in s.execute(unused).scalars()})

    async def head(self) -> int:
        return await self._run(lambda s: s.execute(select(Grant.head_generation)).scalar_one())


async def test_a_replay_in_the_window_replaces_the_head_and_the_replaced_token_is_reuse(
    family_db: async_sessionmaker[AsyncSession],
) -> None:
    family = Family(family_db)
    assert await family.rotate("t0", "t1")  # the response carrying t1 is lost
    assert await family.diagnose("t0") is Failure.GRACE
    assert await family.replace("t0", "t1b")
    assert (await family.usable(), await family.head()) == ({_digest("t1b")}, 2)
    # t1 was superseded: consumed, and never grace, even inside the window.
    assert not await family.rotate("t1", "x")
    assert await family.diagnose("t1") is Failure.REUSE
    # t0 is still the head's predecessor: another replay replaces again.
    assert await family.replace("t0", "t1c")
    assert await family.usable() == {_digest("t1c")}
    assert await family.diagnose("t1b") is Failure.REUSE
    # The chain goes on from the last replacement only.
    assert await family.rotate("t1c", "t2")
    assert (await family.usable(), await family.head()) == ({_digest("t2")}, 3)
    assert await family.diagnose("t0") is Failure.REUSE  # two generations back now
    assert not await family.replace("t0", "y")


async def test_replacements_are_bounded_by_the_grace_count(family_db: async_sessionmaker[AsyncSession]) -> None:
    family = Family(family_db)
    assert await family.rotate("t0", "t1")
    assert await family.replace("t0", "t1b", max_uses=1)
    assert not await family.replace("t0", "t1c", max_uses=1)  # the caller treats it as reuse
    assert await family.usable() == {_digest("t1b")}


async def test_a_replay_after_the_head_moved_on_replaces_nothing(family_db: async_sessionmaker[AsyncSession]) -> None:
    family = Family(family_db)
    assert await family.rotate("t0", "t1")
    assert await family.rotate("t1", "t2")
    # As if the replay had been diagnosed before the head moved: it must not fork the family.
    assert not await family.replace("t0", "late")
    assert await family.replace("t1", "t2b")  # t1 is the predecessor now
    assert await family.usable() == {_digest("t2b")}


async def test_only_the_head_generation_rotates(family_db: async_sessionmaker[AsyncSession]) -> None:
    """A second unused token in the head generation (a family an older version forked):
    once one of them rotates, the other is behind the head, and presenting it is reuse."""
    family = Family(family_db)
    async with family_db.begin() as db:
        await db.execute(
            insert(RefreshToken).values(
                token_digest=_digest("fork"),
                grant_id="family",
                client_id="app",
                generation=1,
                created_at=NOW,
                expires_at=IDLE_END,
            )
        )
    assert await family.rotate("t0", "t1")
    assert not await family.rotate("fork", "x")
    assert await family.diagnose("fork") is Failure.REUSE
    assert await family.usable() == {_digest("fork"), _digest("t1")}  # refused: untouched, the family is revoked
