"""RFC 9126: the pushed authorization request endpoint (``POST /par``).

A client authenticates as at the token endpoint (public clients too, RFC 9126 §2) and
posts the parameters of an authorization request. They are checked as the authorization
endpoint would check them, but an error is answered here, as RFC 6749 §5.2 JSON, never at
the redirect URI (RFC 9126 §2.3). Accepted, they are stored for ``OSTIARY_PAR_TTL``
seconds and the client gets a ``request_uri`` to send the browser to ``/authorize`` with,
once (RFC 9126 §2.2, §4).

What "as the authorization endpoint would" means is the sign-in flow's to say, and
``oauth/`` does not know it: the check is handed in with :meth:`PushedAuthorization.install`
by the code that owns those rules.

A push that comes with a DPoP proof (checked before the call) binds the request to the
proof's key (RFC 9449 §10.1): the key's thumbprint is stored with the parameters as their
``dpop_jkt``, and the code issued for them is redeemed only with a proof of that key. A
``dpop_jkt`` the push names itself must then be that thumbprint.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError

from ...clients import fapi2
from ...settings import Settings
from ...storage import pushed_requests as pushed_store
from ...storage.base import sha256, utcnow
from ..clients import CONFIDENTIAL_METHODS, OAuthClient
from ..dpop import InvalidDPoPProofError
from ..request import OstiaryRequest
from ..tokens import random_token

#: RFC 9126 §2.2: the URN prefix of a ``request_uri`` this endpoint issues
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
#: how a client authenticates: never part of the authorization request it pushes
AUTHENTICATION_PARAMETERS = frozenset({"client_secret", "client_assertion", "client_assertion_type"})

#: the authorization request's parameters (``client_id`` included) once they pass the
#: authorization endpoint's rules; an ``OAuth2Error`` otherwise
PushedRequestCheck = Callable[[OstiaryRequest, list[tuple[str, str]]], dict[str, str]]


def request_uri_digest(request_uri: str) -> bytes | None:
    """What a ``request_uri`` is stored under: the SHA-256 of its random part; None when it
    is not one this endpoint could have issued."""
    if not request_uri.startswith(REQUEST_URI_PREFIX):
        return None
    reference = request_uri[len(REQUEST_URI_PREFIX) :]
    if not reference or len(reference) > 128:
        return None
    return sha256(reference)


def bound_to_proof(pairs: list[tuple[str, str]], jkt: str | None) -> list[tuple[str, str]]:
    """The pushed ``pairs`` bound to the key of the push's DPoP proof, whose thumbprint is
    ``jkt`` (None: no proof came, nothing to bind). A ``dpop_jkt`` the push names must be
    that thumbprint: ``invalid_dpop_proof`` otherwise (RFC 9449 §10.1)."""
    if jkt is None:
        return pairs
    named = [value for name, value in pairs if name == "dpop_jkt"]
    if any(value != jkt for value in named):
        raise InvalidDPoPProofError("The dpop_jkt is not the thumbprint of the DPoP proof's key.")
    return pairs if named else [*pairs, ("dpop_jkt", jkt)]


class PushedAuthorization:
    """Authlib's endpoint protocol (``ENDPOINT_NAME``, ``create_endpoint_request``, a call)
    over :mod:`server.storage.pushed_requests`."""

    ENDPOINT_NAME = "pushed_authorization"
    CLIENT_AUTH_METHODS = [*CONFIDENTIAL_METHODS, "none"]

    def __init__(self, server: Any, settings: Settings) -> None:
        self.server = server
        self.ttl = settings.par_ttl
        self._check: PushedRequestCheck | None = None

    def install(self, check: PushedRequestCheck) -> None:
        """The authorization endpoint's rules, applied to every push."""
        self._check = check

    def create_endpoint_request(self, request: OstiaryRequest) -> OstiaryRequest:
        return request

    def __call__(self, request: OstiaryRequest) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        return self.create_endpoint_response(request)

    def create_endpoint_response(self, request: OstiaryRequest) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """201 with the ``request_uri`` and its ``expires_in`` (RFC 9126 §2.2)."""
        if self._check is None:
            raise RuntimeError("no check of pushed authorization requests was installed")
        client: OAuthClient = self.server.authenticate_client(request, self.CLIENT_AUTH_METHODS, self.ENDPOINT_NAME)
        request.client = client
        pairs = [
            (name, value)
            for name, values in request.payload.datalist.items()
            if name not in AUTHENTICATION_PARAMETERS
            for value in values
        ]
        if any(name == "request_uri" for name, _ in pairs):
            raise InvalidRequestError("A pushed authorization request cannot carry a request_uri.")
        pairs = bound_to_proof(pairs, request.extras.dpop_jkt)
        try:
            parameters = self._check(request, pairs)
        except OAuth2Error as error:
            # RFC 9126 §2.3: answered to the client here, never at the redirect URI
            error.redirect_uri, error.state = None, None
            raise
        # FAPI 2.0 §5.3.2.2: a request_uri lives less than 600 s
        ttl = min(self.ttl, fapi2.PUSHED_REQUEST_TTL) if client.stored.fapi2 else self.ttl
        reference, now = random_token(32), utcnow()
        pushed_store.insert(
            request.extras.session,
            digest=sha256(reference),
            client_id=client.get_client_id(),
            parameters=parameters,
            now=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        body = {"request_uri": REQUEST_URI_PREFIX + reference, "expires_in": ttl}
        return 201, body, list(default_json_headers)
