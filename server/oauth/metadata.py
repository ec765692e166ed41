"""Server metadata: RFC 8414 and OpenID Connect Discovery 1.0.

Only what is implemented is advertised; each feature adds its fields here.
"""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from .clients import SECRET_METHODS


def server_metadata(settings: Settings) -> dict[str, Any]:
    return {
        "issuer": settings.issuer,
        "token_endpoint": settings.endpoint("/token"),
        "jwks_uri": settings.endpoint("/jwks"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": list(SECRET_METHODS),
        "response_types_supported": [],
    }
