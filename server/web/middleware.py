"""Pure ASGI middleware for every response: body size and time limits, security headers,
request id, access log and request metrics.

Pure ASGI (no BaseHTTPMiddleware) because these wrap the hot paths.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..admin.errors import problem_document
from ..observe import context, metrics
from .proxies import FORWARDED_REQUEST_ID
from .responses import json_bytes
from .wellknown import DOCUMENTS

access_log = logging.getLogger("ostiary.access")

#: the access-log status of a request whose client left before sending its whole body
#: (nginx's "client closed request"); no response was sent
CLIENT_CLOSED = 499

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
#: RFC 6797 §6.1: one year, this host only. includeSubDomains would also bind every host
#: below the issuer's host name to https, which is not this server's decision to make.
_HSTS = (b"strict-transport-security", b"max-age=31536000")
_REQUEST_ID = b"x-request-id"
#: the route label of a request that matched no route, or was refused before routing (413):
#: request paths are chosen by clients, and each label value is a time series
UNMATCHED = "unmatched"


class BodyTimeout(Exception):
    """The request body did not arrive in full before its deadline."""


class EdgeMiddleware:
    """Refuses oversized bodies by Content-Length and slow ones by deadline, adds security
    headers, logs the request.

    - A body declared larger than ``max_body_bytes`` is refused with 413 before it is read.
    - A body that has not arrived in full ``body_timeout`` seconds (checked each second) after
      the request began is answered 408 and the connection closed (RFC 9110 §15.5.9): a
      client trickling a chunked body cannot hold a connection and a request slot for as
      long as it likes. This covers every body read, whoever reads it.
    - A client that leaves before sending its whole body is no error of ours: no traceback,
      logged at INFO with status 499.
    - ``hsts``: ``Strict-Transport-Security`` on every response (an https issuer).
    - Each request has an id, echoed as ``X-Request-ID`` and in every log line written
      while it runs (``observe.context``): the proxy's, when a trusted proxy sent one
      (``web/proxies.py``), else a new one.
    - It is counted and timed by route template (``observe.metrics``).

    The access log holds method, path (never the query string, which can carry an
    id_token_hint), status and duration: no token or secret can end up in it.
    """

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, log_access: bool, body_timeout: float = 30, hsts: bool = False
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.log_access = log_access
        self.body_timeout = body_timeout
        self.headers = [*_SECURITY_HEADERS, _HSTS] if hsts else list(_SECURITY_HEADERS)
        self.deadlines = _BodyDeadlines()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = scope.get(FORWARDED_REQUEST_ID) or context.new_request_id()
        headers_added = [*self.headers, (_REQUEST_ID, request_id.encode())]
        too_large, has_body = self._announced_body(scope)
        if too_large:
            await _refuse(send, 413, "The request body is too large.", headers_added, path=scope["path"])
            self._done(scope, 413, started, request_id)
            return
        status = 500
        responded = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                headers = list(message.get("headers", []))
                present = {name for name, _ in headers}
                headers += [item for item in headers_added if item[0] not in present]
                if _API_CSP[0] not in present:
                    headers.append(_API_CSP)
                message = {**message, "headers": headers}
            await send(message)

        if has_body:
            receive = self.deadlines.receive(receive, time.monotonic() + self.body_timeout)
        _, token = context.begin(request_id)
        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            status = CLIENT_CLOSED
        except BodyTimeout:
            if not responded:
                status = 408
                await _refuse(send, 408, "The request body did not arrive in time.", headers_added, path=scope["path"])
        finally:
            self._done(scope, status, started, request_id)
            context.end(token)

    def _announced_body(self, scope: Scope) -> tuple[bool, bool]:
        """(declared larger than the limit, has a body at all), from the headers alone."""
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body_bytes:
                    return True, True
                has_body = has_body or value.strip() not in (b"", b"0")
            elif name == b"transfer-encoding":
                has_body = True
        return False, has_body

    def _done(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        seconds = time.perf_counter() - started
        metrics.observe_request(_route_template(scope), scope["method"], status, seconds)
        if self.log_access:
            client = scope.get("client")
            address = client[0] if client else "-"
            access_log.info(
                '%s "%s %s" %d %.1fms',
                address,
                scope["method"],
                scope["path"],
                status,
                seconds * 1000,
                # the JSON log's fields (observe.logs); the text log shows the message only
                extra={
                    "request_id": request_id,
                    "client_ip": address,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )


def _route_template(scope: Scope) -> str:
    """The path as routed ("/token"), never the path as sent: the metrics' route label."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    path = scope["path"]
    return path if path in DOCUMENTS else UNMATCHED


class _BodyDeadlines:
    """The body reads in progress and their deadlines, checked once a second by one timer.

    A timer per read (``asyncio.timeout``) would cost every POST more than the rest of this
    middleware does; the price here is up to a second's lateness for the 408.
    """

    def __init__(self) -> None:
        self.reads: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.timer: asyncio.TimerHandle | None = None

    def receive(self, receive: Receive, deadline: float) -> Receive:
        """``receive`` that raises :class:`BodyTimeout` if the body is still incomplete at
        ``deadline`` (``time.monotonic()``). Once the body is complete it is ``receive`` again: a
        streaming response may wait for the disconnect as long as it needs."""
        complete = False
        reads, expired = self.reads, self.expired

        async def receive_before_deadline() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            task = asyncio.current_task()
            assert task is not None
            reads[task] = deadline
            if self.timer is None:
                self._start_timer()
            try:
                message = await receive()
            except asyncio.CancelledError:
                # Only a task waiting here is ever cancelled by the sweep, so its cancellation
                # arrives here, even when the body came in the same loop iteration.
                if task in expired:
                    expired.discard(task)
                    if task.uncancel() == 0:
                        raise BodyTimeout from None
                raise
            finally:
                del reads[task]
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return receive_before_deadline

    def _start_timer(self) -> None:
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(1, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        for task, deadline in self.reads.items():
            if deadline <= now and task not in self.expired:
                self.expired.add(task)
                task.cancel()
        self.timer = loop.call_later(1, self._sweep, loop) if self.reads else None


async def _refuse(
    send: Send, status: int, description: str, security_headers: list[tuple[bytes, bytes]], *, path: str = ""
) -> None:
    """A JSON error sent before the body was read; the connection closes after it, since
    the rest of the body (if any) would otherwise be taken for the next request. The admin
    API's errors are RFC 9457 problems, these too."""
    if path.startswith("/admin/api/"):
        media_type = b"application/problem+json"
        body = json_bytes(problem_document(status, description))
    else:
        media_type = b"application/json"
        body = json_bytes({"error": "invalid_request", "error_description": description})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
                *security_headers,
                _API_CSP,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
