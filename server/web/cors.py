"""CORS preflights (the Fetch standard) for the endpoints a browser app calls itself:
``/token``, ``/revoke``, ``/introspect`` and ``/userinfo``; their responses are made
readable by ``responses.allow_origin``. Discovery and ``/jwks`` are public documents,
readable from any origin (``web/wellknown.py``).

- A response carries ``Access-Control-Allow-Origin`` (that origin, never ``*``, and never
  with credentials: no cookie is read here) only when the request's ``Origin`` is one the
  calling client registered (``allowed_cors_origins``). A page of any other origin may
  send the request, as it could a form, but the browser keeps the answer from it.
- A preflight names no client (it carries no credentials and no body), so it is answered
  for every origin with what the endpoint accepts: the response it leads to is the one
  that is guarded.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

#: what a browser app sends: client authentication or a bearer token, a form, a DPoP proof
_ALLOWED_HEADERS = "Authorization, Content-Type, DPoP"
#: how long a browser may keep a preflight's answer (Chromium caps it at 2 hours)
_MAX_AGE = "600"

#: the endpoints that answer browser apps, and their methods
ENDPOINTS = {"/token": "POST", "/revoke": "POST", "/introspect": "POST", "/par": "POST", "/userinfo": "GET, POST"}


async def preflight(request: Request) -> Response:
    """``OPTIONS`` of a CORS endpoint: what it accepts, for any origin."""
    methods = ENDPOINTS[request.url.path]
    origin = request.headers.get("origin")
    if origin is None or "access-control-request-method" not in request.headers:
        return Response(status_code=204, headers={"Allow": f"{methods}, OPTIONS"})
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": methods,
        "Access-Control-Allow-Headers": _ALLOWED_HEADERS,
        "Access-Control-Max-Age": _MAX_AGE,
        "Vary": "Origin",
        "Cache-Control": "no-store",
    }
    return Response(status_code=204, headers=headers)
