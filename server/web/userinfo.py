"""``/userinfo`` (OIDC Core §5.3), GET and POST, with RFC 6750 bearer errors."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..oauth.dpop import BEARER, DPOP, DPOP_ALGS, BindingRefused
from ..oauth.endpoints.userinfo import InvalidToken, active_user, verify_access_token
from ..oauth.openid import user_claims
from .forms import BodyTooLarge, FormError, read_form
from .responses import NO_STORE, allow_origin, json_response
from .runtime import Runtime

_SCHEMES = {BEARER: "Bearer", DPOP: "DPoP"}


async def userinfo(request: Request) -> Response:
    """The claims, readable by a page of an origin the token's client registered."""
    runtime: Runtime = request.app.state.runtime
    response, client_id = await _answer(request, runtime)
    if client_id is None or "origin" not in request.headers:  # no page to answer: no lookup
        return allow_origin(request, response, ())
    client = await runtime.token_endpoints.client(client_id)
    return allow_origin(request, response, client.allowed_cors_origins if client is not None else ())


async def _answer(request: Request, runtime: Runtime) -> tuple[Response, str | None]:
    """The response, and the client the token was issued to (known once we know we signed
    it: an expired token's app must read the challenge that tells it to refresh)."""
    presented = await _credentials(request, runtime)
    if presented is None:
        return _challenge(401, None), None
    scheme, token = presented
    try:
        claims = verify_access_token(runtime.keys.current, runtime.settings.issuer, token)
    except InvalidToken as invalid:
        return _challenge(401, "invalid_token", scheme), invalid.client_id
    client_id = str(claims.get("client_id") or "") or None
    refused = await _binding_refused(request, runtime, scheme, token, claims)
    if refused is not None:
        return refused, client_id
    if "openid" not in str(claims.get("scope", "")).split():
        return _challenge(403, "insufficient_scope", scheme), client_id
    try:
        user = await active_user(runtime.sessionmaker, claims)
    except InvalidToken:
        return _challenge(401, "invalid_token", scheme), client_id
    return json_response(dict(user_claims(user, str(claims["scope"]))), headers=NO_STORE), client_id


async def _binding_refused(
    request: Request, runtime: Runtime, scheme: str, token: str, claims: dict[str, object]
) -> Response | None:
    try:
        await runtime.dpop.check_binding(scheme, token, claims, request.headers, request.method, runtime.userinfo_uri)
    except BindingRefused as refused:
        return _challenge(401, refused.error, DPOP, {"DPoP-Nonce": refused.nonce} if refused.nonce else None)
    return None


async def _credentials(request: Request, runtime: Runtime) -> tuple[str, str] | None:
    """The scheme (:data:`BEARER` or :data:`DPOP`) and the access token of the request."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in (BEARER, DPOP) and value.strip():
        return scheme.lower(), value.strip()
    if request.method == "POST" and not header:
        # RFC 6750 §2.2: the form-encoded body parameter
        try:
            pairs = await read_form(request, runtime.settings.max_body_bytes)
        except (FormError, BodyTooLarge):
            return None
        tokens = [v for k, v in pairs if k == "access_token"]
        return (BEARER, tokens[0]) if len(tokens) == 1 else None
    return None


def _challenge(status: int, error: str | None, scheme: str = BEARER, extra: dict[str, str] | None = None) -> Response:
    """RFC 6750 §3 (RFC 9449 §7.1 for the DPoP scheme): no error code when the request
    carried no token at all."""
    if error is None:
        body = {"error": "invalid_request", "error_description": "A bearer access token is required."}
        challenges = f'Bearer, DPoP algs="{" ".join(DPOP_ALGS)}"'
        return json_response(body, status, {**NO_STORE, "WWW-Authenticate": challenges})
    challenge = f'{_SCHEMES[scheme]} error="{error}"'
    if scheme == DPOP:
        challenge += f', algs="{" ".join(DPOP_ALGS)}"'
    headers = {**NO_STORE, "WWW-Authenticate": challenge, **(extra or {})}
    return json_response({"error": error}, status, headers)
