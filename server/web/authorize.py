"""The sign-in pages: ``/authorize`` (GET and POST, OIDC Core §3.1.2.1), ``/login`` and ``/consent``.

The UI contract (stable; outside tools drive the pages through it): the login form has
inputs ``username`` and ``password`` and a ``button[type=submit]``; the second-factor form
(``/login/otp``) has an input ``code`` (a TOTP code or a backup code) and a link
``a#use-backup`` to ask for a backup code instead; the consent form has
``button[name=decision][value=allow]`` and ``[value=deny]``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from .. import i18n
from ..authn.lockout import LockState
from ..authn.sessions import SeenFrom
from ..i18n import N_
from ..signin.levels import otp_page, password_change_page
from ..signin.outcome import Outcome
from ..signin.passkey import PasskeyLogin
from ..signin.steps import Waiting
from ..users.errors import UserError
from ..users.service import authenticate, check_new_password
from .forms import BodyTooLarge, FormError, read_form, read_params
from .responses import NO_STORE, json_response
from .runtime import Runtime

_BAD_REQUEST = (
    N_("This request cannot be used"),
    N_("The sign-in request is malformed. Go back to the application and try again."),
)


async def authorize(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    try:
        pairs = await read_params(request, runtime.settings.max_body_bytes)
    except (FormError, BodyTooLarge):
        return pages.error(*_BAD_REQUEST)
    browser, new_browser = pages.browser_token(request)
    origin = pages.origins.digest(client_address(request))
    outcome = await runtime.authorizer.begin(pairs, pages.session_token(request), browser, origin=origin)
    return respond(runtime, outcome, browser, new_browser, redirect_status=302)


async def login(request: Request) -> Response:
    """``POST /login``: the password step, behind a per-address rate limit and the
    account's lockout (counted before the password is checked)."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_FORBIDDEN, status=403)
    handle = form.get("interaction", "")
    found = await runtime.authorizer.interaction(handle, browser)
    if found is None:
        return pages.error(*_EXPIRED)
    username = form.get("username", "").strip()[:150]
    context = {"handle": handle, "client_name": found.client_name, "username": username}
    page = Outcome(page="login.html", context=context, client_redirect=found.client_redirect)
    limited = await runtime.limiter.check("login", client_address(request), runtime.settings.rate_limit_login)
    if not limited.allowed:
        context["error"] = _try_again_in(N_("Too many sign-in attempts from your network."), limited.retry_after)
        return respond(runtime, _locked(page, limited.retry_after), browser, False, redirect_status=303)
    device_cookie = request.cookies.get(pages.device_cookie)
    attempt = await runtime.login_guard.attempt(username, device_cookie)
    refused = partial(runtime.login_guard.failed, attempt, client_id=found.stored.client_id, ip=client_address(request))
    if not attempt.attempt.allowed:
        # Locked: the password is not checked, so a right one is refused like a wrong one.
        await refused()
        retry_after = attempt.attempt.if_failed.retry_after
        context["error"] = _try_again_in(N_("Too many failed sign-ins for this account."), retry_after)
        return respond(runtime, _locked(page, retry_after), browser, False, redirect_status=303)
    ok, rehash = await authenticate(runtime.passwords, attempt.user, form.get("password", "")[:1024])
    if not ok or attempt.user is None:
        await refused()
        context["error"] = (
            i18n.gettext("That username and password do not match.") + " " + _remaining(attempt.attempt.if_failed)
        )
        # 200, not 401: a 401 must carry WWW-Authenticate (RFC 9110 §15.5.2), which a form cannot.
        return respond(runtime, page, browser, False, redirect_status=303)
    outcome = await runtime.authorizer.after_login(
        handle,
        browser,
        attempt.user,
        rehash,
        pages.session_token(request),
        device=attempt.device,
        device_cookie=device_cookie,
        seen_from=seen_from(request),
    )
    return respond(runtime, outcome, browser, False, redirect_status=303)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def seen_from(request: Request) -> SeenFrom:
    """The browser (its ``User-Agent``) and the address a sign-in comes from."""
    return SeenFrom(request.headers.get("user-agent"), client_address(request))


def _locked(page: Outcome, retry_after: int) -> Outcome:
    return replace(page, status=429, retry_after=retry_after)


