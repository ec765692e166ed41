"""``id_token_hint`` at the authorization endpoint (OIDC Core §3.1.2.1).

The hint is an ID token this server issued earlier; the request is about its ``sub``.
It is accepted when our signature verifies under a published key (the active keys and the
retired ones still in the JWKS), its ``iss`` is ours and its ``aud`` names the requesting
client. An expired hint is fine: the specification expects a hint to be an old ID token.

Requiring the client in ``aud`` is a choice: an ID token is a statement made to its
audience (OIDC Core §2), so a client that sends another client's ID token is
misbehaving, and refusing it costs a correct client nothing.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..settings import SIGNING_ALGS

#: far more than any ID token of ours; a longer value is refused before it is parsed
MAX_HINT_LENGTH = 8192


def hinted_subject(hint: str, keys: KeySet, issuer: str, client_id: str, redirect_uri: str) -> str:
    """The ``sub`` of a valid hint; else ``invalid_request`` (sent to ``redirect_uri``)."""
    claims = _verified_claims(hint, keys)
    if claims is None or claims.get("iss") != issuer:
        raise InvalidRequestError("The id_token_hint is not an ID token issued here.", redirect_uri=redirect_uri)
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or client_id not in audiences:
        raise InvalidRequestError("The id_token_hint was not issued to this client.", redirect_uri=redirect_uri)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidRequestError("The id_token_hint has no subject.", redirect_uri=redirect_uri)
    return subject


def _verified_claims(hint: str, keys: KeySet) -> dict[str, Any] | None:
    """The claims if our signature verifies, else None (garbage, another signer, a key we
    no longer publish, or one of our access tokens, which are ``at+jwt``)."""
    if len(hint) > MAX_HINT_LENGTH or not hint.isascii():
        return None
    try:
        token = jwt.decode(hint, keys, algorithms=list(SIGNING_ALGS))
    except (JoseError, ValueError, TypeError, UnicodeError):
        return None
    if token.header.get("typ") == "at+jwt":
        return None
    return dict(token.claims)
