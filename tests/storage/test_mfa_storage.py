"""Second-factor storage (``server.storage.mfa``), ``SecondFactor`` over it, and ``Lockout``,
on SQLite and PostgreSQL. Each operation runs in a transaction of its own, as a request does."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import TypeVar

import pyotp
import pytest
from sqlalchemy import delete, insert, select, update

from server.authn.lockout import FACTOR_OTP, FACTOR_PASSWORD, Lockout, LockState
from server.keys.errors import KeyMaterialError
from server.keys.wrapping import KeyWrapper, KeyWrappers
from server.mfa import backup, service
from server.mfa.errors import MfaError
from server.mfa.service import SecondFactor
from server.storage import AsyncSession, Session, async_sessionmaker, mfa as mfa_store
from server.storage.base import utcnow
from server.storage.engine import create_sessionmaker, make_engine
from server.storage.models import AuditEvent, AuthFailure, BackupCode, MailOutbox, TotpCredential
from server.storage.users import StoredUser, insert_user
from tests.helpers import TestDatabase

pytestmark = pytest.mark.anyio

T = TypeVar("T")
Maker = async_sessionmaker[AsyncSession]

SECRET_A = "the-first-key-encryption-secret-0123456789"
SECRET_B = "the-second-key-encryption-secret-987654321"
WRAPPERS = KeyWrappers(KeyWrapper(SECRET_A))
BLOB = b"\x01" + b"not really encrypted, but bytes all the same"
KEY_ID = "k" * 16
STEP = 56_666_666


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


async def make_user(sessions: Maker, username: str = "alice", email: str | None = "alice@example.com") -> StoredUser:
    return await run(
        sessions,
        lambda s: insert_user(
            s, sub=secrets.token_urlsafe(16), username=username, email=email, name=None, password_hash=None
        ),
    )


async def confirmed_totp(sessions: Maker, user: StoredUser, step: int = STEP) -> None:
    """A credential whose first code, at ``step``, was accepted."""
    assert await run(sessions, lambda s: mfa_store.put_pending_totp(s, user.id, BLOB, KEY_ID))
    assert await run(sessions, lambda s: mfa_store.confirm_totp(s, user.id, step))


async def advance(sessions: Maker, user: StoredUser, step: int) -> bool:
    return await run(sessions, lambda s: mfa_store.advance_step(s, user.id, step))


async def give_codes(sessions: Maker, user: StoredUser, codes: list[str]) -> None:
    await run(sessions, lambda s: mfa_store.replace_backup_codes(s, user.id, [backup.digest(c) for c in codes]))


async def spend(sessions: Maker, user: StoredUser, code: str) -> bool:
    return await run(sessions, lambda s: mfa_store.use_backup_code(s, user.id, backup.digest(code)))


# The replay guard.


async def test_each_step_is_accepted_once_and_never_an_earlier_one(sessions: Maker) -> None:
    user = await make_user(sessions)
    await confirmed_totp(sessions, user, STEP)

    assert not await advance(sessions, user, STEP)  # the confirming code's step is used
    assert not await advance(sessions, user, STEP - 1)
    assert await advance(sessions, user, STEP + 1)
    assert not await advance(sessions, user, STEP + 1)
    assert not await advance(sessions, user, STEP)
    assert await advance(sessions, user, STEP + 3)
    assert not await advance(sessions, user, STEP + 2)
    stored = await run(sessions, lambda s: mfa_store.get_totp(s, user.id))
    assert stored is not None and stored.last_step == STEP + 3


async def test_a_confirmed_credential_without_a_step_accepts_the_first(sessions: Maker) -> None:
    user = await make_user(sessions)
    await confirmed_totp(sessions, user)
    async with sessions.begin() as session:
        await session.execute(update(TotpCredential).values(last_step=None))

    assert await advance(sessions, user, 1)
    assert not await advance(sessions, user, 1)


async def test_steps_of_one_user_do_not_use_up_another_users(sessions: Maker) -> None:
    alice = await make_user(sessions)
    bob = await make_user(sessions, "bob", "bob@example.com")
    await confirmed_totp(sessions, alice, STEP)
    await confirmed_totp(sessions, bob, STEP)

    assert await advance(sessions, alice, STEP + 1)
    assert await advance(sessions, bob, STEP + 1)


async def test_no_step_is_accepted_before_the_credential_is_confirmed(sessions: Maker) -> None:
    user = await make_user(sessions)
    nobody = await make_user(sessions, "bob", None)
    assert await run(sessions, lambda s: mfa_store.put_pending_totp(s, user.id, BLOB, KEY_ID))

    assert not await advance(sessions, user, STEP)
    assert not await advance(sessions, nobody, STEP)
    stored = await run(sessions, lambda s: mfa_store.get_totp(s, user.id))
    assert stored is not None and stored.last_step is None and not stored.confirmed


# Enrolment rows.


async def test_a_pending_secret_is_replaced_until_it_is_confirmed(sessions: Maker) -> None:
    user = await make_user(sessions)
    assert await run(sessions, lambda s: mfa_store.get_totp(s, user.id)) is None

    assert await run(sessions, lambda s: mfa_store.put_pending_totp(s, user.id, b"first", KEY_ID))
    assert await run(sessions, lambda s: mfa_store.put_pending_totp(s, user.id, b"second", "other-key"))
    pending = await run(sessions, lambda s: mfa_store.get_totp(s, user.id))
    assert pending is not None
    assert (pending.secret_enc, pending.wrapping_key_id) == (b"second", "other-key")
    assert not pending.confirmed and pending.confirmed_at is None and pending.last_step is None
    assert not await run(sessions, lambda s: mfa_store.has_confirmed_totp(s, user.id))

    assert await run(sessions, lambda s: mfa_store.confirm_totp(s, user.id, STEP))
    assert not await run(sessions, lambda s: mfa_store.put_pending_totp(s, user.id, b"third", KEY_ID))

    confirmed = await run(sessions, lambda s: mfa_store.get_totp(s, user.id))
    assert confirmed is not None
    assert confirmed.secret_enc == b"second"  # nothing written
    assert confirmed.confirmed and confirmed.confirmed_at is not None and confirmed.confirmed_at.tzinfo is not None
    assert confirmed.last_step == STEP
    assert await run(sessions, lambda s: mfa_store.has_confirmed_totp(s, user.id))


async def test_a_pending_secret_is_confirmed_once(sessions: Maker) -> None:
    user = await make_user(sessions)
    nobody = await make_user(sessions, "bob", None)
    assert await run(sessions, lambda s: mfa_store.put_pending_totp(s, user.id, BLOB, KEY_ID))

    assert await run(sessions, lambda s: mfa_store.confirm_totp(s, user.id, STEP))
    assert not await run(sessions, lambda s: mfa_store.confirm_totp(s, user.id, STEP + 5))
    assert not await run(sessions, lambda s: mfa_store.confirm_totp(s, nobody.id, STEP))

    stored = await run(sessions, lambda s: mfa_store.get_totp(s, user.id))
    assert stored is not None and stored.last_step == STEP  # the second confirmation changed nothing
    assert await run(sessions, lambda s: mfa_store.get_totp(s, nobody.id)) is None


# Backup codes.


async def test_a_backup_code_works_once_and_for_its_user_only(sessions: Maker) -> None:
    alice = await make_user(sessions)
    bob = await make_user(sessions, "bob", "bob@example.com")
    codes = backup.new_codes()
    await give_codes(sessions, alice, codes)

    assert not await spend(sessions, bob, codes[0])
    assert await spend(sessions, alice, codes[0])
    assert not await spend(sessions, alice, codes[0])
    assert not await spend(sessions, alice, codes[0].upper())
    assert await spend(sessions, alice, codes[1].upper().replace("-", ""))
    assert not await spend(sessions, alice, backup.new_codes(1)[0])
    assert await run(sessions, lambda s: mfa_store.count_unused_backup_codes(s, alice.id)) == 8
    assert await run(sessions, lambda s: mfa_store.count_unused_backup_codes(s, bob.id)) == 0


async def test_new_backup_codes_replace_every_old_one(sessions: Maker) -> None:
    user = await make_user(sessions)
    old = backup.new_codes()
    new = backup.new_codes()
    await give_codes(sessions, user, old)
    assert await spend(sessions, user, old[0])

    await give_codes(sessions, user, new)

    assert await run(sessions, lambda s: mfa_store.count_unused_backup_codes(s, user.id)) == 10
    for code in old[1:]:
        assert not await spend(sessions, user, code)
    assert await spend(sessions, user, new[9])
    async with sessions() as session:
        stored = set((await session.execute(select(BackupCode.code_digest))).scalars())
    assert stored == {backup.digest(c) for c in new}


async def test_deleting_the_credential_deletes_the_codes_and_says_if_it_was_on(sessions: Maker) -> None:
    alice = await make_user(sessions)
    bob = await make_user(sessions, "bob", "bob@example.com")
    carol = await make_user(sessions, "carol", None)
    for user in (alice, bob):
        await confirmed_totp(sessions, user)
        await give_codes(sessions, user, backup.new_codes())
    assert await run(sessions, lambda s: mfa_store.put_pending_totp(s, carol.id, BLOB, KEY_ID))

    assert await run(sessions, lambda s: mfa_store.delete_totp(s, alice.id))

    assert await run(sessions, lambda s: mfa_store.get_totp(s, alice.id)) is None
    assert await run(sessions, lambda s: mfa_store.count_unused_backup_codes(s, alice.id)) == 0
    assert not await run(sessions, lambda s: mfa_store.delete_totp(s, alice.id))  # nothing left
    assert not await run(sessions, lambda s: mfa_store.delete_totp(s, carol.id))  # only pending
    assert await run(sessions, lambda s: mfa_store.get_totp(s, carol.id)) is None
    # Bob's are untouched.
    assert await run(sessions, lambda s: mfa_store.has_confirmed_totp(s, bob.id))
    assert await run(sessions, lambda s: mfa_store.count_unused_backup_codes(s, bob.id)) == 10


async def test_rewrap_rows_and_the_startup_count(sessions: Maker) -> None:
    alice = await make_user(sessions)
    bob = await make_user(sessions, "bob", None)
    assert await run(sessions, lambda s: mfa_store.put_pending_totp(s, alice.id, b"a", "old"))
    assert await run(sessions, lambda s: mfa_store.put_pending_totp(s, bob.id, b"b", "new"))

    assert await run(sessions, lambda s: mfa_store.count_wrapped_by_others(s, ("new",))) == 1
    assert await run(sessions, lambda s: mfa_store.count_wrapped_by_others(s, ("new", "old"))) == 0
    assert [t.user_id for t in await run(sessions, lambda s: mfa_store.list_totp_not_wrapped_by(s, "new"))] == [
        alice.id
    ]

    await run(sessions, lambda s: mfa_store.rewrap_totp(s, alice.id, b"a2", "new"))

    stored = await run(sessions, lambda s: mfa_store.get_totp(s, alice.id))
    assert stored is not None and (stored.secret_enc, stored.wrapping_key_id) == (b"a2", "new")
    assert await run(sessions, lambda s: mfa_store.list_totp_not_wrapped_by(s, "new")) == []


# SecondFactor, end to end, with real encryption.


def totp_code(secret: str, step_offset: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + step_offset * 30)


def wrong_code(secret: str) -> str:
    """Six digits that no step near now has."""
    near = {totp_code(secret, k) for k in range(-3, 4)}
    return next(c for c in (f"{n:06d}" for n in range(1000)) if c not in near)


def second_factor(threshold: int = 5, wrappers: KeyWrappers = WRAPPERS) -> SecondFactor:
    return SecondFactor(wrappers, Lockout(threshold=threshold, window_seconds=900), "Ostiary Test")


async def mails(sessions: Maker) -> list[tuple[str, str, dict[str, object]]]:
    async with sessions() as session:
        rows = await session.execute(
            select(MailOutbox.recipient, MailOutbox.template, MailOutbox.context).order_by(MailOutbox.id)
        )
        return [(r, t, c) for r, t, c in rows]


async def audit_kinds(sessions: Maker) -> list[str]:
    async with sessions() as session:
        return list((await session.execute(select(AuditEvent.kind).order_by(AuditEvent.id))).scalars())


async def test_enrol_verify_and_disable(sessions: Maker) -> None:
    user = await make_user(sessions)
    mfa = second_factor()

    enrolment = await run(sessions, lambda s: mfa.start_enrolment(s, user))

    secret = enrolment.secret
    assert len(base64.b32decode(secret)) == 20
    assert pyotp.parse_uri(enrolment.uri).secret == secret
    assert "Ostiary%20Test" in enrolment.uri and "alice" in enrolment.uri
    assert enrolment.qr_svg.startswith("<svg")
    assert enrolment.grouped.replace(" ", "") == secret
    async with sessions() as session:
        blob, key_id = (await session.execute(select(TotpCredential.secret_enc, TotpCredential.wrapping_key_id))).one()
    assert secret.encode() not in blob and secret.lower().encode() not in blob
    assert base64.b32decode(secret) not in blob
    assert key_id == WRAPPERS.current.key_id
    # The blob is the secret, encrypted and bound to its user.
    assert KeyWrapper(SECRET_A).unwrap(blob, associated=f"totp:user:{user.id}") == secret.encode()
    with pytest.raises(KeyMaterialError):
        KeyWrapper(SECRET_A).unwrap(blob, associated=f"totp:user:{user.id + 1}")
    assert await run(sessions, lambda s: mfa.pending_enrolment(s, user)) == enrolment
    assert not await run(sessions, lambda s: mfa.is_enrolled(s, user))

    with pytest.raises(MfaError):
        await run(sessions, lambda s: mfa.confirm_enrolment(s, user, wrong_code(secret)))
    with pytest.raises(MfaError):
        await run(sessions, lambda s: mfa.confirm_enrolment(s, user, "not a code"))
    assert not await run(sessions, lambda s: mfa.is_enrolled(s, user))
    assert await mails(sessions) == []

    first = totp_code(secret)
    codes = await run(sessions, lambda s: mfa.confirm_enrolment(s, user, first[:3] + " " + first[3:]))

    assert len(codes) == 10 and len(set(codes)) == 10
    assert await run(sessions, lambda s: mfa.is_enrolled(s, user))
    assert await run(sessions, lambda s: mfa.pending_enrolment(s, user)) is None
    assert await run(sessions, lambda s: mfa.unused_codes(s, user)) == 10
    assert await mails(sessions) == [("alice@example.com", "totp_enabled", {"username": "alice"})]
    with pytest.raises(MfaError):  # no second confirmation
        await run(sessions, lambda s: mfa.confirm_enrolment(s, user, totp_code(secret, 1)))
    with pytest.raises(MfaError):  # and no new secret while this one is on
        await run(sessions, lambda s: mfa.start_enrolment(s, user))

    replay = await run(sessions, lambda s: mfa.verify(s, user, first, None))
    assert not replay.ok and replay.method is None
    assert replay.lock.remaining == 4  # a replay counts as a wrong code

    following = await run(sessions, lambda s: mfa.verify(s, user, totp_code(secret, 1), None))
    assert following.ok and following.method == "otp"

    spent = await run(sessions, lambda s: mfa.verify(s, user, codes[3].upper(), None))
    assert spent.ok and spent.method == "backup_code"
    again = await run(sessions, lambda s: mfa.verify(s, user, codes[3], None))
    assert not again.ok
    assert await run(sessions, lambda s: mfa.unused_codes(s, user)) == 9

    await run(sessions, lambda s: mfa.disable(s, user))

    assert not await run(sessions, lambda s: mfa.is_enrolled(s, user))
    assert await run(sessions, lambda s: mfa_store.get_totp(s, user.id)) is None
    assert await run(sessions, lambda s: mfa.unused_codes(s, user)) == 0
    assert not (await run(sessions, lambda s: mfa.verify(s, user, codes[4], None))).ok
    assert [m[1] for m in await mails(sessions)] == ["totp_enabled", "totp_disabled"]
    kinds = await audit_kinds(sessions)
    for kind in ("mfa.enabled", "mfa.backup_code_used", "mfa.disabled"):
        assert kinds.count(kind) == 1, kinds


async def test_no_mail_for_a_user_without_an_email(sessions: Maker) -> None:
    user = await make_user(sessions, "bob", None)
    mfa = second_factor()
    enrolment = await run(sessions, lambda s: mfa.start_enrolment(s, user))

    await run(sessions, lambda s: mfa.confirm_enrolment(s, user, totp_code(enrolment.secret)))
    await run(sessions, lambda s: mfa.disable(s, user))

    assert await mails(sessions) == []
    assert "mfa.enabled" in await audit_kinds(sessions)


async def test_a_new_enrolment_replaces_a_pending_one(sessions: Maker) -> None:
    user = await make_user(sessions)
    mfa = second_factor()
    first = await run(sessions, lambda s: mfa.start_enrolment(s, user))
    second = await run(sessions, lambda s: mfa.start_enrolment(s, user))
    assert first.secret != second.secret

    codes = {totp_code(first.secret, k) for k in (-1, 0, 1)}
    if not codes & {totp_code(second.secret, k) for k in (-1, 0, 1)}:  # 1 in 10**5 they share one
        with pytest.raises(MfaError):
            await run(sessions, lambda s: mfa.confirm_enrolment(s, user, totp_code(first.secret)))
    assert await run(sessions, lambda s: mfa.confirm_enrolment(s, user, totp_code(second.secret)))


async def test_verify_refuses_without_a_confirmed_second_factor(sessions: Maker) -> None:
    user = await make_user(sessions)
    mfa = second_factor()
    assert not (await run(sessions, lambda s: mfa.verify(s, user, "123456", None))).ok
    enrolment = await run(sessions, lambda s: mfa.start_enrolment(s, user))

    verdict = await run(sessions, lambda s: mfa.verify(s, user, totp_code(enrolment.secret), None))

    assert not verdict.ok
    with pytest.raises(MfaError):
        await run(sessions, lambda s: mfa.regenerate_codes(s, user))


async def test_wrong_codes_lock_the_second_factor_without_checking_more(sessions: Maker) -> None:
    user = await make_user(sessions)
    mfa = second_factor(threshold=3)
    enrolment = await run(sessions, lambda s: mfa.start_enrolment(s, user))
    secret = enrolment.secret
    codes = await run(sessions, lambda s: mfa.confirm_enrolment(s, user, totp_code(secret)))

    states = [(await run(sessions, lambda s: mfa.verify(s, user, wrong_code(secret), None))).lock for _ in range(3)]

    assert [(state.locked, state.remaining) for state in states] == [(False, 2), (False, 1), (True, 0)]
    locked = await run(sessions, lambda s: mfa.verify(s, user, totp_code(secret, 1), None))
    assert not locked.ok and locked.lock.locked and 1 <= locked.lock.retry_after <= 900
    assert not (await run(sessions, lambda s: mfa.verify(s, user, codes[0], None))).ok
    assert "mfa.locked" in await audit_kinds(sessions)
    # The refused codes were not checked, so not spent: once the lock is gone, they work.
    async with sessions.begin() as session:
        await session.execute(delete(AuthFailure))
    assert (await run(sessions, lambda s: mfa.verify(s, user, totp_code(secret, 1), None))).ok
    assert (await run(sessions, lambda s: mfa.verify(s, user, codes[0], None))).ok


async def test_new_backup_codes_replace_the_old_ones(sessions: Maker) -> None:
    user = await make_user(sessions)
    mfa = second_factor()
    enrolment = await run(sessions, lambda s: mfa.start_enrolment(s, user))
    old = await run(sessions, lambda s: mfa.confirm_enrolment(s, user, totp_code(enrolment.secret)))

    new = await run(sessions, lambda s: mfa.regenerate_codes(s, user))

    assert set(new).isdisjoint(old)
    assert not (await run(sessions, lambda s: mfa.verify(s, user, old[0], None))).ok
    assert (await run(sessions, lambda s: mfa.verify(s, user, new[0], None))).ok


async def test_an_administrator_reset_removes_the_second_factor(sessions: Maker) -> None:
    user = await make_user(sessions)
    mfa = second_factor()
    enrolment = await run(sessions, lambda s: mfa.start_enrolment(s, user))
    await run(sessions, lambda s: mfa.confirm_enrolment(s, user, totp_code(enrolment.secret)))

    assert await run(sessions, lambda s: service.reset(s, user, actor="admin"))
    assert not await run(sessions, lambda s: service.reset(s, user, actor="admin"))

    assert not await run(sessions, lambda s: mfa.is_enrolled(s, user))
    assert [m[1] for m in await mails(sessions)] == ["totp_enabled", "totp_disabled"]
    assert (await audit_kinds(sessions)).count("mfa.reset") == 2


async def test_rewrap_moves_secrets_to_the_current_key_encryption_secret(sessions: Maker) -> None:
    user = await make_user(sessions)
    old = KeyWrappers(KeyWrapper(SECRET_A))
    enrolment = await run(sessions, lambda s: second_factor(wrappers=old).start_enrolment(s, user))
    await run(sessions, lambda s: second_factor(wrappers=old).confirm_enrolment(s, user, totp_code(enrolment.secret)))
    changing = KeyWrappers(KeyWrapper(SECRET_B), previous=KeyWrapper(SECRET_A))
    new = KeyWrappers(KeyWrapper(SECRET_B))
    with pytest.raises(KeyMaterialError):  # the new secret alone cannot read it yet
        await run(sessions, lambda s: second_factor(wrappers=new).verify(s, user, totp_code(enrolment.secret, 1), None))

    assert await run(sessions, lambda s: service.rewrap_all(s, changing)) == 1
    assert await run(sessions, lambda s: service.rewrap_all(s, changing)) == 0

    stored = await run(sessions, lambda s: mfa_store.get_totp(s, user.id))
    assert stored is not None and stored.wrapping_key_id == new.current.key_id
    verdict = await run(
        sessions, lambda s: second_factor(wrappers=new).verify(s, user, totp_code(enrolment.secret, 1), None)
    )
    assert verdict.ok
    with pytest.raises(KeyMaterialError):  # and a wrapper that lacks the needed secret says so
        await run(sessions, lambda s: service.rewrap_all(s, KeyWrappers(KeyWrapper("x" * 40), previous=old.current)))


# Lockout.


async def check(sessions: Maker, lockout: Lockout, user: StoredUser, factor: str = FACTOR_PASSWORD) -> LockState:
    return await run(sessions, lambda s: lockout.check(s, user.id, factor))


async def fail(sessions: Maker, lockout: Lockout, user: StoredUser, factor: str = FACTOR_PASSWORD) -> LockState:
    return await run(sessions, lambda s: lockout.fail(s, user.id, factor))


async def test_failures_lock_at_the_threshold(sessions: Maker) -> None:
    user = await make_user(sessions)
    lockout = Lockout(threshold=3, window_seconds=60)

    before = await check(sessions, lockout, user)
    states = [await fail(sessions, lockout, user) for _ in range(3)]
    after = await check(sessions, lockout, user)

    assert (before.locked, before.remaining) == (False, 3)
    assert [(s.locked, s.remaining) for s in states] == [(False, 2), (False, 1), (True, 0)]
    assert after.locked and after.remaining == 0
    assert 1 <= after.retry_after <= 60
    assert 1 <= states[2].retry_after <= 60


async def test_success_clears_the_counter(sessions: Maker) -> None:
    user = await make_user(sessions)
    lockout = Lockout(threshold=3, window_seconds=60)
    for _ in range(3):
        await fail(sessions, lockout, user)
    assert (await check(sessions, lockout, user)).locked

    await run(sessions, lambda s: lockout.succeed(s, user.id, FACTOR_PASSWORD))

    state = await check(sessions, lockout, user)
    assert not state.locked and state.remaining == 3
    assert (await fail(sessions, lockout, user)).remaining == 2


async def test_a_threshold_of_zero_never_locks(sessions: Maker) -> None:
    user = await make_user(sessions)
    lockout = Lockout(threshold=0, window_seconds=60)
    assert not lockout.enabled

    states = [await fail(sessions, lockout, user) for _ in range(10)]

    assert all(not s.locked and s.remaining is None for s in states)
    state = await check(sessions, lockout, user)
    assert not state.locked and state.remaining is None


async def test_each_factor_and_each_user_has_its_own_counter(sessions: Maker) -> None:
    alice = await make_user(sessions)
    bob = await make_user(sessions, "bob", None)
    lockout = Lockout(threshold=3, window_seconds=60)
    for _ in range(3):
        await fail(sessions, lockout, alice, FACTOR_OTP)

    assert (await check(sessions, lockout, alice, FACTOR_OTP)).locked
    password = await check(sessions, lockout, alice, FACTOR_PASSWORD)
    assert not password.locked and password.remaining == 3
    other = await check(sessions, lockout, bob, FACTOR_OTP)
    assert not other.locked and other.remaining == 3
    # and clearing one counter leaves the other
    await fail(sessions, lockout, alice, FACTOR_PASSWORD)
    await run(sessions, lambda s: lockout.succeed(s, alice.id, FACTOR_OTP))
    assert (await check(sessions, lockout, alice, FACTOR_PASSWORD)).remaining == 2


async def test_a_known_device_has_its_own_counter(sessions: Maker) -> None:
    user = await make_user(sessions)
    lockout = Lockout(threshold=3, window_seconds=60)
    device = b"d" * 32
    for _ in range(3):
        await fail(sessions, lockout, user)

    assert (await check(sessions, lockout, user)).locked
    state = await run(sessions, lambda s: lockout.check(s, user.id, FACTOR_PASSWORD, device))
    assert not state.locked and state.remaining == 3
    await run(sessions, lambda s: lockout.fail(s, user.id, FACTOR_PASSWORD, device))
    await run(sessions, lambda s: lockout.succeed(s, user.id, FACTOR_PASSWORD, device))
    assert (await check(sessions, lockout, user)).locked  # the device's success clears its own only


async def test_the_window_slides(sessions: Maker) -> None:
    user = await make_user(sessions)
    lockout = Lockout(threshold=3, window_seconds=60)
    now = utcnow()
    async with sessions.begin() as session:
        await session.execute(
            insert(AuthFailure),
            [
                {"user_id": user.id, "factor": FACTOR_PASSWORD, "occurred_at": now - timedelta(seconds=ago)}
                for ago in (600, 61, 55, 50, 45, 40)
            ],
        )

    state = await check(sessions, lockout, user)

    # Four failures inside the window: the oldest of the last three (50 s ago) leaves it first.
    assert state.locked
    assert 9 <= state.retry_after <= 10


async def test_failures_outside_the_window_do_not_count(sessions: Maker) -> None:
    user = await make_user(sessions)
    lockout = Lockout(threshold=3, window_seconds=60)
    now = utcnow()
    async with sessions.begin() as session:
        await session.execute(
            insert(AuthFailure),
            [
                {"user_id": user.id, "factor": FACTOR_PASSWORD, "occurred_at": now - timedelta(seconds=ago)}
                for ago in (3600, 120, 61, 30)
            ],
        )

    state = await check(sessions, lockout, user)

    assert not state.locked and state.remaining == 2


# Concurrency, where a server database lets two transactions overlap.


@pytest.fixture
async def pg_sessions(postgres_database: TestDatabase) -> AsyncIterator[Maker]:
    engine = make_engine(postgres_database.url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def test_of_two_overlapping_transactions_one_advances_the_step(pg_sessions: Maker) -> None:
    user = await make_user(pg_sessions)
    await confirmed_totp(pg_sessions, user, STEP)

    async with pg_sessions() as first, pg_sessions() as second:
        assert await first.run_sync(lambda s: mfa_store.advance_step(s, user.id, STEP + 1))
        blocked = asyncio.create_task(second.run_sync(lambda s: mfa_store.advance_step(s, user.id, STEP + 1)))
        await asyncio.sleep(0.5)
        assert not blocked.done()  # it waits for the first transaction's row lock
        await first.commit()
        assert not await asyncio.wait_for(blocked, 10)
        await second.commit()

    stored = await run(pg_sessions, lambda s: mfa_store.get_totp(s, user.id))
    assert stored is not None and stored.last_step == STEP + 1


async def test_of_many_simultaneous_attempts_at_one_step_exactly_one_succeeds(pg_sessions: Maker) -> None:
    user = await make_user(pg_sessions)
    await confirmed_totp(pg_sessions, user, STEP)
    start = asyncio.Event()

    async def attempt() -> bool:
        async with pg_sessions.begin() as session:
            await session.execute(select(1))  # the transaction is open before the race
            await start.wait()
            return await session.run_sync(lambda s: mfa_store.advance_step(s, user.id, STEP + 1))

    tasks = [asyncio.create_task(attempt()) for _ in range(4)]
    await asyncio.sleep(0.2)
    start.set()
    results = await asyncio.gather(*tasks)

    assert sorted(results) == [False, False, False, True]
