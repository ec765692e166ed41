"""Client storage. Statements are built once at import (pitfall 13: building per request costs)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from .models import Client

_BY_ID = select(
    Client.client_id,
    Client.name,
    Client.secret_digest,
    Client.grant_types,
    Client.scopes,
    Client.redirect_uris,
    Client.audiences,
    Client.post_logout_redirect_uris,
    Client.first_party,
    Client.introspection,
    Client.id_token_alg,
    Client.require_mfa,
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
    first_party: bool = False
    introspection: bool = False
    id_token_alg: str | None = None
    require_mfa: bool = False

    @property
    def is_public(self) -> bool:
        return self.secret_digest is None


def get_client(session: Session, client_id: str) -> StoredClient | None:
    row = session.execute(_BY_ID, {"client_id": client_id}).one_or_none()
    return _snapshot(row) if row else None


def list_clients(session: Session) -> list[StoredClient]:
    query = select(*_BY_ID.selected_columns).order_by(Client.created_at, Client.client_id)
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
            first_party=client.first_party,
            introspection=client.introspection,
            id_token_alg=client.id_token_alg,
            require_mfa=client.require_mfa,
            created_at=client.created_at,
            disabled_at=client.disabled_at,
        )
    )


def _snapshot(row: object) -> StoredClient:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredClient(
        client_id=r["client_id"],
        name=r["name"],
        secret_digest=r["secret_digest"],
        grant_types=tuple(r["grant_types"]),
        scopes=tuple(r["scopes"]),
        redirect_uris=tuple(r["redirect_uris"]),
        audiences=tuple(r["audiences"]),
        post_logout_redirect_uris=tuple(r["post_logout_redirect_uris"]),
        first_party=bool(r["first_party"]),
        introspection=bool(r["introspection"]),
        id_token_alg=r["id_token_alg"],
        require_mfa=bool(r["require_mfa"]),
        created_at=r["created_at"],
        disabled_at=r["disabled_at"],
    )
