"""Self-service sign-up (``OSTIARY_SIGNUP``), invitations, and proving an e-mail address.

No account exists until its address is proved. The sign-up form's request (username,
address, name, and the password already hashed with Argon2id) waits in
``email_verifications``, and a link goes to the address through the outbox (encrypted
there, erased once sent). Using the link makes the account, with ``email_verified`` true,
and spends the invitation it came with, in one transaction.

The form says only what it must. A username in use is said at once, since the user has to
choose another. An address in use is not: the page and the mail are the same as for a new
address, and only whoever reads that mailbox learns, from the link, that the address has
an account. A link is 256 random bits, stored as SHA-256, used once, and expires after
``OSTIARY_EMAIL_VERIFICATION_TTL``.

A signed-in user's new address (or an unproved one) is proved the same way: the address
changes only when the link is used, the old address is then told, and outstanding
password-reset links, which went to the old address, stop working.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from .. import i18n
from ..authn.secrets import new_token
from ..i18n import N_
from ..keys.wrapping import KeyWrappers
from ..mail.messages import associated
from ..settings import Settings
from ..storage import (
    AsyncSession,
    Session,
    async_sessionmaker,
    audit,
    outbox,
    resets,
    signups,
    transactions,
    users as user_store,
)
from ..storage.base import sha256, utcnow
from ..storage.signups import StoredInvitation
from ..storage.users import StoredUser
from .breached import BreachedPasswords
from .errors import AccountError, UserError
from .passwords import Passwords
from .service import check_address, check_new_password, create_user, validate_new_user

VERIFY_TEMPLATE = "email_verify"
CHANGED_TEMPLATE = "email_changed"
#: who the audit rows of a sign-up name as the actor
SIGNUP_ACTOR = "signup"
EXPIRED = N_("This link has expired or was already used.")
INVITATION_EXPIRED = N_("This invitation has expired, was revoked or was already used. Ask for a new one.")


class SignupError(Exception):
    """What the sign-up form must say, next to ``field`` (a form field's name)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Pending:
    """What a live link would do, shown before it is used (a mail scanner that opens the
    link must not use it)."""

    purpose: str
    email: str
    username: str | None


@dataclass(frozen=True)
class Invited:
    """A new invitation: its link is shown once."""

    invitation: StoredInvitation
    link: str


class AddressLinks:
    """Makes the links that prove an address and queues their mail."""

    def __init__(self, settings: Settings, wrappers: KeyWrappers) -> None:
        self.settings = settings
        self.wrappers = wrappers

    def send(
        self,
        db: Session,
        purpose: str,
        email: str,
        *,
        username: str,
        user_id: int | None = None,
        name: str | None = None,
        password_hash: str | None = None,
        invitation_id: int | None = None,
    ) -> None:
        """Store the request behind a new link and queue the mail that carries the link."""
        token = new_token()
        ttl = self.settings.email_verification_ttl
        signups.add_verification(
            db,
            _digest(token),
            purpose=purpose,
            email=email,
            expires_at=utcnow() + timedelta(seconds=ttl),
            user_id=user_id,
            username=username if purpose == signups.SIGNUP else None,
            name=name,
            password_hash=password_hash,
            invitation_id=invitation_id,
        )
        link = self.settings.endpoint("/email/verify") + "?" + urlencode({"token": token})
        sealed = self.wrappers.current.wrap(link.encode("utf-8"), associated=associated(email, VERIFY_TEMPLATE))
        context = {"purpose": purpose, "username": username, "hours": max(1, ttl // 3600)}
        outbox.enqueue(
            db, email, VERIFY_TEMPLATE, context, secret_enc=sealed, wrapping_key_id=self.wrappers.current.key_id
        )


class SignUps:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        wrappers: KeyWrappers,
        passwords: Passwords,
        breached: BreachedPasswords,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.links = AddressLinks(settings, wrappers)
        self.passwords = passwords
        self.breached = breached

    async def invitation(self, token: str) -> StoredInvitation | None:
        """The live invitation of a link's token, not used up."""
        if not _plausible(token):
            return None
        return await transactions.run(self.sessionmaker, lambda db: signups.peek_invitation(db, _digest(token)))

    async def request(
        self, *, username: str, email: str, name: str, password: str, again: str, invitation: str = ""
    ) -> str:
        """Check the form and mail the link that makes the account; returns the address.
        :class:`SignupError` says what the form must say; nothing is stored then."""
        invited = await self._invitation_for(invitation)
        try:
            username, address, full_name = validate_new_user(username, email, name or None)
        except UserError as error:
            raise SignupError(error.field.removeprefix("--"), _sentence(error.message)) from None
        if address is None:
            raise SignupError("email", N_("Enter your e-mail address."))
        if invited is not None and invited.email and invited.email.casefold() != address.casefold():
            raise SignupError("email", N_("This invitation is for another address."))
        if password != again:
            raise SignupError("confirm_password", N_("The two passwords differ."))
        try:
            await check_new_password(self.passwords, self.breached, password, username=username, email=address)
        except UserError as error:
            raise SignupError(
                "password", i18n.gettext("The password %(reason)s.") % {"reason": error.message}
            ) from None
        password_hash = await self.passwords.hash_async(password)

        def store(db: Session) -> None:
            if user_store.get_user_by_username(db, username) is not None:
                raise SignupError("username", N_("That username is taken. Choose another."))
            self.links.send(
                db,
                signups.SIGNUP,
                address,
                username=username,
                name=full_name,
                password_hash=password_hash,
                invitation_id=invited.id if invited else None,
            )

        await transactions.run(self.sessionmaker, store)
        return address

    async def _invitation_for(self, token: str) -> StoredInvitation | None:
        """The invitation a sign-up needs under ``invite`` (None when sign-up is open)."""
        if self.settings.signup == "off":
            raise SignupError("", N_("Sign-up is closed."))
        if self.settings.signup != "invite":
            return None
        invited = await self.invitation(token)
        if invited is None:
            raise SignupError("", INVITATION_EXPIRED)
        return invited

    async def pending(self, token: str) -> Pending | None:
        """What a live link asks for, without using it."""
        if not _plausible(token):
            return None
        found = await transactions.run(self.sessionmaker, lambda db: signups.peek_verification(db, _digest(token)))
        return Pending(found.purpose, found.email, found.username) if found else None

    async def confirm(self, token: str) -> Pending:
        """Use a live link: make the account, or change the account's address. Raises
        :class:`AccountError` with what the page says when it cannot."""

        def use(db: Session) -> Pending:
            found = signups.use_verification(db, _digest(token)) if _plausible(token) else None
            if found is None:
                raise AccountError(EXPIRED)
            user = _make_account(db, found) if found.purpose == signups.SIGNUP else _change_address(db, found)
            return Pending(found.purpose, found.email, user.username)

        return await transactions.run(self.sessionmaker, use)


def invite(db: Session, settings: Settings, *, email: str | None, expires_in: int | None, actor: str) -> Invited:
    """A new invitation link (shown once; only its digest is kept), for ``email`` only when
    given, working ``expires_in`` seconds (default ``OSTIARY_INVITATION_TTL``). Audited."""
    if email is not None:
        email = check_address(email)
    token = new_token()
    expires_at = utcnow() + timedelta(seconds=expires_in or settings.invitation_ttl)
    invitation = signups.add_invitation(db, _digest(token), email=email, created_by=actor, expires_at=expires_at)
    audit.record(db, "invitation.created", actor=actor, details={"id": invitation.id, "for_address": bool(email)})
    return Invited(invitation, settings.endpoint("/signup") + "?" + urlencode({"invitation": token}))


def revoke_invitation(db: Session, invitation_id: int, *, actor: str) -> bool:
    """A live invitation stops working (audited); False when none live has that id."""
    revoked = signups.revoke_invitation(db, invitation_id)
    if revoked:
        audit.record(db, "invitation.revoked", actor=actor, details={"id": invitation_id})
    return revoked


def _make_account(db: Session, found: signups.StoredVerification) -> StoredUser:
    assert found.username is not None  # a sign-up's link always names the account
    try:
        user = create_user(
            db,
            username=found.username,
            email=found.email,
            name=found.name,
            password_hash=found.password_hash,
            email_verified=True,
            actor=SIGNUP_ACTOR,
        )
    except UserError as error:
        if "email" in error.field:
            raise AccountError(
                N_("This address already has an account. Sign in, or reset its password if you forgot it.")
            ) from None
        raise AccountError(N_("That username was taken meanwhile. Sign up again with another one.")) from None
    if found.invitation_id is not None and not signups.use_invitation(db, found.invitation_id, user.id):
        raise AccountError(INVITATION_EXPIRED)
    details = {"invitation": found.invitation_id} if found.invitation_id is not None else None
    audit.record(db, "user.signed_up", actor=SIGNUP_ACTOR, user=user.sub, details=details)
    return user


def _change_address(db: Session, found: signups.StoredVerification) -> StoredUser:
    user = user_store.get_user(db, found.user_id) if found.user_id is not None else None
    if user is None or user.disabled_at is not None:
        raise AccountError(EXPIRED)
    if user_store.taken_by_another(db, user.id, user.username, found.email) == "email":
        raise AccountError(N_("This address belongs to another account."))
    changed = user_store.update_profile(
        db, user.id, username=user.username, email=found.email, name=user.name, email_verified=True
    )
    assert changed is not None  # the row was read above in this transaction
    old = user.email
    if old and old.casefold() != found.email.casefold():
        outbox.enqueue(db, old, CHANGED_TEMPLATE, {"username": user.username, "new_email": found.email})
        resets.void_resets(db, user.id)  # those links went to the old address
    audit.record(db, "user.email_verified", actor=user.sub, user=user.sub, details={"changed": old != found.email})
    return changed


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _plausible(token: str) -> bool:
    return 20 <= len(token) <= 128


def _digest(token: str) -> bytes:
    return sha256(token)
