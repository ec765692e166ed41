"""Password reset by mail.

``request`` always behaves the same whether or not an account has the address: the web
layer answers at once and does the work after the response, so neither the page nor its
timing says which addresses have accounts. A reset link carries 256 random bits; only the
SHA-256 is stored, it expires (``OSTIARY_PASSWORD_RESET_TTL``, 30 minutes), it works once,
and a newer request voids it. The link travels to the sender encrypted, and is erased from
the outbox once sent. Using it sets the password through :func:`change_password`: every
browser session and refresh-token family of the account ends and its lockout is cleared.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar
from urllib.parse import urlencode

from ..authn.secrets import new_token
from ..keys.wrapping import KeyWrappers
from ..mail.sender import associated
from ..settings import Settings
from ..storage import AsyncSession, Session, async_sessionmaker, audit, outbox, resets, users as user_store
from ..storage.base import sha256, utcnow
from ..storage.users import StoredUser
from .breached import BreachedPasswords
from .errors import AccountError, UserError
from .passwords import Passwords
from .service import change_password, check_new_password

T = TypeVar("T")
TEMPLATE = "password_reset"

EXPIRED = "This link has expired or was already used. Ask for a new one."


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
        """Mail a reset link to the account with this address, if there is one."""
        await self._run(lambda db: self._request(db, email.strip()[:254]))

    async def user_of(self, token: str) -> StoredUser | None:
        """The account a live link belongs to (the link is not used up)."""

        def find(db: Session) -> StoredUser | None:
            user_id = resets.peek_reset(db, _digest(token)) if _plausible(token) else None
            return user_store.get_user(db, user_id) if user_id is not None else None

        return await self._run(find)

    async def reset(self, token: str, new: str, again: str) -> None:
        """Set the new password with a live link; raises AccountError with what went wrong."""
        user = await self.user_of(token)
        if user is None or user.disabled_at is not None:
            raise AccountError(EXPIRED)
        if new != again:
            raise AccountError("The two passwords differ.")
        try:
            await check_new_password(self.passwords, self.breached, new, username=user.username, email=user.email)
        except UserError as error:
            raise AccountError(f"The new password {error.message}.") from None
        password_hash = await self.passwords.hash_async(new)

        def use(db: Session) -> None:
            user_id = resets.use_reset(db, _digest(token))
            current = user_store.get_user(db, user_id) if user_id is not None else None
            if current is None or current.id != user.id:
                raise AccountError(EXPIRED)
            change_password(db, current, password_hash, actor=current.sub)
            audit.record(db, "user.password_reset", actor=current.sub, subject=current.sub)

        await self._run(use)

    def _request(self, db: Session, email: str) -> None:
        user = user_store.get_user_by_email(db, email) if email else None
        if user is None or user.disabled_at is not None or not user.email:
            return
        token = new_token()
        resets.replace_reset(
            db, user.id, _digest(token), utcnow() + timedelta(seconds=self.settings.password_reset_ttl)
        )
        link = self.settings.endpoint("/password/reset") + "?" + urlencode({"token": token})
        sealed = self.wrappers.current.wrap(link.encode("utf-8"), associated=associated(user.email, TEMPLATE))
        context = {"username": user.username, "minutes": self.settings.password_reset_ttl // 60}
        outbox.enqueue(
            db, user.email, TEMPLATE, context, secret_enc=sealed, wrapping_key_id=self.wrappers.current.key_id
        )
        audit.record(db, "user.password_reset_requested", actor=user.sub, subject=user.sub)

    async def _run(self, call: Callable[[Session], T]) -> T:
        async with self.sessionmaker.begin() as session:
            return await session.run_sync(call)


def _plausible(token: str) -> bool:
    return 20 <= len(token) <= 128


def _digest(token: str) -> bytes:
    return sha256(token)
