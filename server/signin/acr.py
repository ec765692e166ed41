"""What an authorization request asks of the authentication (OIDC Core §3.1.2.1).

``acr_values`` is a voluntary request: the multi-factor level is reached when the user can
reach it, and the ID token's ``acr`` says which level was. A requirement comes from the
client's registration (``--require-mfa``): a level that cannot be reached ends the request
with ``unmet_authentication_requirements`` (OpenID Connect Core errata, §3.1.2.6).

The ``claims`` parameter (OIDC Core §5.5) is not supported, and discovery says so
(``claims_parameter_supported: false``): like any parameter the server does not support,
it is ignored, its ``acr`` member included.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..authn.levels import ACR_MFA, ACR_PASSWORD


@dataclass(frozen=True)
class AcrRequest:
    #: the request asks for the multi-factor level
    mfa: bool = False


NOTHING = AcrRequest()


def requested_acr(data: dict[str, str]) -> AcrRequest:
    """Read ``acr_values`` (space-separated, in order of preference): the multi-factor level
    is asked for when it is named and a password alone satisfies none of the values."""
    values = (data.get("acr_values") or "").split()
    return AcrRequest(mfa=ACR_MFA in values and ACR_PASSWORD not in values)
