"""The console's invitation page: the invitations, newest first (the live ones, or every
one), the form that makes an invitation link (shown once, on the page answered) and the
button that revokes a live one. Both go through the functions of ``ostiary invitations``."""

from __future__ import annotations

from urllib.parse import urlencode

from ... import i18n
from ...i18n import N_
from ...storage import Session
from ...storage.signups import MAX_ID, StoredInvitation, list_invitations
from ...users import signup
from ...users.invitations import LIVE, state
from .base import Answer, ConsoleError, Moved, Shown, Visit, cursor, when

#: invitations on one page
PAGE = 50
#: how long a new link works, as the form offers it ("": ``OSTIARY_INVITATION_TTL``)
LIFETIMES = {"": "", "3600": N_("one hour"), "86400": N_("one day"), "604800": N_("one week"), "2592000": N_("30 days")}
#: the states of a dead invitation, as the page shows them (``users.invitations`` names them)
STATES = (N_("used"), N_("revoked"), N_("expired"))

DONE = {"revoked": N_("The invitation is revoked: its link no longer works.")}


async def listing(visit: Visit) -> Answer:
    """``/admin/invitations?state=all&before=``: newest first."""
    every = visit.arg("state", 10) == "all"
    before = cursor(visit.arg("before", 20))

    def read(db: Session) -> list[StoredInvitation]:
        return list_invitations(db, include_dead=every, before_id=before, limit=PAGE + 1)

    found = await visit.read(read)
    shown = found[:PAGE]
    settings = visit.services.settings
    filters = {"state": "all"} if every else {}
    more = len(found) > PAGE
    context = {
        "section": "invitations",
        "invitations": [_row(invitation) for invitation in shown],
        "every": every,
        "next_page": "/admin/invitations?" + urlencode({**filters, "before": shown[-1].id}) if more else None,
        "first_page": "/admin/invitations?" + urlencode(filters) if before is not None else None,
        "lifetimes": {
            **LIFETIMES,
            "": i18n.gettext("%(lifetime)s (the default)") % {"lifetime": _days(settings.invitation_ttl)},
        },
        "signup": settings.signup,
        "done": visit.done(DONE),
    }
    return Shown("admin/invitations.html", context)


async def create(visit: Visit) -> Answer:
    """A new invitation link, for the form's ``email`` only when given; shown this once."""
    email = visit.field("email", 254) or None
    lifetime = visit.field("expires_in", 10)
    if lifetime not in LIFETIMES:
        raise ConsoleError(N_("Choose how long the link works."))
    settings = visit.services.settings
    expires_in = int(lifetime) if lifetime else None

    def work(db: Session) -> signup.Invited:
        return signup.invite(db, settings, email=email, expires_in=expires_in, actor=visit.actor)

    invited = await visit.run(work)
    context = {"section": "invitations", "invitation": _row(invited.invitation), "link": invited.link}
    return Shown("admin/invited.html", {**context, "signup": settings.signup})


async def revoke(visit: Visit) -> Answer:
    """The invitation the path names stops working."""
    raw = visit.param("invitation_id")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or int(raw) > MAX_ID:
        raise ConsoleError(N_("There is no such invitation."), status=404)
    invitation_id = int(raw)
    if not await visit.run(lambda db: signup.revoke_invitation(db, invitation_id, actor=visit.actor)):
        raise ConsoleError(N_("That invitation no longer works: it was used, revoked or has expired."), status=404)
    return Moved("/admin/invitations?done=revoked")


def _row(invitation: StoredInvitation) -> dict[str, object]:
    shown = state(invitation)
    return {
        "id": invitation.id,
        "email": invitation.email,
        "state": shown,
        "live": shown == LIVE,
        "created_by": invitation.created_by,
        "created": when(invitation.created_at),
        "expires": when(invitation.expires_at),
        "used": when(invitation.used_at) if invitation.used_at else None,
    }


def _days(seconds: int) -> str:
    if seconds % 86400 == 0:
        days = seconds // 86400
        return i18n.ngettext("%(num)d day", "%(num)d days", days) % {"num": days}
    hours = max(1, seconds // 3600)
    return i18n.ngettext("%(num)d hour", "%(num)d hours", hours) % {"num": hours}
