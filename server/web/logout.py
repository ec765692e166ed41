"""``/logout``: OpenID Connect RP-Initiated Logout 1.0 (the ``end_session_endpoint``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import OAuth2Error
from starlette.requests import Request
from starlette.responses import Response

from ..authn import sessions
from ..oauth.bridge import OAuthResponse, OstiaryRequest, current_session, run_in_session
from ..runtime import Runtime
from ..storage import users as user_store
from ..storage.sessions import StoredSession
from .forms import BodyTooLarge, FormError, read_params

_PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "logout_hint", "ui_locales")


@dataclass(frozen=True)
class _Result:
    kind: str  # "confirm", "done" or "error"
    location: str | None = None
    client_name: str | None = None
    message: str = ""


async def logout(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    try:
        pairs = await read_params(request, runtime.settings.max_body_bytes)
    except (FormError, BodyTooLarge):
        return pages.error("This request cannot be used", "The sign-out request is malformed.")
    form = dict(pairs)
    browser, new_browser = pages.browser_token(request)
    confirmed = (
        request.method == "POST"
        and form.get("confirm") == "yes"
        and runtime.csrf.valid(browser, form.get("csrf_token"))
    )
    params = [(name, value) for name, value in pairs if name in _PARAMS]
    if len({name for name, _ in params}) != len(params):
        return pages.error("This request cannot be used", "A sign-out parameter is repeated.")
    oauth_request = OstiaryRequest("POST", runtime.settings.endpoint("/logout"), {}, params)
    oauth_request.browser_session_token = pages.session_token(request)
    result = await run_in_session(runtime.sessionmaker, oauth_request, lambda: _end(runtime, oauth_request, confirmed))
    if result.kind == "error":
        return pages.error("This sign-out request cannot be used", result.message)
    if result.kind == "confirm":
        context = {"params": params, "client_name": result.client_name}
        return pages.render("logout_confirm.html", context, browser=browser, new_browser=new_browser)
    if result.location:
        response = pages.redirect(result.location, status=303 if request.method == "POST" else 302)
    else:
        response = pages.render("logged_out.html", {}, browser=browser, new_browser=new_browser)
    pages.clear_session(response)
    return response


def _end(runtime: Runtime, request: OstiaryRequest, confirmed: bool) -> _Result:
    server = runtime.oauth
    try:
        validated = server.validate_endpoint_request("end_session", request)
    except OAuth2Error as error:
        return _Result("error", message=error.get_error_description() or error.error)
    db = current_session()
    session = sessions.load(db, request.browser_session_token)
    # Only a hint for *this* browser's session signs out without asking: someone else's
    # valid ID token must not be a link that silently signs anyone out (§2, §6).
    if session is not None and not confirmed and not _hint_matches(db, validated.id_token_claims, session):
        client = validated.client
        return _Result("confirm", client_name=client.stored.name if client is not None else None)
    response: OAuthResponse | None = server.create_endpoint_response("end_session", validated)
    location = dict(response.headers).get("Location") if response is not None else None
    return _Result("done", location=location)


def _hint_matches(db: Any, claims: dict[str, Any] | None, session: StoredSession) -> bool:
    if not claims:
        return False
    if claims.get("sid"):
        return bool(claims["sid"] == session.sid)
    user = user_store.get_user(db, session.user_id)
    return user is not None and claims.get("sub") == user.sub
