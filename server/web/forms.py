"""Reading ``application/x-www-form-urlencoded`` bodies safely.

The body is capped while it streams (a missing or lying Content-Length does not help),
must be UTF-8, and no value may hold a control character: a NUL byte would otherwise
reach PostgreSQL, which refuses it in text, as an error deep in a query.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request

_MAX_FIELDS = 100


class BodyTooLarge(Exception):
    pass


class FormError(ValueError):
    """The body is not an acceptable form; the message is safe to show to the client."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes (else :class:`BodyTooLarge`).

    Its time limit is the edge's (``OSTIARY_BODY_TIMEOUT_SECONDS``, web/middleware.py): a body
    still arriving at the deadline ends the read with an exception the edge answers 408, and
    a client that leaves mid-body with Starlette's ``ClientDisconnect``; neither is caught here.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int) -> list[tuple[str, str]]:
    """The request's urlencoded body as pairs; raises BodyTooLarge or FormError."""
    return parse_form(await read_body(request, limit), request.headers.get("content-type"))


MAX_QUERY = 8192


async def read_params(request: Request, limit: int) -> list[tuple[str, str]]:
    """The form of a POST, or the query string of any other method (at most 8 KiB)."""
    if request.method == "POST":
        return await read_form(request, limit)
    raw = request.scope.get("query_string", b"")
    if len(raw) > MAX_QUERY:
        raise FormError("The query string is too long.")
    return parse_pairs(raw.decode("latin-1"))


def parse_form(body: bytes, content_type: str | None) -> list[tuple[str, str]]:
    mime, _, params = (content_type or "").partition(";")
    if mime.strip().lower() != "application/x-www-form-urlencoded":
        raise FormError("The request body must be application/x-www-form-urlencoded.")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise FormError("The request body must be encoded in UTF-8.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise FormError("The request body is not valid UTF-8 form data.") from None
    return parse_pairs(text)


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` (a body or a query string) into pairs: UTF-8, no control characters."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=_MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise FormError("The parameters are not valid UTF-8 form data.") from None
    for key, value in pairs:
        if _has_control(key) or _has_control(value):
            raise FormError("Parameters must not contain control characters.")
    return pairs


def repeated(pairs: list[tuple[str, str]], allowed: frozenset[str] = frozenset()) -> str | None:
    """The first parameter given more than once (other than ``allowed``), or None."""
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen and key not in allowed:
            return key
        seen.add(key)
    return None


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None
