"""DPoP, Demonstrating Proof of Possession (RFC 9449): tokens bound to a key the client holds.

A client sends a ``DPoP`` header, a JWT it signed with a key of its own and whose public
half it carries in the header (``jwk``). The token endpoint checks the proof and binds what
it issues to that key's thumbprint (RFC 7638, ``jkt``): the access token gets
``cnf.jkt`` and ``token_type: DPoP``, and a public client's refresh-token family is bound
too (a confidential client's refresh tokens are bound by its authentication already).
``/userinfo`` then wants the same key's proof beside the token, with ``ath``, the token's
hash; a bound token sent as a bearer token is refused.

A proof is checked (RFC 9449 §4.3) for ``typ: dpop+jwt``, an asymmetric ``alg`` (RS256,
PS256, ES256), a public ``jwk`` that verifies the signature, ``htm`` and ``htu`` (scheme and
host compared case-insensitively, the default port dropped, no query or fragment) of the
request it came with, an ``iat`` within ``OSTIARY_DPOP_PROOF_WINDOW`` of the server's clock,
and a ``jti`` no process has seen: the first use records it in the database
(:mod:`server.storage.jtis`) for as long as the proof could be accepted.

Server nonces (§8, §9), with ``OSTIARY_DPOP_REQUIRE_NONCE``: a proof must carry the
``nonce`` of the current period of ``OSTIARY_DPOP_NONCE_LIFETIME`` seconds, or of the one
before. A nonce is an HMAC of the period under a key derived from the server's secret, so
every process computes the same one and none is stored. A proof without a current nonce is
answered ``use_dpop_nonce`` with the nonce in a ``DPoP-Nonce`` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2 import OAuth2Error
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key

from ..clients.jwks import ASSERTION_ALGS, KEY_TYPES, numeric_date, public_key_problem
from ..settings import Settings
from ..storage import AsyncSession, async_sessionmaker, jtis, transactions
from ..storage.base import utcnow

#: RFC 9449 §5.1 ``dpop_signing_alg_values_supported``: what clients sign with
DPOP_ALGS = ASSERTION_ALGS
_DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_PROOF = 8192
#: joserfc's registry for proofs: their header carries the public key, which for RSA is
#: larger than joserfc's default bound of a header (512 bytes)
_PROOFS = jws.JWSRegistry(algorithms=list(DPOP_ALGS))
_PROOFS.max_header_length = 4096


class InvalidDPoPProofError(OAuth2Error):  # type: ignore[misc]
    """RFC 9449 §5 (token endpoint) and §7.1 (resource servers): the proof is missing,
    malformed or does not hold."""

    error = "invalid_dpop_proof"
    status_code = 400


class UseDPoPNonceError(OAuth2Error):  # type: ignore[misc]
    """RFC 9449 §8: the proof must carry the server's current nonce, sent in ``DPoP-Nonce``."""

    error = "use_dpop_nonce"
    status_code = 400

    def __init__(self, nonce: str) -> None:
        super().__init__("The DPoP proof must carry the nonce of the DPoP-Nonce header.")
        self.nonce = nonce

    def get_headers(self) -> list[tuple[str, str]]:
        return [*super().get_headers(), ("DPoP-Nonce", self.nonce)]


