"""What the sign-in steps hand back to the web layer: a redirect, or a page to render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import i18n
from ..i18n import N_


@dataclass(frozen=True)
class FormPost:
    """An authorization response to post to the client (``response_mode=form_post``)."""

    action: str
    fields: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Outcome:
    """What the web layer should do: redirect, or render a page (with these values)."""

    redirect: str | None = None
    page: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    #: a session was started (or stepped up): set this token as the session cookie
    session_token: str | None = None
    #: seconds for a ``Retry-After`` header (a locked account)
    retry_after: int | None = None
    #: the redirect URI the interaction ends at: a form on this page may lead there, so its
    #: origin joins the page's CSP ``form-action`` (browsers check it on the redirect too)
    client_redirect: str | None = None
    #: the browser's new binding token (set at sign-in: every CSRF token shown before is void)
    browser_token: str | None = None
    #: a new known-device cookie value (set when a sign-in completed)
    device_cookie: str | None = None
    #: the authorization response as a form to post to the client, in place of a redirect
    post: FormPost | None = None


def error_page(title: str, message: str, status: int = 400) -> Outcome:
    return Outcome(page="error.html", context={"title": title, "message": message}, status=status)


EXPIRED = error_page(
    N_("This sign-in has expired"),
    N_("Too much time passed, or it was finished in another tab. Go back to the application and sign in again."),
)
CHANGED = error_page(
    N_("Your sign-in changed"),
    N_("You signed out or in again in another tab. Go back to the application and start again."),
)
ACCOUNT_CHANGED = error_page(
    N_("Sign in again"), N_("Your account changed while you were signing in. Please try again.")
)

_SCOPE_WORDS = {
    "openid": N_("Confirm who you are"),
    "profile": N_("See your name and username"),
    "email": N_("See your email address"),
    "offline_access": N_("Stay connected when you are not using it"),
    # the admin API's scopes (server/admin/principal.py): they work only for administrators
    "ostiary:admin": N_("Administer this sign-in service as you: clients, users, keys and the audit trail"),
    "ostiary:admin:clients": N_("Manage the applications registered here, as you"),
    "ostiary:admin:users": N_("Manage user accounts, their sessions and sign-ins, as you"),
    "ostiary:admin:keys": N_("Rotate and revoke this service's signing keys, as you"),
    "ostiary:admin:audit": N_("Read the audit trail of this service"),
}


def describe_scope(scope: str) -> dict[str, str]:
    words = _SCOPE_WORDS.get(scope)
    text = i18n.gettext(words) if words else i18n.gettext("Access %(scope)s") % {"scope": scope}
    return {"name": scope, "text": text}
