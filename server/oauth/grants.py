"""Thin subclasses of Authlib's grants: a few lines per hook."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error, grants
from authlib.oauth2.rfc6749.util import scope_to_list

from ..storage import codes as code_store, grants as grant_store, refresh as refresh_store, users as user_store
from ..storage.base import utcnow
from ..storage.codes import StoredCode
from ..storage.refresh import Failure, FamilyToken
from ..storage.users import StoredUser
from .bridge import OstiaryRequest, current_session
from .clients import SECRET_METHODS, OAuthClient
from .families import ReuseReport, revoke_for_reuse
from .resources import validate_resources
from .tokens import new_refresh_token


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 §4.4, with RFC 8707 resource indicators choosing the audience."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(SECRET_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.payload.datalist.get("resource", [])
        self.request.resources = validate_resources(requested, self.client)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    """RFC 6749 §4.1 with single-use codes that are consumed atomically.

    A code is ~285 random bits (48 characters), stored as SHA-256, and valid for
    ``OSTIARY_AUTH_CODE_TTL`` (60 s). Redeeming it twice fails with ``invalid_grant`` and
    revokes the grant the first redemption created, so every token issued from it stops
    working (RFC 6749 §4.1.2).
    """

    TOKEN_ENDPOINT_AUTH_METHODS = [*SECRET_METHODS, "none"]
    AUTHORIZATION_CODE_LENGTH = 48

    def validate_token_request(self) -> None:
        super().validate_token_request()
        self.request.resources = validate_resources(self.request.payload.datalist.get("resource", []), self.client)

    #: seconds a code stays valid; set from settings when the grant is registered
    CODE_TTL = 60

    def save_authorization_code(self, code: str, request: OstiaryRequest) -> None:
        sign_in = request.sign_in
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
        )
        code_store.insert_code(current_session(), code, stored, expires_at=utcnow() + timedelta(seconds=self.CODE_TTL))

    def query_authorization_code(self, code: str, client: OAuthClient) -> StoredCode | None:
        if len(code) > 256:
            return None
        db = current_session()
        stored = code_store.consume(db, code, client.get_client_id())
        if stored is None:
            replayed = code_store.replayed_grant(db, code, client.get_client_id())
            if replayed is not None:
                self.request.after_failure.append(lambda s: grant_store.revoke(s, replayed, "code_replay"))
        return stored

    def delete_authorization_code(self, authorization_code: Any) -> None:
        # Consumed, not deleted: the row must outlive its use to recognise a replay.
        return None

    def authenticate_user(self, authorization_code: StoredCode) -> StoredUser | None:
        user = authorization_code.user or user_store.get_user(current_session(), authorization_code.user_id)
        if user is None or user.disabled_at is not None:
            return None
        return user


@dataclass(frozen=True, slots=True)
class RotationPlan:
    """A refresh whose every check but the family's own passed: what the rotation needs."""

    token: str
    client_id: str
    successor: str
    idle_expires_at: datetime
    scopes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation already committed for this request (:func:`~server.storage.refresh.rotate_ahead`)."""

    token: str
    successor: str
    family: FamilyToken


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    """RFC 6749 §6 with rotation and reuse detection (RFC 9700 §4.14.2).

    ``authenticate_refresh_token`` rotates in one atomic statement: the presented token is
    consumed and its successor (drawn here, issued by the token generator) becomes the
    family head. A token that was already consumed revokes its family, unless it is the
    family head's predecessor presented again within
    ``OSTIARY_REFRESH_REUSE_GRACE_SECONDS`` by the same client (a lost response): then a
    new token replaces the head (at most ``OSTIARY_REFRESH_REUSE_GRACE_COUNT`` times per
    predecessor, 0 for no limit), and the replaced one is reuse from then on: the family
    keeps one chain. Anything that fails later in the request rolls the rotation back with
    its transaction.

    On PostgreSQL the endpoint rotates ahead instead, without a transaction: it makes the
    checks that need no database first (:meth:`plan_rotation`), then runs the statement
    with the scope check inside, then this grant on the committed :class:`Rotation`. A
    refresh that cannot rotate ahead (a scope not granted, a consumed token) goes the way
    above.
    """

    TOKEN_ENDPOINT_AUTH_METHODS = [*SECRET_METHODS, "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True
    GRACE_SECONDS = 0
    GRACE_COUNT = 0
    #: seconds a refresh token lives unused (within its family's lifetime); set from settings
    IDLE_TTL = 0

    def validate_token_request(self) -> None:
        super().validate_token_request()
        self.request.resources = validate_resources(self.request.payload.datalist.get("resource", []), self.client)

    def plan_rotation(self) -> RotationPlan | None:
        """The rotation this request asks for, once the checks that come before the presented
        token's family in :meth:`validate_token_request` pass: the client authenticated and
        allowed this grant, a token present, the resources allowed. The scope is checked by
        the rotation itself. None when one of them fails (the grant then says which)."""
        try:
            client = self.authenticate_token_endpoint_client()
            validate_resources(self.request.payload.datalist.get("resource", []), client)
        except OAuth2Error:
            return None
        token = self.request.form.get("refresh_token")
        if not client.check_grant_type(self.GRANT_TYPE) or not token or len(token) > 256:
            return None
        return RotationPlan(
            token=token,
            client_id=client.get_client_id(),
            successor=new_refresh_token(),
            idle_expires_at=utcnow() + timedelta(seconds=self.IDLE_TTL),
            scopes=tuple(scope_to_list(self.request.payload.scope) or ()),
        )

    def authenticate_refresh_token(self, refresh_token: str) -> FamilyToken | None:
        rotated: Rotation | None = self.request.rotated
        if rotated is not None and rotated.token == refresh_token:
            self.request.successor_refresh_token = rotated.successor
            return rotated.family
        if len(refresh_token) > 256:
            return None
        db = current_session()
        client_id = self.request.client.get_client_id()
        successor = new_refresh_token()
        idle_expires_at = utcnow() + timedelta(seconds=self.IDLE_TTL)
        token = refresh_store.rotate(db, refresh_token, client_id, successor, idle_expires_at)
        if token is None:
            diagnosis = refresh_store.diagnose(db, refresh_token, client_id, grace_seconds=self.GRACE_SECONDS)
            if diagnosis.failure is Failure.GRACE:
                token = refresh_store.use_grace(
                    db, refresh_token, client_id, successor, idle_expires_at, max_uses=self.GRACE_COUNT
                )
            if token is None:
                if diagnosis.failure in (Failure.GRACE, Failure.REUSE):
                    report = ReuseReport(diagnosis, self.request.client_ip, self.request.headers.get("user-agent"))
                    self.request.after_failure.append(lambda s: revoke_for_reuse(s, report))
                return None
        self.request.successor_refresh_token = successor
        return token

    def authenticate_user(self, refresh_token: FamilyToken) -> StoredUser:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: FamilyToken) -> None:
        # Already consumed by authenticate_refresh_token, atomically.
        return None
