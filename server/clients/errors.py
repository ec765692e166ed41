from __future__ import annotations

#: the RFC 7591 name (``server.clients.metadata``) of the metadata each command-line option sets
METADATA_NAMES = {
    "--name": "client_name",
    "--grant-type": "grant_types",
    "--response-type": "response_types",
    "--scope": "scope",
    "--redirect-uri": "redirect_uris",
    "--post-logout-redirect-uri": "post_logout_redirect_uris",
    "--cors-origin": "allowed_cors_origins",
    "--token-endpoint-auth-method": "token_endpoint_auth_method",
    "--backchannel-logout-uri": "backchannel_logout_uri",
    "--logo-uri": "logo_uri",
    "--policy-uri": "policy_uri",
    "--tos-uri": "tos_uri",
    "--jwks": "jwks",
    "--jwks-uri": "jwks_uri",
    "--token-endpoint-auth-signing-alg": "token_endpoint_auth_signing_alg",
    "--require-pushed-authorization-requests": "require_pushed_authorization_requests",
    "--access-token-alg": "access_token_signed_response_alg",
    "--dpop-bound-access-tokens": "dpop_bound_access_tokens",
    "--fapi2": "fapi2",
}


class ClientRegistrationError(ValueError):
    """A registration value is invalid; ``field`` names the option it came from."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    @property
    def metadata_name(self) -> str:
        """The RFC 7591 name of the metadata at fault (``field`` itself when it has none)."""
        return METADATA_NAMES.get(self.field, self.field)

    def in_metadata_terms(self) -> ClientRegistrationError:
        """The same error naming the RFC 7591 metadata, for those who wrote it in those terms."""
        return ClientRegistrationError(self.metadata_name, self.message)


class UnknownClient(ClientRegistrationError):
    """No client has the id an administrator named."""

    def __init__(self, client_id: str) -> None:
        super().__init__("CLIENT_ID", f"no client {client_id!r}")
