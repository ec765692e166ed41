"""What a grant issues: an RFC 6749 §5.1 token response with an RFC 9068 JWT access token,
signed with the active key of the client's ``access_token_signed_response_alg`` (else
``OSTIARY_ACCESS_TOKEN_ALG``, RS256 by default), for the audiences that RFC 8707 resource
indicators chose."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from authlib.oauth2.rfc6750 import BearerTokenGenerator

from ..keys.holder import KeyRingHolder
from ..storage.users import StoredUser
from .clients import OAuthClient
from .errors import InvalidTargetError
from .request import OstiaryRequest


class SignInRecord(Protocol):
    """What storage keeps of the sign-in a grant came from (a code's, a family's)."""

    @property
    def grant_id(self) -> str: ...
    @property
    def session_sid(self) -> str | None: ...
    @property
    def scope(self) -> str: ...
    @property
    def auth_time(self) -> datetime | None: ...
    @property
    def acr(self) -> str | None: ...
    @property
    def amr(self) -> tuple[str, ...]: ...


R = TypeVar("R", bound=SignInRecord)


@dataclass(frozen=True, slots=True)
class Origin(Generic[R]):
    """What a token descends from (a redeemed code, a rotated refresh token), as Authlib's
    grants and OpenID hooks read it: the grant the token belongs to and what an ID token
    repeats from the sign-in (OIDC Core §2: ``auth_time``, ``acr``, ``amr``)."""

    record: R

    @property
    def grant_id(self) -> str:
        return self.record.grant_id

    @property
    def session_sid(self) -> str | None:
        return self.record.session_sid

    def get_scope(self) -> str:
        return self.record.scope

    def get_nonce(self) -> str | None:
        return None

    def get_auth_time(self) -> int | None:
        auth_time = self.record.auth_time
        return int(auth_time.timestamp()) if auth_time else None

    def get_acr(self) -> str | None:
        return self.record.acr

    def get_amr(self) -> list[str]:
        return list(self.record.amr)


class TokenIssuer:
    """The token response of one request's grant (Authlib's ``BearerTokenGenerator.generate``,
    given the request, which carries the audiences and the code or refresh token the
    tokens descend from)."""

    def __init__(self, issuer: str, keys: KeyRingHolder, ttl: int, alg: str = "RS256") -> None:
        self.issuer = issuer
        self.keys = keys
        self.ttl = ttl
        self.alg = alg

    def issue(
        self, request: OstiaryRequest, user: StoredUser | None, scope: str | None, include_refresh_token: bool
    ) -> dict[str, Any]:
        client: OAuthClient = request.client
        scope = BearerTokenGenerator.get_allowed_scope(client, scope)
        token_type = "DPoP" if request.extras.dpop_jkt is not None else "Bearer"  # RFC 9449 §5
        token: dict[str, Any] = {"token_type": token_type, "access_token": self.access_token(request, user, scope)}
        token["expires_in"] = self.ttl
        if include_refresh_token:
            # a refresh rotation stored its successor already; every other grant gets a
            # new one, stored by save_token
            token["refresh_token"] = request.extras.successor_refresh_token or new_refresh_token()
        if scope:
            token["scope"] = scope
        return token

    def access_token(self, request: OstiaryRequest, user: StoredUser | None, scope: str) -> str:
        """RFC 9068 §2.2 claims, signed by the ring's :class:`~server.keys.signer.CompactSigner`
        (header serialised once per key)."""
        client: OAuthClient = request.client
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "exp": now + self.ttl,
            "client_id": client.get_client_id(),
            "iat": now,
            # Authlib's generate_token draws one SystemRandom call per character
            "jti": random_token(16),
            "scope": scope,
            "sub": user.sub if user else client.get_client_id(),
            "aud": self.audience(client, request.extras.resources, scope),
        }
        origin: Origin[Any] | None = request.authorization_code or request.refresh_token
        if origin is not None:
            if auth_time := origin.get_auth_time():
                claims["auth_time"] = auth_time
            if acr := origin.get_acr():
                claims["acr"] = acr
            if amr := origin.get_amr():
                claims["amr"] = amr
            # gid: the grant the token descends from, so revoking the grant (a replayed
            # code, a reused refresh token, a logout) makes the token inactive at userinfo
            # and introspection. Absent for client_credentials.
            claims["gid"] = origin.grant_id
        if request.extras.dpop_jkt is not None:
            claims["cnf"] = {"jkt": request.extras.dpop_jkt}  # RFC 9449 §6.1
        alg = client.stored.access_token_alg or self.alg
        return self.keys.current.signer(alg).sign(claims, typ="at+jwt")

    def audience(self, client: OAuthClient, requested: tuple[str, ...], scope: str) -> str | list[str]:
        """:func:`audiences_for`; but a token with an admin scope and no ``resource`` is for
        the admin API alone (``{issuer}/admin/api/v1``), which accepts no other: a resource
        server that receives a token cannot replay it there."""
        if not requested and holds_admin_scope(scope):
            return self.issuer + ADMIN_API_PATH
        return audiences_for(client, requested)


class IssuingGrant:
    """What Ostiary's grants share: tokens from the server's :class:`TokenIssuer`, and the
    RFC 8707 resources checked with the client."""

    request: OstiaryRequest
    server: Any

    def generate_token(
        self,
        user: StoredUser | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        issuer: TokenIssuer = self.server.tokens
        return issuer.issue(self.request, user, scope, include_refresh_token)

    def check_resources(self, client: OAuthClient) -> None:
        requested = self.request.payload.datalist.get("resource", [])
        self.request.extras.resources = validate_resources(requested, client)


def validate_resources(values: Sequence[str], client: OAuthClient) -> tuple[str, ...]:
    """The requested resources, each registered as an audience of ``client``.

    RFC 8707 §2: absolute URIs without a fragment; a resource the client may not use is
    ``invalid_target``.
    """
    accepted: list[str] = []
    for value in values:
        try:
            parts = urlsplit(value)
        except ValueError:  # e.g. an unclosed IPv6 bracket
            raise InvalidTargetError("The resource parameter is not a valid URI.") from None
        if not parts.scheme or "#" in value or not (parts.netloc or parts.path):
            raise InvalidTargetError("The resource parameter must be an absolute URI without a fragment.")
        if value not in client.stored.audiences:
            raise InvalidTargetError("The client may not request a token for this resource.")
        accepted.append(value)
    return tuple(dict.fromkeys(accepted))


#: the admin API's scopes (``ostiary:admin`` and ``ostiary:admin:<area>``) and its address,
#: under the issuer: a token holding an admin scope is for the admin API alone
ADMIN_SCOPE = "ostiary:admin"
ADMIN_API_PATH = "/admin/api/v1"


def holds_admin_scope(scope: str | None) -> bool:
    if not scope or ADMIN_SCOPE not in scope:  # the usual answer, from one substring test
        return False
    return any(item == ADMIN_SCOPE or item.startswith(ADMIN_SCOPE + ":") for item in scope.split())


def audiences_for(client: OAuthClient, requested: tuple[str, ...]) -> str | list[str]:
    """``aud`` of an access token: the requested resources, else the client's registered
    audiences, else the client itself (RFC 9068 §3 requires a default)."""
    audiences = list(requested or client.stored.audiences)
    if not audiences:
        return client.get_client_id()
    return audiences[0] if len(audiences) == 1 else audiences


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
