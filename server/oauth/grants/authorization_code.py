"""RFC 6749 §4.1 with single-use codes consumed atomically, PKCE (RFC 7636) as RFC 9700
§2.1.1 wants it: S256 only, required of every client, and codes bound to a DPoP key
(RFC 9449 §10)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge

from ...clients import fapi2
from ...observe import metrics
from ...storage import Session, codes as code_store, grants as grant_store, users as user_store
from ...storage.base import utcnow
from ...storage.codes import StoredCode
from ...storage.users import StoredUser
from ..clients import CONFIDENTIAL_METHODS, OAuthClient
from ..request import OstiaryRequest
from ..tokens import IssuingGrant, Origin


@dataclass(frozen=True, slots=True)
class AuthorizationCode(Origin[StoredCode]):
    """Authlib's ``AuthorizationCodeMixin`` over a redeemed code."""

    def get_redirect_uri(self) -> str:
        return self.record.redirect_uri

    def get_nonce(self) -> str | None:
        return self.record.nonce


class AuthorizationCodeGrant(IssuingGrant, grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """A code is ~285 random bits (48 characters), stored as SHA-256, and valid for
    ``OSTIARY_AUTH_CODE_TTL`` (60 s; at most 60 s for a FAPI 2.0 client). Redeeming it
    twice fails with ``invalid_grant`` and revokes the grant the first redemption created,
    so every token issued from it stops working (RFC 6749 §4.1.2).

    A code issued for a request with ``dpop_jkt`` (RFC 9449 §10) is redeemed only with a
    DPoP proof of that key; without one, or with another key's, the answer is
    ``invalid_grant`` and the code stays unused for the client that holds the key.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = [*CONFIDENTIAL_METHODS, "none"]
    AUTHORIZATION_CODE_LENGTH = 48
    #: seconds a code stays valid; set from settings when the grant is registered
    CODE_TTL = 60

    def validate_token_request(self) -> None:
        super().validate_token_request()
        self.check_resources(self.request.client)

    def save_authorization_code(self, code: str, request: OstiaryRequest) -> None:
        sign_in = request.extras.sign_in
        data = request.payload.data
        stored = StoredCode(
            client_id=request.client.get_client_id(),
            user_id=sign_in.user.id,
            grant_id=sign_in.grant_id,
            redirect_uri=self.redirect_uri,
            scope=request.scope,
            nonce=data.get("nonce"),
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            session_sid=sign_in.sid,
            auth_time=sign_in.auth_time,
            acr=sign_in.acr,
            amr=tuple(sign_in.amr),
            dpop_jkt=data.get("dpop_jkt"),
        )
        # FAPI 2.0 §5.3.2.1: a minute at most, whatever the setting
        ttl = min(self.CODE_TTL, fapi2.CODE_TTL) if request.client.stored.fapi2 else self.CODE_TTL
        expires_at = utcnow() + timedelta(seconds=ttl)
        code_store.insert_code(request.extras.session, code, stored, expires_at=expires_at)

    def query_authorization_code(self, code: str, client: OAuthClient) -> AuthorizationCode | None:
        """The code, if this client may redeem it; read, not consumed: :meth:`save_token`
        consumes it as it inserts the grant, once every check has passed."""
        if len(code) > 256:
            return None
        extras = self.request.extras
        db, client_id, jkt = extras.session, client.get_client_id(), extras.dpop_jkt
        stored = code_store.find(db, code, client_id, jkt)
        if stored is None:
            self._refused(db, code, client_id, jkt)
            return None
        return AuthorizationCode(stored)

    def save_token(self, token: dict[str, Any]) -> None:
        """The grant and its first refresh token, inserted as the code is consumed (on
        PostgreSQL in one statement). A code consumed since :meth:`query_authorization_code`
        read it, by an exchange that won the race, is a replay: nothing is written and the
        tokens made are never sent."""
        request = self.request
        code, client_id, jkt = request.form["code"], request.client.get_client_id(), request.extras.dpop_jkt
        redeeming = grant_store.Redemption(code, client_id, jkt)
        family = self.server.family(token, request)
        if not grant_store.insert_grant(request.extras.session, **family, redeeming=redeeming):
            self._refused(request.extras.session, code, client_id, jkt)
            raise InvalidGrantError("Invalid 'code' in request.")

    def _refused(self, db: Session, code: str, client_id: str, jkt: str | None) -> None:
        """Why a code cannot be redeemed, acted on: a code back after its exchange has the
        grant it created revoked (RFC 6749 §4.1.2); a code bound to another DPoP key is
        refused as such, and stays unused for whoever holds the key (RFC 9449 §10)."""
        replayed = code_store.replayed_grant(db, code, client_id, jkt)
        if replayed is not None:
            grant_id, sub = replayed
            self.request.extras.after_failure.append(
                lambda s: _revoke_replayed(s, grant_id, client_id=client_id, sub=sub)
            )
        elif code_store.bound_to_another_key(db, code, client_id, jkt):
            raise InvalidGrantError("The authorization code is bound to another DPoP key.")

    def delete_authorization_code(self, authorization_code: Any) -> None:
        # Consumed by save_token, not deleted: the row must outlive its use to recognise a replay.
        return None

    def authenticate_user(self, authorization_code: AuthorizationCode) -> StoredUser | None:
        code = authorization_code.record
        user = code.user or user_store.get_user(self.request.extras.session, code.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return user


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE for every client, S256 only (Authlib's default allows ``plain`` and only forces
    PKCE on public clients)."""

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

    def get_authorization_code_challenge(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.record.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.record.code_challenge_method

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
            # with this request's key, which the rolled-back consumption matched: a bound code too
            jkt = request.extras.dpop_jkt
            request.extras.after_failure.append(lambda db: code_store.consume(db, code, client_id, jkt))
            raise

    def _verify(self, grant: Any, result: Any) -> None:
        request = grant.request
        if not request.form.get("code_verifier"):
            if self.get_authorization_code_challenge(request.authorization_code):
                raise InvalidGrantError("The code was issued for a code_challenge: send its code_verifier.")
            raise InvalidRequestError("Missing code_verifier.")
        super().validate_code_verifier(grant, result)


def _revoke_replayed(db: Session, grant_id: str, *, client_id: str, sub: str | None) -> None:
    if grant_store.revoke_audited(db, grant_id, "code_replay", actor=client_id, user=sub, client=client_id):
        metrics.family_revoked("code_replay")
