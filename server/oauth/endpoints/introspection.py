"""Token introspection (RFC 7662).

Who may introspect: the client a token was issued to, and clients registered with
``--introspection`` (resource servers). Anyone else is told ``{"active": false}``, the
same answer as for an unknown token, so introspection is no oracle.

The token is looked up before Authlib's call, in a read of its own (:meth:`look_up`), so
that call needs no database: on PostgreSQL an access token's check is one statement with
no session around it.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from ...storage import AsyncSession, async_sessionmaker
from ..clients import CONFIDENTIAL_METHODS
from ..request import OstiaryRequest
from .lookup import AccessTokenState, KnownToken, TokenLookup


class Introspection(TokenLookup, IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = list(CONFIDENTIAL_METHODS)

    async def look_up(self, request: OstiaryRequest, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """The request's token into its extras, for :meth:`authenticate_token`. Only for a
        request that names a client we know: one that cannot authenticate reads nothing."""
        token = request.form.get("token")
        known = request.extras.asserted_client_id is not None or any(request.extras.clients.values())
        if token and known:
            request.extras.introspected = await self.recognise(token, sessionmaker)

    def authenticate_token(self, request: OstiaryRequest, client: Any) -> KnownToken | None:
        self.check_params(request, client)
        token = request.extras.introspected
        return token if token is not None and self.check_permission(token, client, request) else None

    def check_permission(self, token: KnownToken, client: Any, request: Any) -> bool:
        return bool(token.check_client(client) or client.stored.introspection)

    def introspect_token(self, token: KnownToken) -> dict[str, Any]:
        if isinstance(token, AccessTokenState):
            fields = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "jti", "cnf")
            payload = {name: token.claims[name] for name in fields if name in token.claims}
            # RFC 9449 §6.2: a bound token says so, and to which key (cnf.jkt)
            token_type = "DPoP" if "cnf" in payload else "Bearer"
            return {"active": True, "token_type": token_type, **payload}
        record = token.record
        return {
            "active": True,
            "token_type": "refresh_token",
            "scope": record.scope,
            "client_id": record.client_id,
            "sub": record.user_sub,
            "iss": self.issuer,
            "iat": int(record.created_at.timestamp()),
            "exp": int(record.expires_at.timestamp()),
        }
