"""``/device``: where a person enters a device's user code and allows or denies it
(RFC 8628 §3.3).

``GET /device`` asks for the code; ``GET /device?user_code=...`` (typed there, or the
device's ``verification_uri_complete``) looks it up, any case, the dash optional; signing
in leads back to it; ``POST /device/confirm`` (CSRF-checked) records the decision.

Guessing codes is rate-limited (RFC 8628 §5.1): each code entered counts against its
client's address and against the code itself, ``OSTIARY_RATE_LIMIT_DEVICE_PER_MINUTE``
each; past it the page answers 429 with ``Retry-After`` before any lookup.

The UI contract (stable): the entry form has an input ``user_code`` and a
``button[type=submit]``; the confirmation form has ``button[name=decision][value=allow]``
and ``[value=deny]``.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

from ..i18n import N_
from ..oauth.endpoints.device_authorization import canonical_user_code
from ..signin.device import DeviceConfirmation, entry_page
from ..signin.outcome import Outcome
from .authorize import client_address, posted_form, respond
from .runtime import Runtime

NOT_A_CODE = "That is not a code from a device: it has 8 letters, like BCDF-GHJK."
_FORBIDDEN = (
    N_("This form has expired"),
    N_("The page was open too long or came from somewhere else. Enter the code from your device again."),
)


async def device(request: Request) -> Response:
    """``GET /device[?user_code=...]``."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    browser, new_browser = pages.browser_token(request)
    typed = request.query_params.get("user_code")
    if typed is None:
        return respond(runtime, entry_page(), browser, new_browser, redirect_status=303)
    user_code = canonical_user_code(typed)
    if user_code is None:
        outcome = entry_page(typed[:16], NOT_A_CODE, status=400)
        return respond(runtime, outcome, browser, new_browser, redirect_status=303)
    refused = await _limited(runtime, request, user_code)
    if refused is not None:
        return respond(runtime, refused, browser, new_browser, redirect_status=303)
    origin = pages.origins.digest(client_address(request))
    outcome = await DeviceConfirmation(runtime.authorizer).show(
        user_code, pages.session_token(request), browser, origin=origin
    )
    return respond(runtime, outcome, browser, new_browser, redirect_status=303)


async def confirm(request: Request) -> Response:
    """``POST /device/confirm``: ``user_code`` and ``decision`` (``allow`` or ``deny``)."""
    runtime: Runtime = request.app.state.runtime
    pages = runtime.pages
    form, browser = await posted_form(request, runtime)
    if form is None or browser is None:
        return pages.error(*_FORBIDDEN, status=403)
    decision = form.get("decision")
    user_code = canonical_user_code(form.get("user_code", ""))
    if decision not in ("allow", "deny") or user_code is None:
        return pages.error(N_("This request cannot be used"), N_("Enter the code from your device again."))
    refused = await _limited(runtime, request, user_code)
    if refused is not None:
        return respond(runtime, refused, browser, False, redirect_status=303)
    outcome = await DeviceConfirmation(runtime.authorizer).decide(
        user_code, pages.session_token(request), allow=decision == "allow"
    )
    return respond(runtime, outcome, browser, False, redirect_status=303)


async def _limited(runtime: Runtime, request: Request, user_code: str) -> Outcome | None:
    """Count this code against the client's address and against the code; the page that
    refuses it when either is past the limit."""
    limiter, limit = runtime.limiter, runtime.settings.rate_limit_device
    by_address = await limiter.check("device", client_address(request), limit)
    # the code by its digest: the counter store (Redis, perhaps) never sees a live code
    code_digest = hashlib.sha256(user_code.encode("ascii")).hexdigest()[:32]
    by_code = await limiter.check_key("device-code", code_digest, limit)
    retry_after = max(by_address.retry_after, by_code.retry_after)
    if by_address.allowed and by_code.allowed:
        return None
    message = N_("Too many codes were entered. Wait a minute, then enter the code from your device again.")
    return Outcome(
        page="device.html",
        context={"user_code": "", "error": message},
        status=429,
        retry_after=retry_after,
    )
