"""Authentication context classes (``acr``) and methods (``amr``, RFC 8176).

Three levels, advertised in ``acr_values_supported``: a password alone; two factors (a
password and a TOTP or backup code, or a passkey); and phishing-resistant, which only a
passkey reaches (its answer is bound to this server's origin). Each level satisfies a request
for the ones below it.
"""

from __future__ import annotations

#: Signed in with a password only.
ACR_PASSWORD = "urn:ostiary:acr:password"  # noqa: S105  (a name, not a password)
#: Signed in with a password and a second factor.
ACR_MFA = "urn:ostiary:acr:mfa"
#: Signed in with a passkey (as the second factor, or on its own with user verification).
ACR_PHR = "urn:ostiary:acr:phr"
ACR_VALUES = (ACR_PASSWORD, ACR_MFA, ACR_PHR)

AMR_PASSWORD = "pwd"  # noqa: S105
#: a one-time password: a TOTP code, or a backup code (a single-use secret too)
AMR_OTP = "otp"
#: more than one factor (RFC 8176 §2)
AMR_MFA = "mfa"

PASSWORD_ONLY = (AMR_PASSWORD,)
MULTI_FACTOR = (AMR_PASSWORD, AMR_OTP, AMR_MFA)


def multi_factor(acr: str | None) -> bool:
    """A session at ``acr`` showed two factors (a passkey counts as two)."""
    return acr in (ACR_MFA, ACR_PHR)
