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

from ..authn.levels import ACR_MFA, ACR_PASSWORD, ACR_PHR


@dataclass(frozen=True)
class AcrRequest:
    #: the request asks for two factors at least
    mfa: bool = False
    #: the request asks for a passkey (phishing-resistant)
    phr: bool = False


NOTHING = AcrRequest()


def requested_acr(data: dict[str, str]) -> AcrRequest:
    """Read ``acr_values`` (space-separated, in order of preference): a level is asked for
    when it is named and no lower one is (a lower value would be satisfied by less)."""
    values = (data.get("acr_values") or "").split()
    if ACR_PASSWORD in values:
        return NOTHING
    phr = ACR_PHR in values and ACR_MFA not in values
    return AcrRequest(mfa=ACR_MFA in values or phr, phr=phr)
