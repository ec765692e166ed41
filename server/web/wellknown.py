"""Discovery documents and the JWKS: pre-serialised bytes, cacheable, with ETags.

They are answered by :class:`PublishedDocuments`, a pure ASGI middleware in front of the
router: the body, the ETag and the whole header list are built once per document version
(a key-set change rebuilds them), so a request costs a dictionary lookup and two sends.
Routing, the request and response objects and the exception middleware would cost more
than that; these are the most requested and the simplest responses the server has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .responses import json_bytes
from .runtime import Runtime


@dataclass(frozen=True)
class _Prepared:
    etag: str
    body: bytes
    ok: list[tuple[bytes, bytes]]
    not_modified: list[tuple[bytes, bytes]]


def _jwks(runtime: Runtime) -> tuple[bytes, str]:
    ring = runtime.keys.current
    return ring.jwks_json, ring.jwks_etag


def _metadata(runtime: Runtime) -> tuple[bytes, str]:
    return runtime.metadata_json, runtime.metadata_etag


DOCUMENTS: dict[str, Callable[[Runtime], tuple[bytes, str]]] = {
    "/jwks": _jwks,
    "/.well-known/openid-configuration": _metadata,
    "/.well-known/oauth-authorization-server": _metadata,
}
_METHOD_NOT_ALLOWED = json_bytes({"error": "invalid_request", "error_description": "Use GET."})


_ANY_ORIGIN = (b"access-control-allow-origin", b"*")


class PublishedDocuments:
    """GET and HEAD of :data:`DOCUMENTS`, with ``Cache-Control: public, max-age``, a strong
    ETag and ``304`` on ``If-None-Match``; any other method is ``405``."""

    def __init__(self, app: ASGIApp, *, max_age: int) -> None:
        self.app = app
        self.cache_control = f"public, max-age={max_age}".encode()
        self._prepared: dict[str, _Prepared] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        document = DOCUMENTS.get(scope["path"]) if scope["type"] == "http" else None
        if document is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _send(send, 405, [(b"allow", b"GET, HEAD"), (b"content-type", b"application/json")],
                        _METHOD_NOT_ALLOWED)  # fmt: skip
            return
        runtime: Runtime = scope["app"].state.runtime
        prepared = self._prepare(scope["path"], *document(runtime))
        if _etag_matches(Headers(scope=scope).get("if-none-match"), prepared.etag):
            await _send(send, 304, prepared.not_modified, b"")
        else:
            await _send(send, 200, prepared.ok, b"" if scope["method"] == "HEAD" else prepared.body)

    def _prepare(self, path: str, body: bytes, etag: str) -> _Prepared:
        prepared = self._prepared.get(path)
        if prepared is None or prepared.etag != etag:
            # public documents: a browser app of any origin may read them (CORS)
            cached = [(b"cache-control", self.cache_control), (b"etag", etag.encode()), _ANY_ORIGIN]
            ok = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *cached]
            prepared = _Prepared(etag, body, ok, cached)
            self._prepared[path] = prepared
        return prepared


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in candidates or etag in candidates
