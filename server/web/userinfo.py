"""``/userinfo`` (OIDC Core §5.3), GET and POST, with RFC 6750 bearer errors."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..oauth.endpoints.userinfo import InvalidToken, active_user, verify_access_token
from ..oauth.openid import user_claims
from .forms import BodyTooLarge, FormError, read_form
from .responses import NO_STORE, json_response
from .runtime import Runtime


async def userinfo(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = await _bearer(request, runtime)
    if token is None:
        return _challenge(401, None)
    try:
        claims = verify_access_token(runtime.keys.current, runtime.settings.issuer, token)
    except InvalidToken:
        return _challenge(401, "invalid_token")
    if "openid" not in str(claims.get("scope", "")).split():
        return _challenge(403, "insufficient_scope")
    try:
        user = await active_user(runtime.sessionmaker, claims)
    except InvalidToken:
        return _challenge(401, "invalid_token")
    return json_response(dict(user_claims(user, str(claims["scope"]))), headers=NO_STORE)


async def _bearer(request: Request, runtime: Runtime) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.method == "POST" and not header:
        # RFC 6750 §2.2: the form-encoded body parameter
        try:
            pairs = await read_form(request, runtime.settings.max_body_bytes)
        except (FormError, BodyTooLarge):
            return None
        tokens = [v for k, v in pairs if k == "access_token"]
        return tokens[0] if len(tokens) == 1 else None
    return None


def _challenge(status: int, error: str | None) -> Response:
    """RFC 6750 §3: no error code when the request carried no token at all."""
    if error is None:
        body = {"error": "invalid_request", "error_description": "A bearer access token is required."}
        return json_response(body, status, {**NO_STORE, "WWW-Authenticate": "Bearer"})
    return json_response({"error": error}, status, {**NO_STORE, "WWW-Authenticate": f'Bearer error="{error}"'})
