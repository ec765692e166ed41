"""``/admin/api/v1``: the admin API's HTTP edge.

Every route runs the same steps before its resource (``server/admin/resources``): the
bearer token is authenticated (:func:`server.admin.principal.authenticate`), its scope
checked for the route's area, the per-token rate limit counted, and the JSON body read
(``application/json``, at most ``OSTIARY_MAX_BODY_BYTES``, an object). Whatever a resource
raises as a :class:`~server.admin.errors.Problem`, or as a validation error of the
clients or users services, is answered here as RFC 9457 ``application/problem+json``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..admin.calls import Call, Reply, Resource
from ..admin.errors import (
    BadRequest,
    Conflict,
    Invalid,
    MethodNotAllowed,
    NotFound,
    Problem,
    TooLarge,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
    invalid,
)
from ..admin.principal import Principal, authenticate, verify
from ..admin.resources import ROUTES
from ..clients.errors import ClientRegistrationError, UnknownClient
from ..oauth.dpop import BEARER, DPOP, BindingRefused
from ..oauth.tokens import ADMIN_API_PATH
from ..storage import transactions
from ..users.errors import LastAdministrator, Unknown, UserError
from .forms import BodyTooLarge, read_body
from .responses import NO_STORE, json_bytes
from .runtime import Runtime

PREFIX = ADMIN_API_PATH
OPENAPI = Path(__file__).resolve().parent.parent / "admin" / "openapi.json"
_JSON_TYPES = ("application/json", "application/merge-patch+json")
_EVERY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def endpoint(area: str, resource: Resource) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        try:
            principal = await _principal(request, runtime, area)
            _check_text(request)
            call = Call(
                runtime.admin,
                principal,
                request.path_params,
                request.query_params,
                await _document(request, runtime),
                request.headers.get("if-match"),
            )
            reply = await resource(call)
        except Problem as problem:
            return problem_response(problem)
        except (ClientRegistrationError, UserError) as error:
            return problem_response(_problem_of(error))
        return _response(reply)

    return handle


async def _principal(request: Request, runtime: Runtime, area: str) -> Principal:
    settings = runtime.settings
    scheme, token = _credentials(request)
    verified = verify(runtime.keys.current, settings.issuer, token, step_up_seconds=settings.admin_step_up_seconds)
    assert token is not None  # verify refused a missing one
    uri = settings.endpoint(request.url.path)
    try:
        await runtime.dpop.check_binding(scheme, token, verified.claims, request.headers, request.method, uri)
    except BindingRefused as refused:
        detail = "a DPoP-bound token needs its key's proof (Authorization: DPoP, and a DPoP header)"
        raise Unauthorized(detail, error=refused.error, scheme="DPoP", nonce=refused.nonce) from None
    principal = await transactions.run(runtime.sessionmaker, lambda db: authenticate(db, verified), read_only=True)
    principal.require(area)
    limited = await runtime.limiter.check_key("admin", principal.token_id, runtime.settings.rate_limit_admin)
    if not limited.allowed:
        raise TooManyRequests("too many requests with this token: slow down", limited.retry_after)
    return principal


def _check_text(request: Request) -> None:
    """Path ids and query values are short printable text: no id holds anything else (and
    PostgreSQL refuses a NUL outright), so such a path is not found and such a query invalid."""
    if any(len(value) > 256 or not value.isprintable() for value in request.path_params.values()):
        raise NotFound(f"no admin API resource at {request.url.path}")
    bad = [name for name, value in request.query_params.multi_items() if len(value) > 1024 or not value.isprintable()]
    if bad:
        raise Invalid([(name.encode("utf-8", "backslashreplace").decode(), "must be printable text") for name in bad])


def _credentials(request: Request) -> tuple[str, str | None]:
    """The scheme (``bearer`` or ``dpop``) and the access token of the request's header."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme in (BEARER, DPOP) and value and len(value) <= 4096:
        return scheme, value
    return BEARER, None


async def _document(request: Request, runtime: Runtime) -> dict[str, Any] | None:
    """The body's JSON object; None for a request without a body (an action such as disable)."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    try:
        body = await read_body(request, runtime.settings.max_body_bytes)
    except BodyTooLarge:
        raise TooLarge(f"the body is larger than {runtime.settings.max_body_bytes} bytes") from None
    if not body.strip():
        return None
    mime = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if mime not in _JSON_TYPES:
        raise UnsupportedMediaType("the body must be application/json")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    return document


def _problem_of(error: ClientRegistrationError | UserError) -> Problem:
    """A service's refusal: 404 for what does not exist, else 422 naming the field as the
    API names it (a client's in RFC 7591 terms)."""
    if isinstance(error, UnknownClient | Unknown):
        return NotFound(error.message)
    if isinstance(error, LastAdministrator):
        return Conflict(error.message)
    if isinstance(error, ClientRegistrationError):
        return invalid(error.metadata_name, error.message)
    return invalid(error.field.lstrip("-").replace("-", "_"), error.message)


def problem_response(problem: Problem) -> Response:
    headers = {**NO_STORE, **problem.headers}
    return Response(json_bytes(problem.document()), problem.status, headers, media_type="application/problem+json")


def _response(reply: Reply) -> Response:
    headers = {**NO_STORE, **reply.headers}
    if reply.etag is not None:
        headers["ETag"] = reply.etag
    if reply.body is None:
        return Response(status_code=204 if reply.status == 200 else reply.status, headers=headers)
    return Response(json_bytes(reply.body), reply.status, headers, media_type="application/json")


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document (public: it describes the API, not its data)."""
    return Response(OPENAPI.read_bytes(), media_type="application/json", headers={"Cache-Control": "no-cache"})


async def not_found(request: Request) -> Response:
    """Any path or method no route took: 405 with ``Allow`` when the path has routes."""
    allowed = sorted(
        {
            method
            for route in _routes_of(request)
            if route.path_regex.match(request.url.path)
            for method in route.methods or ()
        }
        - {"HEAD"}
    )
    if allowed:
        problem: Problem = MethodNotAllowed(f"{request.method} is not allowed here")
        problem.headers["Allow"] = ", ".join(allowed)
        return problem_response(problem)
    return problem_response(NotFound(f"no admin API resource at {request.url.path}"))


def _routes_of(request: Request) -> list[Route]:
    return [route for route in request.app.routes if isinstance(route, Route) and route.endpoint is not not_found]


def routes() -> list[BaseRoute]:
    """The API's routes, from the resources' table; then a problem for any other path."""
    built: list[BaseRoute] = [Route(f"{PREFIX}/openapi.json", openapi, methods=["GET"])]
    for path, method, area, resource in ROUTES:
        built.append(Route(PREFIX + path, endpoint(area, resource), methods=[method]))
    built.append(Route(PREFIX + "/{rest:path}", not_found, methods=_EVERY_METHOD))
    return built


__all__ = ["PREFIX", "routes", "problem_response"]
