"""The request type Authlib's server is given: a body already read, and Ostiary's extras.

Authlib's request carries what the protocol defines (client, user, code, refresh token,
scope). What Ostiary's hooks need beyond that sits in one typed field, :attr:`OstiaryRequest.extras`,
set by the endpoint that builds the request and by the call that runs it
(:mod:`server.oauth.calls`), and read by the hooks Authlib hands the request to.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import unquote_to_bytes

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request

from ..storage import Session
from ..storage.clients import StoredClient

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class OAuthResponse:
    """What Authlib's ``handle_response`` produced; the web layer turns it into HTTP."""

    status: int
    body: dict[str, Any] | str
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class RequestExtras:
    """What Ostiary's hooks need beyond the protocol's request."""

    #: the database session of the call in progress; None while a call runs without one
    db: Session | None = None
    #: the clients this request names, looked up before the call (client_id to snapshot,
    #: None for an unknown one): client authentication reads them here
    clients: Mapping[str, StoredClient | None] = field(default_factory=dict, repr=False)
    #: the client a ``private_key_jwt`` assertion authenticated, verified before the call
    #: (:mod:`server.oauth.assertions`)
    asserted_client_id: str | None = None
    #: the thumbprint of the key of the request's DPoP proof, verified before the call
    #: (:mod:`server.oauth.dpop`): what its tokens are bound to, or at ``/par`` the code
    #: of the request it pushes (RFC 9449 §10)
    dpop_jkt: str | None = None
    #: and the algorithm that proof was signed with
    dpop_alg: str | None = None
    #: the token an introspection request asks about, looked up before the call (None:
    #: unknown, or not looked up); a ``KnownToken`` of :mod:`server.oauth.endpoints.lookup`
    introspected: Any = None
    #: RFC 8707 resource indicators accepted for this request (set by the grant)
    resources: tuple[str, ...] = ()
    #: the authenticated browser sign-in an authorization response is issued for
    sign_in: Any = None
    #: the refresh token that a rotation stored as its family's new head
    successor_refresh_token: str | None = None
    #: the browser's session cookie (logout ends that session)
    browser_session_token: str | None = field(default=None, repr=False)
    #: the client's address, for audit events
    client_ip: str | None = None
    #: writes that must be committed even when the request fails (e.g. revoking the grant
    #: of a replayed code), each run in a transaction of its own afterwards
    after_failure: list[Callable[[Session], object]] = field(default_factory=list)

    @property
    def session(self) -> Session:
        """:attr:`db`, for a hook that cannot run without it."""
        if self.db is None:
            raise RuntimeError("this call runs without a database session")
        return self.db


class FormPayload(OAuth2Payload):  # type: ignore[misc]
    """Parameters with every value kept, so Authlib's repeated-parameter checks work."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        self._data: dict[str, str] = {}
        for key, value in pairs:
            self._datalist[key].append(value)
            self._data.setdefault(key, value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class OstiaryRequest(OAuth2Request):  # type: ignore[misc]
    """Authlib's request, built from a body we already read.

    ``uri`` is built from the configured issuer, not from the incoming URL: behind a TLS
    proxy the latter is ``http://`` and Authlib would raise InsecureTransportError.

    Authlib's ``__init__`` is not called: all it does beyond setting the attributes below is
    that transport check, URL parsing and an ``ipaddress`` lookup on every request, for a URI
    whose issuer ``OSTIARY_ISSUER`` already held to the same rule (https unless loopback).
    """

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        form: list[tuple[str, str]],
        query: list[tuple[str, str]] | None = None,
    ) -> None:
        # what OAuth2Request.__init__ sets (tests/unit/test_oauth_request.py compares them)
        self.method = method
        self.uri = uri
        self.headers = headers
        self._body = None
        self.client: Any = None
        self.auth_method: str | None = None
        self.user: Any = None
        self.authorization_code: Any = None
        self.refresh_token: Any = None
        self.credential: Any = None
        self._scope: str | None = None
        body, params = FormPayload(form), FormPayload(query or [])
        self.payload = body if method == "POST" else params
        self._form = body.data
        self._args = params.data
        self.extras = RequestExtras()

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @cached_property
    def basic_credentials(self) -> tuple[str, str] | None:
        """``(client_id, secret)`` of the Basic Authorization header, decoded once."""
        return basic_credentials(self.headers.get("Authorization"))

    def claimed_client_ids(self) -> list[str]:
        """The client ids this request names, in its Basic header or its form."""
        credentials = self.basic_credentials
        named = [credentials[0]] if credentials is not None else []
        named += self.payload.datalist.get("client_id", [])
        return [client_id for client_id in dict.fromkeys(named) if client_id]


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` from a Basic header, form-urldecoded per §2.3.1; None if absent or bad.

    Bad means anything that is not ``Basic`` followed by base64 (RFC 7617 §2) of UTF-8
    ``id:secret``. Starlette decodes header bytes as Latin-1, so a header may hold any
    character: one outside ASCII is refused before ``b64decode``, which would raise a bare
    ``ValueError`` for it rather than ``binascii.Error``.
    """
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    encoded = encoded.strip()
    if scheme.lower() != "basic" or not encoded or not encoded.isascii():
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    try:
        pair = _form_decode(client_id), _form_decode(secret)
    except UnicodeDecodeError:
        return None
    # RFC 7617 §2 forbids control characters in both parts; a NUL would also reach
    # PostgreSQL, which refuses it in text as an error deep inside the client lookup.
    return None if any(_CONTROL.search(part) for part in pair) else pair


def _form_decode(value: str) -> str:
    return unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
