"""``/admin``: the admin console, server-rendered pages for users with the admin role.

Signed out (or owing the second factor), a console page shows the sign-in pages, which
come back to it. Signed in, the account must hold the admin role (else 403), have TOTP
enrolled (else a page sends it to ``/account`` to enrol), and have shown its second factor
within ``OSTIARY_ADMIN_STEP_UP_SECONDS`` (else a page asks for a code, posted to
``/admin/step-up``, which returns to the page asked for). Every form posts with a CSRF
token and answers with a 303 to its page with a ``done`` message, or a page saying what
went wrong; a new client secret is the exception, shown once on the page answered.
What each page reads and each form does is in ``server/admin/console``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..admin.console import access, clients, events, invitations, keys, users
from ..admin.console.access import Access, NotSignedIn, StepUpRefused, Verdict
from ..admin.console.base import ConsoleError, Handler, Moved, Visit
from ..clients.errors import ClientRegistrationError, UnknownClient
from ..i18n import N_
from ..keys.errors import KeyMaterialError
from ..storage import transactions
from ..storage.users import StoredUser
from ..users.errors import UnknownUser, UserError
from .authorize import client_address, posted_form, respond
from .runtime import Runtime

#: a page of the console that a step-up or a sign-in may return to (``return_to`` holds 200)
_LOCAL = re.compile(r"/admin(/[A-Za-z0-9._~%-]+)*(\?[A-Za-z0-9._~%&=+-]*)?")
_EXPIRED = (N_("This form has expired"), N_("The page was open too long. Go back to the admin console and try again."))
Endpoint = Callable[[Request], Awaitable[Response]]


def routes() -> list[BaseRoute]:
    user, client = "/admin/users/{sub}", "/admin/clients/{client_id}"
    return [
        Route("/admin", _page(users.home)),
        Route("/admin/step-up", step_up, methods=["POST"]),
        Route("/admin/users", _page(users.search)),
        Route(user, _page(users.profile)),
        *(
            Route(f"{user}/{action}", _form(handler, back=user), methods=["POST"])
            for action, handler in (
                ("disable", users.disable),
                ("enable", users.enable),
                ("unlock", users.unlock),
                ("reset-mfa", users.reset_mfa),
                ("end-session", users.end_session),
                ("end-sessions", users.end_sessions),
            )
        ),
        Route("/admin/invitations", _page(invitations.listing)),
        Route("/admin/invitations", _form(invitations.create, back="/admin/invitations"), methods=["POST"]),
        Route(
            "/admin/invitations/{invitation_id}/revoke",
            _form(invitations.revoke, back="/admin/invitations"),
            methods=["POST"],
        ),
        Route("/admin/clients", _page(clients.listing)),
        Route("/admin/clients", _form(clients.create, back="/admin/clients"), methods=["POST"]),
        Route(client, _page(clients.details)),
        *(
            Route(f"{client}/{action}", _form(handler, back=client), methods=["POST"])
            for action, handler in (
                ("rotate-secret", clients.rotate_secret),
                ("disable", clients.disable),
                ("enable", clients.enable),
            )
        ),
        Route("/admin/keys", _page(keys.listing)),
        Route("/admin/keys/rotate", _form(keys.rotate, back="/admin/keys"), methods=["POST"]),
        Route("/admin/audit", _page(events.browse)),
    ]


def _page(handler: Handler) -> Endpoint:
    """A GET of the console: the administrator's access checked, then ``handler``'s page."""

    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        browser, new_browser = runtime.pages.browser_token(request)
        here = _local(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        entered = await _enter(request, runtime, browser, new_browser, here)
        if isinstance(entered, Response):
            return entered
        visit = Visit(runtime.admin, entered, request.path_params, request.query_params)
        return await _answer(runtime, handler, visit, browser, new_browser)

    return endpoint


def _form(handler: Handler, *, back: str) -> Endpoint:
    """A POST of the console: the CSRF token first (a form from elsewhere changes nothing),
    then the access; a sign-in or step-up it needs returns to the form's page, ``back``."""

    async def endpoint(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        form, browser = await posted_form(request, runtime)
        if form is None or browser is None:
            return runtime.pages.error(*_EXPIRED, status=403)
        page = _local(back.format_map({name: _quoted(value) for name, value in request.path_params.items()}))
        entered = await _enter(request, runtime, browser, False, page)
        if isinstance(entered, Response):
            return entered
        visit = Visit(runtime.admin, entered, request.path_params, request.query_params, form)
        return await _answer(runtime, handler, visit, browser, False)

    return endpoint


async def _enter(
    request: Request, runtime: Runtime, browser: str, new_browser: bool, here: str
) -> StoredUser | Response:
    """The administrator this browser is signed in as, or the page that stands in the way."""
    pages = runtime.pages
    token = pages.session_token(request)
    origin = pages.origins.digest(client_address(request))
    gate = await runtime.authorizer.begin_account(token, browser, here, origin=origin)
    if gate is not None:
        return respond(runtime, gate, browser, new_browser, redirect_status=303)

    def check(db: Any) -> Access:
        return access.check(db, runtime.settings, runtime.second_factor, token)

    try:
        found = await transactions.run(runtime.sessionmaker, check, read_only=True)
    except NotSignedIn:
        return pages.redirect(here)
    if found.verdict is Verdict.ALLOWED:
        return found.user
    if found.verdict is Verdict.STEP_UP:
        return _step_up_page(runtime, browser, new_browser, here)
    template = "admin/forbidden.html" if found.verdict is Verdict.NOT_ADMIN else "admin/enrol.html"
    return pages.render(template, {"user": found.user}, browser=browser, new_browser=new_browser, status=403)


async def step_up(request: Request) -> Response:
    """``POST /admin/step-up``: the administrator's code; back to ``next`` when right."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_EXPIRED, status=403)
    here = _local(form.get("next", ""))
    token = pages.session_token(request)
    device = request.cookies.get(pages.device_cookie)
    code = form.get("code", "")

    def verify(db: Any) -> str:
        return access.step_up(db, runtime.second_factor, runtime.login_guard.devices, token, code, device)

    try:
        new_token = await transactions.run(runtime.sessionmaker, verify, commit_on_errors=(StepUpRefused,))
    except NotSignedIn:
        return pages.redirect(here)
    except StepUpRefused as refused:
        return _step_up_page(runtime, browser, False, here, error=str(refused), status=refused.status)
    response = pages.redirect(here)
    pages.set_session(response, new_token)
    return response


def _step_up_page(
    runtime: Runtime, browser: str, new_browser: bool, here: str, *, error: str | None = None, status: int = 200
) -> Response:
    context = {"next": here, "minutes": max(1, runtime.settings.admin_step_up_seconds // 60), "error": error}
    return runtime.pages.render("admin/step_up.html", context, browser=browser, new_browser=new_browser, status=status)


async def _answer(runtime: Runtime, handler: Handler, visit: Visit, browser: str, new_browser: bool) -> Response:
    """``handler``'s answer, or the page saying what went wrong (never a 500 for bad input)."""
    pages = runtime.pages
    try:
        answer = await handler(visit)
    except (ConsoleError, UserError, ClientRegistrationError, KeyMaterialError) as error:
        status, message = _problem(error)
        context = {"message": message, "admin": visit.admin}
        return pages.render("admin/problem.html", context, browser=browser, new_browser=new_browser, status=status)
    if isinstance(answer, Moved):
        return pages.redirect(answer.location)
    context = {**answer.context, "admin": visit.admin}
    return pages.render(answer.template, context, browser=browser, new_browser=new_browser, status=answer.status)


def _problem(error: Exception) -> tuple[int, str]:
    if isinstance(error, UnknownUser):
        return 404, N_("There is no such user.")
    if isinstance(error, UnknownClient):
        return 404, N_("There is no such client.")
    if isinstance(error, ConsoleError):
        return error.status, str(error)
    if isinstance(error, UserError | ClientRegistrationError):
        return 400, error.message[:1].upper() + error.message[1:] + "."
    return 400, str(error)


def _local(path: str) -> str:
    """``path`` if it is a console page a sign-in may return to, else ``/admin``: no ``.``
    or ``..`` segment (plain or percent-encoded) may lead it out of the console."""
    if len(path) > 200 or not _LOCAL.fullmatch(path):
        return "/admin"
    segments = unquote(path.partition("?")[0]).split("/")
    return "/admin" if any(segment in (".", "..") for segment in segments) else path


def _quoted(value: str) -> str:
    return quote(value, safe="")
