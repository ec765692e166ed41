"""Token revocation (RFC 7009)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint

from ...observe import metrics
from ...storage import denylist, grants as grant_store
from ..clients import CONFIDENTIAL_METHODS
from ..request import OstiaryRequest
from .lookup import AccessTokenState, KnownToken, TokenLookup


class Revocation(TokenLookup, RevocationEndpoint):  # type: ignore[misc]
    """Revoking a refresh token revokes its family (RFC 7009 §2.1); an access token goes on
    the deny list until it expires; an unknown token is a 200 all the same."""

    CLIENT_AUTH_METHODS = [*CONFIDENTIAL_METHODS, "none"]

    def authenticate_token(self, request: OstiaryRequest, client: Any) -> KnownToken | None:
        # Another client's token is answered like an unknown one (200, nothing revoked):
        # Authlib's invalid_grant would tell the caller that the string is a live token.
        self.check_params(request, client)
        token = self.find(request)
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token: KnownToken, request: OstiaryRequest) -> None:
        db = request.extras.session
        if isinstance(token, AccessTokenState):
            expires = datetime.fromtimestamp(int(token.claims["exp"]), UTC)
            denylist.revoke(db, str(token.claims["jti"]), expires)
        else:
            record = token.record
            client_id = record.client_id
            revoked = grant_store.revoke_audited(
                db, record.grant_id, "revoked_by_client", actor=client_id, user=record.user_sub, client=client_id
            )
            if revoked:
                metrics.family_revoked("revoked_by_client")
