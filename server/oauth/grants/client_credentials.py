"""RFC 6749 §4.4, with RFC 8707 resource indicators choosing the audience."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import grants

from ..clients import CONFIDENTIAL_METHODS
from ..tokens import IssuingGrant


class ClientCredentialsGrant(IssuingGrant, grants.ClientCredentialsGrant):  # type: ignore[misc]
    """Reads and writes nothing in the database: the client was looked up before the call."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(CONFIDENTIAL_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        self.check_resources(self.request.client)
