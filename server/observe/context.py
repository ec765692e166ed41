"""The request being served, as the logs see it: its id, and the client and user once known.

The edge middleware opens one :class:`RequestContext` per request; code further down fills
in the client and the user when it learns them (:func:`note_client`, :func:`note_user`).
The context is one mutable object behind a context variable, so what a handler notes is
seen by the access-log line that the middleware writes after it, and by every log record
written while the request runs (``logs.ContextFilter``).
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar, Token
from dataclasses import dataclass

#: what a proxy may send as X-Request-ID: printable ASCII without spaces or quotes, as
#: nginx's $request_id, Envoy's UUIDs and AWS's trace ids are; anything else is replaced
_ACCEPTED_ID = re.compile(r"[A-Za-z0-9._:;=/+@-]{1,128}")


@dataclass
class RequestContext:
    request_id: str
    client_id: str | None = None
    user_id: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar("ostiary_request", default=None)


def new_request_id() -> str:
    return secrets.token_hex(16)


def accepted_request_id(value: bytes | None) -> str | None:
    """A forwarded X-Request-ID worth keeping: None when absent or not a plain token."""
    if not value:
        return None
    text = value.decode("latin-1")
    return text if _ACCEPTED_ID.fullmatch(text) else None


def begin(request_id: str) -> tuple[RequestContext, Token[RequestContext | None]]:
    context = RequestContext(request_id)
    return context, _current.set(context)


def end(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def current() -> RequestContext | None:
    return _current.get()


def note_client(client_id: str | None) -> None:
    """The request's client, for the log lines that follow (no effect outside a request)."""
    context = _current.get()
    if context is not None and client_id:
        context.client_id = client_id


def note_user(sub: str | None) -> None:
    """The request's user (their ``sub``), for the log lines that follow."""
    context = _current.get()
    if context is not None and sub:
        context.user_id = sub
