"""Key lifecycle operations (``server.keys.service``) on a real database, SQLite and PostgreSQL.

Each operation runs in its own transaction, as the CLI and the key watcher run them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError
from sqlalchemy import select, update

from server.keys import service
from server.keys.errors import KeyMaterialError
from server.keys.lifecycle import Step, activates_at, hold, staging_delay
from server.keys.ring import KeyRing, build_keyring
from server.keys.wrapping import KeyWrapper, KeyWrappers
from server.settings import Settings
from server.storage import AsyncSession, Session, async_sessionmaker, keys as key_store
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.keys import StoredKey
from server.storage.models import AuditEvent, SigningKey
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio

T = TypeVar("T")
Maker = async_sessionmaker[AsyncSession]

SECRET_A = "the-first-key-encryption-secret-0123456789"
SECRET_B = "the-second-key-encryption-secret-987654321"
WRAPPERS = KeyWrappers(KeyWrapper(SECRET_A))
BITS = 2048
SECOND = timedelta(seconds=1)
SETTINGS = Settings(jwks_max_age=600, keys_poll_interval=5, access_token_ttl=900, id_token_ttl=3600, rsa_key_bits=BITS)


@pytest.fixture
async def sessions(database: TestDatabase) -> AsyncIterator[Maker]:
    engine = make_engine(database.url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def run(sessions: Maker, operation: Callable[[Session], T]) -> T:
    """``operation`` in a transaction of its own, committed when it returns."""
    async with sessions.begin() as session:
        return await session.run_sync(operation)


async def all_keys(sessions: Maker) -> dict[str, StoredKey]:
    async with sessions() as session:
        return {key.kid: key for key in await session.run_sync(key_store.list_keys)}


async def active_kids(sessions: Maker) -> dict[str, list[str]]:
    """The kids of the active keys, per algorithm (a list, so two would show)."""
    by_alg: dict[str, list[str]] = {}
    for key in (await all_keys(sessions)).values():
        if key.state == "active":
            by_alg.setdefault(key.alg, []).append(key.kid)
    return by_alg


async def audit_events(sessions: Maker) -> list[tuple[str, str | None, str | None]]:
    """``(kind, subject, actor)`` of every audit event, oldest first."""
    async with sessions() as session:
        query = select(AuditEvent.kind, AuditEvent.subject, AuditEvent.actor).order_by(AuditEvent.id)
        return [(row.kind, row.subject, row.actor) for row in await session.execute(query)]


async def first_key(sessions: Maker, alg: str = "RS256") -> str:
    kid = await run(sessions, lambda s: service.ensure_active_key(s, WRAPPERS, alg=alg, bits=BITS))
    assert kid is not None
    return kid


async def stage(sessions: Maker, alg: str = "RS256", wrappers: KeyWrappers = WRAPPERS) -> StoredKey:
    return await run(sessions, lambda s: service.stage(s, wrappers, alg=alg, bits=BITS, actor="admin"))


async def rotate_now(sessions: Maker, alg: str = "RS256", wrappers: KeyWrappers = WRAPPERS) -> StoredKey:
    return await run(sessions, lambda s: service.rotate_now(s, wrappers, alg=alg, bits=BITS, actor="admin"))


async def revoke(sessions: Maker, kid: str) -> str | None:
    return await run(sessions, lambda s: service.revoke(s, WRAPPERS, kid, bits=BITS, actor="admin"))


async def advance(sessions: Maker, now: datetime, settings: Settings = SETTINGS) -> list[Step]:
    return await run(sessions, lambda s: service.advance(s, WRAPPERS, settings, now=now))


async def corrupt_private_key(sessions: Maker, kid: str, blob: bytes) -> None:
    async with sessions.begin() as session:
        await session.execute(update(SigningKey).where(SigningKey.kid == kid).values(private_key_enc=blob))


def sign_and_verify(ring: KeyRing, alg: str) -> dict[str, Any]:
    """Sign a JWT with the ring's active ``alg`` key and verify it as our own endpoints do."""
    signer = ring.signer(alg)
    token = signer.sign({"sub": "alice", "iss": "https://op.example"})
    decoded = jwt.decode(token, ring.verification, algorithms=[alg])
    assert decoded.claims["sub"] == "alice"
    assert decoded.header["kid"] == signer.kid
    return decoded.header


