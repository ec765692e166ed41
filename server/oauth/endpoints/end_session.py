"""RP-Initiated Logout 1.0 (``end_session_endpoint``) on Authlib's endpoint.

A ``post_logout_redirect_uri`` is followed only when it is registered for the client and
the request carries a valid ``id_token_hint`` (Authlib's rule); otherwise the user sees a
signed-out page. Without a valid hint the user is asked to confirm first (§6: a bare
logout link is a denial-of-service vector).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.rpinitiated import EndSessionEndpoint
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ...authn import sessions
from ...keys.holder import KeyRingHolder
from ...settings import SIGNING_ALGS
from ...storage import Session, logout_notices, users as user_store
from ...storage.logout_notices import SignedInClient
from ...storage.sessions import StoredSession
from ..request import OstiaryRequest


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
        # The session's families without offline_access end with it, in this transaction.
        request: OstiaryRequest = end_session_request.request
        sessions.end(request.extras.session, request.extras.browser_session_token)


@dataclass(frozen=True)
class Decision:
    kind: str  # "confirm", "done" or "error"
    location: str | None = None
    client_name: str | None = None
    message: str = ""
    #: "confirm": where the confirmed sign-out will redirect (a registered
    #: post_logout_redirect_uri), so the page's CSP lets its form lead there
    redirect: str | None = None
    #: the applications the session signed in to: those told by back-channel logout, and
    #: those the user must sign out of themselves
    apps: tuple[SignedInClient, ...] = ()


def decide(server: Any, request: OstiaryRequest, confirmed: bool) -> Decision:
    """Validate a logout request and end the session, or say that the user must confirm.

    Only a hint for *this* browser's session signs out without asking: someone else's valid
    ID token must not be a link that silently signs anyone out (RP-Initiated Logout §2, §6).
    """
    try:
        validated = server.validate_endpoint_request("end_session", request)
    except OAuth2Error as error:
        return Decision("error", message=error.get_error_description() or error.error)
    db = request.extras.session
    session = sessions.load(db, request.extras.browser_session_token)
    apps = tuple(logout_notices.signed_in_clients(db, session.sid)) if session is not None else ()
    if session is not None and not confirmed and not _hint_matches(db, validated.id_token_claims, session):
        client = validated.client
        name = client.stored.name if client is not None else None
        return Decision("confirm", client_name=name, redirect=validated.redirect_uri, apps=apps)
    response = server.create_endpoint_response("end_session", validated)
    location = dict(response.headers).get("Location") if response is not None else None
    return Decision("done", location=location, apps=apps)


def _hint_matches(db: Session, claims: dict[str, Any] | None, session: StoredSession) -> bool:
    if not claims:
        return False
    if claims.get("sid"):
        return bool(claims["sid"] == session.sid)
    user = user_store.get_user(db, session.user_id)
    return user is not None and claims.get("sub") == user.sub
