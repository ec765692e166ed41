"""The password step's protection: lockout per account (and per known device), counted
before the password is checked, so a locked account answers the same whatever the guess.

An unknown username gets a counter too (keyed by a digest of the name, with the same
sliding window), so the pages behave alike for accounts that exist and those that do not:
same messages, same countdown, same lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..observe import metrics
from ..storage import AsyncSession, Session, async_sessionmaker, audit, failures, transactions, users as user_store
from ..storage.base import sha256
from ..storage.users import StoredUser
from .devices import DeviceCookies
from .lockout import FACTOR_PASSWORD, Attempt, Lockout


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
        return await transactions.run(self.sessionmaker, lambda db: self._attempt(db, username, device_cookie))

    async def attempt_for(self, user: StoredUser, device_cookie: str | None) -> LoginAttempt:
        """The same for a known user (a password typed again on the account pages)."""
        return await transactions.run(self.sessionmaker, lambda db: self._count(db, user, device_cookie))

    async def failed(self, login: LoginAttempt, *, client_id: str | None, ip: str | None) -> None:
        """Record a refused sign-in (the attempt was counted already): ``login.failed`` with
        the reason, and ``login.locked`` when this failure locked the account. An unknown
        name is not written down (it may be a password typed in the wrong box)."""
        user = login.user
        if not login.attempt.allowed:
            reason = "locked"
        elif user is None:
            reason = "unknown_user"
        elif user.disabled_at is not None:
            reason = "disabled"
        else:
            reason = "bad_password"
        sub = user.sub if user is not None else None
        locked_now = reason == "bad_password" and login.attempt.if_failed.locked

        def write(db: Session) -> None:
            details = {"reason": reason, "ip": ip, "known_device": login.device is not None}
            audit.record(db, "login.failed", actor=sub, user=sub, client=client_id, details=details)
            if locked_now:
                until = {"retry_after": login.attempt.if_failed.retry_after, "ip": ip}
                audit.record(db, "login.locked", actor=sub, user=sub, client=client_id, details=until)

        await transactions.run(self.sessionmaker, write)
        metrics.SIGNINS_FAILED.labels(reason).inc()
        if locked_now:
            metrics.LOCKOUTS.labels("password").inc()

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
        """A name without an account is counted like one, under the name's digest."""
        name = sha256("unknown-user|" + user_store.username_key(username))
        return self.lockout.attempt(db, name, FACTOR_PASSWORD)
