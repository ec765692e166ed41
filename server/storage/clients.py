"""Client storage. Statements are built once at import: building them per request costs CPU on the hot path."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from .models import AuthorizationCode, Client, Consent, Grant, PushedAuthorizationRequest

_BY_ID = select(
    Client.client_id,
    Client.name,
    Client.secret_digest,
    Client.previous_secret_digest,
    Client.previous_secret_expires_at,
    Client.grant_types,
    Client.scopes,
    Client.redirect_uris,
    Client.audiences,
    Client.post_logout_redirect_uris,
    Client.allowed_cors_origins,
    Client.first_party,
    Client.introspection,
    Client.id_token_alg,
    Client.require_mfa,
    Client.token_endpoint_auth_method,
    Client.response_types,
    Client.backchannel_logout_uri,
    Client.backchannel_logout_session_required,
    Client.logo_uri,
    Client.policy_uri,
    Client.tos_uri,
    Client.registration_token_digest,
    Client.jwks,
    Client.jwks_uri,
    Client.token_endpoint_auth_signing_alg,
    Client.require_pushed_authorization_requests,
    Client.access_token_alg,
    Client.dpop_bound_access_tokens,
    Client.fapi2,
    Client.created_at,
    Client.disabled_at,
).where(Client.client_id == bindparam("client_id"))


@dataclass(frozen=True, slots=True)
class StoredClient:
    """A snapshot of one ``clients`` row; safe to cache, never tied to a session."""

    client_id: str
    name: str
    secret_digest: bytes | None
    grant_types: tuple[str, ...]
    scopes: tuple[str, ...]
    redirect_uris: tuple[str, ...]
    audiences: tuple[str, ...]
    created_at: datetime
    disabled_at: datetime | None
    post_logout_redirect_uris: tuple[str, ...] = ()
    allowed_cors_origins: tuple[str, ...] = ()
    first_party: bool = False
    introspection: bool = False
    id_token_alg: str | None = None
    require_mfa: bool = False
    #: the secret a rotation replaced, accepted until ``previous_secret_expires_at``
    previous_secret_digest: bytes | None = None
    previous_secret_expires_at: datetime | None = None
    #: RFC 7591 §2: ``none`` for a public client, else how it sends its secret
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 (a method's name)
    response_types: tuple[str, ...] = ("code",)
    backchannel_logout_uri: str | None = None
    backchannel_logout_session_required: bool = False
    logo_uri: str | None = None
    policy_uri: str | None = None
    tos_uri: str | None = None
    #: set for a client that registered itself (RFC 7592's registration access token)
    registration_token_digest: bytes | None = None
    #: ``private_key_jwt`` (RFC 7523 §2.2): the client's public keys (a JWK Set, or where
    #: to fetch it) and the algorithm its assertions must be signed with
    jwks: Mapping[str, Any] | None = field(default=None, repr=False)
    jwks_uri: str | None = None
    token_endpoint_auth_signing_alg: str | None = None
    #: RFC 9126 §6: authorization requests only through ``/par``
    require_pushed_authorization_requests: bool = False
    #: the algorithm of its JWT access tokens; None: the server's (``OSTIARY_ACCESS_TOKEN_ALG``)
    access_token_alg: str | None = None
    #: RFC 9449 §5.2: its access tokens are always DPoP-bound
    dpop_bound_access_tokens: bool = False
    #: held to the FAPI 2.0 Security Profile (:mod:`server.clients.fapi2`)
    fapi2: bool = False

    @property
    def is_public(self) -> bool:
        """No credentials at all (``none``): a browser or native app."""
        return self.token_endpoint_auth_method == "none"  # noqa: S105 (a method's name)


#: the fields stored as JSON lists
_LIST_FIELDS = (
    "grant_types",
    "scopes",
    "redirect_uris",
    "audiences",
    "post_logout_redirect_uris",
    "allowed_cors_origins",
    "response_types",
)
#: what an administrator may change after registration (``ostiary clients update``)
UPDATABLE = (
    "name",
    *_LIST_FIELDS,
    "first_party",
    "introspection",
    "id_token_alg",
    "require_mfa",
    "token_endpoint_auth_method",
    "backchannel_logout_uri",
    "backchannel_logout_session_required",
    "logo_uri",
    "policy_uri",
    "tos_uri",
    "jwks",
    "jwks_uri",
    "token_endpoint_auth_signing_alg",
    "require_pushed_authorization_requests",
    "access_token_alg",
    "dpop_bound_access_tokens",
    "fapi2",
)


def get_client(session: Session, client_id: str) -> StoredClient | None:
    row = session.execute(_BY_ID, {"client_id": client_id}).one_or_none()
    return _snapshot(row) if row else None


_BY_REGISTRATION_TOKEN = select(*_BY_ID.selected_columns).where(
    Client.client_id == bindparam("client_id"),
    Client.registration_token_digest == bindparam("digest"),
    Client.disabled_at.is_(None),
)


def get_registered_client(session: Session, client_id: str, registration_token_digest: bytes) -> StoredClient | None:
    """The client ``client_id`` if ``registration_token_digest`` is its RFC 7592 registration
    access token's and it is enabled; None otherwise, whether no such client exists, the token
    is not its own, or an administrator disabled it. The database compares digests, never the
    token itself."""
    row = session.execute(_BY_REGISTRATION_TOKEN, {"client_id": client_id, "digest": registration_token_digest})
    found = row.one_or_none()
    return _snapshot(found) if found else None


def list_clients(session: Session) -> list[StoredClient]:
    query = select(*_BY_ID.selected_columns).order_by(Client.created_at, Client.client_id)
    return [_snapshot(row) for row in session.execute(query)]


def list_clients_page(session: Session, *, offset: int, limit: int) -> list[StoredClient]:
    """At most ``limit`` clients after the first ``offset``, oldest first (by creation, then
    id): the admin API's pages. Offset paging: a client created or deleted while someone
    pages may shift an item across a page boundary (clients are few and rarely change)."""
    query = select(*_BY_ID.selected_columns).order_by(Client.created_at, Client.client_id).offset(offset).limit(limit)
    return [_snapshot(row) for row in session.execute(query)]


def insert_client(session: Session, client: StoredClient) -> None:
    session.execute(
        insert(Client).values(
            client_id=client.client_id,
            name=client.name,
            secret_digest=client.secret_digest,
            grant_types=list(client.grant_types),
            scopes=list(client.scopes),
            redirect_uris=list(client.redirect_uris),
            audiences=list(client.audiences),
            post_logout_redirect_uris=list(client.post_logout_redirect_uris),
            allowed_cors_origins=list(client.allowed_cors_origins),
            first_party=client.first_party,
            introspection=client.introspection,
            id_token_alg=client.id_token_alg,
            require_mfa=client.require_mfa,
            token_endpoint_auth_method=client.token_endpoint_auth_method,
            response_types=list(client.response_types),
            backchannel_logout_uri=client.backchannel_logout_uri,
            backchannel_logout_session_required=client.backchannel_logout_session_required,
            logo_uri=client.logo_uri,
            policy_uri=client.policy_uri,
            tos_uri=client.tos_uri,
            registration_token_digest=client.registration_token_digest,
            jwks=dict(client.jwks) if client.jwks is not None else None,
            jwks_uri=client.jwks_uri,
            token_endpoint_auth_signing_alg=client.token_endpoint_auth_signing_alg,
            require_pushed_authorization_requests=client.require_pushed_authorization_requests,
            access_token_alg=client.access_token_alg,
            dpop_bound_access_tokens=client.dpop_bound_access_tokens,
            fapi2=client.fapi2,
            created_at=client.created_at,
            disabled_at=client.disabled_at,
        )
    )


def update_client(session: Session, client: StoredClient) -> bool:
    """Store the :data:`UPDATABLE` fields of ``client``; False when no such client exists."""
    values = {name: getattr(client, name) for name in UPDATABLE}
    for name in _LIST_FIELDS:
        values[name] = list(values[name])
    if client.jwks is not None:
        values["jwks"] = dict(client.jwks)
    return _changed(session, client.client_id, values)


def set_disabled(session: Session, client_id: str, disabled_at: datetime | None) -> bool:
    """Disable (a time) or enable (None) a client; False when no such client exists."""
    return _changed(session, client_id, {"disabled_at": disabled_at})


def set_secret(
    session: Session, client_id: str, digest: bytes, *, previous: bytes | None, previous_expires_at: datetime | None
) -> bool:
    """A new secret digest; ``previous`` stays accepted until ``previous_expires_at``."""
    values = {
        "secret_digest": digest,
        "previous_secret_digest": previous,
        "previous_secret_expires_at": previous_expires_at,
    }
    return _changed(session, client_id, values)


def clear_secret(session: Session, client_id: str) -> bool:
    """Forget the client's secrets (it authenticates without one now)."""
    values = {"secret_digest": None, "previous_secret_digest": None, "previous_secret_expires_at": None}
    return _changed(session, client_id, values)


