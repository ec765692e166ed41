"""TOTP codes (RFC 6238): 160-bit secrets, 6 digits, 30-second steps, SHA-1, the parameters
every authenticator app supports. Pure functions; the replay guard is in the database."""

from __future__ import annotations

import hmac
import re
import time

import pyotp
import segno

STEP_SECONDS = 30
#: steps accepted either side of now (RFC 6238 §5.2: one step of clock drift)
SKEW_STEPS = 1
_CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """160 random bits in base32, the size RFC 4226 §4 recommends."""
    return pyotp.random_base32(32)


def normalise(code: str) -> str | None:
    """The 6 digits of what the user typed (spaces allowed), or None if it is not a TOTP code."""
    digits = code.replace(" ", "").strip()
    return digits if _CODE.fullmatch(digits) else None


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step within ±``SKEW_STEPS`` of now whose code is ``code`` (the latest, if
    several are), compared in constant time; None if none is."""
    totp = pyotp.TOTP(secret)
    step = current_step(now)
    found = None
    for candidate in range(step - SKEW_STEPS, step + SKEW_STEPS + 1):
        expected = totp.at(candidate * STEP_SECONDS)
        if hmac.compare_digest(expected.encode(), code.encode()):
            found = candidate
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI authenticator apps read from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The URI as a QR code in inline SVG (rendered here: the secret never leaves the page)."""
    return str(
        segno.make(uri, error="m").svg_inline(
            scale=5, dark="#000", light="#fff", title="QR code to scan with your authenticator app"
        )
    )


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it in by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
