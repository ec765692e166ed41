"""RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2).

The presented token rotates in :meth:`RefreshTokenGrant.authenticate_refresh_token`, with
the requested scope checked inside the rotation: once it returns a token, nothing left in
the request may refuse it (:func:`server.storage.refresh.rotate`). A token that was already
consumed revokes its family, unless it is the family head's predecessor presented again
within ``OSTIARY_REFRESH_REUSE_GRACE_SECONDS`` by the same client (a lost response); the
rules are in docs/decisions.md.

A client held to FAPI 2.0 keeps its refresh token: the profile "shall not use refresh
token rotation except in extraordinary circumstances" (§5.3.2.1), its tokens being bound
to the client's key by ``private_key_jwt`` already. The token is used where it stands
(:func:`server.storage.refresh.use`), its idle expiry moved on, and no new one is issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.util import scope_to_list

from ...observe import metrics
from ...storage import Session, audit, grants as grant_store, outbox, refresh as refresh_store, users as user_store
from ...storage.base import utcnow
from ...storage.refresh import Diagnosis, Failure, FamilyToken
from ...storage.users import StoredUser
from ..clients import CONFIDENTIAL_METHODS, OAuthClient
from ..errors import InvalidTargetError
from ..tokens import IssuingGrant, Origin, new_refresh_token


@dataclass(frozen=True, slots=True)
class RefreshToken(Origin[FamilyToken]):
    """Authlib's ``TokenMixin`` over a rotated refresh token's family. A refreshed ID token
    repeats the family's sign-in and carries no nonce (OIDC Core §12.2)."""

    def check_client(self, client: OAuthClient) -> bool:
        return client.get_client_id() == self.record.client_id


class RefreshTokenGrant(IssuingGrant, grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = [*CONFIDENTIAL_METHODS, "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True
    #: set from settings when the grant is registered
    GRACE_SECONDS = 0
    GRACE_COUNT = 0
    #: seconds a refresh token lives unused (within its family's lifetime); for a public client
    IDLE_TTL = 0
    PUBLIC_IDLE_TTL = 0

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        """Rotate ``refresh_token`` (or use it, for a FAPI 2.0 client); None for Authlib's
        ``invalid_grant``. A refused resource
        or scope is raised only once the token itself is known to be usable, as Authlib's
        order of checks (client, token, scope) has it."""
        if len(refresh_token) > 256:
            return None
        request = self.request
        db, client = request.extras.session, request.client
        scopes = tuple(scope_to_list(request.payload.scope) or ())
        successor = new_refresh_token()
        idle = self.PUBLIC_IDLE_TTL if client.is_public else self.IDLE_TTL
        idle_expires_at = utcnow() + timedelta(seconds=idle)
        refused: InvalidTargetError | None = None
        jkt = request.extras.dpop_jkt
        try:
            self.check_resources(client)
        except InvalidTargetError as error:
            refused = error
        else:
            token = self._rotate_or_use(refresh_token, successor, idle_expires_at, scopes)
            if token is not None:
                return RefreshToken(token)
        diagnosis = refresh_store.diagnose(
            db, refresh_token, client.get_client_id(), grace_seconds=self.GRACE_SECONDS, scopes=scopes, dpop_jkt=jkt
        )
        if diagnosis.failure is Failure.SCOPE:
            raise InvalidScopeError()
        if diagnosis.failure is Failure.USABLE and refused is not None:
            raise refused
        # the grace window replaces a token a rotation's lost response left the client
        # without; a FAPI 2.0 client's token is never replaced, so a spent one is reuse
        if diagnosis.failure is Failure.GRACE and not client.stored.fapi2:
            token = refresh_store.use_grace(
                db, refresh_token, client.get_client_id(), successor, idle_expires_at, max_uses=self.GRACE_COUNT
            )
            if token is not None:
                if refused is not None:
                    raise refused  # the replacement is rolled back with the request's transaction
                request.extras.successor_refresh_token = successor
                return RefreshToken(token)
        if diagnosis.failure in (Failure.GRACE, Failure.REUSE):
            self._revoke_family_afterwards(diagnosis)
        return None

    def _rotate_or_use(
        self, refresh_token: str, successor: str, idle_expires_at: datetime, scopes: tuple[str, ...]
    ) -> FamilyToken | None:
        request = self.request
        db, client_id, jkt = request.extras.session, request.client.get_client_id(), request.extras.dpop_jkt
        if request.client.stored.fapi2:
            # this grant serves one request: its response keeps the client's token, adds none
            self.INCLUDE_NEW_REFRESH_TOKEN = False
            return refresh_store.use(db, refresh_token, client_id, idle_expires_at, scopes, jkt)
        token = refresh_store.rotate(db, refresh_token, client_id, successor, idle_expires_at, scopes, jkt)
        if token is not None:
            request.extras.successor_refresh_token = successor
        return token

    def _revoke_family_afterwards(self, diagnosis: Diagnosis) -> None:
        report = ReuseReport(diagnosis, self.request.extras.client_ip, self.request.headers.get("user-agent"))
        self.request.extras.after_failure.append(lambda db: revoke_for_reuse(db, report))

    def authenticate_user(self, refresh_token: RefreshToken) -> StoredUser:
        return refresh_token.record.user

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        # Already consumed by authenticate_refresh_token, atomically.
        return None


@dataclass(frozen=True)
class ReuseReport:
    diagnosis: Diagnosis
    client_ip: str | None
    user_agent: str | None


def revoke_for_reuse(db: Session, report: ReuseReport) -> None:
    """A consumed token came back: the legitimate client or an attacker holds a copy, and
    the server cannot tell which, so the whole family is revoked (every refresh token in
    it, and through the ``gid`` claim every access token it issued). Committed on its own,
    after the failed request rolls back; recorded once per family as an audit event, and
    the user is alerted through the mail outbox."""
    diagnosis = report.diagnosis
    assert diagnosis.grant_id is not None and diagnosis.user_id is not None
    # here, after the failed request rolled back, and not where the reuse was found: that
    # transaction may run again (a serialization retry), this runs once
    metrics.REFRESH_REUSE.inc()
    if not grant_store.revoke(db, diagnosis.grant_id, "refresh_token_reuse"):
        return  # already revoked: one alert per family, however many replays
    metrics.family_revoked("refresh_token_reuse")
    user = user_store.get_user(db, diagnosis.user_id)
    details = {
        "grant_id": diagnosis.grant_id,
        "client_id": diagnosis.client_id,
        "user_id": diagnosis.user_id,
        "ip": report.client_ip,
        "user_agent": (report.user_agent or "")[:300],
    }
    audit.record(
        db,
        "refresh_token.reuse",
        actor=diagnosis.client_id,
        user=user.sub if user else None,
        client=diagnosis.client_id,
        subject=diagnosis.grant_id,
        details=details,
    )
    if user is not None and user.email:
        outbox.enqueue(
            db,
            user.email,
            "refresh_token_reuse",
            {"username": user.username, "client_id": diagnosis.client_id, "ip": report.client_ip},
        )
