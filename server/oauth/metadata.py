"""Server metadata: RFC 8414 and OpenID Connect Discovery 1.0.

Only what is implemented is advertised; each feature adds its fields here.
"""

from __future__ import annotations

from typing import Any

from .. import i18n
from ..authn.levels import ACR_VALUES
from ..clients import fapi2
from ..settings import Settings
from .assertions import ASSERTION_ALGS
from .clients import CONFIDENTIAL_METHODS, PRIVATE_KEY_JWT
from .dpop import DPOP_ALGS
from .openid import SCOPE_CLAIMS


def server_metadata(settings: Settings, algorithms: list[str]) -> dict[str, Any]:
    """``algorithms``: those with an active signing key (ID tokens may use any of them)."""
    metadata = _metadata(settings, algorithms)
    return _fapi2(metadata) if settings.profile == "fapi2" else metadata


def _metadata(settings: Settings, algorithms: list[str]) -> dict[str, Any]:
    return {
        "issuer": settings.issuer,
        "authorization_endpoint": settings.endpoint("/authorize"),
        "token_endpoint": settings.endpoint("/token"),
        "userinfo_endpoint": settings.endpoint("/userinfo"),
        "end_session_endpoint": settings.endpoint("/logout"),
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "revocation_endpoint": settings.endpoint("/revoke"),
        "revocation_endpoint_auth_methods_supported": [*CONFIDENTIAL_METHODS, "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint": settings.endpoint("/introspect"),
        "introspection_endpoint_auth_methods_supported": list(CONFIDENTIAL_METHODS),
        "introspection_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "jwks_uri": settings.endpoint("/jwks"),
        "grant_types_supported": [
            "authorization_code",
            "client_credentials",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "device_authorization_endpoint": settings.endpoint("/device/authorize"),
        # RFC 9126 §5; its clients authenticate as at the token endpoint
        "pushed_authorization_request_endpoint": settings.endpoint("/par"),
        "require_pushed_authorization_requests": settings.require_par,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "token_endpoint_auth_methods_supported": [*CONFIDENTIAL_METHODS, "none"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": list(DPOP_ALGS),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "scopes_supported": ["openid", *SCOPE_CLAIMS, "offline_access"],
        "claims_supported": sorted(
            {"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid"}
            | {claim for claims in SCOPE_CLAIMS.values() for claim in claims}
        ),
        # "create": OpenID Connect Initiating User Registration 1.0, while sign-up is open
        "ui_locales_supported": list(i18n.supported()),
        "prompt_values_supported": ["none", "login", "consent", *(["create"] if settings.signup == "open" else [])],
        "acr_values_supported": list(ACR_VALUES),
        "authorization_response_iss_parameter_supported": True,
        # The claims parameter is ignored (server/signin/acr.py), its acr member included.
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        **_registration(settings),
    }


def _fapi2(metadata: dict[str, Any]) -> dict[str, Any]:
    """What every client may use when all are held to the FAPI 2.0 profile (docs/fapi2.md)."""
    methods, algs = [PRIVATE_KEY_JWT], [alg for alg in ASSERTION_ALGS if alg in fapi2.ALGS]
    profiled = {
        **metadata,
        "grant_types_supported": [g for g in metadata["grant_types_supported"] if g in fapi2.GRANT_TYPES],
        "require_pushed_authorization_requests": True,
        "id_token_signing_alg_values_supported": [
            alg for alg in metadata["id_token_signing_alg_values_supported"] if alg in fapi2.ALGS
        ],
        "dpop_signing_alg_values_supported": [
            alg for alg in metadata["dpop_signing_alg_values_supported"] if alg in fapi2.ALGS
        ],
    }
    for endpoint in ("token_endpoint", "revocation_endpoint", "introspection_endpoint"):
        profiled[f"{endpoint}_auth_methods_supported"] = methods
        profiled[f"{endpoint}_auth_signing_alg_values_supported"] = algs
    del profiled["device_authorization_endpoint"]
    return profiled


def _registration(settings: Settings) -> dict[str, Any]:
    """RFC 7591 §3 (RFC 8414 §2): the registration endpoint, only when it is on."""
    if settings.registration == "off":
        return {}
    return {"registration_endpoint": settings.endpoint("/register")}
