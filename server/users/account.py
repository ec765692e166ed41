"""The account pages' actions: a signed-in user's password, second factor and sessions.

Every action needs a live browser session at the level the account needs: with a second
factor enrolled, a session that used it. Turning the second factor off and making new
backup codes need both factors again, on the spot (the password and a code in the same
form), and a password change the current password, so a browser left signed in is not
enough to weaken the account. Turning the second factor on needs the password proved
within ``OSTIARY_REAUTH_SECONDS`` (signing in counts; else :meth:`Account.reauthenticate`),
as GitHub's sudo mode does: whoever sits at an unlocked browser cannot bind the account to
their own authenticator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .. import i18n
from ..authn import sessions
from ..authn.levels import ACR_MFA, AMR_MFA, MULTI_FACTOR, multi_factor
from ..authn.login import LoginGuard
from ..i18n import N_
from ..keys.wrapping import KeyWrappers
from ..mfa.errors import MfaError
from ..mfa.passkeys import Passkeys
from ..mfa.service import Enrolment, SecondFactor
from ..observe import metrics
from ..settings import Settings
from ..storage import (
    AsyncSession,
    Session,
    async_sessionmaker,
    audit,
    authorized_apps,
    grants as grant_store,
    passkeys as passkey_store,
    sessions as session_store,
    signups,
    transactions,
    users as user_store,
)
from ..storage.authorized_apps import AuthorizedApp
from ..storage.base import utcnow
from ..storage.passkeys import StoredPasskey
from ..storage.sessions import StoredSession
from ..storage.users import StoredUser
from .breached import BreachedPasswords
from .errors import AccountError, NothingToEnd, UserError
from .passwords import Passwords
from .service import change_password, check_address, check_new_password
from .signup import AddressLinks

T = TypeVar("T")
#: errors for the caller whose writes (a wrong code counted toward the lockout) must stay
_COMMITTED_ERRORS = (AccountError, MfaError)
#: why families ended (grants.revoked_reason)
SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
#: the user revoked an application's access from the account page
USER_REVOKED = "user_revoked"


@dataclass(frozen=True)
class Me:
    user: StoredUser
    session: StoredSession


@dataclass(frozen=True)
class Overview:
    me: Me
    #: an authenticator app is on
    enrolled: bool
    unused_codes: int
    passkeys: list[StoredPasskey]
    sessions: list[StoredSession]
    apps: list[AuthorizedApp]


class NotSignedIn(Exception):
    """No session good enough for the account pages (signed out, or the second factor is due)."""


class ReauthRequired(Exception):
    """The change affects how the account signs in, and the password was last proved in
    this session longer ago than ``OSTIARY_REAUTH_SECONDS``."""


class Account:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        passwords: Passwords,
        second_factor: SecondFactor,
        login_guard: LoginGuard,
        breached: BreachedPasswords,
        wrappers: KeyWrappers,
    ) -> None:
        self.settings = settings
        self.links = AddressLinks(settings, wrappers)
        self.passkeys = Passkeys(settings)
        self.sessionmaker = sessionmaker
        self.passwords = passwords
        self.mfa = second_factor
        self.login_guard = login_guard
        self.breached = breached

    async def overview(self, token: str | None) -> Overview:
        def view(db: Session) -> Overview:
            me = self._me(db, token)
            return Overview(
                me=me,
                enrolled=self.mfa.has_totp(db, me.user),
                unused_codes=self.mfa.unused_codes(db, me.user),
                passkeys=passkey_store.list_passkeys(db, me.user.id),
                sessions=session_store.list_live_sessions(db, me.user.id),
                apps=authorized_apps.list_for_user(db, me.user.id),
            )

        return await self._run(view)

    async def start_enrolment(self, token: str | None) -> Enrolment:
        return await self._run(lambda db: self.mfa.start_enrolment(db, self._recent(db, token).user))

    async def pending_enrolment(self, token: str | None) -> Enrolment | None:
        return await self._run(lambda db: self.mfa.pending_enrolment(db, self._me(db, token).user))

    async def confirm_enrolment(self, token: str | None, code: str) -> tuple[list[str], str]:
        """Turn the second factor on; returns the backup codes (shown once) and the session's
        new token: having just shown both factors, the session is raised to their level."""

        def confirm(db: Session) -> tuple[list[str], str]:
            me = self._recent(db, token)
            codes = self.mfa.confirm_enrolment(db, me.user, code)
            stepped = sessions.step_up(db, token, amr=list(MULTI_FACTOR), acr=ACR_MFA)
            if stepped is None:
                raise NotSignedIn
            return codes, stepped.token

        return await self._run(confirm, commit_on_error=False)

    async def passkey_options(self, token: str | None) -> str:
        """The options for adding a passkey (JSON); needs the password proved recently."""
        return await self._run(lambda db: self.passkeys.registration_options(db, self._recent(db, token).user))

    async def add_passkey(self, token: str | None, answer: str, name: str) -> tuple[list[str] | None, str]:
        """Keep the passkey the browser made; returns the backup codes when it is the
        account's first second factor (shown once), and the session's new token: the
        session is raised to two factors, as a new authenticator app raises it."""

        def add(db: Session) -> tuple[list[str] | None, str]:
            me = self._recent(db, token)
            self.passkeys.register(db, me.user, answer, name)
            codes = self.mfa.first_codes(db, me.user)
            if not multi_factor(me.session.acr):
                stepped = sessions.step_up(db, token, amr=[*me.session.amr, AMR_MFA], acr=ACR_MFA)
                if stepped is None:
                    raise NotSignedIn
                return codes, stepped.token
            renewed = sessions.renew(db, token)
            if renewed is None:
                raise NotSignedIn
            return codes, renewed.token

        return await self._run(add)

    async def remove_passkey(self, token: str | None, passkey_id: int) -> None:
        """Remove one of the account's passkeys (the password proved recently); with the
        last second factor gone, its backup codes go too."""

        def remove(db: Session) -> None:
            me = self._recent(db, token)
            removed = passkey_store.delete_passkey(db, me.user.id, passkey_id)
            if removed is None:
                raise NothingToEnd(N_("That passkey is gone already."))
            self.mfa.forget_codes_unless_enrolled(db, me.user)
            audit.record(db, "passkey.removed", actor=me.user.sub, user=me.user.sub, details={"passkey": passkey_id})

        await self._run(remove)

    async def regenerate_codes(self, token: str | None, device: str | None, password: str, code: str) -> list[str]:
        me = await self._password_checked(token, device, password)
        return await self._run(lambda db: self.mfa.regenerate_codes(db, self._fresh(db, token, me, code, device)))

    async def disable(self, token: str | None, device: str | None, password: str, code: str) -> None:
        me = await self._password_checked(token, device, password)
        await self._run(lambda db: self.mfa.disable(db, self._fresh(db, token, me, code, device)))

    async def change_password(self, token: str | None, device: str | None, current: str, new: str, again: str) -> str:
        """Set a new password. The account's other sessions end, with the refresh-token
        families bound to them, and every outstanding reset link is void; this session goes
        on (with its families) under a new token, and so do the families issued with
        ``offline_access``. Returns the session's new token."""
        me = await self._password_checked(token, device, current)
        if new != again:
            raise AccountError(N_("The two new passwords differ."))
        try:
            await check_new_password(self.passwords, self.breached, new, username=me.user.username, email=me.user.email)
        except UserError as error:
            raise AccountError(i18n.gettext("The new password %(reason)s.") % {"reason": error.message}) from None
        password_hash = await self.passwords.hash_async(new)

        def store(db: Session) -> str:
            again_me = self._me(db, token)
            if again_me.user.password_hash != me.user.password_hash:
                raise AccountError(N_("Your password changed meanwhile. Sign in again."))
            change_password(db, me.user, password_hash, actor=me.user.sub, kept_session=again_me.session.sid)
            renewed = sessions.renew(db, token)
            if renewed is None:
                raise NotSignedIn
            return renewed.token

        return await self._run(store)

    async def reauthenticate(self, token: str | None, device: str | None, password: str) -> None:
        """The password typed again (counted by the sign-in lockout): for the next
        ``OSTIARY_REAUTH_SECONDS`` this session may change how the account signs in."""
        me = await self._password_checked(token, device, password)

        def mark(db: Session) -> None:
            session_store.mark_reauthenticated(db, me.session.sid)
            audit.record(db, "user.reauthenticated", actor=me.user.sub, user=me.user.sub)

        await self._run(mark)

    async def change_email(self, token: str | None, email: str) -> str:
        """Mail a link that proves ``email`` (a new address, or the account's own unproved
        one); the address changes when the link is used (``users/signup.py``). Needs the
        password proved within ``OSTIARY_REAUTH_SECONDS``, as the address can reset it.
        Returns the address the link went to."""
        if not email.strip():
            raise AccountError(N_("Enter the new e-mail address."))
        try:
            address = check_address(email)
        except UserError:
            raise AccountError(N_("That is not an e-mail address.")) from None

        def send(db: Session) -> str:
            me = self._recent(db, token)
            if me.user.email_verified and (me.user.email or "").casefold() == address.casefold():
                raise AccountError(N_("That is already your confirmed address."))
            self.links.send(db, signups.EMAIL, address, username=me.user.username, user_id=me.user.id)
            audit.record(db, "user.email_change_requested", actor=me.user.sub, user=me.user.sub)
            return address

        return await self._run(send)

    async def end_everywhere(self, token: str | None) -> int:
        """Sign out every browser of the account (this one too) and end every refresh-token
        family of the account, ``offline_access`` ones included: the one action that ends
        them all short of a password reset. Returns how many sessions ended."""

        def end(db: Session) -> int:
            me = self._me(db, token)
            families = grant_store.revoke_for_user(db, me.user.id, SIGNED_OUT_EVERYWHERE)
            metrics.family_revoked(SIGNED_OUT_EVERYWHERE, families)
            ended = session_store.end_user_sessions(db, me.user.id, SIGNED_OUT_EVERYWHERE)
            details = {"reason": SIGNED_OUT_EVERYWHERE, "sessions": ended, "families": families}
            audit.record(db, "session.ended", actor=me.user.sub, user=me.user.sub, details=details)
            return ended

        return await self._run(end)

    async def end_session(self, token: str | None, sid: str) -> bool:
        """End one of the account's live sessions (``sid``) as a sign-out of it would: its
        bound refresh families end and its clients are told (back-channel logout). Returns
        True when it was this browser's own. :class:`NothingToEnd` when the account has no
        such live session (another account's sid included): nothing is ended."""

        def end(db: Session) -> bool:
            me = self._me(db, token)
            if not sessions.end_own(db, me.user.id, sid, actor=me.user.sub):
                raise NothingToEnd(N_("That session has ended already."))
            return sid == me.session.sid

        return await self._run(end)

    async def revoke_app(self, token: str | None, client_id: str) -> None:
        """Take back what the account let the application ``client_id`` do: every refresh
        family of the account's with it ends (``offline_access`` ones too) and its
        remembered consent is forgotten, so its next sign-in asks again. Audited as
        ``grants.revoked``. :class:`NothingToEnd` when it had neither."""

        def revoke(db: Session) -> None:
            me = self._me(db, token)
            if not client_id or len(client_id) > 64:  # no client id: revoke_for_user would end them all
                raise NothingToEnd(N_("That application has no access to your account."))
            families = grant_store.revoke_for_user(db, me.user.id, USER_REVOKED, client_id=client_id)
            consented = authorized_apps.forget_consent(db, me.user.id, client_id)
            if not families and not consented:
                raise NothingToEnd(N_("That application has no access to your account."))
            metrics.family_revoked(USER_REVOKED, families)
            details = {"reason": USER_REVOKED, "families": families, "consent_forgotten": consented}
            audit.record(db, "grants.revoked", actor=me.user.sub, user=me.user.sub, client=client_id, details=details)

        await self._run(revoke)

    # -- pieces ------------------------------------------------------------------------

    def _me(self, db: Session, token: str | None) -> Me:
        session = sessions.load(db, token)
        user = user_store.get_user(db, session.user_id) if session else None
        if session is None or user is None or user.disabled_at is not None:
            raise NotSignedIn
        if not multi_factor(session.acr) and self.mfa.is_enrolled(db, user):
            raise NotSignedIn
        return Me(user, session)

    def _recent(self, db: Session, token: str | None) -> Me:
        """:meth:`_me`, whose password was proved within ``OSTIARY_REAUTH_SECONDS``."""
        me = self._me(db, token)
        if (utcnow() - me.session.proved_at).total_seconds() > self.settings.reauth_seconds:
            raise ReauthRequired
        return me

    async def _password_checked(self, token: str | None, device: str | None, password: str) -> Me:
        """The account's password typed again, counted by the same lockout as sign-in (a
        stolen session must not become a way to guess the password)."""
        me = await self._run(lambda db: self._me(db, token))
        counted = await self.login_guard.attempt_for(me.user, device)
        if not counted.attempt.allowed:
            raise AccountError(N_("Too many wrong passwords. Try again later."))
        result = await self.passwords.verify_async(me.user.password_hash, password[:1024])
        if not result.ok:
            raise AccountError(N_("That password is not right."))
        await self._run(lambda db: self.login_guard.succeeded(db, me.user.id, counted.device))
        return me

    def _fresh(self, db: Session, token: str | None, me: Me, code: str, device: str | None) -> StoredUser:
        """The second half of a fresh authentication: the code, counted by the lockout (on
        this browser's own counter when it is a known device of the account)."""
        again = self._me(db, token)
        if again.user.password_hash != me.user.password_hash:
            raise AccountError(N_("Your password changed meanwhile. Try again."))
        verdict = self.mfa.verify(db, again.user, code, self.login_guard.devices.digest_for(device, again.user.id))
        if verdict.lock.locked:
            raise MfaError(N_("Too many wrong codes. Try again later."))
        if not verdict.ok:
            raise MfaError(N_("That code is not right."))
        return again.user

    async def _run(self, call: Callable[[Session], T], *, commit_on_error: bool = True) -> T:
        """One transaction. A wrong code is an error for the caller, but its count toward the
        lockout must stay: the transaction commits on our errors unless told otherwise."""
        return await transactions.run(
            self.sessionmaker, call, commit_on_errors=_COMMITTED_ERRORS if commit_on_error else ()
        )
