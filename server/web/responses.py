"""Response helpers shared by the endpoints."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..oauth.bridge import OAuthResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(data), status_code=status, headers=headers, media_type="application/json")


def oauth_error(error: str, description: str, status: int = 400, headers: dict[str, str] | None = None) -> Response:
    """RFC 6749 §5.2 error body, never cached."""
    return json_response({"error": error, "error_description": description}, status, {**NO_STORE, **(headers or {})})


def from_oauth(response: OAuthResponse) -> Response:
    headers = dict(response.headers)
    media_type = headers.pop("Content-Type", None)
    body = json_bytes(response.body) if isinstance(response.body, dict) else response.body.encode("utf-8")
    return Response(body, status_code=response.status, headers=headers, media_type=media_type)


def cached_bytes(request: Request, body: bytes, etag: str, max_age: int) -> Response:
    """Pre-serialised public JSON with ``Cache-Control: max-age``, ETag and 304 support."""
    headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": etag}
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(body, headers=headers, media_type="application/json")


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return "*" in candidates or etag in candidates
