"""Sign-up invitations and e-mail verification links: tokens stored as SHA-256, each used
once by a conditional UPDATE (of two uses at once, one wins), dead once expired."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, insert, select, update

from . import Session
from .base import utcnow
from .models import EmailVerification, Invitation

SIGNUP = "signup"
EMAIL = "email"
#: the largest id an invitation can have (a 32-bit column: PostgreSQL refuses a larger number outright)
MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class StoredVerification:
    purpose: str
    email: str
    user_id: int | None
    username: str | None
    name: str | None
    password_hash: str | None
    invitation_id: int | None
    expires_at: datetime


@dataclass(frozen=True)
class StoredInvitation:
    id: int
    email: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.used_at is None and self.revoked_at is None and self.expires_at > now


_VERIFICATION = (
    EmailVerification.purpose,
    EmailVerification.email,
    EmailVerification.user_id,
    EmailVerification.username,
    EmailVerification.name,
    EmailVerification.password_hash,
    EmailVerification.invitation_id,
    EmailVerification.expires_at,
)
_INVITATION = (
    Invitation.id,
    Invitation.email,
    Invitation.created_by,
    Invitation.created_at,
    Invitation.expires_at,
    Invitation.used_at,
    Invitation.revoked_at,
)


def add_verification(
    session: Session,
    token_digest: bytes,
    *,
    purpose: str,
    email: str,
    expires_at: datetime,
    user_id: int | None = None,
    username: str | None = None,
    name: str | None = None,
    password_hash: str | None = None,
    invitation_id: int | None = None,
) -> None:
    """A new link. For an address change, the user's earlier unused links stop working."""
    if user_id is not None:
        void_email_links(session, user_id)
    session.execute(
        insert(EmailVerification).values(
            token_digest=token_digest,
            purpose=purpose,
            email=email,
            user_id=user_id,
            username=username,
            name=name,
            password_hash=password_hash,
            invitation_id=invitation_id,
            created_at=utcnow(),
            expires_at=expires_at,
        )
    )


def _live_link(token_digest: bytes) -> list[ColumnElement[bool]]:
    return [
        EmailVerification.token_digest == token_digest,
        EmailVerification.used_at.is_(None),
        EmailVerification.expires_at > utcnow(),
    ]


def peek_verification(session: Session, token_digest: bytes) -> StoredVerification | None:
    """A live link's request, without using it."""
    row = session.execute(select(*_VERIFICATION).where(*_live_link(token_digest))).first()
    return StoredVerification(**row._mapping) if row else None


def use_verification(session: Session, token_digest: bytes) -> StoredVerification | None:
    """Spend a live link; its request, or None when it was not live."""
    row = session.execute(
        update(EmailVerification).where(*_live_link(token_digest)).values(used_at=utcnow()).returning(*_VERIFICATION)
    ).first()
    return StoredVerification(**row._mapping) if row else None


def void_email_links(session: Session, user_id: int) -> int:
    """Every unused address link of the user stops working; returns how many."""
    result = session.execute(
        update(EmailVerification)
        .where(EmailVerification.user_id == user_id, EmailVerification.used_at.is_(None))
        .values(used_at=utcnow())
        .returning(EmailVerification.token_digest)
    )
    return len(result.all())


def add_invitation(
    session: Session, token_digest: bytes, *, email: str | None, created_by: str, expires_at: datetime
) -> StoredInvitation:
    row = session.execute(
        insert(Invitation)
        .values(
            token_digest=token_digest, email=email, created_by=created_by, created_at=utcnow(), expires_at=expires_at
        )
        .returning(*_INVITATION)
    ).one()
    return StoredInvitation(**row._mapping)


def _live_invitation() -> list[ColumnElement[bool]]:
    return [Invitation.used_at.is_(None), Invitation.revoked_at.is_(None), Invitation.expires_at > utcnow()]


def peek_invitation(session: Session, token_digest: bytes) -> StoredInvitation | None:
    """A live invitation, not used up."""
    row = session.execute(
        select(*_INVITATION).where(Invitation.token_digest == token_digest, *_live_invitation())
    ).first()
    return StoredInvitation(**row._mapping) if row else None


def use_invitation(session: Session, invitation_id: int, user_id: int) -> bool:
    """Spend a live invitation on the account it made; False when it was not live."""
    row = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation_id, *_live_invitation())
        .values(used_at=utcnow(), user_id=user_id)
        .returning(Invitation.id)
    ).first()
    return row is not None


def list_invitations(
    session: Session, *, include_dead: bool = False, before_id: int | None = None, limit: int = 100
) -> list[StoredInvitation]:
    """At most ``limit`` invitations, newest first, with an id below ``before_id`` when given
    (a page stays put while new ones are made); only the live ones unless ``include_dead``."""
    query = select(*_INVITATION).order_by(Invitation.id.desc()).limit(limit)
    if before_id is not None and before_id <= MAX_ID:
        query = query.where(Invitation.id < before_id)
    if not include_dead:
        query = query.where(*_live_invitation())
    return [StoredInvitation(**row._mapping) for row in session.execute(query)]


def revoke_invitation(session: Session, invitation_id: int) -> bool:
    """A live invitation stops working; False when there was none live with that id."""
    row = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation_id, *_live_invitation())
        .values(revoked_at=utcnow())
        .returning(Invitation.id)
    ).first()
    return row is not None
