"""Response helpers shared by the endpoints."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from ..oauth.request import OAuthResponse

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