def _remaining(state: LockState) -> str:
    if state.locked:
        return i18n.gettext("This account is now locked for %(wait)s.") % {"wait": _wait(state.retry_after)}
    if state.remaining is None:
        return i18n.gettext("Check them and try again.")
    left = i18n.ngettext(
        "%(num)d attempt left before the account is locked.",
        "%(num)d attempts left before the account is locked.",
        state.remaining,
    )
    return left % {"num": state.remaining}


def _try_again_in(reason: str, seconds: int) -> str:
    return i18n.gettext(reason) + " " + i18n.gettext("Try again in %(wait)s.") % {"wait": _wait(seconds)}


def _wait(seconds: int) -> str:
    if seconds < 90:
        return i18n.ngettext("%(num)d second", "%(num)d seconds", seconds) % {"num": seconds}
    minutes = math.ceil(seconds / 60)
    return i18n.ngettext("%(num)d minute", "%(num)d minutes", minutes) % {"num": minutes}


async def _reopened(
    runtime: Runtime, request: Request, *, second_factor: bool = False
) -> tuple[str, str, Waiting] | Response:
    """The open sign-in of this browser that ``?interaction=`` names, as (handle, browser
    token, the interaction; with the second factors its user may show when
    ``second_factor``); the expired page when there is none."""
    browser = request.cookies.get(runtime.pages.browser_cookie)
    handle = request.query_params.get("interaction", "")
    authorizer, token = runtime.authorizer, runtime.pages.session_token(request)
    if browser is None:
        found = None
    elif second_factor:
        found = await authorizer.second_factor_wait(handle, browser, token)
    else:
        found = await authorizer.interaction(handle, browser)
    if browser is None or found is None:
        return runtime.pages.error(*_EXPIRED)
    return handle, browser, found


async def login_page(request: Request) -> Response:
    """``GET /login?interaction=...``: the sign-in form of an open sign-in again (the way
    back to it from ``/password/forgot``)."""
    runtime: Runtime = request.app.state.runtime
    reopened = await _reopened(runtime, request)
    if isinstance(reopened, Response):
        return reopened
    handle, browser, found = reopened
    context = {"handle": handle, "client_name": found.client_name, "username": ""}
    outcome = Outcome(page="login.html", context=context, client_redirect=found.client_redirect)
    return respond(runtime, outcome, browser, False, redirect_status=303)


async def second_factor_page(request: Request) -> Response:
    """``GET /login/otp?interaction=...&use=backup``: the second-factor page again, asking
    for a backup code instead of the app's code (or back)."""
    runtime: Runtime = request.app.state.runtime
    reopened = await _reopened(runtime, request, second_factor=True)
    if isinstance(reopened, Response):
        return reopened
    handle, browser, found = reopened
    backup = request.query_params.get("use") == "backup"
    outcome = otp_page(handle, found.client_name, backup=backup, methods=found.methods)
    return respond(
        runtime, replace(outcome, client_redirect=found.client_redirect), browser, False, redirect_status=303
    )


async def second_factor(request: Request) -> Response:
    """``POST /login/otp``: the code from the authenticator app, or a backup code."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_FORBIDDEN, status=403)
    code = form.get("code", "")[:64]
    outcome = await runtime.authorizer.second_factor(
        form.get("interaction", ""),
        browser,
        pages.session_token(request),
        code,
        device_cookie=request.cookies.get(pages.device_cookie),
        seen_from=seen_from(request),
    )
    return respond(runtime, outcome, browser, False, redirect_status=303)


async def passkey_options(request: Request) -> Response:
    """``POST /login/passkey/options`` (the page's script): a passkey ceremony's options for
    the open sign-in ``interaction`` of this browser, as JSON; 403 without one."""
    runtime: Runtime = request.app.state.runtime
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return json_response({"error": i18n.gettext(_FORBIDDEN[1])}, 403, NO_STORE)
    limited = await runtime.limiter.check("passkey", client_address(request), runtime.settings.rate_limit_login)
    if not limited.allowed:
        message = i18n.gettext("Too many requests. Wait a minute and try again.")
        return json_response({"error": message}, 429, {**NO_STORE, "Retry-After": str(limited.retry_after)})
    options = await runtime.authorizer.passkey_options(
        form.get("interaction", ""), browser, runtime.pages.session_token(request)
    )
    if options is None:
        return json_response({"error": i18n.gettext(_EXPIRED[1])}, 403, NO_STORE)
    return Response(options, media_type="application/json", headers=NO_STORE)


async def passkey(request: Request) -> Response:
    """``POST /login/passkey``: the browser's answer to those options (a form the script
    submits): the second factor, or a sign-in with a passkey alone."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_FORBIDDEN, status=403)
    login = PasskeyLogin(form.get("answer", "")[:65536], request.cookies.get(pages.device_cookie), seen_from(request))
    outcome = await runtime.authorizer.passkey(
        form.get("interaction", ""), browser, pages.session_token(request), login
    )
    return respond(runtime, outcome, browser, False, redirect_status=303)


