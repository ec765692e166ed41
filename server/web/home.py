"""``GET /``: what this server is, for a person who opens its address."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .runtime import Runtime


async def home(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    context = {
        "discovery": settings.endpoint("/.well-known/openid-configuration"),
        "account": settings.endpoint("/account"),
    }
    return runtime.pages.plain("home.html", context)
