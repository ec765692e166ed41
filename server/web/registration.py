"""``POST /register`` (RFC 7591 §3) and ``GET``/``PUT``/``DELETE /register/{client_id}``
(RFC 7592 §2): JSON in, JSON out, bearer tokens in the Authorization header.

``OSTIARY_REGISTRATION=off`` answers 404 at both, as Ory Hydra does while its dynamic
registration is disabled: there is no endpoint, and discovery names none.
"""

from __future__ import annotations

import json
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.requests import Request
from starlette.responses import Response

from ..storage import transactions
from .forms import BodyTooLarge, read_body
from .responses import NO_STORE, json_response, oauth_error
from .runtime import Runtime
from .token import too_many


async def register(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if runtime.settings.registration == "off":
        return _off()
    refused = await too_many(request, runtime, "register", runtime.settings.rate_limit_register, "registrations")
    if refused is not None:
        return refused
    token = _bearer(request)
    if runtime.settings.registration == "initial-token" and token is None:
        return _challenge("An initial access token is required (Authorization: Bearer).")
    document = await _document(request, runtime)
    if isinstance(document, Response):
        return document
    calls = runtime.registration
    initial = token if runtime.settings.registration == "initial-token" else None
    return await _answer(runtime, lambda db: calls.register(db, document, initial), 201)


async def configure(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if runtime.settings.registration == "off":
        return _off()
    token = _bearer(request)
    if token is None:
        return _challenge("The registration access token is required (Authorization: Bearer).")
    client_id: str = request.path_params["client_id"]
    calls = runtime.registration
    if request.method in ("GET", "HEAD"):  # Starlette routes HEAD with GET
        return await _answer(runtime, lambda db: calls.read(db, client_id, token))
    if request.method == "DELETE":
        return await _answer(runtime, lambda db: calls.delete(db, client_id, token), 204)
    document = await _document(request, runtime)
    if isinstance(document, Response):
        return document
    return await _answer(runtime, lambda db: calls.update(db, client_id, token, document))


async def _answer(runtime: Runtime, work: Any, status: int = 200) -> Response:
    """``work`` in one transaction (rolled back, the use of an initial token included, when
    it raises), answered as JSON or as the OAuth error it raised."""
    try:
        body = await transactions.run(runtime.sessionmaker, work)
    except OAuth2Error as error:
        headers = dict(NO_STORE)
        if error.status_code == 401:
            headers["WWW-Authenticate"] = f'Bearer error="{error.error}"'
        return json_response({"error": error.error, "error_description": error.description}, error.status_code, headers)
    if body is None:
        return Response(status_code=status, headers=NO_STORE)
    return json_response(body, status, NO_STORE)


async def _document(request: Request, runtime: Runtime) -> dict[str, Any] | Response:
    """The request's JSON object (RFC 7591 §3.1), or the error response."""
    mime = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if mime != "application/json":
        return oauth_error("invalid_request", "The request body must be application/json.")
    try:
        body = await read_body(request, runtime.settings.max_body_bytes)
    except BodyTooLarge:
        return oauth_error("invalid_request", "The request body is too large.", status=413)
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return oauth_error("invalid_request", "The request body is not valid JSON.")
    if not isinstance(document, dict):
        return oauth_error("invalid_request", "The request body must be a JSON object of client metadata.")
    return document


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value and len(value) <= 512 else None


def _challenge(description: str) -> Response:
    """RFC 6750 §3.1: a request without a token gets no error code in the challenge."""
    return oauth_error("invalid_request", description, status=401, headers={"WWW-Authenticate": "Bearer"})


def _off() -> Response:
    return oauth_error("invalid_request", "Dynamic client registration is not enabled on this server.", status=404)
