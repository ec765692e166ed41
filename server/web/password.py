"""``/password/forgot`` and ``/password/reset``: a new password by mail.

The forgot form does the same work for every address before it answers: it queues the
address's look-up in the mail outbox (the outbox sender looks the account up and mails the
link), so neither the page nor its timing says which addresses have accounts. The page says
a link is on its way only once that is queued; a database that cannot take it answers 503,
a page that asks to try again.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..i18n import N_
from ..users.errors import AccountError
from .authorize import client_address, posted_form
from .runtime import Runtime

_EXPIRED = (N_("This form has expired"), N_("The page was open too long. Open the link from your mail again."))


async def forgot_page(request: Request) -> Response:
    """``GET /password/forgot[?interaction=...]``: the form; opened from a sign-in page, it
    links back to that sign-in (an open one of this browser's), else to ``/account``."""
    runtime: Runtime = request.app.state.runtime
    browser, new_browser = runtime.pages.browser_token(request)
    handle = request.query_params.get("interaction", "")
    context = {"interaction": await open_sign_in(runtime, handle, None if new_browser else browser)}
    return runtime.pages.render("password_forgot.html", context, browser=browser, new_browser=new_browser)


async def forgot(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_EXPIRED, status=403)
    limited = await runtime.limiter.check("forgot", client_address(request), runtime.settings.rate_limit_login)
    if not limited.allowed:
        response = pages.error(
            N_("Too many requests"), N_("Too many requests from your network. Wait a minute and try again."), status=429
        )
        response.headers["Retry-After"] = str(limited.retry_after)
        return response
    await runtime.resets.request(form.get("email", ""))
    context = {"sent": True, "interaction": await open_sign_in(runtime, form.get("interaction", ""), browser)}
    return pages.render("password_forgot.html", context, browser=browser, new_browser=False)


async def open_sign_in(runtime: Runtime, handle: str, browser: str | None) -> str:
    """``handle`` if it is an open sign-in of ``browser`` (the page links back to it), else ""."""
    if not handle or browser is None:
        return ""
    return handle if await runtime.authorizer.interaction(handle, browser) is not None else ""


async def reset_page(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    browser, new_browser = pages.browser_token(request)
    token = request.query_params.get("token", "")
    user = await runtime.resets.user_of(token)
    if user is None or user.disabled_at is not None:
        return pages.render("password_reset.html", {"expired": True}, browser=browser, new_browser=new_browser)
    context = {"token": token, "username": user.username}
    return pages.render("password_reset.html", context, browser=browser, new_browser=new_browser)


async def reset(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_EXPIRED, status=403)
    token = form.get("token", "")
    try:
        await runtime.resets.reset(token, form.get("new_password", "")[:2048], form.get("confirm_password", "")[:2048])
    except AccountError as error:
        user = await runtime.resets.user_of(token)
        context = {"token": token, "username": user.username if user else "", "error": str(error), "expired": not user}
        return pages.render("password_reset.html", context, browser=browser, new_browser=False)
    runtime.announce_logouts()
    response = pages.render("password_reset.html", {"done": True}, browser=browser, new_browser=False)
    pages.clear_session(response)
    return response
