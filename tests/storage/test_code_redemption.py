"""A code exchange's writes, on SQLite and PostgreSQL: ``codes.find`` reads a code without
consuming it, and ``grants.insert_grant(redeeming=...)`` consumes it and inserts its grant
(with the first refresh token, or without) together, or writes nothing at all.

On PostgreSQL both are one statement on a connection of their own, committed as they
return: what the caller's session then does (here: rolls back) cannot undo them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from server.storage import Session, codes as code_store, grants as grant_store
from server.storage.base import sha256, utcnow
from server.storage.codes import StoredCode
from server.storage.models import AuthorizationCode, BrowserSession, Grant, RefreshToken, User
from tests.helpers import Db
from tests.storage.test_codes_dpop import _code as bound_code

pytestmark = pytest.mark.anyio

KEY = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


def _code(grant_id: str, *, dpop_jkt: str | None = None, session_sid: str | None = None) -> StoredCode:
    return replace(bound_code(dpop_jkt), grant_id=grant_id, session_sid=session_sid, amr=("pwd", "otp"))


def _issue(db: Session) -> None:
    """User 1; codes "plain" (grant g-plain), "bound" (to KEY), "expired", and "signed-out"
    (of a browser session that has ended since)."""
    now = utcnow()
    db.execute(insert(User).values(id=1, sub="s", username="u", username_key="u", created_at=now, updated_at=now))
    db.execute(
        insert(BrowserSession).values(
            sid="sid-ended",
            token_digest=sha256("cookie"),
            user_id=1,
            created_at=now - timedelta(hours=1),
            last_seen_at=now - timedelta(minutes=5),
            expires_at=now + timedelta(hours=1),
            ended_at=now - timedelta(minutes=1),
            auth_time=now - timedelta(hours=1),
            amr=["pwd"],
            acr="0",
        )
    )
    soon = now + timedelta(minutes=1)
    code_store.insert_code(db, "plain", _code("g-plain"), expires_at=soon)
    code_store.insert_code(db, "bound", _code("g-bound", dpop_jkt=KEY), expires_at=soon)
    code_store.insert_code(db, "expired", _code("g-expired"), expires_at=now - timedelta(seconds=1))
    code_store.insert_code(db, "signed-out", _code("g-signed-out", session_sid="sid-ended"), expires_at=soon)


def _written(db: Session) -> dict[str, Any]:
    codes = db.execute(select(AuthorizationCode.grant_id, AuthorizationCode.consumed_at)).all()
    grants = db.execute(select(Grant.id, Grant.scope, Grant.amr, Grant.revoked_reason, Grant.head_generation)).all()
    tokens = db.execute(select(RefreshToken.grant_id, RefreshToken.generation, RefreshToken.token_digest)).all()
    return {
        "consumed": {grant_id for grant_id, consumed_at in codes if consumed_at is not None},
        "grants": {(i, scope, tuple(amr), reason, head) for i, scope, amr, reason, head in grants},
        "tokens": {tuple(row) for row in tokens},
    }


def _redeem(
    code: str, grant_id: str, *, first_token: str | None = None, dpop_jkt: str | None = None, sid: str | None = None
) -> Callable[[Session], bool]:
    def redeem(db: Session) -> bool:
        expires_at = utcnow() + timedelta(days=30)
        first: tuple[str, datetime] | None = None if first_token is None else (first_token, expires_at)
        return grant_store.insert_grant(
            db,
            grant_id=grant_id,
            client_id="app",
            user_id=1,
            scope="openid",
            session_sid=sid,
            expires_at=expires_at,
            amr=["pwd", "otp"],
            first_refresh_token=first,
            redeeming=grant_store.Redemption(code, "app", dpop_jkt),
        )

    return redeem


async def _rolled_back(db: Db, work: Callable[[Session], Any]) -> Any:
    """``work`` in a session that is rolled back afterwards."""
    async with db.sessionmaker() as session:
        result = await session.run_sync(work)
        await session.rollback()
    return result


async def test_find_reads_a_usable_code_and_leaves_it_unused(db: Db) -> None:
    await db(_issue)
    found = await db(lambda s: code_store.find(s, "plain", "app"))
    assert found is not None and (found.grant_id, found.amr, found.scope) == ("g-plain", ("pwd", "otp"), "openid")
    if found.user is not None:  # PostgreSQL reads the user in the same statement
        assert (found.user.id, found.user.sub) == (1, "s")
    assert (await db(_written))["consumed"] == set()
    for code, client_id, jkt in [("expired", "app", None), ("plain", "other", None), ("bound", "app", None)]:
        assert await db(lambda s, c=code, i=client_id, j=jkt: code_store.find(s, c, i, j)) is None
    assert await db(lambda s: code_store.find(s, "bound", "app", KEY)) is not None


@pytest.mark.parametrize("first_token", [None, "first-refresh-token"], ids=["grant only", "with a refresh token"])
async def test_a_redemption_consumes_the_code_and_inserts_its_grant_once(db: Db, first_token: str | None) -> None:
    await db(_issue)
    assert await db(_redeem("plain", "g-plain", first_token=first_token)) is True
    written = await db(_written)
    assert written["consumed"] == {"g-plain"}
    assert written["grants"] == {("g-plain", "openid", ("pwd", "otp"), None, 1 if first_token else 0)}
    assert written["tokens"] == ({("g-plain", 1, sha256(first_token))} if first_token else set())
    # a second redemption of the same code (a replay): refused, nothing more written
    assert await db(_redeem("plain", "g-plain-again", first_token=first_token)) is False
    assert await db(_written) == written


@pytest.mark.parametrize(
    ("code", "grant_id", "dpop_jkt"),
    [("expired", "g-expired", None), ("bound", "g-bound", None), ("unknown", "g-unknown", None)],
)
async def test_a_code_that_cannot_be_consumed_writes_nothing(
    db: Db, code: str, grant_id: str, dpop_jkt: str | None
) -> None:
    await db(_issue)
    before = await db(_written)
    assert await db(_redeem(code, grant_id, first_token="t", dpop_jkt=dpop_jkt)) is False
    assert await db(_written) == before


async def test_a_bound_code_is_redeemed_with_its_key(db: Db) -> None:
    await db(_issue)
    assert await db(_redeem("bound", "g-bound", first_token="t", dpop_jkt=KEY)) is True
    assert (await db(_written))["consumed"] == {"g-bound"}


async def test_the_grant_of_a_session_ended_meanwhile_is_inserted_revoked(db: Db) -> None:
    await db(_issue)
    assert await db(_redeem("signed-out", "g-signed-out", first_token="t", sid="sid-ended")) is True
    (grant,) = (await db(_written))["grants"]
    assert grant[0] == "g-signed-out" and grant[3] == grant_store.REASON_SESSION_ENDED


async def test_on_postgresql_the_redemption_stands_whatever_the_session_does(db: Db) -> None:
    await db(_issue)
    if db.sessionmaker.kw["bind"].dialect.name != "postgresql":
        # SQLite redeems in the caller's transaction: rolled back, nothing stays
        assert await _rolled_back(db, _redeem("plain", "g-plain", first_token="t")) is True
        assert (await db(_written))["consumed"] == set()
        return
    assert await _rolled_back(db, _redeem("plain", "g-plain", first_token="t")) is True
    written = await db(_written)
    assert written["consumed"] == {"g-plain"} and written["tokens"] == {("g-plain", 1, sha256("t"))}