# Staged rotation.


async def test_a_staged_key_is_published_but_not_signing_until_the_staging_delay_has_passed(sessions: Maker) -> None:
    old = await first_key(sessions)
    staged = await stage(sessions)
    keys = await all_keys(sessions)
    due = activates_at(keys[staged.kid], SETTINGS)
    assert due == keys[staged.kid].created_at + staging_delay(SETTINGS)

    assert await advance(sessions, now=due - SECOND) == []

    keys = await all_keys(sessions)
    assert (keys[old].state, keys[staged.kid].state) == ("active", "next")
    assert keys[staged.kid].activated_at is None
    ring = build_keyring(keys.values(), WRAPPERS)
    assert ring.signer("RS256").kid == old
    assert {k["kid"] for k in json.loads(ring.jwks_json)["keys"]} == {old, staged.kid}


async def test_after_the_staging_delay_advance_activates_the_staged_key_and_retires_the_old_one(
    sessions: Maker,
) -> None:
    old = await first_key(sessions)
    staged = await stage(sessions)
    due = activates_at((await all_keys(sessions))[staged.kid], SETTINGS)

    assert await advance(sessions, now=due) == [Step("activate", "RS256", staged.kid)]

    keys = await all_keys(sessions)
    assert (keys[old].state, keys[staged.kid].state) == ("retired", "active")
    assert keys[old].retired_at is not None
    assert keys[staged.kid].activated_at is not None
    assert await active_kids(sessions) == {"RS256": [staged.kid]}
    assert await audit_events(sessions) == [
        ("key.created", old, "system"),
        ("key.staged", staged.kid, "admin"),
        ("key.retired", old, "schedule"),
        ("key.activated", staged.kid, "schedule"),
    ]
    assert await advance(sessions, now=due) == []  # applying it again changes nothing


async def test_advance_removes_a_retired_key_when_the_hold_is_over(sessions: Maker) -> None:
    old = await first_key(sessions)
    new = await rotate_now(sessions)
    retired_at = (await all_keys(sessions))[old].retired_at
    assert retired_at is not None
    until = retired_at + hold(SETTINGS)

    assert await advance(sessions, now=until - SECOND) == []
    assert (await all_keys(sessions))[old].state == "retired"

    assert await advance(sessions, now=until) == [Step("remove", "RS256", old)]

    keys = await all_keys(sessions)
    assert keys[old].state == "removed" and keys[old].removed_at is not None
    assert keys[new.kid].state == "active"
    assert (await audit_events(sessions))[-1] == ("key.removed", old, "schedule")
    ring = build_keyring(keys.values(), WRAPPERS)
    assert [k["kid"] for k in json.loads(ring.jwks_json)["keys"]] == [new.kid]


async def test_with_a_rotation_period_advance_stages_a_key_and_then_switches_to_it(sessions: Maker) -> None:
    # A staging delay of 3010 s in a period of 3600 s: the next key is staged 590 s after
    # the active key started signing. (advance stamps what it does with the wall clock,
    # so the times given to it stay within the staged key's own staging delay.)
    rotating = replace(SETTINGS, jwks_max_age=3000, keys_rotate_every=3600)
    old = await first_key(sessions)
    activated_at = (await all_keys(sessions))[old].activated_at
    assert activated_at is not None
    stage_due = activated_at + timedelta(seconds=3600) - staging_delay(rotating)

    assert await advance(sessions, now=stage_due - SECOND, settings=rotating) == []
    assert await advance(sessions, now=stage_due, settings=rotating) == [Step("stage", "RS256")]

    (staged,) = [k for k in (await all_keys(sessions)).values() if k.state == "next"]
    assert await audit_events(sessions) == [("key.created", old, "system"), ("key.staged", staged.kid, "schedule")]
    switch = activates_at(staged, rotating)
    assert await advance(sessions, now=switch - SECOND, settings=rotating) == []  # one next key is enough

    assert await advance(sessions, now=switch, settings=rotating) == [Step("activate", "RS256", staged.kid)]

    assert await active_kids(sessions) == {"RS256": [staged.kid]}
    assert (await all_keys(sessions))[old].state == "retired"


