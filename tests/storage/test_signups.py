"""The sign-up store (``server.storage.signups``) on SQLite and PostgreSQL: a link and an
invitation are each spent once, even by two uses at once; dead ones do nothing; the cleanup
sweeps what has expired."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest

from server.storage import signups, users as user_store
from server.storage.base import utcnow
from server.storage.cleanup import INVITATION_RETENTION, sweep
from tests.helpers import Db

pytestmark = pytest.mark.anyio


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def add_link(db: Db, token: str, *, ttl: int = 600, user_id: int | None = None, **fields: object) -> None:
    purpose = signups.EMAIL if user_id is not None else signups.SIGNUP
    await db(
        lambda s: signups.add_verification(
            s,
            digest(token),
            purpose=purpose,
            email=f"{token}@example.com",
            expires_at=utcnow() + timedelta(seconds=ttl),
            user_id=user_id,
            **fields,  # type: ignore[arg-type]
        )
    )


async def add_user(db: Db, username: str) -> int:
    user = await db(
        lambda s: user_store.insert_user(
            s, sub=username, username=username, email=None, name=None, password_hash=None, email_verified=False
        )
    )
    return int(user.id)


async def test_a_link_is_peeked_any_number_of_times_and_used_once(db: Db) -> None:
    await add_link(db, "bob", username="bob", password_hash="$argon2id$x")
    for _ in range(2):
        peeked = await db(lambda s: signups.peek_verification(s, digest("bob")))
        assert peeked is not None and (peeked.purpose, peeked.username) == (signups.SIGNUP, "bob")
    used = await db(lambda s: signups.use_verification(s, digest("bob")))
    assert used is not None and used.email == "bob@example.com" and used.password_hash == "$argon2id$x"
    assert await db(lambda s: signups.use_verification(s, digest("bob"))) is None
    assert await db(lambda s: signups.peek_verification(s, digest("bob"))) is None
    assert await db(lambda s: signups.use_verification(s, digest("nobody"))) is None


async def test_of_two_uses_at_once_one_wins(db: Db) -> None:
    await add_link(db, "bob", username="bob")
    results = await asyncio.gather(*(db(lambda s: signups.use_verification(s, digest("bob"))) for _ in range(4)))
    assert sum(result is not None for result in results) == 1


async def test_an_expired_link_does_nothing(db: Db) -> None:
    await add_link(db, "bob", ttl=-1, username="bob")
    assert await db(lambda s: signups.peek_verification(s, digest("bob"))) is None
    assert await db(lambda s: signups.use_verification(s, digest("bob"))) is None


async def test_a_newer_address_link_voids_the_older_ones_of_that_user(db: Db) -> None:
    alice, carol = await add_user(db, "alice"), await add_user(db, "carol")
    await add_link(db, "first", user_id=alice)
    await add_link(db, "carols", user_id=carol)
    await add_link(db, "second", user_id=alice)
    assert await db(lambda s: signups.peek_verification(s, digest("first"))) is None
    assert await db(lambda s: signups.peek_verification(s, digest("second"))) is not None
    assert await db(lambda s: signups.peek_verification(s, digest("carols"))) is not None, "another user's stays"


async def add_invitation(db: Db, token: str, *, ttl: int = 3600, email: str | None = None) -> signups.StoredInvitation:
    expires_at = utcnow() + timedelta(seconds=ttl)
    return await db(
        lambda s: signups.add_invitation(s, digest(token), email=email, created_by="cli", expires_at=expires_at)
    )


async def test_an_invitation_is_used_once_and_records_its_account(db: Db) -> None:
    invitation = await add_invitation(db, "inv", email="bob@example.com")
    peeked = await db(lambda s: signups.peek_invitation(s, digest("inv")))
    assert peeked == invitation and peeked.live(utcnow())
    bob = await add_user(db, "bob")
    results = await asyncio.gather(*(db(lambda s: signups.use_invitation(s, invitation.id, bob)) for _ in range(3)))
    assert results.count(True) == 1
    assert await db(lambda s: signups.peek_invitation(s, digest("inv"))) is None
    (listed,) = await db(lambda s: signups.list_invitations(s, include_dead=True))
    assert listed.used_at is not None and not listed.live(utcnow())
    assert await db(lambda s: signups.list_invitations(s)) == []


async def test_a_revoked_or_expired_invitation_does_nothing(db: Db) -> None:
    revoked = await add_invitation(db, "revoked")
    expired = await add_invitation(db, "expired", ttl=-1)
    assert await db(lambda s: signups.revoke_invitation(s, revoked.id))
    assert not await db(lambda s: signups.revoke_invitation(s, revoked.id)), "already revoked"
    assert not await db(lambda s: signups.revoke_invitation(s, expired.id))
    bob = await add_user(db, "bob")
    for invitation, token in ((revoked, "revoked"), (expired, "expired")):
        assert await db(lambda s, token=token: signups.peek_invitation(s, digest(token))) is None
        assert not await db(lambda s, dead=invitation.id: signups.use_invitation(s, dead, bob))


async def test_the_cleanup_sweeps_expired_links_and_long_expired_invitations(db: Db) -> None:
    await add_link(db, "old", ttl=-1, username="old")
    await add_link(db, "live", username="live")
    await add_invitation(db, "long-gone", ttl=-int(INVITATION_RETENTION.total_seconds()) - 60)
    await add_invitation(db, "just-expired", ttl=-60)
    counts = await sweep(db.sessionmaker)
    assert (counts["email_verifications"], counts["invitations"]) == (1, 1)
    assert await db(lambda s: signups.peek_verification(s, digest("live"))) is not None
    assert len(await db(lambda s: signups.list_invitations(s, include_dead=True))) == 1
