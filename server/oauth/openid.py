"""OpenID Connect Core: ID tokens from the code flow, and the claims of a user."""

from __future__ import annotations

import time
from typing import Any

from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode as AuthlibOpenIDCode
from authlib.oidc.core.grants.util import create_half_hash, is_openid_scope, validate_request_prompt

from ..keys.holder import KeyRingHolder
from ..storage import codes as code_store
from ..storage.users import StoredUser
from .tokens import Origin

SCOPE_CLAIMS = {
    "profile": ("name", "preferred_username", "updated_at"),
    "email": ("email", "email_verified"),
}


def user_claims(user: StoredUser, scope: str) -> UserInfo:
    """The claims ``scope`` releases about ``user`` (OIDC Core §5.4)."""
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": user.sub}
    if "profile" in scopes:
        claims["name"] = user.name or user.username
        claims["preferred_username"] = user.username
        claims["updated_at"] = int(user.updated_at.timestamp())
    if "email" in scopes and user.email:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return UserInfo(claims)


class OpenIDCode(AuthlibOpenIDCode):  # type: ignore[misc]
    """ID tokens signed by the active key of the client's registered algorithm (RS256 unless
    it registered ``id_token_signed_response_alg``: PS256, ES256, or Ed25519 once a key for
    it exists); never ``none`` or an HMAC."""

    def __init__(self, issuer: str, keys: KeyRingHolder, ttl: int) -> None:
        super().__init__(require_nonce=False)
        self.issuer = issuer
        self.keys = keys
        self.ttl = ttl

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        """Authlib's claims (OIDC Core §2, §3.1.3.6 ``at_hash``), signed by the ring's
        :class:`~server.keys.signer.CompactSigner`."""
        alg = self.get_client_algorithm(request.client)
        claims: dict[str, Any] = self.get_compatible_claims(request)
        if request.authorization_code:
            claims.update(self.get_authorization_code_claims(request.authorization_code))
        access_token = token.get("access_token")
        if access_token:
            at_hash = create_half_hash(access_token, alg)
            if at_hash is not None:
                claims["at_hash"] = at_hash.decode("utf-8")
        claims.update(self.generate_user_info(request.user, token["scope"]))
        return self.keys.current.signer(alg).sign(claims, typ="JWT")

    def __call__(self, grant: Any) -> None:
        # Authlib registers the nonce and prompt checks only when the *requested* scope has
        # openid; an omitted scope grants the registered ones (openid included), so key the
        # checks on the granted scope instead, which is known once the payload is validated.
        grant.register_hook("after_create_token_response", self.process_token)
        grant.register_hook("after_validate_authorization_request_payload", self._validate_openid_request)
        grant.register_hook("after_validate_consent_request", self._validate_prompt)

    def _validate_openid_request(self, grant: Any, redirect_uri: str) -> None:
        if is_openid_scope(grant.request.scope):
            self.validate_openid_authorization_request(grant, redirect_uri)

    def _validate_prompt(self, grant: Any, redirect_uri: str, redirect_fragment: bool = False) -> Any:
        if is_openid_scope(grant.request.scope):
            return validate_request_prompt(grant, redirect_uri, redirect_fragment)
        return grant

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return code_store.nonce_used(request.extras.session, request.payload.client_id, nonce)

    def get_client_algorithm(self, client: Any) -> str:
        alg: str = client.stored.id_token_alg or "RS256"
        return alg

    def get_client_claims(self, client: Any) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.issuer, "aud": client.get_client_id(), "iat": now, "exp": now + self.ttl}

    def get_authorization_code_claims(self, authorization_code: Origin[Any]) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if authorization_code.session_sid:
            claims["sid"] = authorization_code.session_sid
        return claims

    def generate_user_info(self, user: StoredUser, scope: str) -> UserInfo:
        return user_claims(user, scope)


class OpenIDRefresh(OpenIDCode):
    """A new ID token with every refresh when ``openid`` was granted (OIDC Core §12.2):
    same ``sub``, the original ``auth_time``/``acr``/``amr``, no ``nonce``."""

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)

    def get_compatible_claims(self, request: Any) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_compatible_claims(request)
        if request.refresh_token is not None:
            claims.update(self.get_authorization_code_claims(request.refresh_token))
        return claims
