"""The second factor of an account: enrolment, verification, backup codes, disabling.

Every function runs inside the caller's transaction. TOTP secrets are encrypted with the
key-encryption secret (the one that protects signing keys), bound to their user as
associated data; they are decrypted only to check a code or to show them at enrolment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..authn.lockout import FACTOR_OTP, Lockout, LockState
from ..i18n import N_
from ..keys.errors import KeyMaterialError
from ..keys.wrapping import KeyWrappers
from ..observe import metrics
from ..storage import Session, audit, mfa as mfa_store, outbox, passkeys as passkey_store
from ..storage.mfa import StoredTotp
from ..storage.users import StoredUser
from . import backup, totp
from .errors import MfaError


@dataclass(frozen=True)
class Enrolment:
    """What the enrolment page shows: the secret as a QR code, as an ``otpauth://`` link
    (``uri``, the one the QR code encodes) and as text. None of it is in the repr, so an
    enrolment that reaches a log line or a traceback does not carry the secret there."""

    secret: str = field(repr=False)
    uri: str = field(repr=False)
    qr_svg: str = field(repr=False)

    @property
    def grouped(self) -> str:
        return totp.grouped(self.secret)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    lock: LockState
    #: "otp" or "backup_code" when ok
    method: str | None = None


class SecondFactor:
    def __init__(self, wrappers: KeyWrappers, lockout: Lockout, issuer_label: str) -> None:
        self.wrappers = wrappers
        self.lockout = lockout
        self.issuer_label = issuer_label

    # -- enrolment ---------------------------------------------------------------------

    def start_enrolment(self, db: Session, user: StoredUser) -> Enrolment:
        """A new secret waiting for its first code (a previous unconfirmed one is replaced)."""
        secret = totp.new_secret()
        blob = self.wrappers.current.wrap(secret.encode("ascii"), associated=_associated(user.id))
        if not mfa_store.put_pending_totp(db, user.id, blob, self.wrappers.current.key_id):
            raise MfaError(N_("A second factor is already set up. Turn it off first to set up a new one."))
        return self._enrolment(user, secret)

    def pending_enrolment(self, db: Session, user: StoredUser) -> Enrolment | None:
        stored = mfa_store.get_totp(db, user.id)
        if stored is None or stored.confirmed:
            return None
        return self._enrolment(user, self._secret(stored))

    def confirm_enrolment(self, db: Session, user: StoredUser, code: str) -> list[str]:
        """Turn the pending secret on with a first valid code; returns the backup codes (shown once)."""
        stored = mfa_store.get_totp(db, user.id)
        if stored is None or stored.confirmed:
            raise MfaError(N_("There is no set-up in progress. Start again from your account page."))
        digits = totp.normalise(code)
        step = totp.matching_step(self._secret(stored), digits) if digits else None
        if step is None:
            raise MfaError(N_("That code is not right. Check the time on your device and enter the current code."))
        if not mfa_store.confirm_totp(db, user.id, step):
            raise MfaError(N_("There is no set-up in progress. Start again from your account page."))
        codes = self._replace_codes(db, user)
        audit.record(db, "mfa.enabled", actor=user.sub, user=user.sub, details={"method": "totp"})
        _mail(db, user, "totp_enabled")
        return codes

    # -- use ---------------------------------------------------------------------------

    def is_enrolled(self, db: Session, user: StoredUser) -> bool:
        """The user has a second factor: an authenticator app, or a passkey."""
        return self.has_totp(db, user) or self.has_passkey(db, user)

    def has_totp(self, db: Session, user: StoredUser) -> bool:
        return mfa_store.has_confirmed_totp(db, user.id)

    def has_passkey(self, db: Session, user: StoredUser) -> bool:
        return passkey_store.count_passkeys(db, user.id) > 0

    def verify(self, db: Session, user: StoredUser, code: str, device: bytes | None) -> Verdict:
        """Check a TOTP code or a backup code, refusing (unchecked) while its second-factor
        counter is locked. A code is accepted once: a replay, here or in another process,
        fails like a wrong code and counts as one.

        ``device`` is the known-device counter, exactly as for the password
        (:mod:`server.authn.devices`): a browser that completed a sign-in as ``user`` before
        counts its wrong codes apart, so someone who knows the password cannot lock the
        owner's own browser out; None (any other browser) shares the account's counter."""
        lock = self.lockout.check(db, user.id, FACTOR_OTP, device)
        known = {"known_device": bool(device)}
        if lock.locked:
            audit.record(db, "mfa.failed", actor=user.sub, user=user.sub, details={"reason": "locked", **known})
            metrics.SECOND_FACTOR_FAILURES.inc()
            return Verdict(ok=False, lock=lock)
        method = self._accept(db, user, code)
        if method is None:
            lock = self.lockout.fail(db, user.id, FACTOR_OTP, device)
            audit.record(db, "mfa.failed", actor=user.sub, user=user.sub, details={"reason": "wrong_code", **known})
            metrics.SECOND_FACTOR_FAILURES.inc()
            if lock.locked:
                metrics.LOCKOUTS.labels("second_factor").inc()
                audit.record(db, "mfa.locked", actor=user.sub, user=user.sub, details={"known_device": bool(device)})
            return Verdict(ok=False, lock=lock)
        self.lockout.succeed(db, user.id, FACTOR_OTP, device)
        if method == "backup_code":
            audit.record(db, "mfa.backup_code_used", actor=user.sub, user=user.sub)
        return Verdict(ok=True, lock=lock, method=method)

    def _accept(self, db: Session, user: StoredUser, code: str) -> str | None:
        stored = mfa_store.get_totp(db, user.id)
        digits = totp.normalise(code)
        if stored is not None and stored.confirmed and digits is not None:
            step = totp.matching_step(self._secret(stored), digits)
            return "otp" if step is not None and mfa_store.advance_step(db, user.id, step) else None
        if backup.normalise(code) is not None and mfa_store.use_backup_code(db, user.id, backup.digest(code)):
            return "backup_code"  # only an enrolled user has any
        return None

    # -- changes (the caller has checked both factors afresh) --------------------------

    def regenerate_codes(self, db: Session, user: StoredUser) -> list[str]:
        if not self.is_enrolled(db, user):
            raise MfaError(N_("Backup codes come with a second factor: set one up first."))
        codes = self._replace_codes(db, user)
        audit.record(db, "mfa.backup_codes_regenerated", actor=user.sub, user=user.sub)
        return codes

    def disable(self, db: Session, user: StoredUser) -> None:
        """Turn the authenticator app off; the backup codes stay while a passkey does."""
        if mfa_store.delete_totp(db, user.id, keep_codes=self.has_passkey(db, user)):
            audit.record(db, "mfa.disabled", actor=user.sub, user=user.sub)
            _mail(db, user, "totp_disabled")

    def first_codes(self, db: Session, user: StoredUser) -> list[str] | None:
        """Backup codes for a user whose first second factor this is (a first passkey), shown
        once; None when the user has codes already."""
        if self.unused_codes(db, user) or self.has_totp(db, user):
            return None
        return self._replace_codes(db, user)

    def forget_codes_unless_enrolled(self, db: Session, user: StoredUser) -> None:
        """The last second factor went: its backup codes go with it."""
        if not self.is_enrolled(db, user):
            mfa_store.delete_backup_codes(db, user.id)

    def unused_codes(self, db: Session, user: StoredUser) -> int:
        return mfa_store.count_unused_backup_codes(db, user.id)

    # -- pieces ------------------------------------------------------------------------

    def _replace_codes(self, db: Session, user: StoredUser) -> list[str]:
        codes = backup.new_codes()
        mfa_store.replace_backup_codes(db, user.id, [backup.digest(code) for code in codes])
        return codes

    def _secret(self, stored: StoredTotp) -> str:
        wrapper = self.wrappers.for_id(stored.wrapping_key_id)
        if wrapper is None:
            raise KeyMaterialError(
                f"the TOTP secret of user {stored.user_id} is encrypted under a key-encryption secret "
                f"that is not configured (key id {stored.wrapping_key_id})"
            )
        return wrapper.unwrap(stored.secret_enc, associated=_associated(stored.user_id)).decode("ascii")

    def _enrolment(self, user: StoredUser, secret: str) -> Enrolment:
        uri = totp.provisioning_uri(secret, user.username, self.issuer_label)
        return Enrolment(secret=secret, uri=uri, qr_svg=totp.qr_svg(uri))


def reset(db: Session, user: StoredUser, *, actor: str) -> bool:
    """An administrator removes a user's second factors, app and passkeys (a lost device);
    True if there was one."""
    had = mfa_store.delete_totp(db, user.id) | (passkey_store.delete_all(db, user.id) > 0)
    audit.record(db, "mfa.reset", actor=actor, user=user.sub, details={"had_second_factor": had})
    if had:
        _mail(db, user, "totp_disabled")
    return had


def rewrap_all(db: Session, wrappers: KeyWrappers) -> int:
    """Re-encrypt every TOTP secret under the current key-encryption secret; returns how many moved."""
    moved = 0
    for stored in mfa_store.list_totp_not_wrapped_by(db, wrappers.current.key_id):
        wrapper = wrappers.for_id(stored.wrapping_key_id)
        if wrapper is None:
            raise KeyMaterialError(
                f"the TOTP secret of user {stored.user_id} needs a key-encryption secret that is not configured"
            )
        plaintext = wrapper.unwrap(stored.secret_enc, associated=_associated(stored.user_id))
        blob = wrappers.current.wrap(plaintext, associated=_associated(stored.user_id))
        mfa_store.rewrap_totp(db, stored.user_id, blob, wrappers.current.key_id)
        moved += 1
    return moved


def _associated(user_id: int) -> str:
    return f"totp:user:{user_id}"


def _mail(db: Session, user: StoredUser, template: str) -> None:
    if user.email:
        outbox.enqueue(db, user.email, template, {"username": user.username})
