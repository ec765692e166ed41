"""``/account``: a signed-in user's password, second factor, sessions and applications.

Signed out (or owing the second factor), ``GET /account`` shows the sign-in pages, which
come back here. Every form posts with a CSRF token and answers with a redirect to
``/account`` (with a ``done`` message) or a page saying what went wrong. A change that
needs the password proved recently (``OSTIARY_REAUTH_SECONDS``) answers with a form asking
for it, which posts to ``/account/reauth``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..authn import browsers
from ..authn.levels import multi_factor
from ..i18n import N_
from ..mfa.errors import MfaError
from ..signin.outcome import describe_scope
from ..storage.authorized_apps import AuthorizedApp
from ..storage.passkeys import StoredPasskey
from ..storage.sessions import StoredSession
from ..users.account import NotSignedIn, Overview, ReauthRequired
from ..users.errors import AccountError, NothingToEnd
from .authorize import client_address, posted_form, respond
from .pages import image_origin
from .runtime import Runtime
from .signup import mails_to

_DONE = {
    "password": N_("Your password is changed. Every other device was signed out."),
    "totp-off": N_("Your second factor is turned off."),
    "reauth": N_("Your password is confirmed. You can now change how you sign in."),
    "session-ended": N_("That session is signed out."),
    "app-revoked": N_("That application's access is revoked."),
    "passkey-added": N_("Your passkey is added. You can sign in with it."),
    "passkey-removed": N_("That passkey is removed."),
    "email-sent": N_("A link is on its way to that address. Your address changes when you open it."),
}


@dataclass(frozen=True)
class Posted:
    """A CSRF-checked account form and what answering it needs."""

    runtime: Runtime
    form: dict[str, str]
    browser: str
    token: str | None
    #: the known-device cookie, for the lockout of passwords typed here
    device: str | None

    def field(self, name: str, limit: int = 1024) -> str:
        return self.form.get(name, "")[:limit]

    def render(self, template: str, context: dict[str, object], status: int = 200) -> Response:
        return self.runtime.pages.render(template, context, browser=self.browser, new_browser=False, status=status)


Handler = Callable[[Posted], Awaitable[Response]]


async def account(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    browser, new_browser = pages.browser_token(request)
    token = pages.session_token(request)
    origin = pages.origins.digest(client_address(request))
    gate = await runtime.authorizer.begin_account(token, browser, "/account", origin=origin)
    if gate is not None:
        return respond(runtime, gate, browser, new_browser, redirect_status=303)
    try:
        view = await runtime.account.overview(token)
    except NotSignedIn:
        return pages.redirect("/account")
    apps = [_app(app) for app in view.apps]
    context = {
        "user": view.me.user,
        "enrolled": view.enrolled,
        "unused_codes": view.unused_codes,
        "sessions": [_session(runtime, stored, view) for stored in view.sessions],
        "passkeys": [_passkey(passkey) for passkey in view.passkeys],
        "apps": apps,
        # the origins of the logos shown: the page's CSP lets them serve images
        "logos": [app["logo"] for app in apps if app["logo"]],
        "done": _DONE.get(request.query_params.get("done", "")),
    }
    return pages.render("account.html", context, browser=browser, new_browser=new_browser)


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else N_("not known")


def _session(runtime: Runtime, stored: StoredSession, view: Overview) -> dict[str, Any]:
    places = runtime.places
    return {
        "sid": stored.sid,
        "current": stored.sid == view.me.session.sid,
        "browser": browsers.describe(stored.user_agent),
        # only from the local database the operator configured; never looked up elsewhere
        "place": places.place(stored.address) if places is not None else None,
        "started": _when(stored.created_at),
        "last_seen": _when(stored.last_seen_at or stored.created_at),
        "level": N_("password and second factor") if multi_factor(stored.acr) else N_("password"),
    }


def _passkey(passkey: StoredPasskey) -> dict[str, Any]:
    return {
        "id": passkey.id,
        "name": passkey.name,
        "synced": passkey.device_type == "multi_device",
        "added": _when(passkey.created_at),
        "last_used": _when(passkey.last_used_at),
    }


def _app(app: AuthorizedApp) -> dict[str, Any]:
    return {
        "client_id": app.client_id,
        "name": app.name,
        # a logo whose origin the CSP cannot name safely is left out, not the CSP widened
        "logo": app.logo_uri if image_origin(app.logo_uri) else None,
        "scopes": [describe_scope(scope) for scope in app.scopes],
        "last_used": _when(app.last_used_at),
    }


def _action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A POST on the account page: CSRF checked; signed out sends back to ``/account``."""

    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        form, browser = await posted_form(request, runtime)
        if form is None or browser is None:
            return runtime.pages.error(
                N_("This form has expired"), N_("The page was open too long. Go back to your account."), status=403
            )
        posted = Posted(
            runtime,
            form,
            browser,
            runtime.pages.session_token(request),
            request.cookies.get(runtime.pages.device_cookie),
        )
        try:
            return await handler(posted)
        except NotSignedIn:
            return runtime.pages.redirect("/account")
        except ReauthRequired:
            return posted.render("reauth.html", {"minutes": max(1, runtime.settings.reauth_seconds // 60)})
        except NothingToEnd as error:
            return posted.render("account_problem.html", {"message": str(error)}, status=404)
        except (AccountError, MfaError) as error:
            return posted.render("account_problem.html", {"message": str(error)}, status=400)

    return endpoint


async def _start_totp(posted: Posted) -> Response:
    enrolment = await posted.runtime.account.start_enrolment(posted.token)
    return posted.render("totp_enrol.html", {"enrolment": enrolment})


async def _confirm_totp(posted: Posted) -> Response:
    account = posted.runtime.account
    try:
        codes, new_token = await account.confirm_enrolment(posted.token, posted.field("code", 64))
    except MfaError as error:
        enrolment = await account.pending_enrolment(posted.token)
        if enrolment is None:
            raise
        return posted.render("totp_enrol.html", {"enrolment": enrolment, "error": str(error)})
    response = posted.render("backup_codes.html", {"codes": codes, "first": True})
    posted.runtime.pages.set_session(response, new_token)
    return response


async def _regenerate(posted: Posted) -> Response:
    codes = await posted.runtime.account.regenerate_codes(
        posted.token, posted.device, posted.field("password"), posted.field("code", 64)
    )
    return posted.render("backup_codes.html", {"codes": codes, "first": False})


async def _disable(posted: Posted) -> Response:
    await posted.runtime.account.disable(
        posted.token, posted.device, posted.field("password"), posted.field("code", 64)
    )
    return posted.runtime.pages.redirect("/account?done=totp-off")


async def _password(posted: Posted) -> Response:
    new_token = await posted.runtime.account.change_password(
        posted.token,
        posted.device,
        posted.field("current_password"),
        posted.field("new_password"),
        posted.field("confirm_password"),
    )
    posted.runtime.announce_logouts()
    response = posted.runtime.pages.redirect("/account?done=password")
    posted.runtime.pages.set_session(response, new_token)
    return response


async def _email(posted: Posted) -> Response:
    email = posted.field("email", 254).strip()
    if email:
        limited = await mails_to(posted.runtime, email)
        if not limited.allowed:
            message = N_("Too many links were sent to that address. Wait a minute and try again.")
            return posted.render("account_problem.html", {"message": message}, status=429)
    await posted.runtime.account.change_email(posted.token, email)
    return posted.runtime.pages.redirect("/account?done=email-sent")


async def _passkey_new(posted: Posted) -> Response:
    options = await posted.runtime.account.passkey_options(posted.token)
    # JSON inside <script>: no "<" may end the element early (the user's name is in it)
    return posted.render("passkey_enrol.html", {"options": options.replace("<", "\\u003c")})


async def _passkey_add(posted: Posted) -> Response:
    codes, new_token = await posted.runtime.account.add_passkey(
        posted.token, posted.field("answer", 65536), posted.field("name", 64)
    )
    if codes is not None:  # the account's first second factor: its backup codes, shown once
        response = posted.render("backup_codes.html", {"codes": codes, "first": True})
    else:
        response = posted.runtime.pages.redirect("/account?done=passkey-added")
    posted.runtime.pages.set_session(response, new_token)
    return response


async def _passkey_remove(posted: Posted) -> Response:
    try:
        passkey_id = int(posted.field("passkey", 12))
    except ValueError:
        raise NothingToEnd(N_("That passkey is gone already.")) from None
    await posted.runtime.account.remove_passkey(posted.token, passkey_id)
    return posted.runtime.pages.redirect("/account?done=passkey-removed")


async def _reauthenticate(posted: Posted) -> Response:
    try:
        await posted.runtime.account.reauthenticate(posted.token, posted.device, posted.field("password"))
    except AccountError as error:
        context = {"minutes": max(1, posted.runtime.settings.reauth_seconds // 60), "error": str(error)}
        return posted.render("reauth.html", context, status=400)
    return posted.runtime.pages.redirect("/account?done=reauth")


async def _end_everywhere(posted: Posted) -> Response:
    await posted.runtime.account.end_everywhere(posted.token)
    posted.runtime.announce_logouts()
    response = posted.runtime.pages.redirect("/account")
    posted.runtime.pages.clear_session(response)
    return response


async def _end_session(posted: Posted) -> Response:
    current = await posted.runtime.account.end_session(posted.token, posted.field("sid", 128))
    posted.runtime.announce_logouts()
    if current:  # this browser's own: signed out, as /logout would
        response = posted.runtime.pages.redirect("/account")
        posted.runtime.pages.clear_session(response)
        return response
    return posted.runtime.pages.redirect("/account?done=session-ended")


async def _revoke_app(posted: Posted) -> Response:
    await posted.runtime.account.revoke_app(posted.token, posted.field("client_id", 128))
    return posted.runtime.pages.redirect("/account?done=app-revoked")


start_totp = _action(_start_totp)
confirm_totp = _action(_confirm_totp)
regenerate_codes = _action(_regenerate)
disable_totp = _action(_disable)
change_password = _action(_password)
change_email = _action(_email)
new_passkey = _action(_passkey_new)
add_passkey = _action(_passkey_add)
remove_passkey = _action(_passkey_remove)
end_everywhere = _action(_end_everywhere)
end_session = _action(_end_session)
revoke_app = _action(_revoke_app)
reauthenticate = _action(_reauthenticate)