async def test_advance_discards_a_staged_key_that_does_not_decrypt_and_keeps_signing_with_the_current_one(
    sessions: Maker,
) -> None:
    current = await first_key(sessions)
    staged = await stage(sessions)
    await corrupt_private_key(sessions, staged.kid, b"\x01" + bytes(40))

    steps = await advance(sessions, now=activates_at(staged, SETTINGS))

    assert steps == [Step("activate", "RS256", staged.kid)]  # due, and dealt with
    keys = await all_keys(sessions)
    assert keys[staged.kid].state == "removed"
    assert await active_kids(sessions) == {"RS256": [current]}
    assert (await audit_events(sessions))[-1] == ("key.discarded", staged.kid, "schedule")
    assert build_keyring(keys.values(), WRAPPERS).signer("RS256").kid == current


# Emergency rotation.


async def test_rotate_now_leaves_exactly_one_active_key(sessions: Maker) -> None:
    first = await first_key(sessions)

    second = await rotate_now(sessions)
    third = await rotate_now(sessions)

    assert await active_kids(sessions) == {"RS256": [third.kid]}
    keys = await all_keys(sessions)
    assert (keys[first].state, keys[second.kid].state) == ("retired", "retired")
    kinds = [(kind, subject) for kind, subject, _ in await audit_events(sessions)]
    assert kinds[-3:] == [("key.staged", third.kid), ("key.retired", second.kid), ("key.activated", third.kid)]


# Revocation.


async def test_revoking_the_active_key_promotes_the_staged_key(sessions: Maker) -> None:
    compromised = await first_key(sessions)
    staged = await stage(sessions)

    replacement = await revoke(sessions, compromised)

    assert replacement == staged.kid
    keys = await all_keys(sessions)
    assert keys[compromised].state == "removed" and keys[compromised].removed_at is not None
    assert await active_kids(sessions) == {"RS256": [staged.kid]}
    assert len(keys) == 2  # nothing new was created
    assert (await audit_events(sessions))[-2:] == [
        ("key.revoked", compromised, "admin"),
        ("key.activated", staged.kid, "admin"),
    ]
    ring = build_keyring(keys.values(), WRAPPERS)
    assert compromised not in {k["kid"] for k in json.loads(ring.jwks_json)["keys"]}


async def test_revoking_the_active_key_promotes_the_oldest_of_several_staged_keys(sessions: Maker) -> None:
    compromised = await first_key(sessions)
    older = await stage(sessions)
    newer = await stage(sessions)

    assert await revoke(sessions, compromised) == older.kid

    assert await active_kids(sessions) == {"RS256": [older.kid]}
    assert (await all_keys(sessions))[newer.kid].state == "next"


async def test_revoking_the_active_key_without_a_staged_key_creates_and_activates_one(sessions: Maker) -> None:
    compromised = await first_key(sessions)

    replacement = await revoke(sessions, compromised)

    assert replacement is not None and replacement != compromised
    keys = await all_keys(sessions)
    assert keys[compromised].state == "removed"
    assert keys[replacement].state == "active" and keys[replacement].alg == "RS256"
    assert await active_kids(sessions) == {"RS256": [replacement]}
    assert ("key.activated", replacement, "admin") in await audit_events(sessions)
    ring = build_keyring(keys.values(), WRAPPERS)
    sign_and_verify(ring, "RS256")


async def test_revoking_an_active_key_of_one_algorithm_leaves_the_others_alone(sessions: Maker) -> None:
    rs = await first_key(sessions)
    es_staged = await stage(sessions, alg="ES256")
    ed = await rotate_now(sessions, alg="Ed25519")

    replacement = await revoke(sessions, ed.kid)

    assert replacement is not None and replacement != es_staged.kid
    actives = await active_kids(sessions)
    assert actives == {"RS256": [rs], "Ed25519": [replacement]}
    assert (await all_keys(sessions))[es_staged.kid].state == "next"


