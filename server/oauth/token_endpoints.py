"""Revocation (RFC 7009) and introspection (RFC 7662) on Authlib's endpoints.

Tokens are recognised by shape: a JWT is one of our access tokens (verified, then checked
against the deny list and its grant), anything else is looked up as a refresh token.

Who may introspect: the client a token was issued to, and clients registered with
``--introspection`` (resource servers). Anyone else is told ``{"active": false}``, the
same answer as for an unknown token, so introspection is no oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import UnsupportedTokenTypeError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from ..keys.holder import KeyRingHolder
from ..storage import (
    Session,
    access_tokens,
    denylist,
    grants as grant_store,
    refresh as refresh_store,
)
from ..storage.refresh import TokenState
from .bridge import current_session
from .clients import SECRET_METHODS
from .userinfo import InvalidToken, verify_access_token


@dataclass(frozen=True)
class AccessTokenState:
    claims: dict[str, Any]
    active: bool

    @property
    def client_id(self) -> str:
        return str(self.claims.get("client_id"))

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def is_expired(self) -> bool:
        return not self.active

    def is_revoked(self) -> bool:
        return not self.active


def access_token_active(db: Session, claims: dict[str, Any]) -> bool:
    """Not on the deny list, its client enabled, and its grant (when user-bound) not
    revoked nor its user disabled: one statement."""
    grant_id = claims.get("gid")
    return access_tokens.is_active(
        db, str(claims.get("jti")), None if grant_id is None else str(grant_id), str(claims.get("client_id"))
    )


def find_token(keys: KeyRingHolder, issuer: str, token: str) -> AccessTokenState | TokenState | None:
    db = current_session()
    if token.count(".") == 2:
        try:
            claims = verify_access_token(keys.current, issuer, token)
        except InvalidToken:
            return None
        return AccessTokenState(claims, access_token_active(db, claims))
    if len(token) > 256:
        return None
    return refresh_store.lookup(db, token)


class _UnsupportedTokenType(OAuth2Error):  # type: ignore[misc]
    error = "unsupported_token_type"
    status_code = 400


class _Lookup:
    SUPPORTED_TOKEN_TYPES = ("access_token", "refresh_token")

    def __init__(self, server: Any, keys: KeyRingHolder, issuer: str) -> None:
        super().__init__(server)  # type: ignore[call-arg]
        self.keys = keys
        self.issuer = issuer

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessTokenState | TokenState | None:
        return find_token(self.keys, self.issuer, token_string)

    def check_params(self, request: Any, client: Any) -> None:
        # Authlib answers an unknown token_type_hint with 401 (its UnsupportedTokenTypeError
        # is a ForbiddenError); RFC 7009 §2.2.1 errors are RFC 6749 §5.2 responses: 400.
        try:
            super().check_params(request, client)  # type: ignore[misc]
        except UnsupportedTokenTypeError:
            raise _UnsupportedTokenType() from None


class Revocation(_Lookup, RevocationEndpoint):  # type: ignore[misc]
    """Revoking a refresh token revokes its family (RFC 7009 §2.1); an access token goes on
    the deny list until it expires; an unknown token is a 200 all the same."""

    CLIENT_AUTH_METHODS = [*SECRET_METHODS, "none"]

    def authenticate_token(self, request: Any, client: Any) -> AccessTokenState | TokenState | None:
        # Another client's token is answered like an unknown one (200, nothing revoked):
        # Authlib's invalid_grant would tell the caller that the string is a live token.
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token: AccessTokenState | TokenState, request: Any) -> None:
        db = current_session()
        if isinstance(token, AccessTokenState):
            expires = datetime.fromtimestamp(int(token.claims["exp"]), UTC)
            denylist.revoke(db, str(token.claims["jti"]), expires)
        else:
            grant_store.revoke(db, token.grant_id, "revoked_by_client")


class Introspection(_Lookup, IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(SECRET_METHODS)

    def check_permission(self, token: AccessTokenState | TokenState, client: Any, request: Any) -> bool:
        return bool(token.check_client(client) or client.stored.introspection)

    def introspect_token(self, token: AccessTokenState | TokenState) -> dict[str, Any]:
        if isinstance(token, AccessTokenState):
            fields = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti")
            payload = {name: token.claims[name] for name in fields if name in token.claims}
            return {"active": True, "token_type": "Bearer", **payload}
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": token.scope,
            "client_id": token.client_id,
            "sub": token.user_sub,
            "iss": self.issuer,
            "iat": int(token.created_at.timestamp()),
            "exp": int(token.expires_at.timestamp()),
        }
