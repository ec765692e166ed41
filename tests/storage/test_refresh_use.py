"""``refresh.use``, a refresh that does not rotate (FAPI 2.0 Security Profile §5.3.2.1), on
both databases.

It accepts exactly the tokens ``refresh.rotate`` accepts, but leaves the token unused and
inserts nothing: only the token's expiry slides, never past its family's end. Whatever it
refuses leaves nothing written, and ``refresh.diagnose`` says why as it does after a refused
rotation (a token never consumed is never reuse).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.storage import refresh as refresh_store
from server.storage.models import Grant, RefreshToken, User
from server.storage.refresh import Failure, FamilyToken
from tests.helpers import TestDatabase
from tests.storage.test_refresh_rotation import (  # noqa: F401 (family_db: a fixture)
    FAMILY_END,
    IDLE_END,
    NOW,
    Family,
    _digest,
    family_db,
)

pytestmark = pytest.mark.anyio

#: the idle expiry a use slides the token to (the token was issued to expire at IDLE_END)
SLID = IDLE_END + timedelta(days=1)


class Unrotated(Family):
    """The storage calls of a client that must not rotate, each in its own transaction."""

    async def use(
        self,
        token: str = "t0",
        scopes: tuple[str, ...] = (),
        client_id: str = "app",
        dpop_jkt: str | None = None,
        idle_expires_at: Any = SLID,
    ) -> FamilyToken | None:
        return await self._run(lambda s: refresh_store.use(s, token, client_id, idle_expires_at, scopes, dpop_jkt))

    async def rotate_as(self, token: str, scopes: tuple[str, ...], client_id: str, dpop_jkt: str | None) -> bool:
        rotated = await self._run(lambda s: refresh_store.rotate(s, token, client_id, "x", IDLE_END, scopes, dpop_jkt))
        return rotated is not None

    async def diagnose_as(self, token: str, scopes: tuple[str, ...], client_id: str, dpop_jkt: str | None) -> Failure:
        found = await self._run(
            lambda s: refresh_store.diagnose(s, token, client_id, grace_seconds=60, scopes=scopes, dpop_jkt=dpop_jkt)
        )
        return found.failure

    async def change(self, *statements: Any) -> None:
        async with self.sessionmaker.begin() as db:
            for statement in statements:
                await db.execute(statement)

    async def rows(self) -> dict[str, object]:
        """Every row a use could write: tokens and grants, whole."""
        tokens = select(
            RefreshToken.token_digest,
            RefreshToken.generation,
            RefreshToken.expires_at,
            RefreshToken.consumed_at,
            RefreshToken.grace_uses,
        )
        grants = select(Grant.id, Grant.head_generation, Grant.revoked_at, Grant.expires_at, Grant.dpop_jkt)
        return await self._run(
            lambda s: {
                "tokens": {tuple(row) for row in s.execute(tokens)},
                "grants": {tuple(row) for row in s.execute(grants)},
            }
        )

    async def t0(self) -> tuple[object, ...]:
        """t0's generation, expiry and consumption."""
        columns = select(RefreshToken.generation, RefreshToken.expires_at, RefreshToken.consumed_at)
        return await self._run(
            lambda s: tuple(s.execute(columns.where(RefreshToken.token_digest == _digest("t0"))).one())
        )

    async def count(self) -> int:
        return await self._run(lambda s: s.execute(select(func.count()).select_from(RefreshToken)).scalar_one())


@pytest.fixture
def family(family_db: async_sessionmaker[AsyncSession]) -> Unrotated:  # noqa: F811 (the imported fixture)
    """The family of test_refresh_rotation: grant "family" (scope "openid", ending at
    FAMILY_END), its head t0 (generation 1, expiring at IDLE_END), user 1."""
    return Unrotated(family_db)


@pytest.mark.parametrize("scopes", [(), ("openid",)])
async def test_a_use_slides_the_expiry_and_nothing_else(family: Unrotated, scopes: tuple[str, ...]) -> None:
    used = await family.use(scopes=scopes)
    assert isinstance(used, FamilyToken)
    assert (used.grant_id, used.client_id, used.generation, used.scope) == ("family", "app", 1, "openid")
    assert (used.user.id, used.user.sub, used.amr, used.family_expires_at) == (1, "s", ("pwd",), FAMILY_END)
    assert await family.t0() == (1, SLID, None)
    assert (await family.count(), await family.head()) == (1, 1)  # no successor, the head unmoved
    # The same token again, and again: each use slides it further.
    later = SLID + timedelta(hours=1)
    assert await family.use(idle_expires_at=later) == used
    assert await family.use(idle_expires_at=later) == used
    assert await family.t0() == (1, later, None)
    assert await family.diagnose("t0") is Failure.USABLE  # never consumed: no reuse to find


async def test_the_slid_expiry_ends_with_the_family(family: Unrotated) -> None:
    beyond = FAMILY_END + timedelta(days=1)
    assert await family.use(idle_expires_at=beyond) is not None
    assert await family.t0() == (1, FAMILY_END, None)


