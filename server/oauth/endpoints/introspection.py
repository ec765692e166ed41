"""Token introspection (RFC 7662).

Who may introspect: the client a token was issued to, and clients registered with
``--introspection`` (resource servers). Anyone else is told ``{"active": false}``, the
same answer as for an unknown token, so introspection is no oracle.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from ...storage.refresh import TokenState
from ..clients import SECRET_METHODS
from ..request import OstiaryRequest
from .lookup import AccessTokenState, TokenLookup


class Introspection(TokenLookup, IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(SECRET_METHODS)

    def authenticate_token(self, request: OstiaryRequest, client: Any) -> AccessTokenState | TokenState | None:
        self.check_params(request, client)
        token = self.find(request)
        return token if token is not None and self.check_permission(token, client, request) else None

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
