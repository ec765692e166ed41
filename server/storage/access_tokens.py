"""Is a JWT access token still good? One statement per check, on the hot read paths.

An access token verifies offline, but introspection and userinfo also honour revocation
and disabling: the token's ``jti`` must not be on the deny list, its client must exist and
not be disabled and, for a user's token, its grant (``gid``) must not be revoked and its
user not disabled. Each check is one statement of indexed reads (primary keys).
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, exists, select

from . import Session
from .models import Client, Grant, RevokedAccessToken, User
from .users import USER_COLUMNS, StoredUser, to_user

_NOT_DENIED = ~exists().where(RevokedAccessToken.jti == bindparam("b_jti"))
_CLIENT_ENABLED = exists().where(Client.client_id == bindparam("b_client_id"), Client.disabled_at.is_(None))
#: the grant is live, and neither its user nor its client is disabled
_GRANT_LIVE = (
    exists()
    .where(Grant.id == bindparam("b_gid"), Grant.revoked_at.is_(None))
    .where(User.id == Grant.user_id, User.disabled_at.is_(None))
    .where(Client.client_id == Grant.client_id, Client.disabled_at.is_(None))
)
_CLIENT_TOKEN_ACTIVE = select(and_(_NOT_DENIED, _CLIENT_ENABLED))
_USER_TOKEN_ACTIVE = select(and_(_NOT_DENIED, _GRANT_LIVE))
_TOKEN_USER = (
    select(*USER_COLUMNS)
    .join_from(Grant, User, User.id == Grant.user_id)
    .join(Client, Client.client_id == Grant.client_id)
    .where(
        Grant.id == bindparam("b_gid"),
        Grant.revoked_at.is_(None),
        User.sub == bindparam("b_sub"),
        User.disabled_at.is_(None),
        Client.disabled_at.is_(None),
        _NOT_DENIED,
    )
)


def is_active(session: Session, jti: str, grant_id: str | None, client_id: str) -> bool:
    """Not on the deny list, its client enabled and, for a user's token (``grant_id``), its
    grant not revoked and its user enabled. One statement either way."""
    if grant_id is None:
        params = {"b_jti": jti, "b_client_id": client_id}
        return bool(session.connection().execute(_CLIENT_TOKEN_ACTIVE, params).scalar())
    return bool(session.connection().execute(_USER_TOKEN_ACTIVE, {"b_jti": jti, "b_gid": grant_id}).scalar())


def active_user(session: Session, jti: str, grant_id: str, sub: str) -> StoredUser | None:
    """The enabled user ``sub`` of a token not on the deny list, whose grant is live and
    whose client is enabled."""
    row = session.connection().execute(_TOKEN_USER, {"b_jti": jti, "b_gid": grant_id, "b_sub": sub}).first()
    return to_user(row) if row is not None else None
