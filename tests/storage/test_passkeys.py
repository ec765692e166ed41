"""The passkey store (``server.storage.passkeys``) on SQLite and PostgreSQL: a challenge is
spent by its first use only, even by answers at once, and only for its purpose and while
live; a passkey's counter moves only from the count it was read at; a user's passkeys are
hers alone to remove."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import timedelta

import pytest

from server.storage import passkeys, users as user_store
from server.storage.base import utcnow
from server.storage.cleanup import sweep
from tests.helpers import Db

pytestmark = pytest.mark.anyio


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


async def add_user(db: Db, username: str) -> int:
    user = await db(
        lambda s: user_store.insert_user(
            s, sub=username, username=username, email=None, name=None, password_hash=None, email_verified=False
        )
    )
    return int(user.id)


async def add_passkey(db: Db, user_id: int, credential: bytes, sign_count: int = 0) -> passkeys.StoredPasskey:
    return await db(
        lambda s: passkeys.add_passkey(
            s,
            user_id=user_id,
            credential_id=credential,
            public_key=b"cose",
            sign_count=sign_count,
            aaguid="00000000-0000-0000-0000-000000000000",
            device_type="single_device",
            transports=["internal"],
            name="Laptop",
        )
    )


async def test_a_challenge_is_spent_once_for_its_purpose_while_live(db: Db) -> None:
    alice = await add_user(db, "alice")
    later = utcnow() + timedelta(minutes=5)
    await db(
        lambda s: passkeys.add_challenge(s, digest("c1"), purpose=passkeys.REGISTER, user_id=alice, expires_at=later)
    )
    assert await db(lambda s: passkeys.take_challenge(s, digest("c1"), passkeys.AUTHENTICATE)) is None
    taken = await db(lambda s: passkeys.take_challenge(s, digest("c1"), passkeys.REGISTER))
    assert taken is not None and taken.user_id == alice
    assert await db(lambda s: passkeys.take_challenge(s, digest("c1"), passkeys.REGISTER)) is None

    gone = utcnow() - timedelta(seconds=1)
    await db(lambda s: passkeys.add_challenge(s, digest("old"), purpose=passkeys.AUTHENTICATE, expires_at=gone))
    assert await db(lambda s: passkeys.take_challenge(s, digest("old"), passkeys.AUTHENTICATE)) is None
    assert (await sweep(db.sessionmaker))["webauthn_challenges"] == 1


async def test_of_answers_at_once_one_spends_the_challenge(db: Db) -> None:
    later = utcnow() + timedelta(minutes=5)
    interaction = digest("sign-in")
    await db(
        lambda s: passkeys.add_challenge(
            s, digest("c"), purpose=passkeys.AUTHENTICATE, interaction=interaction, expires_at=later
        )
    )
    taken = await asyncio.gather(
        *(db(lambda s: passkeys.take_challenge(s, digest("c"), passkeys.AUTHENTICATE)) for _ in range(4))
    )
    found = [one for one in taken if one is not None]
    assert len(found) == 1 and found[0].interaction == interaction


async def test_the_counter_moves_only_from_the_count_it_was_read_at(db: Db) -> None:
    alice = await add_user(db, "alice")
    key = await add_passkey(db, alice, b"cred-1", sign_count=5)
    assert await db(lambda s: passkeys.record_use(s, key.id, old_count=5, new_count=6))
    assert not await db(lambda s: passkeys.record_use(s, key.id, old_count=5, new_count=7)), "read before the move"
    stored = await db(lambda s: passkeys.get_by_credential(s, b"cred-1"))
    assert stored is not None and stored.sign_count == 6 and stored.last_used_at is not None


async def test_a_user_removes_only_her_own_passkeys(db: Db) -> None:
    alice, bob = await add_user(db, "alice"), await add_user(db, "bob")
    key = await add_passkey(db, alice, b"alice-key")
    assert await db(lambda s: passkeys.credential_taken(s, b"alice-key"))
    assert await db(lambda s: passkeys.delete_passkey(s, bob, key.id)) is None
    assert [p.name for p in await db(lambda s: passkeys.list_passkeys(s, alice))] == ["Laptop"]
    removed = await db(lambda s: passkeys.delete_passkey(s, alice, key.id))
    assert removed is not None and removed.credential_id == b"alice-key"
    assert await db(lambda s: passkeys.count_passkeys(s, alice)) == 0
