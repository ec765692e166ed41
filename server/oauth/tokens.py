"""RFC 9068 JWT access tokens, signed with the active key of ``OSTIARY_ACCESS_TOKEN_ALG`` (RS256)."""

from __future__ import annotations

import base64
import ssl
import time
from typing import Any

from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator

from ..keys.holder import KeyRingHolder
from ..storage.codes import StoredCode
from ..storage.refresh import FamilyToken
from .bridge import current_request
from .clients import OAuthClient
from .resources import audiences_for


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    def __init__(self, issuer: str, keys: KeyRingHolder, ttl: int, alg: str = "RS256") -> None:
        super().__init__(
            issuer,
            alg=alg,
            expires_generator=lambda _client, _grant: ttl,
            refresh_token_generator=_refresh_token,
        )
        self.keys = keys

    def access_token_generator(self, client: Any, grant_type: str, user: Any, scope: str) -> str:
        """RFC 9068 §2.2 claims, as Authlib's generator builds them, signed by the ring's
        :class:`~server.keys.signer.CompactSigner` (header serialised once per key)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "exp": now + self._get_expires_in(client, grant_type),
            "client_id": client.get_client_id(),
            "iat": now,
            "jti": self.get_jti(client, grant_type, user, scope),
            "scope": scope,
            "sub": str(user.get_user_id()) if user else client.get_client_id(),
            "aud": self.get_audiences(client, user, scope),
        }
        if auth_time := self.get_auth_time(user):
            claims["auth_time"] = auth_time
        if acr := self.get_acr(user):
            claims["acr"] = acr
        if amr := self.get_amr(user):
            claims["amr"] = amr
        claims.update(self.get_extra_claims(client, grant_type, user, scope))
        return self.keys.current.signer(self.alg).sign(claims, typ="at+jwt")

    def get_jti(self, client: Any, grant_type: str, user: Any, scope: str) -> str:
        # Authlib's generate_token draws one SystemRandom call per character.
        return random_token(16)

    def get_audiences(self, client: OAuthClient, user: Any, scope: str) -> str | list[str]:
        request = current_request()
        return audiences_for(client, request.resources if request is not None else ())

    def get_extra_claims(self, client: Any, grant_type: str, user: Any, scope: str) -> dict[str, Any]:
        # gid: the grant the token descends from, so revoking the grant (a replayed code,
        # a reused refresh token, a logout) makes the token inactive at userinfo and
        # introspection. Absent for client_credentials.
        origin = _origin()
        return {"gid": origin.grant_id} if origin is not None else {}

    def get_auth_time(self, user: Any) -> int | None:
        origin = _origin()
        return origin.get_auth_time() if origin is not None else None

    def get_acr(self, user: Any) -> str | None:
        origin = _origin()
        return origin.get_acr() if origin is not None else None

    def get_amr(self, user: Any) -> list[str] | None:
        origin = _origin()
        return origin.get_amr() if origin is not None else None


def new_refresh_token() -> str:
    """256 random bits, opaque."""
    return random_token(32)


def random_token(nbytes: int) -> str:
    """``nbytes`` random bytes in base64url without padding, as ``secrets.token_urlsafe``
    gives them, drawn from OpenSSL's CSPRNG for the token endpoint's hot paths.

    ``os.urandom``, behind ``secrets``, lets go of the GIL around its system call. On the
    event loop, a signing thread takes the GIL then, and the loop waits for it back in the
    middle of a request; on a signing thread it is one more hand-off. ``ssl.RAND_bytes``
    (OpenSSL's DRBG: seeded by the operating system, reseeded in a forked child) keeps the
    GIL (measured in docs/benchmarks.md, fourth pass).
    """
    return base64.urlsafe_b64encode(ssl.RAND_bytes(nbytes)).rstrip(b"=").decode("ascii")


def _refresh_token(**_: Any) -> str:
    # A refresh rotation stored its successor already, in the statement that consumed the
    # presented token; every other grant gets a new one, stored by save_token.
    request = current_request()
    successor = request.successor_refresh_token if request is not None else None
    return successor or new_refresh_token()


def _origin() -> StoredCode | FamilyToken | None:
    """The code or refresh token a user-bound token is issued from."""
    request = current_request()
    if request is None:
        return None
    origin: StoredCode | FamilyToken | None = request.authorization_code or request.refresh_token
    return origin