async def test_revoking_the_active_key_does_not_promote_a_staged_key_that_does_not_decrypt(sessions: Maker) -> None:
    # As advance does (it discards such a key): activating a key no process can decrypt
    # would stop every process at its next poll.
    compromised = await first_key(sessions)
    broken = await stage(sessions)
    await corrupt_private_key(sessions, broken.kid, b"\x01" + bytes(40))

    replacement = await revoke(sessions, compromised)

    assert replacement != broken.kid, "revoke promoted a staged key that does not decrypt"
    assert replacement is not None and replacement != compromised
    actives = await active_kids(sessions)
    assert actives == {"RS256": [replacement]}
    ring = build_keyring((await all_keys(sessions)).values(), WRAPPERS)
    assert sign_and_verify(ring, "RS256")["kid"] == replacement


async def test_revoking_a_retired_key_removes_it_and_activates_nothing_new(sessions: Maker) -> None:
    old = await first_key(sessions)
    current = await rotate_now(sessions)
    before = await all_keys(sessions)

    assert await revoke(sessions, old) is None

    keys = await all_keys(sessions)
    assert keys[old].state == "removed"
    assert keys.keys() == before.keys()
    assert await active_kids(sessions) == {"RS256": [current.kid]}
    assert keys[current.kid] == before[current.kid]


async def test_revoking_a_staged_key_removes_it_and_activates_nothing_new(sessions: Maker) -> None:
    active = await first_key(sessions)
    staged = await stage(sessions)

    assert await revoke(sessions, staged.kid) is None

    assert (await all_keys(sessions))[staged.kid].state == "removed"
    assert await active_kids(sessions) == {"RS256": [active]}
    assert await advance(sessions, now=activates_at(staged, SETTINGS)) == []


async def test_revoking_an_unknown_kid_is_an_error_and_changes_nothing(sessions: Maker) -> None:
    active = await first_key(sessions)
    events = await audit_events(sessions)

    with pytest.raises(KeyMaterialError, match="no-such-kid"):
        await revoke(sessions, "no-such-kid")

    assert await active_kids(sessions) == {"RS256": [active]}
    assert await audit_events(sessions) == events


async def test_revoking_a_removed_key_again_is_an_error_and_activates_nothing(sessions: Maker) -> None:
    compromised = await first_key(sessions)
    replacement = await revoke(sessions, compromised)
    before = await all_keys(sessions)

    with pytest.raises(KeyMaterialError, match=compromised):
        await revoke(sessions, compromised)

    assert await all_keys(sessions) == before
    assert await active_kids(sessions) == {"RS256": [replacement]}


# Concurrency: each operation in its own transaction, all at once.


async def test_concurrent_rotations_of_one_algorithm_leave_exactly_one_active_key(sessions: Maker) -> None:
    first = await first_key(sessions)

    def stage_then_activate(session: Session) -> str:
        key = service.stage(session, WRAPPERS, alg="RS256", bits=BITS, actor="admin")
        assert service.activate(session, key.kid, "RS256", actor="admin")
        return key.kid

    def rotate(session: Session) -> str:
        return service.rotate_now(session, WRAPPERS, alg="RS256", bits=BITS, actor="admin").kid

    results = await asyncio.gather(
        run(sessions, stage_then_activate),
        run(sessions, rotate),
        run(sessions, stage_then_activate),
        run(sessions, rotate),
        return_exceptions=True,
    )

    assert not [r for r in results if isinstance(r, BaseException)], results
    created = {r for r in results if isinstance(r, str)}
    assert len(created) == 4
    actives = await active_kids(sessions)
    assert actives.keys() == {"RS256"} and len(actives["RS256"]) == 1
    (winner,) = actives["RS256"]
    assert winner in created
    keys = await all_keys(sessions)
    assert {kid for kid, key in keys.items() if key.state == "retired"} == {first} | (created - {winner})
    activated = [str(subject) for kind, subject, _ in await audit_events(sessions) if kind == "key.activated"]
    assert sorted(activated) == sorted(created) and activated[-1] == winner


