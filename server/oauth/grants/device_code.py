"""RFC 8628 §3.4-3.5: the device polls the token endpoint with its device code.

Authlib's ``DeviceCodeGrant`` over :mod:`server.storage.device_authorizations`: pending is
``authorization_pending``; a poll sooner than the interval after the last one is
``slow_down``, and the interval grows by 5 s for it and every later poll; a denial is
``access_denied``; past its lifetime ``expired_token``. An approved code is redeemed once,
by a conditional ``UPDATE``; presented again it is ``invalid_grant`` and revokes the grant
the first redemption created, as a replayed authorization code does.

The tokens are the code flow's: a JWT access token, a refresh token when the client is
registered for ``refresh_token``, an ID token when ``openid`` was granted. The grant is
not bound to the browser session that approved it (no ``sid``): the device stays signed in
when that browser signs out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc8628 import DeviceCodeGrant as AuthlibDeviceCodeGrant

from ...observe import metrics
from ...storage import Session, device_authorizations as device_store, grants as grant_store, users as user_store
from ...storage.base import utcnow
from ...storage.device_authorizations import APPROVED, DENIED, PENDING, StoredDevice
from ...storage.users import StoredUser
from ..clients import CONFIDENTIAL_METHODS, OAuthClient
from ..openid import OpenIDCode
from ..tokens import IssuingGrant, Origin

#: RFC 8628 §3.5: what each ``slow_down`` adds to the interval
SLOW_DOWN_SECONDS = 5


@dataclass(frozen=True, slots=True)
class DeviceCredential(Origin[StoredDevice]):
    """Authlib's ``DeviceCredentialMixin`` over a stored device authorization."""

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_user_code(self) -> StoredDevice:
        # The user code is kept only as a digest: the record stands for it, and is what
        # query_user_grant is given.
        return self.record

    def is_expired(self) -> bool:
        return self.record.expires_at <= utcnow()


class DeviceCodeGrant(IssuingGrant, AuthlibDeviceCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = [*CONFIDENTIAL_METHODS, "none"]

    def authenticate_token_endpoint_client(self) -> OAuthClient:
        # Authlib names the client on the request only after the device code is looked
        # up; the lookup needs it (a code is only its own client's).
        client: OAuthClient = super().authenticate_token_endpoint_client()
        self.request.client = client
        return client

    def validate_token_request(self) -> None:
        super().validate_token_request()
        self.check_resources(self.request.client)
        # The device code is the grant this request redeems, as a code is: the tokens
        # descend from it (auth_time, acr, amr, the grant id), and save_token records its grant.
        self.request.authorization_code = self.request.credential

    def query_device_credential(self, device_code: str) -> DeviceCredential:
        if len(device_code) > 256:
            raise InvalidGrantError("The device_code is not valid.")
        db = self.request.extras.session
        client_id = self.request.client.get_client_id()
        stored = device_store.find(db, device_code)
        if stored is None or stored.client_id != client_id:
            raise InvalidGrantError("The device_code is not valid.")
        if stored.consumed_at is not None:
            grant_id = stored.grant_id
            self.request.extras.after_failure.append(lambda s: _revoke_replayed(s, grant_id, client_id))
            raise InvalidGrantError("The device_code was used already.")
        return DeviceCredential(stored)

    def query_user_grant(self, stored: StoredDevice) -> tuple[StoredUser | None, bool] | None:
        """None while pending; (None, False) once denied; (user, True) once approved, the
        code redeemed by this very call."""
        if stored.status == PENDING:
            return None
        if stored.status == DENIED:
            return None, False
        assert stored.status == APPROVED
        db = self.request.extras.session
        if not device_store.redeem(db, stored.key):  # another poll redeemed it a moment ago
            raise InvalidGrantError("The device_code was used already.")
        user = user_store.get_user(db, stored.user_id) if stored.user_id is not None else None
        if user is None or user.disabled_at is not None:
            raise InvalidGrantError("The user who approved the device cannot sign in.")
        return user, True

    def should_slow_down(self, credential: DeviceCredential) -> bool:
        """A poll sooner than the interval after the last one; every poll is recorded (after
        the request, whose answer is an error and whose transaction is rolled back)."""
        stored, now = credential.record, utcnow()
        too_soon = stored.last_polled_at is not None and now - stored.last_polled_at < timedelta(
            seconds=stored.interval
        )
        interval = stored.interval + SLOW_DOWN_SECONDS if too_soon else stored.interval
        self.request.extras.after_failure.append(lambda s: device_store.record_poll(s, stored.key, now, interval))
        return too_soon


class OpenIDDevice(OpenIDCode):
    """An ID token when ``openid`` was granted, with the approving sign-in's ``auth_time``,
    ``acr`` and ``amr`` (no ``nonce``: the device authorization request has none)."""

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)


def _revoke_replayed(db: Session, grant_id: str, client_id: str) -> None:
    revoked = grant_store.revoke_audited(
        db, grant_id, "device_code_replay", actor=client_id, user=None, client=client_id
    )
    if revoked:
        metrics.family_revoked("device_code_replay")
