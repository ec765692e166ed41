"""A resource server (an API) that accepts Ostiary's access tokens, verified offline.

Access tokens are RFC 9068 JWTs (``typ: at+jwt``). Each one is checked here with joserfc
against the issuer's published keys (``jwks_uri``): the signature, ``typ``, ``alg``, ``iss``,
``aud`` (this API's resource URI), ``exp`` and the other claims RFC 9068 §2.2 requires, then
the scope the route needs. The key set is cached as its ``Cache-Control: max-age`` allows
and fetched again early for a ``kid`` it does not hold (a key rotated in at once), at most
``REFETCHES_PER_MINUTE`` times a minute, so forged kids cannot make it hammer the issuer.
Refusals follow RFC 6750 §3: ``401`` with ``WWW-Authenticate: Bearer`` and
``error="invalid_token"`` (no error code when there is no token at all), ``403`` and
``error="insufficient_scope"`` when the token lacks the route's scope.

Offline verification cannot see a revocation: a revoked token works until it expires
(keep access tokens short-lived, or ask ``/introspect`` where that matters).

    python examples/resource-server/api.py [--issuer http://127.0.0.1:8000] \\
        [--audience http://127.0.0.1:8003] [--port 8003]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import Key, KeySet
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: RFC 9068 §4: the JWT access token type, with or without its "application/" prefix
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
#: the algorithm of Ostiary's access tokens (OSTIARY_ACCESS_TOKEN_ALG; a client may register
#: PS256 or ES256 instead): accept exactly the ones your issuer is configured to use
ALGORITHMS = ("RS256",)
LEEWAY = 30  # seconds of clock difference allowed on exp, nbf and iat
REFETCHES_PER_MINUTE = 10
REALM = "reports"


class InvalidToken(Exception):
    """The token cannot be accepted; the message is its ``error_description``."""


@dataclass(frozen=True)
class Caller:
    """Who a verified token speaks for."""

    subject: str
    client_id: str
    scopes: frozenset[str]
    claims: dict[str, Any]


class KeyCache:
    """The issuer's JWKS, kept for its ``Cache-Control: max-age`` (at least a minute when the
    issuer gives none), fetched again for an unknown ``kid`` within a budget."""

    def __init__(self, http: httpx.AsyncClient, issuer: str) -> None:
        self.http = http
        self.issuer = issuer
        self.jwks_uri: str | None = None
        self.keys = KeySet([])
        self.fresh_until = 0.0
        self.refetches: deque[float] = deque()
        self.lock = asyncio.Lock()

    async def key(self, kid: str) -> Key:
        async with self.lock:  # one fetch at a time, however many requests wait for it
            stale = time.monotonic() >= self.fresh_until
            if stale or (not self._has(kid) and self._may_refetch()):
                await self._fetch()
            try:
                return self.keys.get_by_kid(kid)
            except JoseError:
                raise InvalidToken("The token is signed with a key the issuer does not publish.") from None

    def _has(self, kid: str) -> bool:
        return any(key.kid == kid for key in self.keys)

    def _may_refetch(self) -> bool:
        now = time.monotonic()
        while self.refetches and self.refetches[0] < now - 60:
            self.refetches.popleft()
        if len(self.refetches) >= REFETCHES_PER_MINUTE:
            return False
        self.refetches.append(now)
        return True

    async def _fetch(self) -> None:
        if self.jwks_uri is None:
            response = await self.http.get(self.issuer + "/.well-known/openid-configuration")
            response.raise_for_status()
            metadata = response.json()
            if metadata.get("issuer") != self.issuer:
                raise RuntimeError(f"the discovery document names another issuer: {metadata.get('issuer')!r}")
            self.jwks_uri = metadata["jwks_uri"]
        response = await self.http.get(self.jwks_uri)
        response.raise_for_status()
        self.keys = KeySet.import_key_set(response.json())
        match = re.search(r"max-age=(\d+)", response.headers.get("cache-control", ""))
        self.fresh_until = time.monotonic() + (int(match.group(1)) if match else 60)


class Verifier:
    """RFC 9068 §4: what a resource server checks of a JWT access token."""

    def __init__(self, keys: KeyCache, issuer: str, audience: str) -> None:
        self.keys = keys
        self.claims = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},  # a string, or a list holding it
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
            jti={"essential": True},
        )

    async def verify(self, token: str) -> Caller:
        try:
            header = jws.extract_compact(token.encode("ascii")).protected
        except (JoseError, ValueError, UnicodeError):
            raise InvalidToken("The token is not a JWT.") from None
        if header.get("typ") not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("The token is not an access token (typ).")  # e.g. an ID token
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ALGORITHMS or not isinstance(kid, str):
            raise InvalidToken("The token's algorithm or key id is not accepted.")
        key = await self.keys.key(kid)
        if key.alg not in (None, alg):
            raise InvalidToken("The token's algorithm is not its key's.")
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
        except JoseError:
            raise InvalidToken("The token's signature does not verify.") from None
        try:
            self.claims.validate(claims)
        except ExpiredTokenError:
            raise InvalidToken("The token has expired.") from None
        except ClaimError as error:
            # the claim's name only: RFC 6750 §3 allows no quotes in error_description
            raise InvalidToken(f"The token's {error.claim} claim is not accepted here.") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise InvalidToken("The token's scope is not a string.")
        return Caller(claims["sub"], claims["client_id"], frozenset(scope.split()), claims)


def challenge(status: int, error: str | None = None, description: str = "", scope: str = "") -> Response:
    """An RFC 6750 §3 refusal."""
    params = [f'realm="{REALM}"']
    if error:
        params.append(f'error="{error}"')
    if description:
        params.append(f'error_description="{description}"')
    if scope:
        params.append(f'scope="{scope}"')
    body = {"error": error, "error_description": description} if error else {"message": "A bearer token is required."}
    return JSONResponse(body, status_code=status, headers={"WWW-Authenticate": "Bearer " + ", ".join(params)})


async def authorize(request: Request, scope: str) -> Caller | Response:
    """The caller of a request whose bearer token is valid and holds ``scope``, else the refusal."""
    authorization = request.headers.get("authorization", "")
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        return challenge(401)
    verifier: Verifier = request.app.state.verifier
    try:
        caller = await verifier.verify(token.strip())
    except InvalidToken as refusal:
        return challenge(401, "invalid_token", str(refusal))
    if scope not in caller.scopes:
        return challenge(403, "insufficient_scope", f"This needs the scope {scope}.", scope)
    return caller


async def reports(request: Request) -> Response:
    caller = await authorize(request, "reports:read")
    if isinstance(caller, Response):
        return caller
    return JSONResponse(
        {
            "reports": [{"id": 1, "title": "Quarterly figures"}, {"id": 2, "title": "Uptime"}],
            "subject": caller.subject,
            "client_id": caller.client_id,
            "scope": sorted(caller.scopes),
        }
    )


def create_app(issuer: str, audience: str) -> Starlette:
    """The API for tokens of ``issuer`` meant for ``audience`` (its resource URI)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=5) as http:
            app.state.verifier = Verifier(KeyCache(http, issuer), issuer, audience)
            yield

    return Starlette(routes=[Route("/reports", reports)], lifespan=lifespan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--issuer", default=os.environ.get("OSTIARY_ISSUER", "http://127.0.0.1:8000"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    parser.add_argument(
        "--audience", help="this API's resource URI, the aud its tokens carry (default: http://HOST:PORT)"
    )
    args = parser.parse_args(argv)
    audience = args.audience or f"http://{args.host}:{args.port}"
    print(f"Example resource server on http://{args.host}:{args.port}/reports (audience {audience})", flush=True)
    uvicorn.run(create_app(args.issuer.rstrip("/"), audience), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