async def test_concurrent_rotations_of_several_algorithms_leave_one_active_key_each(sessions: Maker) -> None:
    await first_key(sessions)

    def rotate(alg: str) -> Callable[[Session], str]:
        return lambda session: service.rotate_now(session, WRAPPERS, alg=alg, bits=BITS, actor="admin").kid

    results = await asyncio.gather(
        *(run(sessions, rotate(alg)) for alg in ("RS256", "ES256", "ES256", "Ed25519", "RS256", "Ed25519")),
        return_exceptions=True,
    )

    assert not [r for r in results if isinstance(r, BaseException)], results
    actives = await active_kids(sessions)
    assert sorted(actives) == ["ES256", "Ed25519", "RS256"]
    assert all(len(kids) == 1 for kids in actives.values()), actives
    ring = build_keyring((await all_keys(sessions)).values(), WRAPPERS)
    assert ring.algorithms == ["ES256", "Ed25519", "RS256"]


async def test_concurrent_activations_of_one_staged_key_activate_it_once(sessions: Maker) -> None:
    old = await first_key(sessions)
    staged = await stage(sessions)

    def activate(session: Session) -> bool:
        return service.activate(session, staged.kid, "RS256", actor="admin")

    results = await asyncio.gather(*(run(sessions, activate) for _ in range(4)), return_exceptions=True)

    assert [r for r in results if r is True] == [True], results
    unexpected = [r for r in results if r is not True and not isinstance(r, KeyMaterialError)]
    assert unexpected == [], results
    assert await active_kids(sessions) == {"RS256": [staged.kid]}
    assert (await all_keys(sessions))[old].state == "retired"
    kinds = [kind for kind, _, _ in await audit_events(sessions)]
    assert kinds.count("key.activated") == 1 and kinds.count("key.retired") == 1


async def test_concurrent_advances_apply_a_due_activation_once(sessions: Maker) -> None:
    old = await first_key(sessions)
    staged = await stage(sessions)
    due = activates_at((await all_keys(sessions))[staged.kid], SETTINGS)

    results = await asyncio.gather(*(advance(sessions, now=due) for _ in range(4)), return_exceptions=True)

    plans = [r for r in results if not isinstance(r, BaseException)]
    assert len(plans) == 4, results
    assert sorted(plans, key=len) == [[], [], [], [Step("activate", "RS256", staged.kid)]]
    assert await active_kids(sessions) == {"RS256": [staged.kid]}
    assert (await all_keys(sessions))[old].state == "retired"


# More algorithms.


@pytest.mark.parametrize(
    ("alg", "members"),
    [("PS256", {"kty", "n", "e"}), ("ES256", {"kty", "crv", "x", "y"}), ("Ed25519", {"kty", "crv", "x"})],
)
async def test_rotating_another_algorithm_keeps_the_rs256_key_and_signs_with_both(
    sessions: Maker, alg: str, members: set[str]
) -> None:
    rs = await first_key(sessions)

    other = await rotate_now(sessions, alg=alg)

    assert await active_kids(sessions) == {"RS256": [rs], alg: [other.kid]}
    keys = await all_keys(sessions)
    assert set(keys[other.kid].public_jwk) == members
    ring = build_keyring(keys.values(), WRAPPERS)
    assert ring.algorithms == sorted(["RS256", alg])
    assert sign_and_verify(ring, alg)["kid"] == other.kid
    assert sign_and_verify(ring, "RS256")["kid"] == rs
    published = {k["kid"]: k for k in json.loads(ring.jwks_json)["keys"]}
    assert published[other.kid]["alg"] == alg
    assert set(published[other.kid]) == members | {"kid", "alg", "use"}  # no private member


async def test_a_token_signed_with_a_retired_key_still_verifies_and_one_of_a_revoked_key_does_not(
    sessions: Maker,
) -> None:
    old = await first_key(sessions, alg="RS256")
    ring = build_keyring((await all_keys(sessions)).values(), WRAPPERS)
    token = ring.signer("RS256").sign({"sub": "alice"})

    await rotate_now(sessions)
    after_rotation = build_keyring((await all_keys(sessions)).values(), WRAPPERS)
    assert jwt.decode(token, after_rotation.verification).header["kid"] == old

    await revoke(sessions, old)
    after_revocation = build_keyring((await all_keys(sessions)).values(), WRAPPERS)
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(token, after_revocation.verification)


# Changing the key-encryption secret.


