"""Pushed authorization requests (RFC 9126): the parameters a client posted to ``/par``,
kept under the SHA-256 of their ``request_uri``'s random part until the browser brings that
reference to ``/authorize``.

Taking one is a single ``DELETE ... RETURNING`` conditioned on the client and the expiry,
so of two processes that race with one reference exactly one gets the parameters
(RFC 9126 §4: a ``request_uri`` is used once). Expired rows wait for the cleanup.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete

from . import Session
from .base import insert_row
from .models import PushedAuthorizationRequest

_INSERT = insert_row(PushedAuthorizationRequest)
_TAKE = (
    delete(PushedAuthorizationRequest)
    .where(
        PushedAuthorizationRequest.digest == bindparam("b_digest"),
        PushedAuthorizationRequest.client_id == bindparam("b_client_id"),
        PushedAuthorizationRequest.expires_at > bindparam("b_now"),
    )
    .returning(PushedAuthorizationRequest.parameters)
)


def insert(
    session: Session,
    *,
    digest: bytes,
    client_id: str,
    parameters: dict[str, str],
    now: datetime,
    expires_at: datetime,
) -> None:
    """Keep ``client_id``'s pushed ``parameters`` (name to value) until ``expires_at``."""
    row = {
        "digest": digest,
        "client_id": client_id,
        "parameters": parameters,
        "created_at": now,
        "expires_at": expires_at,
    }
    session.connection().execute(_INSERT, row)


def take(session: Session, digest: bytes, client_id: str, now: datetime) -> dict[str, str] | None:
    """The parameters stored under ``digest``, removed as they are read: None when there are
    none, they expired (not after ``now``) or another client pushed them (then they stay)."""
    params = {"b_digest": digest, "b_client_id": client_id, "b_now": now}
    parameters = session.connection().execute(_TAKE, params).scalar_one_or_none()
    if parameters is None:
        return None
    return {str(name): str(value) for name, value in dict(parameters).items()}