def delete_client(session: Session, client_id: str) -> bool:
    """Delete a client and what it was given: its codes, its grants (with their refresh
    tokens, by the foreign key's cascade) and its users' consents. JWT access tokens are
    not stored: introspection and userinfo find their client, or their grant, gone."""
    for table, column in (
        (AuthorizationCode, AuthorizationCode.client_id),
        (Grant, Grant.client_id),
        (Consent, Consent.client_id),
        (PushedAuthorizationRequest, PushedAuthorizationRequest.client_id),
    ):
        session.execute(delete(table).where(column == client_id))
    result = session.execute(delete(Client).where(Client.client_id == client_id).returning(Client.client_id))
    return result.first() is not None


def _changed(session: Session, client_id: str, values: Mapping[str, object]) -> bool:
    result = session.execute(
        update(Client).where(Client.client_id == client_id).values(**values).returning(Client.client_id)
    )
    return result.first() is not None


def _snapshot(row: object) -> StoredClient:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredClient(
        client_id=r["client_id"],
        name=r["name"],
        secret_digest=r["secret_digest"],
        previous_secret_digest=r["previous_secret_digest"],
        previous_secret_expires_at=r["previous_secret_expires_at"],
        grant_types=tuple(r["grant_types"]),
        scopes=tuple(r["scopes"]),
        redirect_uris=tuple(r["redirect_uris"]),
        audiences=tuple(r["audiences"]),
        post_logout_redirect_uris=tuple(r["post_logout_redirect_uris"]),
        allowed_cors_origins=tuple(r["allowed_cors_origins"]),
        first_party=bool(r["first_party"]),
        introspection=bool(r["introspection"]),
        id_token_alg=r["id_token_alg"],
        require_mfa=bool(r["require_mfa"]),
        token_endpoint_auth_method=r["token_endpoint_auth_method"],
        response_types=tuple(r["response_types"]),
        backchannel_logout_uri=r["backchannel_logout_uri"],
        backchannel_logout_session_required=bool(r["backchannel_logout_session_required"]),
        logo_uri=r["logo_uri"],
        policy_uri=r["policy_uri"],
        tos_uri=r["tos_uri"],
        registration_token_digest=r["registration_token_digest"],
        jwks=r["jwks"],
        jwks_uri=r["jwks_uri"],
        token_endpoint_auth_signing_alg=r["token_endpoint_auth_signing_alg"],
        require_pushed_authorization_requests=bool(r["require_pushed_authorization_requests"]),
        access_token_alg=r["access_token_alg"],
        dpop_bound_access_tokens=bool(r["dpop_bound_access_tokens"]),
        fapi2=bool(r["fapi2"]),
        created_at=r["created_at"],
        disabled_at=r["disabled_at"],
    )
