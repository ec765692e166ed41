"""RFC 8628 §3.1-3.2: the device authorization endpoint (``POST /device/authorize``).

A client registered for the device grant gets a device code to poll the token endpoint
with, and a user code for its person to enter at ``/device``: eight characters of
``BCDFGHJKLMNPQRSTVWXZ`` (no vowels, so no words; nothing that looks like a digit),
shown as ``XXXX-XXXX``, about 34.5 bits (RFC 8628 §6.1). ``/device`` rate-limits
guesses, and the code expires (``OSTIARY_DEVICE_CODE_TTL``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidScopeError, UnauthorizedClientError
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE, DeviceAuthorizationEndpoint

from ...settings import Settings
from ...storage import device_authorizations as device_store
from ...storage.base import utcnow
from ..calls import current_request
from ..clients import CONFIDENTIAL_METHODS, OAuthClient
from ..request import OstiaryRequest
from ..tokens import random_token

USER_CODE_ALPHABET = frozenset("BCDFGHJKLMNPQRSTVWXZ")
USER_CODE_LENGTH = 8


def canonical_user_code(text: str) -> str | None:
    """A user code as typed (any case, dashes and spaces anywhere) in its canonical form,
    eight capitals without a dash; None when it cannot be one we issue (RFC 8628 §6.1)."""
    compact = "".join(char for char in text[:64].upper() if char not in "- ")
    if len(compact) != USER_CODE_LENGTH or not set(compact) <= USER_CODE_ALPHABET:
        return None
    return compact


def displayed_user_code(canonical: str) -> str:
    """``XXXX-XXXX``, as the device shows it."""
    return f"{canonical[:4]}-{canonical[4:]}"


class DeviceAuthorization(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    """Authlib's endpoint over :mod:`server.storage.device_authorizations`; public and
    confidential clients alike, each authenticating as at the token endpoint."""

    CLIENT_AUTH_METHODS = [*CONFIDENTIAL_METHODS, "none"]

    def __init__(self, server: Any, settings: Settings) -> None:
        super().__init__(server)
        self.EXPIRES_IN = settings.device_code_ttl
        self.INTERVAL = settings.device_code_interval
        self.verification_uri = settings.endpoint("/device")

    def authenticate_client(self, request: OstiaryRequest) -> OAuthClient:
        client: OAuthClient = super().authenticate_client(request)
        if not client.check_grant_type(DEVICE_CODE_GRANT_TYPE):
            raise UnauthorizedClientError("The client is not registered for the device authorization grant.")
        return client

    def get_verification_uri(self) -> str:
        return self.verification_uri

    def generate_device_code(self) -> str:
        return random_token(32)

    def generate_user_code(self) -> str:
        """Authlib's ``XXXX-XXXX``, drawn again while it is one a stored authorization has
        (its digest is unique; a row is kept for a while after it expires)."""
        db = _request().extras.session
        for _ in range(5):
            code: str = super().generate_user_code()
            if not device_store.user_code_taken(db, displayed_to_canonical(code)):
                return code
        # five draws that all collide: about one chance in 10**25 with a million stored rows
        raise RuntimeError("no free user code was found")

    def save_device_credential(self, client_id: str, scope: str | None, data: dict[str, Any]) -> None:
        """Store the authorization with the scope the client may have: an omitted scope is
        the client's registered ones, as at the authorization endpoint."""
        request = _request()
        granted = request.client.get_allowed_scope(scope)
        if granted is None:
            raise InvalidScopeError("The client may not request this scope.")
        device_store.insert(
            request.extras.session,
            device_code=data["device_code"],
            user_code=displayed_to_canonical(data["user_code"]),
            client_id=client_id,
            scope=granted,
            interval=self.INTERVAL,
            expires_at=utcnow() + timedelta(seconds=self.EXPIRES_IN),
        )


def displayed_to_canonical(code: str) -> str:
    return code.replace("-", "")


def _request() -> OstiaryRequest:
    """The request in progress: Authlib gives the endpoint's storage hooks none. They run in
    the request's transaction, whose request :func:`~server.oauth.calls.current_request` names."""
    request = current_request()
    if request is None:
        raise RuntimeError("the device authorization endpoint runs in server.oauth.calls.in_transaction")
    return request
