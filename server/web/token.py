"""``POST /token`` (RFC 6749 §3.2), ``/revoke``, ``/introspect``, ``/device/authorize`` and
``/par``: read and check the body,
then let :class:`~server.oauth.token_endpoint.TokenEndpoints` answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..oauth.request import OstiaryRequest
from ..observe import context, metrics
from .forms import BodyTooLarge, FormError, read_form, repeated
from .responses import allow_origin, from_oauth, oauth_error
from .runtime import Runtime

#: RFC 8707 §2 lets ``resource`` repeat; RFC 6749 §3.2 forbids repeating anything else.
_MAY_REPEAT = frozenset({"resource"})


async def too_many(
    request: Request, runtime: Runtime, endpoint: str, limit: int, what: str = "requests"
) -> Response | None:
    """The answer to a request past ``limit`` a minute from its address, if it is."""
    if not limit:
        return None
    address = request.client.host if request.client else None
    limited = await runtime.limiter.check(endpoint, address, limit)
    if limited.allowed:
        return None
    # RFC 6749 has no code for this; RFC 6585's 429 with Retry-After says it, and the
    # error is the one RFC 6749 uses for "try again later".
    return oauth_error(
        "temporarily_unavailable",
        f"Too many {what} from this address.",
        status=429,
        headers={"Retry-After": str(limited.retry_after)},
    )


async def token(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    refused = await too_many(request, runtime, "token", runtime.settings.rate_limit_token)
    if refused is not None:
        return refused
    form = await _checked_form(request, runtime, _MAY_REPEAT)
    if isinstance(form, Response):
        return form
    grant_type = dict(form).get("grant_type")
    if not grant_type:
        return oauth_error("invalid_request", "The grant_type parameter is missing.")
    if _two_methods(request, form):
        return oauth_error("invalid_request", "Use one client authentication method, not two.")
    oauth_request = OstiaryRequest("POST", runtime.token_uri, request.headers, form)
    oauth_request.extras.client_ip = request.client.host if request.client else None
    response = await runtime.token_endpoints.token(oauth_request, grant_type, from_oauth)
    _note_parties(oauth_request)
    if response.status_code == 200:  # only grant types we serve get this far: a bounded label
        metrics.TOKENS_ISSUED.labels(grant_type).inc()
    return allow_origin(request, response, _origins_of(oauth_request))


async def revoke(request: Request) -> Response:
    """``POST /revoke`` (RFC 7009)."""
    return await _endpoint(request, "revocation", "/revoke")


async def introspect(request: Request) -> Response:
    """``POST /introspect`` (RFC 7662)."""
    return await _endpoint(request, "introspection", "/introspect")


async def device_authorization(request: Request) -> Response:
    """``POST /device/authorize`` (RFC 8628 §3.1). Each call stores a device authorization
    until it expires: limited per address as the codes typed at ``/device`` are."""
    runtime: Runtime = request.app.state.runtime
    refused = await too_many(request, runtime, "device-authorize", runtime.settings.rate_limit_device)
    if refused is not None:
        return refused
    return await _endpoint(request, "device_authorization", "/device/authorize")


async def pushed_authorization(request: Request) -> Response:
    """``POST /par`` (RFC 9126 §2): the client authenticates as at ``/token``; each accepted
    push is kept until its ``request_uri`` expires, so pushes are limited per address as
    token requests are (``OSTIARY_RATE_LIMIT_TOKEN_PER_MINUTE``, counted apart)."""
    runtime: Runtime = request.app.state.runtime
    refused = await too_many(request, runtime, "par", runtime.settings.rate_limit_token)
    if refused is not None:
        return refused
    return await _endpoint(request, "pushed_authorization", "/par")


async def _endpoint(request: Request, name: str, path: str) -> Response:
    runtime: Runtime = request.app.state.runtime
    form = await _checked_form(request, runtime)
    if isinstance(form, Response):
        return form
    if _two_methods(request, form):
        return oauth_error("invalid_request", "Use one client authentication method, not two.")
    oauth_request = OstiaryRequest("POST", runtime.settings.endpoint(path), request.headers, form)
    response = from_oauth(await runtime.token_endpoints.endpoint(name, oauth_request))
    _note_parties(oauth_request)
    return allow_origin(request, response, _origins_of(oauth_request))


def _two_methods(request: Request, form: list[tuple[str, str]]) -> bool:
    """RFC 6749 §2.3: a client MUST NOT use more than one authentication method (the
    Authorization header, a secret in the form, an assertion)."""
    names = {key for key, _ in form}
    used = ["authorization" in request.headers, "client_secret" in names, "client_assertion" in names]
    return sum(used) > 1


def _origins_of(oauth_request: OstiaryRequest) -> tuple[str, ...]:
    """The web origins of the client the request authenticated as (none before that)."""
    client = oauth_request.client
    return client.stored.allowed_cors_origins if client is not None else ()


def _note_parties(oauth_request: OstiaryRequest) -> None:
    """The authenticated client and the grant's user, for the request's log lines."""
    client = oauth_request.client
    context.note_client(client.get_client_id() if client is not None else None)
    context.note_user(getattr(oauth_request.user, "sub", None))


async def _checked_form(
    request: Request, runtime: Runtime, may_repeat: frozenset[str] = frozenset()
) -> list[tuple[str, str]] | Response:
    """The urlencoded body with no repeated parameter, or the RFC 6749 §5.2 error to send."""
    try:
        form = await read_form(request, runtime.settings.max_body_bytes)
    except BodyTooLarge:
        return oauth_error("invalid_request", "The request body is too large.", 413)
    except FormError as exc:
        return oauth_error("invalid_request", str(exc))
    duplicate = repeated(form, may_repeat)
    if duplicate is not None:
        return oauth_error("invalid_request", f"The parameter {duplicate} is repeated.")
    return form


async def token_wrong_method(request: Request) -> Response:
    return oauth_error("invalid_request", "The token endpoint accepts POST only.", 405, {"Allow": "POST"})


async def par_wrong_method(request: Request) -> Response:
    """RFC 9126 §2: the pushed authorization request endpoint takes POST alone."""
    return oauth_error(
        "invalid_request", "The pushed authorization request endpoint accepts POST only.", 405, {"Allow": "POST"}
    )
