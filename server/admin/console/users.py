"""The console's user pages: the overview with its search form, search results, one
account with its sessions, grants, second factor, lockout and recent audit events, and
the forms that disable, enable, unlock, reset the second factor and end sessions."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, urlencode

from ...authn.levels import multi_factor
from ...i18n import N_
from ...storage import Session, audit
from ...storage.audit import EventFilter, StoredEvent
from ...storage.grants import StoredGrant
from ...storage.sessions import StoredSession
from ...storage.users import StoredUser
from ...users import admin
from ...users.admin import UserOverview
from .base import Answer, ConsoleError, Handler, Moved, Shown, Visit, cursor, when
from .events import event_rows

#: accounts on one page of search results
PAGE = 25
#: the audit events shown on an account's page
RECENT_EVENTS = 20

DONE = {
    "disabled": N_("The account is disabled and its sessions ended."),
    "enabled": N_("The account is enabled."),
    "unlocked": N_("The account's failed attempts are forgotten: it can sign in at once."),
    "mfa-reset": N_("The second factor is removed; the user was told by mail."),
    "mfa-none": N_("The account had no second factor."),
    "session-ended": N_("The session is ended."),
    "sessions-ended": N_("Every session of the account is ended."),
    "unchanged": N_("Nothing changed: the account already was that way."),
}


async def home(visit: Visit) -> Answer:
    """``/admin``: where to go, and the user search."""
    events = await visit.read(lambda db: audit.events(db, EventFilter(), limit=10))
    return Shown("admin/home.html", {"section": "home", "events": event_rows(events)})


async def search(visit: Visit) -> Answer:
    """``/admin/users?q=&after=``: accounts whose username or e-mail holds ``q``, by id."""
    query = visit.arg("q")
    after = cursor(visit.arg("after", 20))
    found = await visit.read(lambda db: admin.list_users(db, query=query or None, after=after, limit=PAGE + 1))
    shown = found[:PAGE]
    more = len(found) > PAGE
    next_page = "/admin/users?" + urlencode({"q": query, "after": shown[-1].id}) if more else None
    context = {
        "section": "users",
        "q": query,
        "users": [_user_row(user) for user in shown],
        "next_page": next_page,
        "first_page": "/admin/users?" + urlencode({"q": query}) if after is not None else None,
    }
    return Shown("admin/users.html", context)


async def profile(visit: Visit) -> Answer:
    """``/admin/users/{sub}``."""
    sub = visit.param("sub")

    def read(db: Session) -> tuple[UserOverview, list[StoredEvent]]:
        user = admin.find_by_sub(db, sub)
        view = admin.overview(db, user.username, visit.services.lockout)
        return view, audit.events(db, EventFilter(user_sub=sub), limit=RECENT_EVENTS)

    view, events = await visit.read(read)
    context = {
        "section": "users",
        "user": _user_row(view.user),
        "mfa_enrolled": view.mfa_enrolled,
        "locked": [_FACTOR_NAMES.get(factor, factor) for factor in view.locked_factors],
        "sessions": [_session_row(session) for session in view.sessions],
        "grants": [_grant_row(grant) for grant in view.grants],
        "events": event_rows(events),
        "done": visit.done(DONE),
        "is_self": view.user.sub == visit.admin.sub,
    }
    return Shown("admin/user.html", context)


Change = Callable[[Session, str, str], str]


def _action(change: Change) -> Handler:
    """A form on an account's page: ``change(db, username, actor)`` in one transaction,
    returning the ``done`` message's key; answers with the account's page."""

    async def handler(visit: Visit) -> Answer:
        sub = visit.param("sub")

        def work(db: Session) -> str:
            return change(db, admin.find_by_sub(db, sub).username, visit.actor)

        done = await visit.run(work)
        return Moved(f"/admin/users/{quote(sub, safe='')}?done={done}")

    return handler


def _disable(db: Session, username: str, actor: str) -> str:
    if actor == f"user:{admin.find(db, username).sub}":
        raise ConsoleError(N_("You cannot disable your own account: another administrator must."))
    return "disabled" if admin.set_disabled(db, username, True, actor=actor)[1] else "unchanged"


def _enable(db: Session, username: str, actor: str) -> str:
    return "enabled" if admin.set_disabled(db, username, False, actor=actor)[1] else "unchanged"


def _unlock(db: Session, username: str, actor: str) -> str:
    admin.unlock(db, username, actor=actor)
    return "unlocked"


def _reset_mfa(db: Session, username: str, actor: str) -> str:
    return "mfa-reset" if admin.reset_mfa(db, username, actor=actor)[1] else "mfa-none"


def _end_sessions(db: Session, username: str, actor: str) -> str:
    admin.end_sessions(db, username, actor=actor)
    return "sessions-ended"


async def end_session(visit: Visit) -> Answer:
    """End the one session named by the form's ``sid``."""
    sid = visit.field("sid", 128)
    if not sid:
        raise ConsoleError(N_("Choose a session to end."))

    def end(db: Session, username: str, actor: str) -> str:
        admin.end_session(db, username, sid, actor=actor)
        return "session-ended"

    return await _action(end)(visit)


disable = _action(_disable)
enable = _action(_enable)
unlock = _action(_unlock)
reset_mfa = _action(_reset_mfa)
end_sessions = _action(_end_sessions)

_FACTOR_NAMES = {"password": N_("password"), "otp": N_("second factor")}


def _user_row(user: StoredUser) -> dict[str, object]:
    return {
        "sub": user.sub,
        "link": f"/admin/users/{quote(user.sub, safe='')}",
        "username": user.username,
        "email": user.email,
        "email_verified": user.email_verified,
        "name": user.name,
        "is_admin": user.is_admin,
        "disabled": user.disabled_at is not None,
        "disabled_at": when(user.disabled_at),
        "created": when(user.created_at),
        "must_change_password": user.must_change_password,
    }


def _session_row(session: StoredSession) -> dict[str, object]:
    return {
        "sid": session.sid,
        "started": when(session.created_at),
        "auth_time": when(session.auth_time),
        "level": N_("password and second factor") if multi_factor(session.acr) else N_("password"),
        "expires": when(session.expires_at),
    }


def _grant_row(grant: StoredGrant) -> dict[str, object]:
    return {
        "grant_id": grant.grant_id,
        "client_id": grant.client_id,
        "client_link": f"/admin/clients/{quote(grant.client_id, safe='')}",
        "scope": grant.scope,
        "created": when(grant.created_at),
        "offline": grant.session_sid is None,
        "expires": when(grant.expires_at),
    }