class BindingRefused(Exception):
    """An access token presented in a way its binding does not allow (RFC 9449 §7): the
    error for the resource server's ``WWW-Authenticate`` challenge, and a nonce to send."""

    def __init__(self, error: str, nonce: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.nonce = nonce


#: the authorization schemes of an access token (RFC 6750, RFC 9449 §7.1), lower case
BEARER, DPOP = "bearer", "dpop"


def thumbprint_of(access_token_claims: Mapping[str, Any]) -> str | None:
    """The ``cnf.jkt`` of a verified access token's claims: the key it is bound to, if any."""
    confirmation = access_token_claims.get("cnf")
    if not isinstance(confirmation, Mapping):
        return None
    jkt = confirmation.get("jkt")
    return jkt if isinstance(jkt, str) else None


def token_hash(access_token: str) -> str:
    """``ath`` (RFC 9449 §4.2): base64url of the SHA-256 of the access token."""
    return _b64(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


#: the most seconds a proof's ``iat`` may be ahead of the server's clock
_MOST_AHEAD = 60


@dataclass(frozen=True, slots=True)
class Proof:
    """A checked proof: the thumbprint of its key (RFC 7638), what tokens are bound to, and
    the algorithm it was signed with."""

    jkt: str
    alg: str


class DPoP:
    """The checks of one server: its proof window, its nonces, its record of used proofs."""

    def __init__(self, settings: Settings, nonce_key: bytes, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.window = settings.dpop_proof_window
        #: FAPI 2.0 §5.3.2.1 refuses a JWT issued more than a minute ahead, whatever the window
        self.ahead = min(self.window, _MOST_AHEAD)
        self.require_nonce = settings.dpop_require_nonce
        self.nonce_lifetime = settings.dpop_nonce_lifetime
        self._nonce_key = nonce_key
        self.sessionmaker = sessionmaker

    def nonce(self, period: int | None = None) -> str:
        """The nonce of ``period`` (default: the current one)."""
        if period is None:
            period = int(time.time() // self.nonce_lifetime)
        digest = hmac.new(self._nonce_key, f"dpop-nonce:{period}".encode(), hashlib.sha256).digest()
        return _b64(digest[:24])

    async def check(
        self, headers: Mapping[str, str], method: str, uri: str, *, access_token: str | None = None
    ) -> Proof:
        """The key and algorithm of the proof ``headers`` carry for ``method`` ``uri`` (with
        ``access_token``: a resource request, whose proof must hash it); raises
        :class:`InvalidDPoPProofError` or :class:`UseDPoPNonceError`."""
        proof = _one_proof(headers)
        key, alg = _proof_key(proof)
        try:
            claims: dict[str, Any] = jwt.decode(proof, key, algorithms=[alg], registry=_PROOFS).claims
        except (JoseError, ValueError, TypeError, RecursionError):  # RecursionError: JSON nested too deep
            raise InvalidDPoPProofError("The DPoP proof's signature does not verify with its jwk.") from None
        self._check_claims(claims, method, uri, access_token)
        jkt = key.thumbprint()
        iat = numeric_date(claims["iat"]) or 0.0  # a number: the claims were checked
        expires = datetime.fromtimestamp(iat + 2 * self.window, UTC)
        used = await transactions.run(
            self.sessionmaker, lambda db: jtis.remember(db, jtis.DPOP, jkt, claims["jti"], expires, utcnow())
        )
        if not used:
            raise InvalidDPoPProofError("The DPoP proof was used before.")
        return Proof(jkt, alg)

    async def check_binding(
        self, scheme: str, token: str, claims: Mapping[str, Any], headers: Mapping[str, str], method: str, uri: str
    ) -> None:
        """A resource request (``/userinfo``, the admin API) with the verified access token
        ``token`` under ``scheme``: a DPoP-bound token only with its key's proof, never as a
        bearer token; the DPoP scheme only with a bound token. :class:`BindingRefused` else."""
        jkt = thumbprint_of(claims)
        if scheme == BEARER:
            if jkt is not None:
                raise BindingRefused("invalid_token")
            return
        if jkt is None:
            raise BindingRefused("invalid_token")
        try:
            proven = await self.check(headers, method, uri, access_token=token)
        except UseDPoPNonceError as error:
            raise BindingRefused("use_dpop_nonce", error.nonce) from None
        except InvalidDPoPProofError:
            raise BindingRefused("invalid_dpop_proof") from None
        if proven.jkt != jkt:
            raise BindingRefused("invalid_token")

    def _check_claims(self, claims: dict[str, Any], method: str, uri: str, access_token: str | None) -> None:
        jti, iat = claims.get("jti"), claims.get("iat")
        if not isinstance(jti, str) or not 1 <= len(jti) <= jtis.MAX_JTI:
            raise InvalidDPoPProofError(f"The DPoP proof needs a jti of 1 to {jtis.MAX_JTI} characters.")
        if claims.get("htm") != method:
            raise InvalidDPoPProofError("The DPoP proof's htm is not this request's method.")
        htu = claims.get("htu")
        if not isinstance(htu, str) or _normalised(htu) != _normalised(uri):
            raise InvalidDPoPProofError("The DPoP proof's htu is not this request's URI.")
        issued = numeric_date(iat)
        now = time.time()
        if issued is None or now - issued > self.window or issued - now > self.ahead:
            raise InvalidDPoPProofError("The DPoP proof's iat is too far from the server's time.")
        if access_token is not None and claims.get("ath") != token_hash(access_token):
            raise InvalidDPoPProofError("The DPoP proof's ath is not the hash of the access token.")
        if self.require_nonce:
            period = int(time.time() // self.nonce_lifetime)
            if claims.get("nonce") not in (self.nonce(period), self.nonce(period - 1)):
                raise UseDPoPNonceError(self.nonce(period))


def _one_proof(headers: Mapping[str, str]) -> str:
    getlist = getattr(headers, "getlist", None)
    proofs = getlist("dpop") if getlist is not None else [headers.get("dpop", "")]
    if len(proofs) != 1 or not proofs[0] or len(proofs[0]) > MAX_PROOF:
        raise InvalidDPoPProofError("A request carries exactly one DPoP proof.")
    return str(proofs[0])


def _proof_key(proof: str) -> tuple[Key, str]:
    """The proof's own public key and algorithm, as its header declares them."""
    try:
        header = jws.extract_compact(proof.encode("ascii"), registry=_PROOFS).headers()
    except (JoseError, ValueError, UnicodeError, RecursionError):
        raise InvalidDPoPProofError("The DPoP proof is not a JWT.") from None
    alg, jwk = header.get("alg"), header.get("jwk")
    if header.get("typ") != "dpop+jwt":
        raise InvalidDPoPProofError("The DPoP proof's typ must be dpop+jwt.")
    if alg not in DPOP_ALGS:
        raise InvalidDPoPProofError(f"The DPoP proof's alg must be one of {', '.join(DPOP_ALGS)}.")
    if not isinstance(jwk, dict) or public_key_problem(jwk) is not None:
        raise InvalidDPoPProofError("The DPoP proof's jwk must be a public RSA key of 2048 bits or more, or EC P-256.")
    key_type = KEY_TYPES[alg]
    try:
        key = key_type.import_key(json.loads(json.dumps(jwk)))
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidDPoPProofError("The DPoP proof's jwk is not a key of its alg.") from None
    return key, alg


def _normalised(uri: str) -> tuple[str, str, int | None, str]:
    """RFC 9449 §4.3 point 9: the URI without query and fragment, with RFC 3986's
    scheme-based normalisation (case of scheme and host, default port)."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return ("", "", None, uri)
    scheme = parts.scheme.lower()
    if port == _DEFAULT_PORTS.get(scheme):
        port = None
    return (scheme, (parts.hostname or "").lower(), port, parts.path or "/")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
