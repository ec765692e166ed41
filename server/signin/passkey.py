"""Passkeys in the sign-in: what a passkey sign-in records, and the pages of a refusal.

A sign-in that checked the password, or a session stepping up, waits for that user's passkey
(the second factor). A sign-in with nobody yet takes any discoverable passkey that verified
its user, and the passkey says who signed in: two factors in one. Either way the session
reaches the phishing-resistant level (``urn:ostiary:acr:phr``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..authn.levels import AMR_MFA, AMR_PASSWORD
from ..mfa.passkeys import Assertion
from ..storage.sessions import SeenFrom
from ..storage.users import StoredUser
from .levels import Methods, otp_page
from .outcome import Outcome


@dataclass(frozen=True)
class PasskeyLogin:
    """A browser's answer to a passkey ceremony of a sign-in."""

    answer: str
    device_cookie: str | None
    seen_from: SeenFrom | None = None


def amr(assertion: Assertion, *, password: bool) -> list[str]:
    """The methods of a sign-in that a passkey completed (RFC 8176)."""
    return [*([AMR_PASSWORD] if password else []), *assertion.amr, AMR_MFA]


def refused(handle: str, client_name: str, message: str, *, user: StoredUser | None, methods: Methods) -> Outcome:
    """The page a refused passkey leads back to: the second-factor page of a user, or the
    sign-in form of a sign-in with nobody yet."""
    if user is not None:
        return otp_page(handle, client_name, methods=methods, error=message)
    context: dict[str, Any] = {"handle": handle, "client_name": client_name, "username": "", "error": message}
    return Outcome(page="login.html", context=context, status=400)
