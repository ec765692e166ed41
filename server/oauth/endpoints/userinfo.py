"""Verifying our own access tokens for ``/userinfo`` (OIDC Core §5.3, RFC 6750)."""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from ...keys.ring import KeyRing
from ...settings import SIGNING_ALGS
from ...storage import AsyncSession, Session, access_tokens, async_sessionmaker
from ...storage.users import StoredUser


class InvalidToken(Exception):
    """The bearer token is malformed, not ours, expired, or revoked. ``client_id``: the
    client a token we signed was issued to (an expired one, say), else None."""

    def __init__(self, reason: str, client_id: str | None = None) -> None:
        super().__init__(reason)
        self.client_id = client_id


def verify_access_token(ring: KeyRing, issuer: str, token: str) -> dict[str, Any]:
    """Signature, ``typ: at+jwt`` (RFC 9068 §4: never an ID token), issuer and expiry."""
    try:
        decoded = jwt.decode(token, ring.verification, algorithms=list(SIGNING_ALGS))
    except (JoseError, ValueError, TypeError, UnicodeError) as exc:
        raise InvalidToken(type(exc).__name__) from None
    client_id = decoded.claims.get("client_id")
    signed_for = client_id if isinstance(client_id, str) else None
    if decoded.header.get("typ") != "at+jwt":
        raise InvalidToken("not an access token")
    try:
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": issuer}, exp={"essential": True}, sub={"essential": True}
        ).validate(decoded.claims)
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidToken(type(exc).__name__, signed_for) from None
    return dict(decoded.claims)


def token_user(db: Session, claims: dict[str, Any]) -> StoredUser:
    """The active user behind a verified token that is not revoked and whose grant is active."""
    jti, grant_id, sub = _user_token_keys(claims)
    return _found(access_tokens.active_user(db, jti, grant_id, sub))


async def active_user(sessionmaker: async_sessionmaker[AsyncSession], claims: dict[str, Any]) -> StoredUser:
    """:func:`token_user` in a read of its own (one statement)."""
    jti, grant_id, sub = _user_token_keys(claims)
    return _found(await access_tokens.active_user_alone(sessionmaker, jti, grant_id, sub))


def _user_token_keys(claims: dict[str, Any]) -> tuple[str, str, str]:
    grant_id = claims.get("gid")
    if not isinstance(grant_id, str):
        raise InvalidToken("not a user's token")
    return str(claims.get("jti")), grant_id, str(claims["sub"])


def _found(user: StoredUser | None) -> StoredUser:
    if user is None:
        raise InvalidToken("revoked, or its grant or user is not active")
    return user
