"""What an authorization request asks of the authentication (OIDC Core §3.1.2.1, §5.5.1.1).

``acr_values`` is a voluntary request: the multi-factor level is reached when the user can
reach it, and the ID token's ``acr`` says which level was. An *essential* ``acr`` claim in
the ``claims`` parameter is a requirement: a level that cannot be reached ends the request
with ``unmet_authentication_requirements`` (OpenID Connect Core errata, §3.1.2.6), as does a
client registered with ``--require-mfa``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError

from ..authn.levels import ACR_MFA, ACR_PASSWORD


class UnmetAuthenticationRequirementsError(OAuth2Error):  # type: ignore[misc]
    error = "unmet_authentication_requirements"


@dataclass(frozen=True)
class AcrRequest:
    #: the request asks for the multi-factor level
    mfa: bool = False
    #: ... and insists on it (an essential claim)
    essential: bool = False


NOTHING = AcrRequest()


def requested_acr(data: dict[str, str], redirect_uri: str | None) -> AcrRequest:
    """Read ``acr_values`` and ``claims``; a malformed ``claims`` is ``invalid_request``."""
    voluntary = _wants_mfa((data.get("acr_values") or "").split())
    raw = data.get("claims")
    if raw is None:
        return AcrRequest(mfa=bool(voluntary))
    claim = _acr_claim(raw, redirect_uri)
    if claim is None:
        return AcrRequest(mfa=bool(voluntary))
    values = _values(claim, redirect_uri)
    wants = _wants_mfa(values) if values else None
    essential = claim.get("essential") is True
    if essential and values and wants is None:
        raise UnmetAuthenticationRequirementsError(
            "None of the requested acr values is supported.", redirect_uri=redirect_uri
        )
    mfa = bool(wants) or bool(voluntary)
    return AcrRequest(mfa=mfa, essential=essential and bool(wants))


def _wants_mfa(values: list[str]) -> bool | None:
    """True when the known values ask for the multi-factor level only, False when a
    password alone satisfies one of them, None when no value is known."""
    if ACR_PASSWORD in values:
        return False
    if ACR_MFA in values:
        return True
    return None


def _acr_claim(raw: str, redirect_uri: str | None) -> dict[str, Any] | None:
    try:
        claims = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deep enough to exhaust the stack
        raise InvalidRequestError("The claims parameter is not JSON.", redirect_uri=redirect_uri) from None
    if not isinstance(claims, dict):
        raise InvalidRequestError("The claims parameter must be a JSON object.", redirect_uri=redirect_uri)
    id_token = claims.get("id_token")
    if id_token is None:
        return None
    if not isinstance(id_token, dict):
        raise InvalidRequestError("claims.id_token must be a JSON object.", redirect_uri=redirect_uri)
    acr = id_token.get("acr")
    if acr is None:
        return None
    if not isinstance(acr, dict):
        raise InvalidRequestError("The acr claim request must be a JSON object or null.", redirect_uri=redirect_uri)
    return acr


def _values(claim: dict[str, Any], redirect_uri: str | None) -> list[str]:
    if "value" in claim:
        value = claim["value"]
        if not isinstance(value, str):
            raise InvalidRequestError("acr value must be a string.", redirect_uri=redirect_uri)
        return [value]
    values = claim.get("values", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidRequestError("acr values must be a list of strings.", redirect_uri=redirect_uri)
    return values
