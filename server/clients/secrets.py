"""Client secrets: 256 random bits, stored as a SHA-256 digest, compared in constant time.

A slow password hash buys nothing for a random 256-bit secret (there is nothing to guess)
and would cap the token endpoint's throughput: Hydra's BCrypt client secrets held it near
500 requests/s on 2 CPUs.
"""

from __future__ import annotations

import hmac
import secrets

from ..storage.base import sha256 as secret_digest

__all__ = ["new_client_id", "new_client_secret", "secret_digest", "secret_matches"]


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def new_client_id() -> str:
    """128 random bits, never starting with ``-``: a command line would take it for an option
    (``--client -abc`` fails in argparse)."""
    while (client_id := secrets.token_urlsafe(16)).startswith("-"):
        pass
    return client_id


def secret_matches(presented: str, digest: bytes | None) -> bool:
    if digest is None:
        return False
    return hmac.compare_digest(secret_digest(presented), digest)
