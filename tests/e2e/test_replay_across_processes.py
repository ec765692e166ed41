"""What may be used once is used once across processes: a ``private_key_jwt`` assertion
(RFC 7523) and a DPoP proof (RFC 9449), each sent to two ``ostiary serve`` processes on one
database (SQLite and PostgreSQL), one after the other and all at once."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

from server.settings import Settings
from tests.e2e.process import create_client_with_cli, serving
from tests.helpers import TestDatabase, make_settings

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
KEY = ECKey.generate_key("P-256", parameters={"kid": "replay-test"})


def signed(client_id: str, audience: str) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60}
    claims["jti"] = secrets.token_urlsafe(16)
    return jwt.encode({"alg": "ES256", "kid": KEY.kid}, claims, KEY, algorithms=["ES256"])


def form(assertion: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


@contextmanager
def two_processes(first: Settings, second: Settings, tmp_path: Path) -> Iterator[list[str]]:
    with ExitStack() as stack:
        bases = []
        for name, settings in (("a", first), ("b", second)):
            (tmp_path / name).mkdir()
            base, _log = stack.enter_context(serving(settings, tmp_path / name))
            bases.append(base)
        yield bases


def burst(bases: list[str], make: Callable[[], dict[str, Any]]) -> list[int]:
    """Ten requests to each process at once, each made by ``make()`` (httpx.post's keywords)."""

    async def send() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as http:
            sent = [http.post(f"{base}/token", **make()) for base in bases for _ in range(10)]
            return [response.status_code for response in await asyncio.gather(*sent)]

    return sorted(asyncio.run(send()))


def test_an_assertion_is_accepted_by_one_process_only(database: TestDatabase, tmp_path: Path) -> None:
    first = make_settings(database, tmp_path)
    second = make_settings(database, tmp_path, issuer=first.issuer)  # one issuer, as behind a load balancer
    document = tmp_path / "client.json"
    document.write_text(
        json.dumps({"grant_types": ["client_credentials"], "jwks": {"keys": [KEY.as_dict(private=False)]}})
    )
    client = create_client_with_cli(
        first,
        tmp_path,
        "--scope",
        "reports:read",
        "--token-endpoint-auth-method",
        "private_key_jwt",
        "--metadata",
        str(document),
    )
    assert "client_secret" not in client
    with two_processes(first, second, tmp_path) as bases:
        audience = first.issuer

        # one after the other: the second process refuses what the first accepted
        assertion = signed(client["client_id"], audience)
        with httpx.Client(base_url=bases[0]) as a, httpx.Client(base_url=bases[1]) as b:
            assert a.post("/token", data=form(assertion)).status_code == 200
            replayed = b.post("/token", data=form(assertion))
            assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"

        # all at once, ten to each process: exactly one is accepted
        assertion = signed(client["client_id"], audience)
        assert burst(bases, lambda: {"data": form(assertion)}) == [200] + [401] * 19


def test_a_dpop_proof_is_accepted_by_one_process_only(database: TestDatabase, tmp_path: Path) -> None:
    first = make_settings(database, tmp_path)
    second = make_settings(database, tmp_path, issuer=first.issuer)
    client = create_client_with_cli(first, tmp_path)
    auth = (client["client_id"], client["client_secret"])
    grant = {"grant_type": "client_credentials"}

    def dpop_proof() -> str:
        claims = {"jti": secrets.token_urlsafe(16), "htm": "POST", "htu": first.endpoint("/token")}
        claims["iat"] = int(time.time())
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": KEY.as_dict(private=False)}
        return jwt.encode(header, claims, KEY, algorithms=["ES256"])

    with two_processes(first, second, tmp_path) as bases:
        proof = dpop_proof()
        with httpx.Client(base_url=bases[0]) as a, httpx.Client(base_url=bases[1]) as b:
            accepted = a.post("/token", data=grant, auth=auth, headers={"DPoP": proof})
            assert accepted.status_code == 200 and accepted.json()["token_type"] == "DPoP"
            replayed = b.post("/token", data=grant, auth=auth, headers={"DPoP": proof})
            assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_dpop_proof"

        proof = dpop_proof()
        assert burst(bases, lambda: {"data": grant, "auth": auth, "headers": {"DPoP": proof}}) == [200] + [400] * 19
