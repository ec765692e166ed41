"""The password step's protection: lockout per account (and per known device), counted
before the password is checked, so a locked account answers the same whatever the guess.

An unknown username gets a counter too (a fixed window, keyed by a digest of the name), so
the pages behave alike for accounts that exist and those that do not: same messages, same
countdown, same lock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..storage import AsyncSession, Session, async_sessionmaker, failures, ratelimits, users as user_store
from ..storage.base import sha256
from ..storage.users import StoredUser
from .devices import DeviceCookies
from .lockout import FACTOR_PASSWORD, UNLIMITED, Attempt, Lockout, LockState


@dataclass(frozen=True)
class LoginAttempt:
    user: StoredUser | None
    attempt: Attempt
    #: the known-device counter this attempt was counted on (None: the shared one)
    device: bytes | None


class LoginGuard:
    def __init__(
        self, lockout: Lockout, devices: DeviceCookies, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.lockout = lockout
        self.devices = devices
        self.sessionmaker = sessionmaker

    async def attempt(self, username: str, device_cookie: str | None) -> LoginAttempt:
        """Find the user and count this attempt (one transaction, before any Argon2 work)."""
        async with self.sessionmaker.begin() as session:
            return await session.run_sync(lambda db: self._attempt(db, username, device_cookie))

    async def attempt_for(self, user: StoredUser, device_cookie: str | None) -> LoginAttempt:
        """The same for a known user (a password typed again on the account pages)."""
        async with self.sessionmaker.begin() as session:
            return await session.run_sync(lambda db: self._count(db, user, device_cookie))

    def succeeded(self, db: Session, user_id: int, device: bytes | None) -> None:
        """The password was right: the counter it was counted on starts again."""
        self.lockout.succeed(db, user_id, FACTOR_PASSWORD, device)

    def forget_all(self, db: Session, user_id: int) -> None:
        """Every password counter of the account (a password reset)."""
        failures.clear(db, user_id, FACTOR_PASSWORD, every_device=True)

    def _attempt(self, db: Session, username: str, device_cookie: str | None) -> LoginAttempt:
        user = user_store.get_user_by_username(db, username) if username else None
        if user is None:
            return LoginAttempt(None, self._unknown(db, username), None)
        return self._count(db, user, device_cookie)

    def _count(self, db: Session, user: StoredUser, device_cookie: str | None) -> LoginAttempt:
        device = self.devices.digest_for(device_cookie, user.id)
        return LoginAttempt(user, self.lockout.attempt(db, user.id, FACTOR_PASSWORD, device), device)

    def _unknown(self, db: Session, username: str) -> Attempt:
        if not self.lockout.enabled:
            return Attempt(allowed=True, if_failed=UNLIMITED)
        window = self.lockout.window.total_seconds()
        now = time.time()
        start = now // window * window
        bucket = "unknown-user|" + sha256(user_store.username_key(username)).hex()[:40]
        # Windows are keyed in whole minutes, like the per-address limits (cleanup reads them so).
        hits = ratelimits.hit(db, bucket, int(start // 60))
        threshold = self.lockout.threshold
        retry_after = max(1, math.ceil(start + window - now))
        if hits > threshold:
            return Attempt(allowed=False, if_failed=LockState(locked=True, remaining=0, retry_after=retry_after))
        if hits == threshold:
            return Attempt(allowed=True, if_failed=LockState(locked=True, remaining=0, retry_after=retry_after))
        return Attempt(allowed=True, if_failed=LockState(locked=False, remaining=threshold - hits))
