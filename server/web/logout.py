"""``/logout``: OpenID Connect RP-Initiated Logout 1.0 (the ``end_session_endpoint``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..i18n import N_
from ..oauth.calls import in_transaction
from ..oauth.endpoints.end_session import decide
from ..oauth.request import OstiaryRequest
from .forms import BodyTooLarge, FormError, read_params
from .runtime import Runtime

_PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales")


async def logout(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    try:
        pairs = await read_params(request, runtime.settings.max_body_bytes)
    except (FormError, BodyTooLarge):
        return pages.error(N_("This request cannot be used"), N_("The sign-out request is malformed."))
    form = dict(pairs)
    browser, new_browser = pages.browser_token(request)
    confirmed = (
        request.method == "POST"
        and form.get("confirm") == "yes"
        and runtime.csrf.valid(browser, form.get("csrf_token"))
    )
    params = [(name, value) for name, value in pairs if name in _PARAMS]
    if len({name for name, _ in params}) != len(params):
        return pages.error(N_("This request cannot be used"), N_("A sign-out parameter is repeated."))
    oauth_request = OstiaryRequest("POST", runtime.settings.endpoint("/logout"), {}, params)
    oauth_request.extras.browser_session_token = pages.session_token(request)
    result = await in_transaction(
        runtime.sessionmaker, oauth_request, lambda: decide(runtime.oauth, oauth_request, confirmed)
    )
    if result.kind == "error":
        return pages.error(N_("This sign-out request cannot be used"), result.message)
    if result.kind == "confirm":
        context = {"params": params, "client_name": result.client_name, "apps": result.apps}
        return pages.render(
            "logout_confirm.html", context, browser=browser, new_browser=new_browser, client_redirect=result.redirect
        )
    runtime.announce_logouts()
    if result.location:
        response = pages.redirect(result.location, status=303 if request.method == "POST" else 302)
    else:
        response = pages.render("logged_out.html", {"apps": result.apps}, browser=browser, new_browser=new_browser)
    pages.clear_session(response)
    return response
