"""Turning exceptions into responses at the edge. A 5xx never shows internals."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..storage.errors import is_unavailable
from .responses import NO_STORE, json_response

log = logging.getLogger("ostiary")


async def unavailable_or_raise(request: Request, exc: Exception) -> Response:
    """Database unreachable: 503 with Retry-After; the pool recovers by itself."""
    if not is_unavailable(exc):
        raise exc
    log.warning("database unreachable during %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return json_response(
        {"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable."},
        503,
        {**NO_STORE, "Retry-After": "5"},
    )


async def server_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this, and uvicorn logs the traceback server-side.
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
