"""Thin subclasses of Authlib's grants: a few lines per hook."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import grants

from .clients import SECRET_METHODS
from .resources import validate_resources


class ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 §4.4, with RFC 8707 resource indicators choosing the audience."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(SECRET_METHODS)

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.payload.datalist.get("resource", [])
        self.request.resources = validate_resources(requested, self.client)
