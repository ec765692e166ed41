"""Pushed authorization requests (RFC 9126) in the sign-in flow: what a push must pass, how
``/authorize`` finds the request a ``request_uri`` refers to, and who must push.

A push is held to the authorization endpoint's rules (Authlib's validation, then
:func:`~server.signin.checks.check_extras`), less what only the browser's visit can tell
(``prompt``, ``max_age``, the session): those are checked when the browser comes.

At ``/authorize``, a ``request_uri`` this server issued is taken, once, and only the
parameters pushed with it are used (RFC 9126 §4); the request then runs the same steps as
one whose browser brought those parameters itself. A ``request_uri`` of another form is a
request object by reference, which is not supported (``request_uri_not_supported``).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.core.errors import InvalidRequestURIError

from ..oauth.endpoints.pushed_authorization import REQUEST_URI_PREFIX, request_uri_digest
from ..oauth.errors import MalformedRequestError
from ..settings import Settings
from ..storage import Session, pushed_requests as pushed_store
from ..storage.base import utcnow

Pairs = list[tuple[str, str]]

PUSH_REQUIRED = "A pushed authorization request is required: push the request to the par endpoint first."


def with_client_id(pairs: Pairs, client_id: str) -> Pairs:
    """The pushed parameters with ``client_id`` (RFC 9126 §2.1: optional in a push, where
    the client authenticated; when present it must name that client)."""
    named = [value for name, value in pairs if name == "client_id"]
    if any(value != client_id for value in named):
        raise InvalidRequestError("The client_id is not the client that authenticated.")
    return pairs if named else [("client_id", client_id), *pairs]


def validated_push(server: Any, request: Any) -> Any:
    """Authlib's validation of the authorization request ``request`` (client, redirect URI,
    response type, scope, PKCE, nonce) without a user: its grant, else an ``OAuth2Error``."""
    try:
        grant = server.get_authorization_grant(request)
        grant.validate_no_multiple_request_parameter(request)
        grant.redirect_uri = grant.validate_authorization_request()
    except ValueError:  # an error description Authlib cannot write (see steps.validated)
        raise MalformedRequestError from None
    return grant


def is_reference(pairs: Pairs) -> bool:
    """The request refers to a pushed one: a ``request_uri`` of the form this server issues."""
    return any(name == "request_uri" and value.startswith(REQUEST_URI_PREFIX) for name, value in pairs)


def take(db: Session, pairs: Pairs) -> Pairs:
    """The pushed parameters the request ``pairs`` refers to (see :func:`is_reference`),
    taken so that they serve once; every other parameter of ``pairs`` is ignored.

    Raises ``invalid_request`` without exactly one ``client_id`` and one ``request_uri``, and
    ``invalid_request_uri`` when the reference is unknown, expired, used, or another
    client's: errors for a page, since no redirect URI is known to be the client's yet."""
    client_ids = [value for name, value in pairs if name == "client_id"]
    references = [value for name, value in pairs if name == "request_uri"]
    if len(client_ids) != 1 or len(references) != 1:
        raise InvalidRequestError("A request_uri needs exactly one client_id and one request_uri.")
    digest = request_uri_digest(references[0])
    taken = pushed_store.take(db, digest, client_ids[0], utcnow()) if digest is not None else None
    if taken is None:
        raise InvalidRequestURIError("The request_uri is unknown, expired, already used, or another client's.")
    return list(taken.items())


def push_required(settings: Settings, client: Any) -> bool:
    """RFC 9126 §6: ``client`` may send authorization requests only by pushing them, as
    every client must under ``OSTIARY_REQUIRE_PAR``."""
    return settings.require_par or bool(client.stored.require_pushed_authorization_requests)
