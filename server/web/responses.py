"""Response helpers shared by the endpoints: JSON, RFC 6749 errors, and the CORS headers
of the endpoints browser apps call (``web/cors.py`` answers their preflights)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..oauth.request import OAuthResponse

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
#: what a browser app's code may read of a response besides its body: the bearer challenge
_EXPOSED_HEADERS = "WWW-Authenticate, DPoP-Nonce"


def json_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON; a lone surrogate (valid in JSON text, not in UTF-8), echoed
    from a request, is written as its ``\\uXXXX`` escape."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "backslashreplace")


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


def allow_origin(request: Request, response: Response, origins: Iterable[str]) -> Response:
    """``response``, readable by the page that sent ``request`` when its origin is one of
    ``origins`` (the calling client's)."""
    response.headers.add_vary_header("Origin")
    origin = request.headers.get("origin")
    if origin is not None and origin in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED_HEADERS
    return response
