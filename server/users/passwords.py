"""Passwords: Argon2id, verified off the event loop, equal cost for unknown users.

Verification runs in a worker thread (Argon2 takes tens of milliseconds of CPU by design).
A login for an unknown user verifies against a dummy hash, so it costs the same time as a
wrong password. A hash made with weaker parameters than the current settings is replaced
at the next successful login.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import anyio
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .. import i18n
from ..settings import Settings
from .errors import UserError

MAX_LENGTH = 1024  # NIST SP 800-63B asks for at least 64; far beyond that only costs hashing time


@dataclass(frozen=True)
class Verification:
    ok: bool
    #: a new hash to store, when the old one used weaker parameters
    rehash: str | None = None


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        self.min_length = settings.password_min_length
        # Argon2 takes CPU and memory_cost each: never more verifications at once than
        # cores (anyio's default would allow 40 threads, i.e. 40 x 64 MiB).
        self._limiter = anyio.CapacityLimiter(max(2, os.cpu_count() or 2))
        self._dummy = self._hasher.hash(secrets.token_urlsafe(24))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> Verification:
        """Synchronous; call :meth:`verify_async` from the event loop."""
        if stored_hash is None:
            self._check(self._dummy, password)
            return Verification(ok=False)
        if not self._check(stored_hash, password):
            return Verification(ok=False)
        try:
            needs_rehash = self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            needs_rehash = True
        return Verification(ok=True, rehash=self._hasher.hash(password) if needs_rehash else None)

    async def verify_async(self, stored_hash: str | None, password: str) -> Verification:
        return await anyio.to_thread.run_sync(self.verify, stored_hash, password, limiter=self._limiter)

    async def hash_async(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hash, password, limiter=self._limiter)

    def _check(self, stored_hash: str, password: str) -> bool:
        try:
            return bool(self._hasher.verify(stored_hash, password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def check_policy(self, password: str, *, username: str, email: str | None, field: str = "password") -> None:
        """NIST SP 800-63B: a minimum length, a generous maximum, no composition rules,
        and not the account's own name."""
        if len(password) < self.min_length:
            raise UserError(field, i18n.gettext("must be at least %(num)d characters") % {"num": self.min_length})
        if len(password) > MAX_LENGTH:
            raise UserError(field, i18n.gettext("must be at most %(num)d characters") % {"num": MAX_LENGTH})
        lowered = password.casefold()
        if lowered == username.casefold() or (email and lowered == email.casefold()):
            raise UserError(field, i18n.gettext("must not be the username or the email address"))
