"""RP-Initiated Logout 1.0 (``end_session_endpoint``) on Authlib's endpoint.

A ``post_logout_redirect_uri`` is followed only when it is registered for the client and
the request carries a valid ``id_token_hint`` (Authlib's rule); otherwise the user sees a
signed-out page. Without a valid hint the user is asked to confirm first (§6: a bare
logout link is a denial-of-service vector).
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.rpinitiated import EndSessionEndpoint
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..authn import sessions
from ..keys.holder import KeyRingHolder
from ..settings import SIGNING_ALGS
from ..storage import grants as grant_store
from .bridge import current_session


class EndSession(EndSessionEndpoint):  # type: ignore[misc]
    def __init__(self, server: Any, keys: KeyRingHolder) -> None:
        super().__init__(server)
        self.keys = keys

    def get_server_jwks(self) -> KeySet:
        return self.keys.current.verification

    def get_algorithms(self) -> list[str]:
        return list(SIGNING_ALGS)

    def _validate_id_token_hint(self, id_token_hint: str) -> dict[str, Any]:
        # Our own ID tokens only: not an access token (at+jwt) signed by the same key,
        # and a clean error (never Authlib's ValueError on odd descriptions) for the rest.
        try:
            header = jws.extract_compact(id_token_hint.encode("ascii")).protected
            if header.get("typ") == "at+jwt":
                raise InvalidRequestError("The id_token_hint is not an ID token.")
            claims: dict[str, Any] = super()._validate_id_token_hint(id_token_hint)
        except (JoseError, ValueError, UnicodeError, InvalidRequestError):
            raise InvalidRequestError("The id_token_hint is not valid.") from None
        if claims.get("iss") != self.server.settings.issuer:
            raise InvalidRequestError("The id_token_hint was not issued here.")
        return claims

    def end_session(self, end_session_request: Any) -> None:
        request = end_session_request.request
        sid = sessions.end(current_session(), request.browser_session_token)
        if sid is not None:
            grant_store.revoke_for_session(current_session(), sid, "logout")
        request.ended_sid = sid
