"""Authorization codes bound to a DPoP key (RFC 9449 §10), on SQLite and PostgreSQL: the one
conditional UPDATE that consumes a code consumes a bound one only for its key, and a
refused consumption writes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from server.storage import Session, codes as code_store
from server.storage.base import utcnow
from server.storage.codes import StoredCode
from server.storage.models import AuthorizationCode, User
from tests.helpers import Db

pytestmark = pytest.mark.anyio

KEY = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
OTHER = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _code(dpop_jkt: str | None) -> StoredCode:
    return StoredCode(
        client_id="app",
        user_id=1,
        grant_id="grant",
        redirect_uri="https://rp.example.com/callback",
        scope="openid",
        nonce=None,
        code_challenge="c" * 43,
        code_challenge_method="S256",
        session_sid=None,
        auth_time=utcnow(),
        acr=None,
        amr=("pwd",),
        dpop_jkt=dpop_jkt,
    )


def _issue(db: Session) -> None:
    """A bound code and an unbound one, of client ``app``, valid for a minute from now (not
    from the module's import, which a long run leaves far behind)."""
    now = utcnow()
    db.execute(insert(User).values(id=1, sub="s", username="u", username_key="u", created_at=now, updated_at=now))
    expires_at = now + timedelta(minutes=1)
    code_store.insert_code(db, "bound", _code(KEY), expires_at=expires_at)
    code_store.insert_code(db, "unbound", _code(None), expires_at=expires_at)


def _consumed(db: Session) -> dict[bytes, bool]:
    rows = db.execute(select(AuthorizationCode.code_digest, AuthorizationCode.consumed_at)).all()
    return {row.code_digest: row.consumed_at is not None for row in rows}


async def test_a_bound_code_is_consumed_only_with_its_key(db: Db) -> None:
    await db(_issue)
    before = await db(_consumed)
    for jkt in (None, OTHER):
        assert await db(lambda s, jkt=jkt: code_store.consume(s, "bound", "app", jkt)) is None
        assert await db(lambda s, jkt=jkt: code_store.bound_to_another_key(s, "bound", "app", jkt)) is True
    assert await db(_consumed) == before  # nothing was written
    assert await db(lambda s: code_store.bound_to_another_key(s, "bound", "app", KEY)) is False

    consumed = await db(lambda s: code_store.consume(s, "bound", "app", KEY))
    assert consumed is not None and consumed.dpop_jkt == KEY
    assert await db(lambda s: code_store.consume(s, "bound", "app", KEY)) is None
    # consumed: a replay with the key, no longer a refusal for the key; without the key or
    # with another, neither (whoever lacks the key cannot have the grant revoked)
    assert await db(lambda s: code_store.bound_to_another_key(s, "bound", "app", OTHER)) is False
    assert await db(lambda s: code_store.replayed_grant(s, "bound", "app", KEY)) == ("grant", "s")
    assert await db(lambda s: code_store.replayed_grant(s, "bound", "app", OTHER)) is None
    assert await db(lambda s: code_store.replayed_grant(s, "bound", "app")) is None


async def test_an_unbound_code_is_consumed_with_or_without_a_key(db: Db) -> None:
    await db(_issue)
    assert await db(lambda s: code_store.bound_to_another_key(s, "unbound", "app", None)) is False
    consumed = await db(lambda s: code_store.consume(s, "unbound", "app", OTHER))
    assert consumed is not None and consumed.dpop_jkt is None
    assert await db(lambda s: code_store.consume(s, "unbound", "app")) is None
