"""The Authlib view of a client (``ClientMixin``) over a stored snapshot, and how a client
authenticates at the token endpoints (RFC 6749 §2.3.1).

Our own ``client_secret_basic``, ``client_secret_post``, ``private_key_jwt`` (its assertion
verified before the call, :mod:`server.oauth.assertions`) and ``none``, each accepted only
from a client registered for it; an unknown client, a wrong secret, a method the client did
not register or a malformed header all end the same way, 401 ``invalid_client`` with
``WWW-Authenticate: Basic`` (RFC 9110 §15.5.2 requires the header on every 401), instead
of Authlib's mix of 400 and 401 depending on the method tried first. Each reads the
clients the endpoint looked up before the call (``request.extras.clients``), never the
database: a call may run without one.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin

from ..clients.secrets import secret_matches
from ..storage.base import utcnow
from ..storage.clients import StoredClient
from .request import OstiaryRequest

SECRET_METHODS = ("client_secret_basic", "client_secret_post")
#: RFC 7523 §2.2 (OpenID Connect Core §9): a JWT signed with the client's own private key
PRIVATE_KEY_JWT = "private_key_jwt"
#: the methods of a client that holds credentials (RFC 6749 §2.1 "confidential")
CONFIDENTIAL_METHODS = (*SECRET_METHODS, PRIVATE_KEY_JWT)


class OAuthClient(ClientMixin):  # type: ignore[misc]
    __slots__ = ("stored",)

    def __init__(self, stored: StoredClient) -> None:
        self.stored = stored

    @property
    def client_metadata(self) -> dict[str, object]:
        return {"post_logout_redirect_uris": list(self.stored.post_logout_redirect_uris)}

    def get_client_id(self) -> str:
        return self.stored.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OpenID Connect requires redirect_uri in every request: no default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scope to grant, or None (invalid_scope) when any requested scope is not allowed.

        An omitted or empty scope grants the client's registered scopes (RFC 6749 §3.3
        lets the server use a pre-defined default; this is Keycloak's choice too).
        """
        if not scope or not scope.strip():
            return " ".join(self.stored.scopes)
        requested = list(dict.fromkeys(scope.split()))
        allowed = set(self.stored.scopes)
        if any(item not in allowed for item in requested):
            return None
        return " ".join(requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison (RFC 9700 §4.1.3): no prefix, no wildcard.
        return redirect_uri in self.stored.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """The current secret, or the one a rotation replaced until its overlap ends
        (``ostiary clients rotate-secret --keep-old-for``). Both digests are compared in
        constant time, whichever matches, so the answer's timing tells nothing."""
        current = secret_matches(client_secret, self.stored.secret_digest)
        previous = secret_matches(client_secret, self.stored.previous_secret_digest)
        expires = self.stored.previous_secret_expires_at
        return current or (previous and expires is not None and utcnow() < expires)

    @property
    def is_public(self) -> bool:
        """No credentials: a browser or native app (``token_endpoint_auth_method=none``)."""
        return self.stored.token_endpoint_auth_method == "none"  # noqa: S105 (a method's name)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """Only the method the client registered (RFC 7591 §2 ``token_endpoint_auth_method``),
        at every endpoint that authenticates clients: a secret registered to travel in the
        Authorization header is refused in a form body, and a client registered for
        ``private_key_jwt`` cannot fall back to a secret. A public client's is ``none``."""
        if self.is_public:
            return method == "none"
        return method in CONFIDENTIAL_METHODS and method == self.stored.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.stored.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.stored.grant_types


def authenticate_basic(_query_client: Any, request: OstiaryRequest) -> OAuthClient | None:
    credentials = request.basic_credentials
    if credentials is None:
        return None
    return _with_secret(request, *credentials)


def authenticate_post(_query_client: Any, request: OstiaryRequest) -> OAuthClient | None:
    client_id, secret = request.form.get("client_id"), request.form.get("client_secret")
    if not client_id or not secret:
        return None
    return _with_secret(request, client_id, secret)


def authenticate_none(_query_client: Any, request: OstiaryRequest) -> OAuthClient | None:
    """A public client names itself (Authlib checks that it may use ``none``)."""
    client_id = request.payload.client_id
    if not client_id or request.payload.data.get("client_secret"):
        return None
    return known_client(request, client_id)


def authenticate_private_key_jwt(_query_client: Any, request: OstiaryRequest) -> OAuthClient | None:
    """A client whose assertion :mod:`server.oauth.assertions` verified before the call."""
    client_id = request.extras.asserted_client_id
    return known_client(request, client_id) if client_id is not None else None


def known_client(request: OstiaryRequest, client_id: str) -> OAuthClient | None:
    """The enabled client ``client_id`` among those looked up for ``request``."""
    stored = request.extras.clients.get(client_id)
    if stored is None or stored.disabled_at is not None:
        return None
    return OAuthClient(stored)


def _with_secret(request: OstiaryRequest, client_id: str, secret: str) -> OAuthClient | None:
    client = known_client(request, client_id)
    if client is None or not client.check_client_secret(secret):
        return None
    return client
