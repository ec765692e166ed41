"""Who calls the admin API: the bearer access token Ostiary issued, and the admin scopes
it really holds.

A token counts only if it is ours (signature, issuer, expiry, ``typ: at+jwt``), for the
admin API alone (``aud`` is ``{issuer}/admin/api/v1``: a token meant for another resource
server is refused, so that server cannot replay it here), still active (not revoked, its
client and grant live, its user enabled) and carries an admin scope its client is *still*
registered for: removing ``ostiary:admin`` from a client takes effect at its next call.
A user's token also needs the user to hold the admin role now, and a second factor shown
within ``OSTIARY_ADMIN_STEP_UP_SECONDS`` (``acr`` and ``auth_time``; a refreshed token keeps
its sign-in's), as the console does; else RFC 9470's ``insufficient_user_authentication``.

The signature is checked before any database work: a flood of made-up tokens costs no
connection.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..authn.levels import ACR_MFA, multi_factor
from ..keys.ring import KeyRing
from ..oauth.endpoints.lookup import access_token_active
from ..oauth.endpoints.userinfo import InvalidToken, token_user, verify_access_token
from ..oauth.tokens import ADMIN_API_PATH, ADMIN_SCOPE
from ..storage import Session, clients as client_store
from .errors import Forbidden, StepUpRequired, Unauthorized

#: every admin area; the scope ``ostiary:admin`` covers them all
SCOPE = ADMIN_SCOPE
AREAS = ("clients", "users", "keys", "audit")
SCOPES = (SCOPE, *(f"{SCOPE}:{area}" for area in AREAS))


def is_admin_scope(scope: str) -> bool:
    return scope in SCOPES


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``actor`` is what its audit rows name."""

    actor: str
    client_id: str
    user_sub: str | None
    scopes: frozenset[str]
    #: the token's ``jti``: the API's rate limit counts per token
    token_id: str

    def may(self, area: str) -> bool:
        return SCOPE in self.scopes or f"{SCOPE}:{area}" in self.scopes

    def require(self, area: str) -> None:
        if not self.may(area):
            raise Forbidden(f"the token lacks the scope {SCOPE}:{area} (or {SCOPE})", scope=f"{SCOPE}:{area}")

    def check_grantable(self, scopes: Iterable[str]) -> None:
        """A caller may give a client only the admin scopes it holds itself: a token for
        ``ostiary:admin:clients`` cannot make a client that holds ``ostiary:admin``."""
        for scope in scopes:
            if is_admin_scope(scope) and SCOPE not in self.scopes and scope not in self.scopes:
                raise Forbidden(f"only a holder of {scope} (or {SCOPE}) may grant it", scope=scope)

    def require_full(self, what: str) -> None:
        if SCOPE not in self.scopes:
            raise Forbidden(f"{what} needs the scope {SCOPE}", scope=SCOPE)


@dataclass(frozen=True)
class Verified:
    """A token's claims once its signature, issuer, expiry and audience are checked."""

    claims: dict[str, Any]
    #: how recent a user's second factor must be, in seconds
    step_up_seconds: int


def verify(ring: KeyRing, issuer: str, token: str | None, *, step_up_seconds: int) -> Verified:
    """The checks that need no database; :class:`Unauthorized` for anything not ours."""
    if token is None:
        raise Unauthorized("an access token is required (Authorization: Bearer)", error=None)
    try:
        claims = verify_access_token(ring, issuer, token)
    except InvalidToken:
        raise Unauthorized("the access token is invalid or expired") from None
    if claims.get("aud") not in (issuer + ADMIN_API_PATH, [issuer + ADMIN_API_PATH]):
        raise Unauthorized("the access token is not for the admin API (aud)")
    return Verified(claims, step_up_seconds)


def authenticate(db: Session, verified: Verified) -> Principal:
    """The principal behind a verified token, or :class:`Unauthorized`/:class:`Forbidden`."""
    claims = verified.claims
    if not access_token_active(db, claims):
        raise Unauthorized("the access token is revoked, or its client or grant is no longer active")
    client = client_store.get_client(db, str(claims.get("client_id")))
    if client is None:
        raise Unauthorized("the access token's client no longer exists")
    scopes = frozenset(_scopes(claims)) & frozenset(client.scopes) & frozenset(SCOPES)
    if not scopes:
        raise Forbidden(f"the token carries no admin scope ({SCOPE} or {SCOPE}:<area>)", scope=SCOPE)
    if "gid" not in claims:
        return Principal(f"client:{client.client_id}", client.client_id, None, scopes, str(claims.get("jti")))
    try:
        user = token_user(db, claims)
    except InvalidToken:
        raise Unauthorized("the access token's user or grant is no longer active") from None
    if not user.is_admin:
        raise Forbidden("the token's user does not hold the admin role", scope=SCOPE)
    if not multi_factor(claims.get("acr")):
        raise StepUpRequired("an administrator's token must come from a sign-in with a second factor", ACR_MFA)
    auth_time = claims.get("auth_time")
    if not isinstance(auth_time, int) or time.time() - auth_time > verified.step_up_seconds:
        raise StepUpRequired(
            f"an administrator's second factor must be at most {verified.step_up_seconds} s old: sign in again",
            ACR_MFA,
            max_age=verified.step_up_seconds,
        )
    return Principal(f"user:{user.sub}", client.client_id, user.sub, scopes, str(claims.get("jti")))


def _scopes(claims: dict[str, Any]) -> list[str]:
    scope = claims.get("scope")
    return scope.split() if isinstance(scope, str) else []
