"""Pure ASGI middleware for every response: size cap, security headers, access log.

Pure ASGI (no BaseHTTPMiddleware) because these wrap the hot paths.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .responses import json_bytes

access_log = logging.getLogger("ostiary.access")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")


class EdgeMiddleware:
    """Refuses oversized bodies by Content-Length, adds security headers, logs the request.

    The access log holds method, path (never the query string, which can carry an
    id_token_hint), status and duration: no token or secret can end up in it.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, log_access: bool) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.log_access = log_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._declared_too_large(scope):
            await _too_large(send)
            self._log(scope, 413, time.perf_counter())
            return
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {name for name, _ in headers}
                headers += [item for item in _SECURITY_HEADERS if item[0] not in present]
                if _API_CSP[0] not in present:
                    headers.append(_API_CSP)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self._log(scope, status, started)

    def _declared_too_large(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"content-length":
                return value.isdigit() and int(value) > self.max_body_bytes
        return False

    def _log(self, scope: Scope, status: int, started: float) -> None:
        if self.log_access:
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %d %.1fms',
                client[0] if client else "-",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
            )


async def _too_large(send: Send) -> None:
    body = json_bytes({"error": "invalid_request", "error_description": "The request body is too large."})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
                *_SECURITY_HEADERS,
                _API_CSP,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
