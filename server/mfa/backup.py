"""Backup codes: ten single-use codes of 80 random bits each, for when the authenticator is
lost. 80 bits make a plain SHA-256 enough to store them (no offline guessing is feasible)."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

COUNT = 10
_BYTES = 10  # 80 bits: 16 base32 characters
_CODE = re.compile(r"[a-z2-7]{16}")


def new_codes(count: int = COUNT) -> list[str]:
    """Fresh codes, shown as ``abcd-efgh-ijkl-mnop``."""
    codes = []
    for _ in range(count):
        raw = base64.b32encode(secrets.token_bytes(_BYTES)).decode("ascii").lower()
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return codes


def normalise(code: str) -> str | None:
    """The 16 characters of a backup code however it was typed (case, dashes, spaces), or None."""
    compact = re.sub(r"[\s-]", "", code).lower()
    return compact if _CODE.fullmatch(compact) else None


def digest(code: str) -> bytes:
    """The stored form of a code (normalised first)."""
    normal = normalise(code)
    if normal is None:
        raise ValueError("not a backup code")
    return hashlib.sha256(b"ostiary/backup-code|" + normal.encode("ascii")).digest()
