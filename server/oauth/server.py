"""Ostiary's Authlib ``AuthorizationServer``: storage and response hooks, grants, tokens."""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidClientError

from ..clients.cache import ClientCache
from ..keys.holder import KeyRingHolder
from ..settings import Settings
from ..storage import clients as client_store, grants as grant_store
from .bridge import OAuthResponse, OstiaryRequest, current_session
from .client_auth import authenticate_basic, authenticate_post
from .clients import OAuthClient
from .end_session import EndSession
from .grants import AuthorizationCodeGrant, ClientCredentialsGrant
from .openid import OpenIDCode
from .pkce import S256CodeChallenge
from .tokens import AccessTokenGenerator


class OstiaryAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, settings: Settings, keys: KeyRingHolder) -> None:
        super().__init__()
        self.settings = settings
        self.client_cache = ClientCache(settings.client_cache_ttl)
        self.register_client_auth_method("client_secret_basic", authenticate_basic)
        self.register_client_auth_method("client_secret_post", authenticate_post)
        self.register_token_generator("default", AccessTokenGenerator(settings.issuer, keys, settings.access_token_ttl))
        self.register_grant(ClientCredentialsGrant)
        code_grant = type("CodeGrant", (AuthorizationCodeGrant,), {"CODE_TTL": settings.auth_code_ttl})
        self.register_grant(
            code_grant, [OpenIDCode(settings.issuer, keys, settings.id_token_ttl), S256CodeChallenge(required=True)]
        )
        self.register_endpoint(EndSession(self, keys))

    def authenticate_client(self, request: OstiaryRequest, methods: list[str], endpoint: str = "token") -> OAuthClient:
        try:
            client: OAuthClient = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            # One answer for unknown client, wrong secret and missing credentials.
            raise InvalidClientError(status_code=401, description="Client authentication failed.") from None
        return client

    def query_client(self, client_id: str) -> OAuthClient | None:
        stored = self.client_cache.get(client_id, lambda: client_store.get_client(current_session(), client_id))
        if stored is None or stored.disabled_at is not None:
            return None
        return OAuthClient(stored)

    def save_token(self, token: dict[str, Any], request: OstiaryRequest) -> None:
        """Record the grant a code exchange creates; JWT access tokens themselves are not stored.

        A grant without ``offline_access`` is bound to the browser session it came from,
        so signing out ends it (and the tokens it issued).
        """
        code = request.authorization_code
        if code is None:
            return
        scope = token.get("scope", "")
        grant_store.insert_grant(
            current_session(),
            grant_id=code.grant_id,
            client_id=code.client_id,
            user_id=code.user_id,
            scope=scope,
            session_sid=None if "offline_access" in scope.split() else code.session_sid,
        )

    def create_oauth2_request(self, request: OstiaryRequest) -> OstiaryRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        # Authlib signals every client authentication; nothing subscribes yet.
        return None
