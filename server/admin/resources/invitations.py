"""``/invitations``: sign-up invitation links (``OSTIARY_SIGNUP=invite``), through the same
service functions as ``ostiary invitations``.

An invitation lets whoever holds its link make one account (for one e-mail address when it
names one). Its link is in the answer to the creation only: Ostiary keeps a digest. Since
an invitation makes an account, the area is ``users`` (``ostiary:admin:users``).
"""

from __future__ import annotations

from typing import Any

from ...storage import Session, signups
from ...storage.signups import MAX_ID, StoredInvitation
from ...users import signup
from ...users.errors import UserError
from ...users.invitations import MAX_LIFETIME, MIN_LIFETIME, describe
from ...users.service import check_address
from ..calls import Call, Page, Reply
from ..errors import Invalid, NotFound

AREA = "users"
#: the values of ``?state=``: the live invitations (the default), or every one
STATES = ("live", "all")
_CREATE = {"email": "string?", "expires_in": "integer"}


async def list_invitations(call: Call) -> Reply:
    """``?state=all&limit=&cursor=``: newest first; only the live ones unless ``state=all``."""
    include_dead, page = _listing_query(call)

    def work(db: Session) -> list[StoredInvitation]:
        return signups.list_invitations(db, include_dead=include_dead, before_id=page.position, limit=page.limit)

    found = await call.read(work)
    return Reply.listing([describe(invitation) for invitation in found], page, found[-1].id if found else None)


def _listing_query(call: Call) -> tuple[bool, Page]:
    """Whether dead invitations are listed too, and the page; every field at fault at once."""
    errors: list[tuple[str, str]] = []
    wanted = call.query.get("state", "live")
    if wanted not in STATES:
        errors.append(("state", f"must be one of {', '.join(STATES)}"))
    try:
        page = call.page()
    except Invalid as refused:
        errors = refused.errors + errors
    if errors:
        raise Invalid(errors)
    return wanted == "all", page


async def create(call: Call) -> Reply:
    """``{"email": "ann@example.com", "expires_in": 86400}`` (both optional): 201 with the
    invitation and its ``link``, shown this once. Without ``email`` the link signs up any
    address; without ``expires_in`` it works ``OSTIARY_INVITATION_TTL``."""
    body = _checked(call)
    expires_in = body.get("expires_in")
    settings = call.services.settings

    def work(db: Session) -> signup.Invited:
        return signup.invite(db, settings, email=body.get("email"), expires_in=expires_in, actor=call.actor)

    invited = await call.run(work)
    return Reply({**describe(invited.invitation), "link": invited.link}, 201)


def _checked(call: Call) -> dict[str, Any]:
    """The body, its address and lifetime checked; every field at fault at once."""
    body = call.body(_CREATE)
    errors: list[tuple[str, str]] = []
    if body.get("email") is not None:
        try:
            check_address(body["email"])  # the address rules of an account
        except UserError as error:
            errors.append(("email", error.message))
    expires_in = body.get("expires_in")
    if expires_in is not None and not MIN_LIFETIME <= expires_in <= MAX_LIFETIME:
        errors.append(("expires_in", f"must be a number of seconds from {MIN_LIFETIME} to {MAX_LIFETIME} (90 days)"))
    if errors:
        raise Invalid(errors)
    return body


async def revoke(call: Call) -> Reply:
    """204: the link stops working; 404 when no live invitation has that id (it was used,
    revoked or has expired, or never was)."""
    invitation_id = _invitation_id(call)
    if not await call.run(lambda db: signup.revoke_invitation(db, invitation_id, actor=call.actor)):
        raise NotFound(f"no live invitation {invitation_id}")
    return Reply(None, 204)


def _invitation_id(call: Call) -> int:
    """The path's id; one that is no number (or too long for one) names no invitation."""
    raw = call.params["invitation_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > MAX_ID:
        raise NotFound(f"no live invitation {raw}")
    return int(raw)


ROUTES = [
    ("/invitations", "GET", AREA, list_invitations),
    ("/invitations", "POST", AREA, create),
    ("/invitations/{invitation_id}", "DELETE", AREA, revoke),
]
