"""Key lifecycle operations, each in the caller's transaction, under the key lock.

Every transition is a conditional update and writes an audit event. No operation leaves an
algorithm that had an active key without one: activation retires the old key in the same
transaction, and revoking the active key activates a replacement before it commits.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

import anyio

from ..settings import Settings
from ..storage import AsyncSession, Session, async_sessionmaker, audit, keys as key_store, transactions
from ..storage.base import utcnow
from ..storage.keys import StoredKey
from .errors import KeyMaterialError
from .lifecycle import Step, plan
from .material import import_private, new_key, unwrap
from .wrapping import KeyWrappers


def ensure_active_key(session: Session, wrappers: KeyWrappers, *, alg: str = "RS256", bits: int) -> str | None:
    """Create an active key for ``alg`` unless one exists; returns the new kid, or None.

    Safe when several processes start at once: the insert is conditional on the partial
    unique index, so exactly one of them creates the key.
    """
    if any(k.alg == alg for k in key_store.list_keys(session, states=("active",))):
        return None
    key = new_key(wrappers.current, alg=alg, rsa_bits=bits, state="active")
    if not key_store.insert_active_key_unless_exists(session, key):
        return None
    audit.record(session, "key.created", actor="system", subject=key.kid, details={"alg": alg, "state": "active"})
    return key.kid


def stage(
    session: Session, wrappers: KeyWrappers, *, alg: str, bits: int, actor: str, key: StoredKey | None = None
) -> StoredKey:
    """Publish a ``next`` key (``key``, or a new one); it starts signing after the staging delay.

    Called from the event loop, pass a ``key`` made beforehand in a worker thread: RSA key
    generation takes tens of milliseconds (seconds at 4096 bits) and must not run on the loop.
    """
    key_store.lock(session)
    key = key or new_key(wrappers.current, alg=alg, rsa_bits=bits, state="next")
    key_store.insert_key(session, key)
    audit.record(session, "key.staged", actor=actor, subject=key.kid, details={"alg": alg})
    return key


def activate(session: Session, kid: str, alg: str, *, actor: str) -> bool:
    """Make a ``next`` key the active one for its algorithm; the old active key retires."""
    key_store.lock(session)
    key = key_store.get_key(session, kid)
    if key is None:
        return False
    if key.alg != alg:
        raise KeyMaterialError(f"key {kid} is an {key.alg} key, not {alg}")
    for old in key_store.retire_active(session, alg):
        audit.record(session, "key.retired", actor=actor, subject=old, details={"alg": alg})
    if not key_store.activate(session, kid):
        raise KeyMaterialError(f"key {kid} is not staged (next), so it cannot be activated")
    audit.record(session, "key.activated", actor=actor, subject=kid, details={"alg": alg})
    return True


async def rotate(
    sessionmaker: async_sessionmaker[AsyncSession],
    wrappers: KeyWrappers,
    *,
    alg: str,
    bits: int,
    now: bool,
    actor: str,
) -> StoredKey:
    """Stage a new ``alg`` key, or with ``now`` (an emergency) make it sign at once: what the
    admin API and console do, the key made in a worker thread. Returns it as stored now.
    Every process, this one included, signs with it once its key watcher has seen it."""
    made = await anyio.to_thread.run_sync(
        functools.partial(new_key, wrappers.current, alg=alg, rsa_bits=bits, state="next")
    )

    def work(db: Session) -> StoredKey:
        staged = stage(db, wrappers, alg=alg, bits=bits, actor=actor, key=made)
        if now:
            activate(db, staged.kid, alg, actor=actor)
        return key_store.get_key(db, staged.kid) or staged

    return await transactions.run(sessionmaker, work)


def rotate_now(session: Session, wrappers: KeyWrappers, *, alg: str, bits: int, actor: str) -> StoredKey:
    """Emergency rotation: a new key signs at once (caches may not know it yet)."""
    key = stage(session, wrappers, alg=alg, bits=bits, actor=actor)
    activate(session, key.kid, alg, actor=actor)
    return key


def revoke(session: Session, wrappers: KeyWrappers, kid: str, *, bits: int, actor: str) -> str | None:
    """Compromise: unpublish ``kid`` at once (tokens it signed stop verifying); when it was
    active, a staged key of its algorithm, or a new one, signs instead. Returns that kid."""
    key_store.lock(session)
    key = key_store.get_key(session, kid)
    if key is None or key.state == "removed":
        raise KeyMaterialError(f"there is no published key {kid}")
    key_store.remove(session, kid)
    audit.record(session, "key.revoked", actor=actor, subject=kid, details={"alg": key.alg, "was": key.state})
    if key.state != "active":
        return None
    staged = [k for k in key_store.list_keys(session, states=("next",)) if k.alg == key.alg]
    usable = next((k for k in staged if _usable(session, wrappers, k.kid)), None)
    replacement = usable or stage(session, wrappers, alg=key.alg, bits=bits, actor=actor)
    key_store.activate(session, replacement.kid)
    audit.record(session, "key.activated", actor=actor, subject=replacement.kid, details={"alg": key.alg})
    return replacement.kid


def advance(
    session: Session,
    wrappers: KeyWrappers,
    settings: Settings,
    now: datetime | None = None,
    prepared: dict[str, StoredKey] | None = None,
) -> list[Step]:
    """Apply whatever the lifecycle says is due (see :mod:`.lifecycle`); returns it.

    ``prepared``: keys made beforehand, per algorithm, for the stage steps.
    """
    key_store.lock(session)
    steps = plan(key_store.list_keys(session), now or utcnow(), settings)
    for step in steps:
        if step.action == "stage":
            key = (prepared or {}).get(step.alg)
            stage(session, wrappers, alg=step.alg, bits=settings.rsa_key_bits, actor="schedule", key=key)
        elif step.action == "activate" and step.kid:
            if _usable(session, wrappers, step.kid):
                activate(session, step.kid, step.alg, actor="schedule")
        elif step.action == "remove" and step.kid and key_store.remove(session, step.kid):
            audit.record(session, "key.removed", actor="schedule", subject=step.kid, details={"alg": step.alg})
    return steps


def _usable(session: Session, wrappers: KeyWrappers, kid: str) -> bool:
    """A staged key that does not decrypt is discarded instead of activated: activating it
    would stop every process, while the current key can go on signing."""
    key = key_store.get_key(session, kid)
    if key is None:
        return False
    if wrappers.for_id(key.wrapping_key_id) is None:
        # Wrapped under a secret this process does not hold (a secret change is rolling
        # out): not corrupt, so leave it for a process that can read it.
        return False
    try:
        import_private(key, wrappers)
    except KeyMaterialError as exc:
        key_store.remove(session, kid)
        audit.record(session, "key.discarded", actor="schedule", subject=kid, details={"reason": str(exc)})
        return False
    return True


def rewrap(session: Session, wrappers: KeyWrappers) -> list[str]:
    """Re-encrypt every key under the current secret; returns the kids moved."""
    key_store.lock(session)
    moved = []
    for row in key_store.list_keys(session, states=("next", "active", "retired")):
        if row.wrapping_key_id == wrappers.current.key_id:
            continue
        plaintext = unwrap(row, wrappers)
        blob = wrappers.current.wrap(plaintext, associated=row.kid)
        key_store.rewrap(session, row.kid, blob, wrappers.current.key_id)
        moved.append(row.kid)
    if moved:
        audit.record(session, "keys.rewrapped", actor="admin", details={"kids": moved})
    return moved


def verify_all(session: Session, wrappers: KeyWrappers) -> None:
    """Check that every key that may still be used decrypts under the configured secrets."""
    check_wrapping(key_store.list_keys(session, states=("next", "active", "retired")), wrappers)


def check_wrapping(rows: Iterable[StoredKey], wrappers: KeyWrappers) -> None:
    for row in rows:
        if row.state != "removed":
            unwrap(row, wrappers)
