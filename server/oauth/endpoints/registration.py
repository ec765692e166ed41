"""Dynamic client registration (RFC 7591 §3) and its management (RFC 7592 §2) as calls on
one transaction: each returns the response body or raises an Authlib ``OAuth2Error``.

Authlib's ``ClientRegistrationEndpoint`` and ``ClientConfigurationEndpoint`` are not used:
fitting them would take overriding more than they give. They answer a missing or wrong
token with 403 ``access_denied`` where RFC 7592 §2 (and RFC 6750 §3.1) want 401
``invalid_token``; they validate metadata with their own claim classes, whose errors are
neither ``invalid_redirect_uri`` nor name our rules (those live in ``clients/service.py``,
and the CLI follows the same ones); the registration one makes a secret for every client,
public ones too, before the metadata says which it is; the configuration one merges an
update into the old metadata where RFC 7592 §2.2 replaces it, and prints validation errors
to stdout. What is left of them, once replaced, is the dispatch on the HTTP method.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6750.errors import InvalidTokenError
from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError, InvalidRedirectURIError

from ...clients import registration
from ...clients.errors import ClientRegistrationError, UnknownClient
from ...clients.metadata import document_of
from ...clients.secrets import secret_matches
from ...settings import Settings
from ...storage import Session
from ...storage.clients import StoredClient

#: RFC 7592 §2.2: what the client is given, never what it sends in an update
_SERVER_SET = (
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
)


class Registration:
    """The calls of ``/register`` and ``/register/{client_id}``, for one server."""

    def __init__(self, settings: Settings, allowed_scopes: Collection[str]) -> None:
        self.settings = settings
        #: what a self-registered client may ask for (those discovery advertises)
        self.allowed_scopes = tuple(allowed_scopes)

    def register(self, db: Session, document: Mapping[str, Any], initial_token: str | None) -> dict[str, Any]:
        """RFC 7591 §3.2.1: the registered client's metadata, id, secret and management
        token. ``initial_token`` is required when the setting says ``initial-token``; its
        use counts only if the registration is stored (the caller's transaction)."""
        used = None
        if self.settings.registration == "initial-token":
            used = registration.use_initial_token(db, initial_token) if initial_token else None
            if used is None:
                raise InvalidTokenError(description="The initial access token is unknown, expired, used up or revoked.")
        try:
            client, secret, token = registration.register_self(
                db,
                document,
                allowed_scopes=self.allowed_scopes,
                initial_token=used,
                profile=self.settings.profile,
            )
        except ClientRegistrationError as error:
            raise metadata_error(error) from None
        return self.body(client, token, secret)

    def client(self, db: Session, client_id: str, token: str) -> StoredClient:
        """RFC 7592 §2: the client whose registration access token ``token`` is; a token
        that is not this client's, or a client that does not exist, is one 401."""
        client = registration.find_self_registered(db, client_id, token)
        if client is None:
            raise InvalidTokenError(description="The registration access token is not valid for this client.")
        return client

    def read(self, db: Session, client_id: str, token: str) -> dict[str, Any]:
        """RFC 7592 §2.1. The secret is not in it: only its digest is kept."""
        return self.body(self.client(db, client_id, token), token)

    def update(self, db: Session, client_id: str, token: str, document: Mapping[str, Any]) -> dict[str, Any]:
        """RFC 7592 §2.2: ``document`` replaces the metadata. The registration access token
        is not rotated: the answer repeats the one presented."""
        client = self.client(db, client_id, token)
        for name in _SERVER_SET:
            if name in document:
                raise InvalidRequestError(description=f"{name} is set by the server: leave it out of an update.")
        if document.get("client_id") != client.client_id:
            raise InvalidRequestError(description="client_id must be the client's own id.")
        if "client_secret" in document:
            presented = document["client_secret"]
            if not isinstance(presented, str) or not secret_matches(presented, client.secret_digest):
                raise InvalidRequestError(description="client_secret must be the client's current secret.")
        try:
            updated = registration.replace_self(
                db, client, document, allowed_scopes=self.allowed_scopes, profile=self.settings.profile
            )
        except ClientRegistrationError as error:
            raise metadata_error(error) from None
        return self.body(updated, token)

    def delete(self, db: Session, client_id: str, token: str) -> None:
        """RFC 7592 §2.3: the client, its grants and its tokens end."""
        try:
            registration.delete_self(db, self.client(db, client_id, token))
        except UnknownClient:  # deleted a moment ago by another request
            raise InvalidTokenError(description="The registration access token is not valid for this client.") from None

    def body(self, client: StoredClient, token: str, secret: str | None = None) -> dict[str, Any]:
        """RFC 7591 §3.2.1 (RFC 7592 §3): the metadata as registered, and how to manage it."""
        body = {
            "client_id": client.client_id,
            "client_id_issued_at": int(client.created_at.timestamp()),
            **document_of(client),
        }
        if secret is not None:
            body["client_secret"] = secret
        if client.secret_digest is not None:
            body["client_secret_expires_at"] = 0  # never
        body["registration_access_token"] = token
        body["registration_client_uri"] = self.settings.endpoint(f"/register/{client.client_id}")
        return body


def metadata_error(error: ClientRegistrationError) -> InvalidClientMetadataError | InvalidRedirectURIError:
    """RFC 7591 §3.2.2: ``invalid_redirect_uri`` for the redirect URIs, else
    ``invalid_client_metadata``; the description names the metadata at fault."""
    error = error.in_metadata_terms()
    description = f"{error.field}: {error.message}"
    if error.field == "redirect_uris":
        return InvalidRedirectURIError(description=description)
    return InvalidClientMetadataError(description=description)
