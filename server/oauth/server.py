"""Ostiary's Authlib ``AuthorizationServer``: its hooks, and the grants and endpoints it registers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidClientError

from ..clients import fapi2
from ..clients.cache import ClientCache
from ..keys.holder import KeyRingHolder
from ..settings import Settings
from ..storage import clients as client_store, grants as grant_store
from ..storage.base import utcnow
from .calls import current_request
from .clients import (
    PRIVATE_KEY_JWT,
    OAuthClient,
    authenticate_basic,
    authenticate_none,
    authenticate_post,
    authenticate_private_key_jwt,
    known_client,
)
from .dpop import InvalidDPoPProofError
from .endpoints.device_authorization import DeviceAuthorization
from .endpoints.end_session import EndSession
from .endpoints.introspection import Introspection
from .endpoints.pushed_authorization import PushedAuthorization
from .endpoints.revocation import Revocation
from .grants.authorization_code import AuthorizationCodeGrant, S256CodeChallenge
from .grants.client_credentials import ClientCredentialsGrant
from .grants.device_code import DeviceCodeGrant, OpenIDDevice
from .grants.refresh_token import RefreshTokenGrant
from .openid import OpenIDCode, OpenIDRefresh
from .request import OAuthResponse, OstiaryRequest
from .tokens import TokenIssuer


class OstiaryAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, settings: Settings, keys: KeyRingHolder) -> None:
        super().__init__()
        self.settings = settings
        self.client_cache = ClientCache(settings.client_cache_ttl, fapi2.profile_view(settings.profile))
        self.tokens = TokenIssuer(settings.issuer, keys, settings.access_token_ttl, settings.access_token_alg)
        self.register_client_auth_method("client_secret_basic", authenticate_basic)
        self.register_client_auth_method("client_secret_post", authenticate_post)
        self.register_client_auth_method("none", authenticate_none)
        self.register_client_auth_method(PRIVATE_KEY_JWT, authenticate_private_key_jwt)
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
                "PUBLIC_IDLE_TTL": settings.refresh_token_idle_ttl_public,
            },
        )
        self.register_grant(refresh_grant, [OpenIDRefresh(settings.issuer, keys, settings.id_token_ttl)])
        self.register_grant(DeviceCodeGrant, [OpenIDDevice(settings.issuer, keys, settings.id_token_ttl)])
        self.register_endpoint(DeviceAuthorization(self, settings))
        self.register_endpoint(EndSession(self, keys))
        self.register_endpoint(Revocation(self, keys, settings.issuer))
        #: RFC 7662 ``/introspect``: its token is looked up before the call (see the class)
        self.introspection = Introspection(self, keys, settings.issuer)
        self.register_endpoint(self.introspection)
        #: RFC 9126 ``/par``; the sign-in flow installs the authorization endpoint's rules
        self.pushed_authorization = PushedAuthorization(self, settings)
        self.register_endpoint(self.pushed_authorization)

    def validated_token_grant(self, request: OstiaryRequest) -> Any:
        """The first half of Authlib's ``create_token_response``: the request's grant, its
        client authenticated and its request validated (an ``OAuth2Error`` otherwise)."""
        grant = self.get_token_grant(request)
        grant.validate_token_request()
        return grant

    def issue(self, grant: Any) -> OAuthResponse:
        """The second half: the validated grant's tokens, or its error."""
        try:
            return self.handle_response(*grant.create_token_response())
        except OAuth2Error as error:
            return self.handle_error_response(grant.request, error)  # type: ignore[no-any-return]

    def authenticate_client(self, request: OstiaryRequest, methods: list[str], endpoint: str = "token") -> OAuthClient:
        """Authlib's client authentication, with one answer for an unknown client, a wrong
        secret and missing credentials."""
        try:
            client: OAuthClient = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            raise InvalidClientError(status_code=401, description="Client authentication failed.") from None
        if client.stored.fapi2:
            _check_fapi2_credentials(client, request)
        if endpoint == "token" and client.stored.dpop_bound_access_tokens and request.extras.dpop_jkt is None:
            # RFC 9449 §5.2: refused before the grant does anything (a refresh token rotates)
            raise InvalidDPoPProofError("This client's tokens are DPoP-bound: send a DPoP proof.")
        return client

    def query_client(self, client_id: str) -> OAuthClient | None:
        """Authlib's own lookups (the authorization and logout endpoints): a client the
        request's endpoint looked up already, else the cache or the request's transaction."""
        request = current_request()
        if request is None:
            raise RuntimeError("query_client outside a call of server.oauth.calls.in_transaction")
        if client_id in request.extras.clients:
            return known_client(request, client_id)
        db = request.extras.session
        stored = self.client_cache.get(client_id, lambda: client_store.get_client(db, client_id))
        if stored is None or stored.disabled_at is not None:
            return None
        return OAuthClient(stored)

    def save_token(self, token: dict[str, Any], request: OstiaryRequest) -> None:
        """Record what a user-bound token needs; JWT access tokens themselves are not stored.

        A device code's redemption (RFC 8628) creates the grant (the family) and its first
        refresh token (:meth:`family`); a code exchange does too, as it consumes its code
        (the grant's own ``save_token``). A refresh stored its successor already, when it
        consumed the presented token.
        """
        if request.authorization_code is None:
            return
        grant_store.insert_grant(request.extras.session, **self.family(token, request))

    def family(self, token: dict[str, Any], request: OstiaryRequest) -> dict[str, Any]:
        """The grant that the code (or device code) of ``request`` creates with ``token``,
        as :func:`server.storage.grants.insert_grant` takes it. A family without
        ``offline_access`` is bound to the browser session it came from, so signing out
        ends it; a device's never is."""
        code = request.authorization_code.record
        refresh_token, now = token.get("refresh_token"), utcnow()
        scope = token.get("scope", "")
        family_expires = now + timedelta(seconds=self.settings.refresh_family_ttl)
        first_refresh_token = None
        if refresh_token:
            idle = self.settings.refresh_token_idle_ttl
            if request.client.is_public:
                idle = self.settings.refresh_token_idle_ttl_public
            expires_at = min(now + timedelta(seconds=idle), family_expires)
            first_refresh_token = (refresh_token, expires_at)
        # RFC 9449 §5: a public client's refresh tokens are bound to its DPoP key, if it used one
        dpop_jkt = request.extras.dpop_jkt if request.client.is_public else None
        return {
            "grant_id": code.grant_id,
            "client_id": code.client_id,
            "user_id": code.user_id,
            "scope": scope,
            "session_sid": None if "offline_access" in scope.split() else code.session_sid,
            "expires_at": family_expires,
            "auth_time": code.auth_time,
            "acr": code.acr,
            "amr": list(code.amr),
            "first_refresh_token": first_refresh_token,
            "dpop_jkt": dpop_jkt,
        }

    def create_oauth2_request(self, request: OstiaryRequest) -> OstiaryRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        # Authlib signals every client authentication; nothing subscribes yet.
        return None


def _check_fapi2_credentials(client: OAuthClient, request: OstiaryRequest) -> None:
    """What a FAPI 2.0 client proves itself with: ``private_key_jwt`` (§5.3.2.1; a client
    registered before ``OSTIARY_PROFILE`` held it may have another method), and DPoP
    proofs signed PS256 or ES256 (§5.4.1)."""
    if client.stored.token_endpoint_auth_method != PRIVATE_KEY_JWT:
        raise InvalidClientError(
            status_code=401, description="The FAPI 2.0 profile requires private_key_jwt client authentication."
        )
    if request.extras.dpop_alg is not None and request.extras.dpop_alg not in fapi2.ALGS:
        raise InvalidDPoPProofError("A FAPI 2.0 client signs its DPoP proofs with PS256 or ES256.")
