"""PKCE (RFC 7636) as RFC 9700 §2.1.1 wants it: S256 only, required for every client.

Authlib's default allows ``plain`` and only forces PKCE on public clients.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge

from ..storage import codes as code_store


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": compare_s256_code_challenge}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        """A code issued for a ``code_challenge`` and redeemed without ``code_verifier`` is
        ``invalid_grant`` (RFC 7636 §4.6, RFC 9700 §4.8.2: a PKCE downgrade), not
        ``invalid_request``: the request is well formed, the grant does not match it.

        A code whose verification fails is spent all the same (RFC 6749 §4.1.2: used once):
        the failed request's transaction is rolled back, so the consumption is written
        after it, on its own."""
        request = grant.request
        try:
            self._verify(grant, result)
        except OAuth2Error:
            code, client_id = request.form.get("code"), request.client.get_client_id()
            request.after_failure.append(lambda db: code_store.consume(db, code, client_id))
            raise

    def _verify(self, grant: Any, result: Any) -> None:
        request = grant.request
        if not request.form.get("code_verifier"):
            if self.get_authorization_code_challenge(request.authorization_code):
                raise InvalidGrantError("The code was issued for a code_challenge: send its code_verifier.")
            raise InvalidRequestError("Missing code_verifier.")
        super().validate_code_verifier(grant, result)
