"""Is a JWT access token still good? One statement per check, on the hot read paths.

An access token verifies offline, but introspection and userinfo also honour revocation:
the token's ``jti`` must not be on the deny list and, for a user's token, its grant
(``gid``) must not be revoked. Each check is a single indexed read (primary keys).
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, exists, select

from . import Session
from .models import Grant, RevokedAccessToken, User
from .users import USER_COLUMNS, StoredUser, to_user

_NOT_DENIED = ~exists().where(RevokedAccessToken.jti == bindparam("b_jti"))
_GRANT_LIVE = exists().where(Grant.id == bindparam("b_gid"), Grant.revoked_at.is_(None))
_CLIENT_TOKEN_ACTIVE = select(_NOT_DENIED)
_USER_TOKEN_ACTIVE = select(and_(_NOT_DENIED, _GRANT_LIVE))
_TOKEN_USER = (
    select(*USER_COLUMNS)
    .join_from(Grant, User, User.id == Grant.user_id)
    .where(
        Grant.id == bindparam("b_gid"),
        Grant.revoked_at.is_(None),
        User.sub == bindparam("b_sub"),
        User.disabled_at.is_(None),
        _NOT_DENIED,
    )
)


def is_active(session: Session, jti: str, grant_id: str | None) -> bool:
    """Not on the deny list, and its grant (for a user's token) not revoked."""
    if grant_id is None:
        return bool(session.connection().execute(_CLIENT_TOKEN_ACTIVE, {"b_jti": jti}).scalar())
    return bool(session.connection().execute(_USER_TOKEN_ACTIVE, {"b_jti": jti, "b_gid": grant_id}).scalar())


def active_user(session: Session, jti: str, grant_id: str, sub: str) -> StoredUser | None:
    """The active user ``sub`` of a token whose grant is live and which is not on the deny list."""
    row = session.connection().execute(_TOKEN_USER, {"b_jti": jti, "b_gid": grant_id, "b_sub": sub}).first()
    return to_user(row) if row is not None else None
