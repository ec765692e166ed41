"""Lockout: failed attempts per account over a sliding window.

Each factor has its own counter (a wrong TOTP code never locks the password, and the other
way round), and for each factor a known device (:mod:`server.authn.devices`) has its own,
apart from the one every other browser shares. Once the failures inside the window reach
the threshold, every attempt on that counter is refused, without checking the credential,
until enough of them have left the window. A threshold of 0 turns lockout off. The counters
live in the database, so every server process sees the same ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from ..storage import Session, failures
from ..storage.base import utcnow
from ..storage.failures import Subject

FACTOR_PASSWORD = "password"  # noqa: S105  (a counter's name)
FACTOR_OTP = "otp"


@dataclass(frozen=True)
class LockState:
    locked: bool
    #: attempts left before the lock (None: lockout is off)
    remaining: int | None
    #: seconds until the next attempt is allowed, when locked
    retry_after: int = 0


UNLIMITED = LockState(locked=False, remaining=None)


@dataclass(frozen=True)
class Attempt:
    """An attempt counted in advance: ``allowed`` False means locked, do not check it;
    ``if_failed`` is the counter's state should this attempt turn out wrong."""

    allowed: bool
    if_failed: LockState


class Lockout:
    def __init__(self, threshold: int, window_seconds: int) -> None:
        self.threshold = threshold
        self.window = timedelta(seconds=window_seconds)

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def check(self, db: Session, user_id: Subject, factor: str, device: bytes | None = None) -> LockState:
        """The state of the counter, with the account locked for the rest of the transaction,
        so that concurrent attempts are counted one after the other."""
        if not self.enabled:
            return UNLIMITED
        failures.lock_subject(db, user_id)
        now = utcnow()
        times = failures.recent(db, user_id, factor, now - self.window, device, self.threshold)
        if len(times) < self.threshold:
            return LockState(locked=False, remaining=self.threshold - len(times))
        # The oldest of the last `threshold` failures leaving the window unlocks one attempt.
        wait = (times[0] + self.window - now).total_seconds()
        return LockState(locked=True, remaining=0, retry_after=max(1, math.ceil(wait)))

    def attempt(self, db: Session, user_id: Subject, factor: str, device: bytes | None = None) -> Attempt:
        """Count an attempt as a failure *before* the credential is checked (a success clears
        it with :meth:`succeed`), under the account's lock: however many attempts run at once,
        in however many processes, no more than the threshold are ever checked."""
        if not self.enabled:
            return Attempt(allowed=True, if_failed=UNLIMITED)
        before = self.check(db, user_id, factor, device)
        if before.locked:
            return Attempt(allowed=False, if_failed=before)
        failures.record(db, user_id, factor, device)
        return Attempt(allowed=True, if_failed=self.check(db, user_id, factor, device))

    def fail(self, db: Session, user_id: Subject, factor: str, device: bytes | None = None) -> LockState:
        """Count a failure; returns the state after it."""
        if not self.enabled:
            return UNLIMITED
        failures.record(db, user_id, factor, device)
        return self.check(db, user_id, factor, device)

    def succeed(self, db: Session, user_id: Subject, factor: str, device: bytes | None = None) -> None:
        if self.enabled:
            failures.clear(db, user_id, factor, device)
