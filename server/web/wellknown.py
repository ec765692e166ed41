"""Discovery documents and the JWKS: pre-serialised bytes, cacheable, with ETags."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..runtime import Runtime
from .responses import cached_bytes


async def jwks(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    ring = runtime.keys.current
    return cached_bytes(request, ring.jwks_json, ring.jwks_etag, runtime.settings.jwks_max_age)


async def metadata(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    return cached_bytes(request, runtime.metadata_json, runtime.metadata_etag, runtime.settings.jwks_max_age)