async def test_a_family_without_an_end_slides_to_the_idle_expiry_and_rotates_alike(family: Unrotated) -> None:
    await family.change(update(Grant).values(expires_at=None))
    far = FAMILY_END + timedelta(days=365)
    used = await family.use(idle_expires_at=far)
    assert used is not None and used.family_expires_at is None
    assert await family.t0() == (1, far, None)
    assert await family.rotate("t0", "t1")  # what use accepts, rotate does


async def test_on_postgresql_a_use_is_committed_on_its_own(family: Unrotated, database: TestDatabase) -> None:
    """As a rotation: on PostgreSQL one statement of its own, whatever becomes of the
    caller's transaction; on SQLite, in the caller's transaction."""
    async with family.sessionmaker() as session:
        assert await session.run_sync(lambda s: refresh_store.use(s, "t0", "app", SLID)) is not None
        await session.rollback()
    expected = SLID if database.kind == "postgresql" else IDLE_END
    assert await family.t0() == (1, expected, None)


_ANOTHER_KEY = update(Grant).values(dpop_jkt="their-key-thumbprint")


@pytest.mark.parametrize(
    ("changes", "call", "failure"),
    [
        pytest.param((), {"client_id": "another-app"}, Failure.OTHER_CLIENT, id="another-client"),
        pytest.param((), {"token": "unknown"}, Failure.UNKNOWN, id="unknown"),
        pytest.param((update(RefreshToken).values(expires_at=NOW),), {}, Failure.INACTIVE, id="expired-token"),
        pytest.param((update(Grant).values(revoked_at=NOW),), {}, Failure.INACTIVE, id="revoked-family"),
        pytest.param((update(Grant).values(expires_at=NOW),), {}, Failure.INACTIVE, id="ended-family"),
        pytest.param((update(User).values(disabled_at=NOW),), {}, Failure.INACTIVE, id="disabled-user"),
        pytest.param((), {"scopes": ("openid", "profile")}, Failure.SCOPE, id="ungranted-scope"),
        pytest.param((), {"scopes": ("openid openid",)}, Failure.SCOPE, id="two-scopes-as-one"),
        pytest.param((_ANOTHER_KEY,), {"dpop_jkt": "my-key-thumbprint"}, Failure.KEY, id="another-dpop-key"),
        pytest.param((_ANOTHER_KEY,), {}, Failure.KEY, id="no-dpop-key"),
        # an unused token behind the head: a second chain, which the caller answers as reuse
        pytest.param((update(Grant).values(head_generation=2),), {}, Failure.REUSE, id="behind-the-head"),
        pytest.param((update(RefreshToken).values(consumed_at=NOW),), {}, Failure.REUSE, id="consumed"),
    ],
)
async def test_what_rotate_refuses_use_refuses_and_writes_nothing(
    family: Unrotated, changes: tuple[Any, ...], call: dict[str, Any], failure: Failure
) -> None:
    await family.change(*changes)
    before = await family.rows()
    assert await family.use(**call) is None
    assert await family.rows() == before
    args = (call.get("token", "t0"), call.get("scopes", ()), call.get("client_id", "app"), call.get("dpop_jkt"))
    assert not await family.rotate_as(*args)
    assert await family.diagnose_as(*args) is failure


async def test_a_family_bound_to_a_key_is_used_with_that_key(family: Unrotated) -> None:
    await family.change(update(Grant).values(dpop_jkt="my-key-thumbprint"))
    assert await family.use(dpop_jkt="my-key-thumbprint") is not None
    assert await family.t0() == (1, SLID, None)


async def test_concurrent_uses_of_one_token_all_succeed(family: Unrotated) -> None:
    ends = [SLID + timedelta(minutes=i) for i in range(6)]
    used = await asyncio.gather(*(family.use(idle_expires_at=end) for end in ends))
    assert all(isinstance(one, FamilyToken) for one in used)
    generation, expires_at, consumed_at = await family.t0()
    assert (generation, consumed_at, await family.count()) == (1, None, 1)
    assert expires_at in ends


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # SQLite serialises writers
async def test_on_postgresql_a_use_waits_for_a_concurrent_one_then_succeeds(family: Unrotated) -> None:
    """A use that finds the token's row locked by another use's slide (not yet committed)
    waits for it, then finds the token still unused, and slides it in turn."""
    async with family.sessionmaker() as other:
        await other.execute(update(RefreshToken).values(expires_at=SLID))  # the other use, uncommitted
        waiting = asyncio.ensure_future(family.use(idle_expires_at=SLID + timedelta(hours=1)))
        await _until_one_waits_for_a_lock(family.sessionmaker)
        assert not waiting.done()
        await other.commit()
    assert await waiting is not None
    assert await family.t0() == (1, SLID + timedelta(hours=1), None)


async def _until_one_waits_for_a_lock(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    for _ in range(200):
        async with sessionmaker() as db:
            if (await db.execute(waiting)).scalar_one() == 1:
                return
        await asyncio.sleep(0.025)
    raise AssertionError("the use never waited for the row lock")
