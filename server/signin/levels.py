"""Authentication levels in the authorization flow: which factors a request needs from a
user, and the second-factor page.

The second factor is needed when the request asks for it (``acr_values``), when the client
is registered with ``--require-mfa``, or, under the policy
``OSTIARY_MFA=always-if-enrolled`` (the default) and always for the account pages, whenever
the user has one. A requirement the user cannot meet (no second factor enrolled) is UNMET;
an ``acr_values`` request is then met at the password level, and the ID token's
``acr`` says so.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import OAuth2Error

from .. import i18n
from ..authn.levels import ACR_PHR, multi_factor
from ..authn.lockout import LockState
from ..mfa.service import SecondFactor
from ..oauth.errors import UnmetAuthenticationRequirementsError
from ..settings import Settings
from ..storage import Session
from ..storage.base import sha256 as digest
from ..storage.interactions import StoredInteraction
from ..storage.users import StoredUser
from .acr import NOTHING, AcrRequest, requested_acr
from .outcome import Outcome


class Level(enum.Enum):
    """The authentication a request needs from a given user."""

    PASSWORD = "password"  # noqa: S105
    MFA = "mfa"
    #: a passkey: asked for by ``acr_values`` (urn:ostiary:acr:phr) from a user who has one
    PHR = "phr"
    #: the second factor is required, and the user has none
    UNMET = "unmet"


class LevelPolicy:
    def __init__(self, settings: Settings, second_factor: SecondFactor, server: Any) -> None:
        self.settings = settings
        self.mfa = second_factor
        self.server = server

    def methods(self, db: Session, user: StoredUser, level: Level) -> Methods:
        """What ``user`` may show at ``level``: a passkey alone when one is asked for."""
        passkey = self.mfa.has_passkey(db, user)
        if level is Level.PHR:
            return Methods(app=False, passkey=True, backup=False)
        return Methods(app=self.mfa.has_totp(db, user) or not passkey, passkey=passkey)

    def for_request(self, db: Session, acr: AcrRequest, client: Any, user: StoredUser) -> Level:
        """What ``user`` must show for a request with ``acr`` to ``client`` (None: the account pages)."""
        if acr.phr and self.mfa.has_passkey(db, user):
            return Level.PHR
        enrolled = self.mfa.is_enrolled(db, user)
        required = client is not None and client.stored.require_mfa
        if enrolled and (required or acr.mfa or client is None or self.settings.mfa == "always-if-enrolled"):
            return Level.MFA
        return Level.UNMET if required else Level.PASSWORD

    def for_interaction(self, db: Session, stored: StoredInteraction, user: StoredUser) -> Level:
        if stored.client_id is None:
            return self.for_request(db, NOTHING, None, user)
        acr = requested_acr(dict(stored.params))
        return self.for_request(db, acr, self.server.query_client(stored.client_id), user)


def satisfied(level: Level, acr: str | None) -> bool:
    """A session at ``acr`` is good enough for ``level``."""
    if level is Level.PHR:
        return acr == ACR_PHR
    if level is Level.MFA:
        return multi_factor(acr)
    return True


def second_factor_due(level: Level) -> bool:
    return level in (Level.MFA, Level.PHR)


def same_credential(user: StoredUser, credential: bytes | None) -> bool:
    """The password checked at the first step is still the account's password."""
    if user.password_hash is None or credential is None:
        return False
    return hmac.compare_digest(digest(user.password_hash), credential)


def unmet(redirect_uri: str | None) -> OAuth2Error:
    return UnmetAuthenticationRequirementsError(
        "This application requires a second factor, and the account has none. "
        "Set one up on the account page, then sign in again.",
        redirect_uri=redirect_uri,
    )


@dataclass(frozen=True)
class Methods:
    """The second factors a sign-in may use: the authenticator app (a TOTP code), a passkey;
    a backup code works with either."""

    app: bool = True
    passkey: bool = False
    #: a backup code may stand in (not where a passkey is asked for)
    backup: bool = True


APP_ONLY = Methods()


def otp_page(
    handle: str,
    client_name: str,
    *,
    lock: LockState | None = None,
    backup: bool = False,
    methods: Methods = APP_ONLY,
    error: str | None = None,
) -> Outcome:
    """The second-factor page; after a wrong code, with how many tries are left (or 429 when
    locked); ``error``: what went wrong otherwise (a passkey refused)."""
    context: dict[str, Any] = {
        "handle": handle,
        "client_name": client_name,
        "backup": backup,
        "app": methods.app,
        "passkey": methods.passkey,
        "backup_ok": methods.backup,
        "error": error,
    }
    if lock is None:
        return Outcome(page="otp.html", context=context)
    if lock.locked:
        minutes = max(1, round(lock.retry_after / 60))
        context["error"] = i18n.ngettext(
            "Too many wrong codes. Try again in %(num)d minute.",
            "Too many wrong codes. Try again in %(num)d minutes.",
            minutes,
        ) % {"num": minutes}
        return Outcome(page="otp.html", context=context, status=429, retry_after=lock.retry_after)
    context["error"] = i18n.gettext("That code is not right.")
    if lock.remaining is not None:
        left = i18n.ngettext("%(num)d attempt left.", "%(num)d attempts left.", lock.remaining)
        context["error"] += " " + left % {"num": lock.remaining}
    return Outcome(page="otp.html", context=context)


def password_change_page(handle: str, client_name: str, *, error: str | None = None) -> Outcome:
    """The page a user flagged to change their password sees once signed in (a bootstrap admin)."""
    context: dict[str, Any] = {"handle": handle, "client_name": client_name, "error": error}
    return Outcome(page="password_change.html", context=context)
