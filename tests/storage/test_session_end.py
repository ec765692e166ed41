"""Ending a browser session ends the refresh-token families bound to it (OIDC Core §11).

A family issued without ``offline_access`` carries its session's ``sid``: it ends when the
session ends, however that happens (sign-out, another sign-in in the browser, an
administrator, a password change elsewhere), and it is inserted already ending when the
session expires. A family with ``offline_access`` survives all of that; only revocation, a
password reset and signing out everywhere end it. A password change also voids every
outstanding reset link, and so does an administrator changing the e-mail address.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

import pytest
from sqlalchemy import insert, select

from server.authn import sessions
from server.storage import (
    Session,
    grants as grant_store,
    refresh as refresh_store,
    resets,
    sessions as session_store,
    users as user_store,
)
from server.storage.base import utcnow
from server.storage.models import Grant, PasswordReset
from server.users import admin
from server.users.service import change_password, create_user
from tests.helpers import Db

pytestmark = pytest.mark.anyio

FAMILY_TTL = timedelta(days=30)
IDLE_TTL = timedelta(days=1)


async def user(db: Db, name: str = "alice") -> int:
    stored = await db(
        lambda s: create_user(s, username=name, email=f"{name}@example.com", name=None, password_hash="x")
    )
    return int(stored.id)


async def sign_in(db: Db, user_id: int, *, replaces: str | None = None, ttl: int = 3600) -> sessions.StartedSession:
    return await db(lambda s: sessions.start(s, user_id=user_id, amr=["pwd"], acr="1", ttl=ttl, replaces=replaces))


async def family(db: Db, user_id: int, session: sessions.StartedSession | None) -> str:
    """A family and its refresh token: bound to ``session``, or with offline_access (None)."""
    token, now = secrets.token_urlsafe(32), utcnow()
    await db(
        lambda s: grant_store.insert_grant(
            s,
            grant_id=secrets.token_urlsafe(16),
            client_id="app",
            user_id=user_id,
            scope="openid" if session else "openid offline_access",
            session_sid=session.session.sid if session else None,
            expires_at=now + FAMILY_TTL,
            first_refresh_token=(token, now + IDLE_TTL),
        )
    )
    return token


async def active(db: Db, token: str) -> bool:
    state = await db(lambda s: refresh_store.lookup(s, token))
    assert state is not None
    return state.active


async def family_end(db: Db, token: str) -> datetime:
    state = await db(lambda s: refresh_store.lookup(s, token))
    assert state is not None
    return state.expires_at


async def test_a_session_bound_family_ends_when_its_session_expires(db: Db) -> None:
    alice = await user(db)
    session = await sign_in(db, alice, ttl=600)
    bound, offline = await family(db, alice, session), await family(db, alice, None)
    assert await family_end(db, bound) == session.session.expires_at
    assert await family_end(db, offline) > utcnow() + IDLE_TTL - timedelta(minutes=1)
    assert await active(db, bound) and await active(db, offline)


async def test_a_family_from_a_session_that_already_ended_is_born_revoked(db: Db) -> None:
    alice = await user(db)
    session = await sign_in(db, alice)
    await db(lambda s: sessions.end(s, session.token))  # signed out before the code was redeemed
    bound = await family(db, alice, session)
    assert not await active(db, bound)
    reasons = await db(lambda s: s.execute(select(Grant.revoked_reason)).scalars().all())
    assert reasons == ["session_ended"]


async def test_signing_out_ends_the_sessions_bound_families_only(db: Db) -> None:
    alice = await user(db)
    session, other = await sign_in(db, alice), await sign_in(db, alice)
    bound, elsewhere, offline = (
        await family(db, alice, session),
        await family(db, alice, other),
        await family(db, alice, None),
    )
    assert await db(lambda s: sessions.end(s, session.token)) == session.session.sid
    assert (await active(db, bound), await active(db, elsewhere), await active(db, offline)) == (False, True, True)


async def test_an_administrator_ending_a_session_ends_its_bound_families(db: Db) -> None:
    alice = await user(db)
    session = await sign_in(db, alice)
    bound, offline = await family(db, alice, session), await family(db, alice, None)
    assert await db(lambda s: session_store.end_session_by_sid(s, session.session.sid, "ended_by_admin"))
    assert not await db(lambda s: session_store.end_session_by_sid(s, session.session.sid, "ended_by_admin"))
    assert (await active(db, bound), await active(db, offline)) == (False, True)
    assert await db(lambda s: sessions.load(s, session.token)) is None


async def test_another_users_sign_in_in_the_browser_ends_the_first_users_bound_families(db: Db) -> None:
    alice, bob = await user(db), await user(db, "bob")
    session = await sign_in(db, alice)
    bound, offline = await family(db, alice, session), await family(db, alice, None)
    await sign_in(db, bob, replaces=session.token)
    assert (await active(db, bound), await active(db, offline)) == (False, True)


async def test_the_same_user_signing_in_again_keeps_the_families_bound_to_the_new_session(db: Db) -> None:
    alice = await user(db)
    first = await sign_in(db, alice)
    bound = await family(db, alice, first)
    second = await sign_in(db, alice, replaces=first.token)
    assert await db(lambda s: sessions.load(s, first.token)) is None
    assert await active(db, bound)
    # ...and it now ends with the new session.
    await db(lambda s: sessions.end(s, second.token))
    assert not await active(db, bound)


async def test_ending_a_users_sessions_but_one_ends_the_others_bound_families(db: Db) -> None:
    alice, bob = await user(db), await user(db, "bob")
    kept, ended, bobs = await sign_in(db, alice), await sign_in(db, alice), await sign_in(db, bob)
    tokens = [await family(db, alice, kept), await family(db, alice, ended), await family(db, alice, None)]
    of_bob = await family(db, bob, bobs)
    count = await db(lambda s: session_store.end_user_sessions(s, alice, "test", keep_sid=kept.session.sid))
    assert count == 1
    assert [await active(db, token) for token in tokens] == [True, False, True]
    assert await active(db, of_bob)


async def reset_link(db: Db, user_id: int) -> bytes:
    digest = hashlib.sha256(secrets.token_bytes(32)).digest()
    await db(lambda s: resets.replace_reset(s, user_id, digest, utcnow() + timedelta(minutes=30)))
    return digest


async def live_link(db: Db, user_id: int) -> bytes:
    """A live link beside the others (``replace_reset`` would void them)."""
    digest = hashlib.sha256(secrets.token_bytes(32)).digest()
    now = utcnow()
    row = {"token_digest": digest, "user_id": user_id, "created_at": now, "expires_at": now + timedelta(minutes=30)}
    await db(lambda s: s.execute(insert(PasswordReset).values(row)))
    return digest


async def test_a_password_change_keeps_its_session_and_offline_families_and_voids_reset_links(db: Db) -> None:
    alice = await user(db)
    here, elsewhere = await sign_in(db, alice), await sign_in(db, alice)
    tokens = [await family(db, alice, here), await family(db, alice, elsewhere), await family(db, alice, None)]
    link, older = await reset_link(db, alice), await live_link(db, alice)
    stored = await db(lambda s: user_store.get_user(s, alice))
    ended = await db(lambda s: change_password(s, stored, "new hash", actor="alice", kept_session=here.session.sid))
    assert ended == 1
    assert [await active(db, token) for token in tokens] == [True, False, True]
    assert await db(lambda s: sessions.load(s, here.token)) is not None
    assert await db(lambda s: sessions.load(s, elsewhere.token)) is None
    assert await db(lambda s: resets.peek_reset(s, link)) is None
    assert await db(lambda s: resets.peek_reset(s, older)) is None


async def test_a_password_reset_ends_every_session_and_family_and_voids_other_links(db: Db) -> None:
    alice = await user(db)
    session = await sign_in(db, alice)
    tokens = [await family(db, alice, session), await family(db, alice, None)]
    used = await reset_link(db, alice)
    other = await live_link(db, alice)  # two live links at once, as an older version could leave
    stored = await db(lambda s: user_store.get_user(s, alice))

    def reset(s: Session) -> int:
        assert resets.use_reset(s, used) == alice
        return change_password(s, stored, "new hash", actor="alice")

    assert await db(reset) == 2
    assert [await active(db, token) for token in tokens] == [False, False]
    assert await db(lambda s: sessions.load(s, session.token)) is None
    assert await db(lambda s: resets.peek_reset(s, other)) is None


# An administrator changing the address.


async def mailed_link(db: Db, user_id: int) -> bytes:
    digest = hashlib.sha256(b"a reset link's token").digest()
    await db(lambda s: resets.replace_reset(s, user_id, digest, utcnow() + timedelta(minutes=30)))
    return digest


@pytest.mark.parametrize(
    ("change", "link_works"),
    [
        (admin.ProfileChanges(email="alice@new.example.com"), False),
        (admin.ProfileChanges(email=""), False),
        (admin.ProfileChanges(name="Alice Liddell"), True),
        (admin.ProfileChanges(username="alice.l"), True),
    ],
)
async def test_a_new_address_voids_the_links_mailed_to_the_old_one(
    db: Db, change: admin.ProfileChanges, link_works: bool
) -> None:
    user_id = await user(db)
    link = await mailed_link(db, user_id)

    await db(lambda s: admin.update(s, "alice", change, actor="cli"))

    assert (await db(lambda s: resets.peek_reset(s, link)) == user_id) is link_works
