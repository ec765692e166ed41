"""Password reset by mail.

``request`` does the same work whatever the address: it queues one outbox row naming the
address entered (template ``password_reset_lookup``) in one short transaction, and nothing
else. Neither the page, nor its timing, nor what the request wrote says which addresses
have accounts; and a request whose row could not be queued fails (503) instead of
promising a mail. The outbox sender resolves the row later (:func:`resolve_lookup`): for
an enabled account with that address it makes the link and queues the mail, otherwise the
row is simply marked done.

A reset link carries 256 random bits; only the SHA-256 is stored, it expires
(``OSTIARY_PASSWORD_RESET_TTL``, 30 minutes), it works once, and a newer request voids it.
The link travels to the sender encrypted, and is erased from the outbox once sent. Using it
sets the password through :func:`change_password`: every browser session and refresh-token
family of the account ends and its lockout is cleared.
"""

from __future__ import annotations

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
    transactions,
    users as user_store,
)
from ..storage.base import sha256, utcnow
from ..storage.outbox import QueuedMail
from ..storage.users import StoredUser
from .breached import BreachedPasswords
from .errors import AccountError, UserError
from .passwords import Passwords
from .service import change_password, check_new_password

TEMPLATE = "password_reset"
#: an outbox row that asks the sender to look an address up and mail a link if it has an account
LOOKUP_TEMPLATE = "password_reset_lookup"
MAX_ADDRESS = 254  # RFC 5321 4.5.3.1.3: the longest path

EXPIRED = N_("This link has expired or was already used. Ask for a new one.")


class PasswordResets:
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
        self.wrappers = wrappers
        self.passwords = passwords
        self.breached = breached

    async def request(self, email: str) -> None:
        """Queue the look-up of ``email`` (any plausible address, known or not).

        Returns once the row is committed; a database error propagates (the caller must not
        promise a mail). An address that cannot be one is dropped without a write: that
        reveals nothing about accounts.
        """
        address = email.strip()
        if not plausible_address(address):
            return
        await transactions.run(self.sessionmaker, lambda db: outbox.enqueue(db, address, LOOKUP_TEMPLATE, {}))

    async def user_of(self, token: str) -> StoredUser | None:
        """The account a live link belongs to (the link is not used up)."""

        def find(db: Session) -> StoredUser | None:
            user_id = resets.peek_reset(db, _digest(token)) if _plausible(token) else None
            return user_store.get_user(db, user_id) if user_id is not None else None

        return await transactions.run(self.sessionmaker, find)

    async def reset(self, token: str, new: str, again: str) -> None:
        """Set the new password with a live link; raises AccountError with what went wrong."""
        user = await self.user_of(token)
        if user is None or user.disabled_at is not None:
            raise AccountError(EXPIRED)
        if new != again:
            raise AccountError(N_("The two passwords differ."))
        try:
            await check_new_password(self.passwords, self.breached, new, username=user.username, email=user.email)
        except UserError as error:
            raise AccountError(i18n.gettext("The new password %(reason)s.") % {"reason": error.message}) from None
        password_hash = await self.passwords.hash_async(new)

        def use(db: Session) -> None:
            user_id = resets.use_reset(db, _digest(token))
            current = user_store.get_user(db, user_id) if user_id is not None else None
            if current is None or current.id != user.id:
                raise AccountError(EXPIRED)
            change_password(db, current, password_hash, actor=current.sub)
            audit.record(db, "user.password_reset", actor=current.sub, user=current.sub)

        await transactions.run(self.sessionmaker, use)

    def resolve(self, db: Session, lookup: QueuedMail, *, lease: timedelta) -> QueuedMail | None:
        """:func:`resolve_lookup` with this service's settings and key wrappers: what the
        outbox sender runs for a ``password_reset_lookup`` row."""
        return resolve_lookup(db, self.settings, self.wrappers, lookup, lease=lease)


def resolve_lookup(
    db: Session, settings: Settings, wrappers: KeyWrappers, lookup: QueuedMail, *, lease: timedelta
) -> QueuedMail | None:
    """Do what a ``password_reset_lookup`` row asks, in the caller's transaction.

    The row is marked done. For an enabled account with its address, a new link voids the
    older ones, and the reset mail is queued already claimed for ``lease`` (the caller sends
    it next) and returned; for any other address nothing else happens and None comes back.
    """
    outbox.mark_sent(db, lookup.id)
    user = user_store.get_user_by_email(db, lookup.recipient)
    if user is None or user.disabled_at is not None or not user.email:
        return None
    token = new_token()
    resets.replace_reset(db, user.id, _digest(token), utcnow() + timedelta(seconds=settings.password_reset_ttl))
    link = settings.endpoint("/password/reset") + "?" + urlencode({"token": token})
    sealed = wrappers.current.wrap(link.encode("utf-8"), associated=associated(user.email, TEMPLATE))
    audit.record(db, "user.password_reset_requested", actor=user.sub, user=user.sub)
    return outbox.enqueue_claimed(
        db,
        user.email,
        TEMPLATE,
        # in the language of the page that asked for it
        {"username": user.username, "minutes": settings.password_reset_ttl // 60, **_language(lookup)},
        lease=lease,
        secret_enc=sealed,
        wrapping_key_id=wrappers.current.key_id,
    )


def _language(lookup: QueuedMail) -> dict[str, str]:
    locale = lookup.context.get("locale")
    return {"locale": locale} if isinstance(locale, str) else {}


def plausible_address(address: str) -> bool:
    """Could be a mail address: one ``@`` with something either side, no space or control
    character, not longer than a path may be."""
    local, at, domain = address.rpartition("@")
    return (
        bool(at and local and domain)
        and len(address) <= MAX_ADDRESS
        and all(ch.isprintable() and not ch.isspace() for ch in address)
    )


def _plausible(token: str) -> bool:
    return 20 <= len(token) <= 128


def _digest(token: str) -> bytes:
    return sha256(token)
