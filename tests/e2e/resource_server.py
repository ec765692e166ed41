"""A resource server, as its own process, verifying Ostiary's access tokens with a cached JWKS.

Reads one token per line on stdin; prints ``fail <reason>`` for each token that does not
verify and, at the end, a JSON summary (nothing per success, so a pipe never fills up).
It keeps the JWKS for as long as ``Cache-Control: max-age`` allows and re-fetches early only
for a kid it does not know, as resource-server libraries do.

    python resource_server.py ISSUER AUDIENCE
"""

from __future__ import annotations

import json
import re
import sys
import time

import httpx
import jwt


class CachedJwks:
    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str, jwt.PyJWK] = {}
        self.expires = 0.0
        self.fetches = 0
        self.unknown_kid_fetches = 0

    def _fetch(self) -> None:
        response = httpx.get(self.url, timeout=5)
        response.raise_for_status()
        self.fetches += 1
        match = re.search(r"max-age=(\d+)", response.headers.get("cache-control", ""))
        self.expires = time.monotonic() + (int(match.group(1)) if match else 0)
        self.keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(response.json()).keys}

    def key(self, kid: str) -> jwt.PyJWK:
        if time.monotonic() >= self.expires:
            self._fetch()
        if kid not in self.keys:
            self.unknown_kid_fetches += 1
            self._fetch()
        return self.keys[kid]


def main() -> None:
    issuer, audience = sys.argv[1], sys.argv[2]
    jwks = CachedJwks(issuer + "/jwks")
    verified = failed = 0
    for line in sys.stdin:
        token = line.strip()
        if not token:
            continue
        try:
            header = jwt.get_unverified_header(token)
            jwt.decode(token, jwks.key(header["kid"]), algorithms=["RS256"], audience=audience, issuer=issuer)
        except Exception as exc:  # every failure is reported, whatever its kind
            failed += 1
            print(f"fail {type(exc).__name__}: {exc}", flush=True)
        else:
            verified += 1
    summary = {
        "verified": verified,
        "failed": failed,
        "fetches": jwks.fetches,
        "unknown_kid_fetches": jwks.unknown_kid_fetches,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
