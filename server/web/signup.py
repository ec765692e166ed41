"""``/signup`` and ``/email/verify``: self-service sign-up and the links that prove an
address (``OSTIARY_SIGNUP``; ``server/users/signup.py`` says what each step stores).

``/signup`` answers 404 while sign-up is off, and under ``invite`` asks for an
invitation link. The form is rate-limited per client address, and its confirmation mails
per e-mail address (``OSTIARY_RATE_LIMIT_SIGNUP_PER_MINUTE``). Opening a link shows what
it will do and a button: only the button's POST uses it, so a mail scanner that fetches
the link spends nothing.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..authn.ratelimit import Decision
from ..i18n import N_
from ..users.errors import AccountError
from ..users.signup import EXPIRED, INVITATION_EXPIRED, SignupError
from .authorize import client_address, posted_form
from .password import open_sign_in
from .runtime import Runtime

_EXPIRED = (N_("This form has expired"), N_("The page was open too long. Open the sign-up page again."))
_FIELDS = ("username", "email", "name")
_CLOSED = (N_("Sign-up is closed"), N_("This server does not take new accounts. Ask its administrators for one."))


async def signup_page(request: Request) -> Response:
    """``GET /signup[?interaction=…][&invitation=…]``: the form."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    if runtime.settings.signup == "off":
        return pages.error(*_CLOSED, status=404)
    browser, new_browser = pages.browser_token(request)
    invitation = request.query_params.get("invitation", "")
    context: dict[str, object] = {
        "interaction": await open_sign_in(
            runtime, request.query_params.get("interaction", ""), None if new_browser else browser
        ),
        "invitation": invitation,
        "values": {},
    }
    if runtime.settings.signup == "invite":
        invited = await runtime.signups.invitation(invitation)
        if invited is None:
            context["closed"] = INVITATION_EXPIRED if invitation else N_("Sign-up here is by invitation only.")
        else:
            context["values"] = {"email": invited.email or ""}
            context["fixed_email"] = bool(invited.email)
    status = 403 if context.get("closed") else 200
    return pages.render("signup.html", context, browser=browser, new_browser=new_browser, status=status)


async def signup(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    if runtime.settings.signup == "off":
        return pages.error(*_CLOSED, status=404)
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_EXPIRED, status=403)
    limited = await runtime.limiter.check("signup", client_address(request), runtime.settings.rate_limit_signup)
    email = form.get("email", "")[:254].strip()
    if limited.allowed and email:
        limited = await mails_to(runtime, email)
    if not limited.allowed:
        return _too_many(runtime, limited)
    interaction = await open_sign_in(runtime, form.get("interaction", ""), browser)
    invitation = form.get("invitation", "")[:128]
    values = {field: form.get(field, "")[:254] for field in _FIELDS}
    try:
        address = await runtime.signups.request(
            username=values["username"],
            email=values["email"],
            name=values["name"],
            password=form.get("password", "")[:1024],
            again=form.get("confirm_password", "")[:1024],
            invitation=invitation,
        )
    except SignupError as error:
        context: dict[str, object] = {"interaction": interaction, "invitation": invitation, "values": values}
        if error.field:
            context |= {"error": error.message, "error_field": error.field}
        else:
            context["closed"] = error.message
        if runtime.settings.signup == "invite":
            context["fixed_email"] = await _fixed_email(runtime, invitation)
        return pages.render("signup.html", context, browser=browser, new_browser=False, status=400)
    sent = {"sent": address, "interaction": interaction}
    return pages.render("signup.html", sent, browser=browser, new_browser=False)


async def mails_to(runtime: Runtime, email: str) -> Decision:
    """Count a confirmation mail to ``email`` (a sign-up's or an address change's): at most
    ``OSTIARY_RATE_LIMIT_SIGNUP_PER_MINUTE`` a minute to one address, whoever asks."""
    return await runtime.limiter.check_key("signup-mail", email.casefold(), runtime.settings.rate_limit_signup)


async def _fixed_email(runtime: Runtime, invitation: str) -> bool:
    invited = await runtime.signups.invitation(invitation)
    return bool(invited and invited.email)


def _too_many(runtime: Runtime, limited: Decision) -> Response:
    response = runtime.pages.error(
        N_("Too many requests"),
        N_("Too many requests for this network or address. Wait a minute and try again."),
        status=429,
    )
    response.headers["Retry-After"] = str(limited.retry_after)
    return response


async def verify_page(request: Request) -> Response:
    """``GET /email/verify?token=…``: what the link does, and a button that does it."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    browser, new_browser = pages.browser_token(request)
    token = request.query_params.get("token", "")[:128]
    pending = await runtime.signups.pending(token)
    context = {"pending": pending, "token": token} if pending else {"error": EXPIRED}
    return pages.render("email_verify.html", context, browser=browser, new_browser=new_browser)


async def verify(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(N_("This form has expired"), N_("Open the link from your mail again."), status=403)
    try:
        done = await runtime.signups.confirm(form.get("token", "")[:128])
    except AccountError as error:
        return pages.render("email_verify.html", {"error": str(error)}, browser=browser, new_browser=False, status=400)
    return pages.render("email_verify.html", {"done": done}, browser=browser, new_browser=False)