async def forced_password_change(request: Request) -> Response:
    """``POST /login/password``: the new password of a user who must choose one first."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_FORBIDDEN, status=403)
    handle = form.get("interaction", "")
    found = await runtime.authorizer.interaction(handle, browser)
    user = await runtime.authorizer.session_user(pages.session_token(request))
    if found is None or user is None:
        return pages.error(*_EXPIRED)
    new, again = form.get("new_password", "")[:2048], form.get("confirm_password", "")[:2048]
    try:
        if new != again:
            raise UserError("new password", "and its confirmation differ")
        if (await runtime.passwords.verify_async(user.password_hash, new)).ok:
            # The old one may sit in a deployment's configuration (OSTIARY_ADMIN_PASSWORD).
            raise UserError("new password", "must differ from the current one")
        await check_new_password(
            runtime.passwords, runtime.breached, new, username=user.username, email=user.email, field="new password"
        )
    except UserError as error:
        outcome = password_change_page(
            handle, found.client_name, error=i18n.gettext("The new password %(reason)s.") % {"reason": error.message}
        )
        outcome = replace(outcome, client_redirect=found.client_redirect)
        return respond(runtime, outcome, browser, False, redirect_status=303)
    password_hash = await runtime.passwords.hash_async(new)
    outcome = await runtime.authorizer.forced_password_change(
        handle,
        browser,
        pages.session_token(request),
        password_hash,
        device_cookie=request.cookies.get(pages.device_cookie),
        seen_from=seen_from(request),
    )
    return respond(runtime, outcome, browser, False, redirect_status=303)


async def consent(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_FORBIDDEN, status=403)
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        return pages.error(*_BAD_REQUEST)
    outcome = await runtime.authorizer.decide(
        form.get("interaction", ""), browser, pages.session_token(request), allow=decision == "allow"
    )
    return respond(runtime, outcome, browser, False, redirect_status=303)


_EXPIRED = (N_("This sign-in has expired"), N_("Go back to the application and sign in again."))
_FORBIDDEN = (
    N_("This form has expired"),
    N_("The page was open too long or came from somewhere else. Go back to the application and try again."),
)


async def posted_form(request: Request, runtime: Runtime) -> tuple[dict[str, str] | None, str | None]:
    """The form of a POST whose CSRF token matches this browser, else (None, None)."""
    try:
        pairs = await read_form(request, runtime.settings.max_body_bytes)
    except (FormError, BodyTooLarge):
        return None, None
    form = dict(pairs)
    browser = request.cookies.get(runtime.pages.browser_cookie)
    if not runtime.csrf.valid(browser, form.get("csrf_token")):
        return None, None
    return form, browser


def respond(runtime: Runtime, outcome: Outcome, browser: str, new_browser: bool, *, redirect_status: int) -> Response:
    """The outcome as a response: a redirect or a page, with the cookies it sets. A sign-in
    replaces the browser's binding token; the page shown with it already uses the new one."""
    pages = runtime.pages
    if outcome.browser_token is not None:
        browser, new_browser = outcome.browser_token, True
    if outcome.post is not None:
        response = pages.form_post(outcome.post.action, outcome.post.fields)
        if new_browser:
            pages.set_browser(response, browser)
    elif outcome.redirect is not None:
        response = pages.redirect(outcome.redirect, status=redirect_status)
        if new_browser:
            pages.set_browser(response, browser)
    else:
        assert outcome.page is not None
        response = pages.render(
            outcome.page,
            outcome.context,
            browser=browser,
            new_browser=new_browser,
            status=outcome.status,
            client_redirect=outcome.client_redirect,
        )
    if outcome.session_token is not None:
        pages.set_session(response, outcome.session_token)
    if outcome.device_cookie is not None:
        pages.set_device(response, outcome.device_cookie)
    if outcome.retry_after is not None:
        response.headers["Retry-After"] = str(outcome.retry_after)
    return response
