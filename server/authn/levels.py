"""Authentication context classes (``acr``) and methods (``amr``, RFC 8176)."""

from __future__ import annotations

#: Signed in with a password only.
ACR_PASSWORD = "urn:ostiary:acr:password"  # noqa: S105  (a name, not a password)
#: Signed in with a password and a second factor (reserved: the TOTP step-up is not built yet).
ACR_MFA = "urn:ostiary:acr:mfa"

AMR_PASSWORD = "pwd"  # noqa: S105
