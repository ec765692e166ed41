"""``GET /healthz`` (the readiness check): 200 when this process can reach the database,
else 503 with ``Retry-After`` (RFC 9110 15.6.4: the time after which to ask again)."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from ..storage.engine import ping
from ..storage.errors import is_unavailable
from .errors import RETRY_AFTER
from .responses import NO_STORE, json_response
from .runtime import Runtime

log = logging.getLogger("ostiary")


async def healthz(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    try:
        await ping(runtime.engine)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("health check: database unreachable (%s)", type(exc).__name__)
        return json_response(
            {"status": "unavailable", "database": "unreachable"}, 503, {**NO_STORE, "Retry-After": RETRY_AFTER}
        )
    return json_response({"status": "ok"}, headers=NO_STORE)