async def test_rewrap_moves_every_published_key_to_the_new_secret(sessions: Maker) -> None:
    retired = await first_key(sessions)
    active = await rotate_now(sessions)
    staged = await stage(sessions)
    es = await rotate_now(sessions, alg="ES256")
    revoked = await stage(sessions, alg="Ed25519")
    await revoke(sessions, revoked.kid)
    old_secret, new_secret = KeyWrapper(SECRET_A), KeyWrapper(SECRET_B)
    changing = KeyWrappers(new_secret, previous=old_secret)
    await run(sessions, lambda s: service.verify_all(s, changing))  # old and new accepted meanwhile

    moved = await run(sessions, lambda s: service.rewrap(s, changing))

    assert sorted(moved) == sorted([retired, active.kid, staged.kid, es.kid])
    keys = await all_keys(sessions)
    assert {kid for kid, key in keys.items() if key.wrapping_key_id == new_secret.key_id} == set(moved)
    assert keys[revoked.kid].wrapping_key_id == old_secret.key_id  # removed: never decrypted again
    await run(sessions, lambda s: service.verify_all(s, KeyWrappers(new_secret)))
    with pytest.raises(KeyMaterialError, match="OSTIARY_KEYS_SECRET"):
        await run(sessions, lambda s: service.verify_all(s, KeyWrappers(old_secret)))
    ring = build_keyring(keys.values(), KeyWrappers(new_secret))
    assert sign_and_verify(ring, "RS256")["kid"] == active.kid
    assert sign_and_verify(ring, "ES256")["kid"] == es.kid
    assert ("keys.rewrapped", None, "admin") in await audit_events(sessions)
    assert await run(sessions, lambda s: service.rewrap(s, changing)) == []  # nothing left to move


async def test_a_key_staged_during_the_secret_change_is_wrapped_under_the_new_secret(sessions: Maker) -> None:
    first = await first_key(sessions)
    changing = KeyWrappers(KeyWrapper(SECRET_B), previous=KeyWrapper(SECRET_A))

    staged = await stage(sessions, wrappers=changing)

    assert (await all_keys(sessions))[staged.kid].wrapping_key_id == KeyWrapper(SECRET_B).key_id
    assert await run(sessions, lambda s: service.rewrap(s, changing)) == [first]


async def test_rewrap_with_a_secret_that_opens_nothing_fails_and_moves_nothing(sessions: Maker) -> None:
    await first_key(sessions)
    before = await all_keys(sessions)
    unrelated = KeyWrappers(KeyWrapper(SECRET_B), previous=KeyWrapper("yet-another-secret-that-was-never-used"))

    with pytest.raises(KeyMaterialError):
        await run(sessions, lambda s: service.rewrap(s, unrelated))

    assert await all_keys(sessions) == before


# Corrupt key material.


def _flip_last_byte(key: StoredKey) -> bytes:
    return key.private_key_enc[:-1] + bytes([key.private_key_enc[-1] ^ 0x01])


def _truncate(key: StoredKey) -> bytes:
    return key.private_key_enc[:10]


def _not_a_key(key: StoredKey) -> bytes:
    # decrypts fine, but what it holds is not a private key
    return KeyWrapper(SECRET_A).wrap(
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", associated=key.kid
    )


def _another_rows_blob(key: StoredKey) -> bytes:
    # a valid blob, but bound to another kid
    return KeyWrapper(SECRET_A).wrap(b"whatever", associated="some-other-kid")


@pytest.mark.parametrize("corrupt", [_flip_last_byte, _truncate, _not_a_key, _another_rows_blob])
@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
async def test_a_corrupt_private_key_makes_build_keyring_fail_naming_the_kid(
    sessions: Maker, alg: str, corrupt: Callable[[StoredKey], bytes]
) -> None:
    await first_key(sessions)
    victim = await rotate_now(sessions, alg=alg)
    await corrupt_private_key(sessions, victim.kid, corrupt(victim))
    keys = await all_keys(sessions)

    with pytest.raises(KeyMaterialError, match=victim.kid):
        build_keyring(keys.values(), WRAPPERS)
    if corrupt is not _not_a_key:  # verify_all checks decryption, which that blob passes
        with pytest.raises(KeyMaterialError, match=victim.kid):
            await run(sessions, lambda s: service.verify_all(s, WRAPPERS))
