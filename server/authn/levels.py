"""Authentication context classes (``acr``) and methods (``amr``, RFC 8176).

Two levels, advertised in ``acr_values_supported``: a password alone, and a password with a
second factor (TOTP or a backup code). The multi-factor level satisfies a request for either.
"""

from __future__ import annotations

#: Signed in with a password only.
ACR_PASSWORD = "urn:ostiary:acr:password"  # noqa: S105  (a name, not a password)
#: Signed in with a password and a second factor.
ACR_MFA = "urn:ostiary:acr:mfa"
ACR_VALUES = (ACR_PASSWORD, ACR_MFA)

AMR_PASSWORD = "pwd"  # noqa: S105
#: a one-time password: a TOTP code, or a backup code (a single-use secret too)
AMR_OTP = "otp"
#: more than one factor (RFC 8176 §2)
AMR_MFA = "mfa"

PASSWORD_ONLY = (AMR_PASSWORD,)
MULTI_FACTOR = (AMR_PASSWORD, AMR_OTP, AMR_MFA)
