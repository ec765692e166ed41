"""Turning exceptions into responses at the edge. A 5xx never shows internals.

The protocol endpoints (token, revocation, introspection, userinfo, health, published
documents) answer JSON, as their RFCs and their callers expect; every other route is a page
a person reads in a browser, and gets a page.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..admin.errors import problem_document
from ..storage.errors import is_unavailable
from .responses import NO_STORE, json_bytes, json_response
from .runtime import Runtime

log = logging.getLogger("ostiary")

#: seconds a client is asked to wait when the database is unreachable (RFC 9110 10.2.3)
RETRY_AFTER = "5"
#: routes answered in JSON: machines call them
_API_PATHS = frozenset({"/token", "/revoke", "/introspect", "/userinfo", "/livez", "/readyz", "/healthz", "/jwks"})

_UNAVAILABLE_TITLE = "Temporarily unavailable"
_UNAVAILABLE_MESSAGE = "The service cannot complete this right now. Nothing was done: try again in a moment."


def is_page(request: Request) -> bool:
    """True for routes a browser shows to a person (they get HTML, not JSON)."""
    path = request.url.path
    return path not in _API_PATHS and not path.startswith(("/.well-known/", "/admin/api/"))


async def unavailable_or_raise(request: Request, exc: Exception) -> Response:
    """Database unreachable: 503 with Retry-After (a page on browser routes); the pool
    recovers by itself. Any other error goes on to :func:`server_error`."""
    if not is_unavailable(exc):
        raise exc
    return unavailable(request, exc)


def unavailable(request: Request, exc: BaseException) -> Response:
    """The 503 for a database that cannot be reached right now: nothing was done."""
    log.warning("database unreachable during %s %s: %s", request.method, request.url.path, type(exc).__name__)
    headers = {**NO_STORE, "Retry-After": RETRY_AFTER}
    if is_page(request):
        return _page(request, _UNAVAILABLE_TITLE, _UNAVAILABLE_MESSAGE, 503, headers)
    if _is_admin_api(request):
        return _problem(503, "the service is temporarily unavailable: nothing was done", headers)
    return json_response(
        {"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable."},
        503,
        headers,
    )


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: 500 without internals. An outage that reached here in a form no handler
    matched (wrapped in another exception) is still answered 503."""
    # Starlette re-raises after this, and uvicorn logs the traceback server-side.
    if is_unavailable(exc):
        return unavailable(request, exc)
    if is_page(request):
        return _page(request, "Something went wrong", "The server met an unexpected error.", 500, NO_STORE)
    if _is_admin_api(request):
        return _problem(500, "the server met an unexpected error", NO_STORE)
    return json_response(
        {"error": "server_error", "error_description": "The server met an unexpected error."}, 500, NO_STORE
    )


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return json_response(
        {"error": "not_found" if exc.status_code == 404 else "invalid_request", "error_description": exc.detail},
        exc.status_code,
        dict(exc.headers or {}),
    )


def _is_admin_api(request: Request) -> bool:
    return request.url.path.startswith("/admin/api/")


def _problem(status: int, detail: str, headers: dict[str, str]) -> Response:
    """The admin API's errors are RFC 9457 problems, its 5xx too."""
    return Response(
        json_bytes(problem_document(status, detail)), status, headers, media_type="application/problem+json"
    )


def _page(request: Request, title: str, message: str, status: int, headers: dict[str, str]) -> Response:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:  # not started: no templates to render with
        return HTMLResponse(f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{message}</p>", status, headers)
    response = runtime.pages.error(title, message, status=status)
    response.headers.update(headers)
    return response
