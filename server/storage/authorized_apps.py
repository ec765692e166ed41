"""The applications a user has let in, as the account page lists them, and taking that back.

An application is listed when it holds the user's remembered consent (a third-party client
the user allowed) or a live grant (a token family neither revoked nor past its end: a
first-party client never asks for consent, and a device's grant may outlive every
session). Either one lets it act for the user without asking again, so either one is
what the user must see and be able to revoke; a consent alone (every family ended with
its sessions) still lets the next sign-in through without the consent page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select

from . import Session, grants as grant_store
from .base import utcnow
from .models import Client, Consent, Grant, RefreshToken


@dataclass(frozen=True, slots=True)
class AuthorizedApp:
    client_id: str
    name: str
    logo_uri: str | None
    #: what the consent and the live grants cover together, sorted
    scopes: tuple[str, ...]
    #: the newest sign-in, refresh or consent of the app for the user that is still on
    #: record (codes exchanged, refresh tokens issued); None if none is
    last_used_at: datetime | None


def list_for_user(session: Session, user_id: int) -> list[AuthorizedApp]:
    """The user's authorized applications, most recently used first (a handful: no paging)."""
    scopes: dict[str, set[str]] = {}
    used: dict[str, datetime] = {}
    for client_id, consented, updated_at in session.execute(
        select(Consent.client_id, Consent.scopes, Consent.updated_at).where(Consent.user_id == user_id)
    ):
        scopes.setdefault(client_id, set()).update(consented)
        used[client_id] = updated_at
    live = grant_store.live_for_user(user_id).with_only_columns(Grant.client_id, Grant.scope)
    for client_id, scope in session.execute(live.limit(1000)):
        scopes.setdefault(client_id, set()).update(scope.split())
    if not scopes:
        return []
    for client_id, latest in _activity(session, user_id, list(scopes)).items():
        if client_id not in used or latest > used[client_id]:
            used[client_id] = latest
    clients = session.execute(
        select(Client.client_id, Client.name, Client.logo_uri).where(Client.client_id.in_(list(scopes)))
    ).all()
    apps = [
        AuthorizedApp(
            row.client_id, row.name, row.logo_uri, tuple(sorted(scopes[row.client_id])), used.get(row.client_id)
        )
        for row in clients
    ]
    now = utcnow()
    apps.sort(key=lambda app: (app.last_used_at is None, -(app.last_used_at or now).timestamp(), app.name))
    return apps


def _activity(session: Session, user_id: int, client_ids: list[str]) -> dict[str, datetime]:
    """Per client, when the newest of the user's grants was made or refresh tokens issued
    (revoked families count: they were used then). Reads the user's grants only, and their
    tokens by the index on ``grant_id``."""
    rows = session.execute(
        select(Grant.client_id, func.max(Grant.created_at), func.max(RefreshToken.created_at))
        .outerjoin(RefreshToken, RefreshToken.grant_id == Grant.id)
        .where(Grant.user_id == user_id, Grant.client_id.in_(client_ids))
        .group_by(Grant.client_id)
    )
    return {client_id: max(granted, refreshed or granted) for client_id, granted, refreshed in rows}


def forget_consent(session: Session, user_id: int, client_id: str) -> bool:
    """Forget what the user consented to for the client; True if there was a consent."""
    result = session.execute(
        delete(Consent).where(Consent.user_id == user_id, Consent.client_id == client_id).returning(Consent.client_id)
    )
    return result.first() is not None
