"""``private_key_jwt`` client authentication (RFC 7523 §2.2, OpenID Connect Core §9).

The client signs a short-lived JWT with its own private key and sends it as
``client_assertion``; no secret is shared. The assertion is checked before Authlib's call,
where waiting is possible: the client's keys may have to be fetched from its ``jwks_uri``,
and its ``jti`` is recorded in the database, so that no process accepts it twice. Authlib's
client authentication then finds the verified client in the request's extras
(:func:`server.oauth.clients.authenticate_private_key_jwt`); a request whose assertion
failed, for whatever reason, finds none and gets the one ``invalid_client`` answer every
failed authentication gets. The reason is logged, never the assertion.

The claims are checked by Authlib's :class:`JWTBearerClientAssertion` (``iss`` = ``sub``,
``aud``, ``exp``, ``nbf``, ``iat``, with a minute's leeway); the signature by joserfc with
only the algorithm the client registered; and here: the lifetime (``iat``, or now, to
``exp``) within ``OSTIARY_CLIENT_ASSERTION_MAX_LIFETIME``, the ``jti``, and ``client_id``
when the body names one too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet

from ..clients import fapi2
from ..clients.jwks import ASSERTION_ALGS, KEY_TYPES, ClientKeySets, JwksUnavailable, numeric_date
from ..settings import Settings
from ..storage import AsyncSession, async_sessionmaker, jtis, transactions
from ..storage.base import utcnow
from ..storage.clients import StoredClient
from .request import OstiaryRequest

log = logging.getLogger("ostiary.oauth.assertions")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
__all__ = ["ASSERTION_ALGS", "ASSERTION_TYPE", "AssertionVerifier", "Presented", "presented"]
#: clock skew allowed on ``exp``, ``nbf`` and ``iat``
LEEWAY = 60


@dataclass(frozen=True, slots=True)
class Presented:
    """A client assertion as sent, read but not yet verified."""

    token: str
    #: the client it names (``sub``), to look up before anything is trusted
    client_id: str
    kid: str | None
    alg: str


def presented(request: OstiaryRequest) -> Presented | None:
    """The client assertion ``request`` carries; None when it carries none or one that
    cannot even be read (which then authenticates nobody)."""
    form = request.form
    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        return None
    token = form["client_assertion"]
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        claims = json.loads(compact.payload)
    except (JoseError, ValueError, UnicodeError, RecursionError):  # RecursionError: JSON nested too deep
        return None
    subject, header = claims.get("sub") if isinstance(claims, dict) else None, compact.headers()
    kid, alg = header.get("kid"), header.get("alg")
    if not isinstance(subject, str) or not subject or not isinstance(alg, str):
        return None
    return Presented(token, subject, kid if isinstance(kid, str) else None, alg)


class _Claims(JWTBearerClientAssertion):  # type: ignore[misc]
    """Authlib's checks of an assertion's claims, for our audiences; the ``jti`` is ours."""

    def __init__(self, audiences: Sequence[str]) -> None:
        super().__init__(validate_jti=False, leeway=LEEWAY)
        self.audiences = list(audiences)

    def get_audiences(self) -> list[str]:
        return self.audiences


class AssertionVerifier:
    def __init__(self, settings: Settings, keys: ClientKeySets, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.issuer = settings.issuer
        #: RFC 7523 §3 names the token endpoint; FAPI 2.0 and RFC 7523's successor, the issuer
        self.audiences = (settings.issuer, settings.endpoint("/token"))
        self.max_lifetime = settings.client_assertion_max_lifetime
        self.keys = keys
        self.sessionmaker = sessionmaker

    async def verify(self, request: OstiaryRequest, assertion: Presented) -> str | None:
        """The id of the client ``assertion`` authenticates, or None (the reason logged)."""
        try:
            return await self._verify(request, assertion)
        except _Refused as refusal:
            log.info("client assertion of %r refused: %s", assertion.client_id[:64], refusal)
            return None

    async def _verify(self, request: OstiaryRequest, assertion: Presented) -> str:
        client = request.extras.clients.get(assertion.client_id)
        if client is None or client.disabled_at is not None:
            raise _Refused("no such client")
        if client.token_endpoint_auth_method != "private_key_jwt":  # noqa: S105 (a method's name)
            raise _Refused("the client is not registered for private_key_jwt")
        named = request.form.get("client_id")
        if named is not None and named != client.client_id:
            raise _Refused("client_id is not the assertion's subject")
        allowed = _allowed_algs(client)
        if assertion.alg not in allowed:
            raise _Refused(f"alg {assertion.alg} (the client signs with {', '.join(allowed)})")
        try:
            keys = await self.keys.key_set(client, assertion.kid)
        except JwksUnavailable as error:
            raise _Refused(f"the client's keys: {error}") from None
        exp, jti = self._verified_claims(request, assertion, keys, fapi2=client.fapi2)
        expires = datetime.fromtimestamp(exp + LEEWAY, UTC)
        remembered = await transactions.run(
            self.sessionmaker,
            lambda db: jtis.remember(db, jtis.CLIENT_ASSERTION, client.client_id, jti, expires, utcnow()),
        )
        if not remembered:
            raise _Refused("its jti was used before")
        return client.client_id

    def _verified_claims(
        self, request: OstiaryRequest, assertion: Presented, keys: KeySet, *, fapi2: bool
    ) -> tuple[float, str]:
        """The assertion's ``exp`` and ``jti``, once its signature and claims hold."""
        token = _decoded(assertion, keys)
        claims: dict[str, object] = token.claims
        if fapi2 and claims.get("aud") != self.issuer:
            # FAPI 2.0 §5.3.2.1: only the issuer identifier, as a string (no list, no endpoint URL)
            raise _Refused("a FAPI 2.0 client's aud must be the issuer identifier, as a string")
        audiences = (*self.audiences, request.uri.split("?", 1)[0])
        try:
            _Claims(audiences).verify_claims(claims)
        except InvalidClientError as error:
            raise _Refused(error.description or "its claims") from None
        exp, iat, jti = numeric_date(claims["exp"]), claims.get("iat"), claims.get("jti")
        issued = numeric_date(iat) if iat is not None else time.time()
        if exp is None or issued is None:
            raise _Refused("exp and iat must be numbers")
        if exp - issued > self.max_lifetime:
            raise _Refused(f"valid for longer than {self.max_lifetime} s")
        if not isinstance(jti, str) or not jti or len(jti) > jtis.MAX_JTI:
            raise _Refused(f"jti must be a string of 1 to {jtis.MAX_JTI} characters")
        return exp, jti


class _Refused(Exception):
    pass


def _allowed_algs(client: StoredClient) -> tuple[str, ...]:
    """The one algorithm the client registered; any we accept when it registered none. A
    FAPI 2.0 client's only among PS256 and ES256 (§5.4.1)."""
    alg = client.token_endpoint_auth_signing_alg
    allowed = (alg,) if alg else ASSERTION_ALGS
    return tuple(alg for alg in allowed if alg in fapi2.ALGS) if client.fapi2 else allowed


def _decoded(assertion: Presented, keys: KeySet) -> jwt.Token:
    """The assertion verified with the key its ``kid`` names, or, without a ``kid``, with
    whichever of the client's keys of the algorithm's type verifies it."""
    candidates: list[Key]
    if assertion.kid is not None:
        key = next((key for key in keys.keys if key.kid == assertion.kid), None)
        candidates = [key] if key is not None else []
    else:
        candidates = [key for key in keys.keys if isinstance(key, KEY_TYPES[assertion.alg])]
    for key in candidates:
        try:
            return jwt.decode(assertion.token, key, algorithms=[assertion.alg])
        except JoseError:
            continue
        except (ValueError, RecursionError):  # a key of another type; claims nested too deep
            continue
    raise _Refused("no key of the client verifies its signature")
