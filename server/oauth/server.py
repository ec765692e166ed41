"""Ostiary's Authlib ``AuthorizationServer``: storage and response hooks, grants, tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import InvalidClientError

from ..clients.cache import ClientCache
from ..keys.holder import KeyRingHolder
from ..settings import Settings
from ..storage import AsyncEngine, clients as client_store, grants as grant_store, refresh as refresh_store
from ..storage.base import utcnow
from ..storage.clients import StoredClient
from .bridge import (
    OAuthResponse,
    OstiaryRequest,
    call_without_session,
    current_request,
    current_session,
    has_session,
)
from .client_auth import authenticate_basic, authenticate_post
from .clients import OAuthClient
from .end_session import EndSession
from .grants import AuthorizationCodeGrant, ClientCredentialsGrant, RefreshTokenGrant, Rotation
from .openid import OpenIDCode, OpenIDRefresh
from .pkce import S256CodeChallenge
from .token_endpoints import Introspection, Revocation
from .tokens import AccessTokenGenerator


class OstiaryAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, settings: Settings, keys: KeyRingHolder) -> None:
        super().__init__()
        self.settings = settings
        self.client_cache = ClientCache(settings.client_cache_ttl)
        self.register_client_auth_method("client_secret_basic", authenticate_basic)
        self.register_client_auth_method("client_secret_post", authenticate_post)
        access_tokens = AccessTokenGenerator(
            settings.issuer, keys, settings.access_token_ttl, settings.access_token_alg
        )
        self.register_token_generator("default", access_tokens)
        self.register_grant(ClientCredentialsGrant)
        code_grant = type("CodeGrant", (AuthorizationCodeGrant,), {"CODE_TTL": settings.auth_code_ttl})
        id_tokens = OpenIDCode(settings.issuer, keys, settings.id_token_ttl)
        self.register_grant(code_grant, [id_tokens, S256CodeChallenge(required=True)])
        refresh_grant = type(
            "RefreshGrant",
            (RefreshTokenGrant,),
            {
                "GRACE_SECONDS": settings.refresh_reuse_grace_seconds,
                "GRACE_COUNT": settings.refresh_reuse_grace_count,
                "IDLE_TTL": settings.refresh_token_idle_ttl,
            },
        )
        self.register_grant(refresh_grant, [OpenIDRefresh(settings.issuer, keys, settings.id_token_ttl)])
        self.register_endpoint(EndSession(self, keys))
        self.register_endpoint(Revocation(self, keys, settings.issuer))
        self.register_endpoint(Introspection(self, keys, settings.issuer))

    def authenticate_client(self, request: OstiaryRequest, methods: list[str], endpoint: str = "token") -> OAuthClient:
        """Authlib's client authentication, with one answer for an unknown client, a wrong
        secret and missing credentials. A request is authenticated once per endpoint and
        set of methods: a refresh that rotates ahead asks twice (``rotate_ahead``, then the
        grant)."""
        key = (endpoint, tuple(methods))
        if request.authenticated is not None and request.authenticated[0] == key:
            _, known, request.auth_method = request.authenticated
            return known
        try:
            client: OAuthClient = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            raise InvalidClientError(status_code=401, description="Client authentication failed.") from None
        request.authenticated = (key, client, request.auth_method)
        return client

    def query_client(self, client_id: str) -> OAuthClient | None:
        request = current_request()
        prefetched = request.prefetched_clients if request is not None else None
        if prefetched is not None and (client_id in prefetched or not has_session()):
            stored = prefetched.get(client_id)
        else:
            stored = self.client_cache.get(client_id, lambda: client_store.get_client(current_session(), client_id))
        if stored is None or stored.disabled_at is not None:
            return None
        return OAuthClient(stored)

    async def prefetch_clients(
        self, sessionmaker: Callable[[], Any], client_ids: Iterable[str]
    ) -> dict[str, StoredClient | None]:
        """Snapshots of ``client_ids`` (None for unknown ones), from the cache or the database,
        for a call that runs without a session (:func:`call_without_session`)."""

        async def load(client_id: str) -> StoredClient | None:
            async with sessionmaker() as session:
                return await session.run_sync(lambda db: client_store.get_client(db, client_id))  # type: ignore[no-any-return]

        found: dict[str, StoredClient | None] = {}
        for client_id in client_ids:
            found[client_id] = await self.client_cache.aget(client_id, partial(load, client_id))
        return found

    async def rotate_ahead(self, engine: AsyncEngine, request: OstiaryRequest) -> bool:
        """Rotate the refresh token ``request`` presents before its grant runs: one statement
        on ``engine`` (PostgreSQL, committed on its own), made only once every check that needs no
        database passed. True when it rotated (``request.rotated``): the grant then runs
        without a session. False when nothing was written, for the grant to run the
        ordinary way. Clients must be in ``request.prefetched_clients``."""
        grant: RefreshTokenGrant = self.get_token_grant(request)
        plan = call_without_session(request, grant.plan_rotation)
        if plan is None:
            return False
        family = await refresh_store.rotate_ahead(
            engine, plan.token, plan.client_id, plan.successor, plan.idle_expires_at, plan.scopes
        )
        if family is None:
            return False
        request.rotated = Rotation(plan.token, plan.successor, family)
        return True

    def save_token(self, token: dict[str, Any], request: OstiaryRequest) -> None:
        """Record what a user-bound token needs; JWT access tokens themselves are not stored.

        A code exchange creates the grant (the family) and its first refresh token. A
        refresh stored its successor already, when it consumed the presented token. A
        family without ``offline_access`` is bound to the browser session it came from, so
        signing out ends it.
        """
        code = request.authorization_code
        refresh_token = token.get("refresh_token")
        if code is not None:
            db, now = current_session(), utcnow()
            scope = token.get("scope", "")
            family_expires = now + timedelta(seconds=self.settings.refresh_family_ttl)
            first_refresh_token = None
            if refresh_token:
                expires_at = min(now + timedelta(seconds=self.settings.refresh_token_idle_ttl), family_expires)
                first_refresh_token = (refresh_token, expires_at)
            grant_store.insert_grant(
                db,
                grant_id=code.grant_id,
                client_id=code.client_id,
                user_id=code.user_id,
                scope=scope,
                session_sid=None if "offline_access" in scope.split() else code.session_sid,
                expires_at=family_expires,
                auth_time=code.auth_time,
                acr=code.acr,
                amr=list(code.amr),
                first_refresh_token=first_refresh_token,
            )

    def create_oauth2_request(self, request: OstiaryRequest) -> OstiaryRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        # Authlib signals every client authentication; nothing subscribes yet.
        return None
