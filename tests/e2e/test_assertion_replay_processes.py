"""A ``private_key_jwt`` assertion is accepted once across processes: two ``ostiary serve``
processes on one database (SQLite and PostgreSQL), the same assertion sent to both, one
after the other and all at once."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

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
    with ExitStack() as stack:
        bases = []
        for name, settings in (("a", first), ("b", second)):
            (tmp_path / name).mkdir()
            base, _log = stack.enter_context(serving(settings, tmp_path / name))
            bases.append(base)
        audience = first.issuer

        # one after the other: the second process refuses what the first accepted
        assertion = signed(client["client_id"], audience)
        with httpx.Client(base_url=bases[0]) as a, httpx.Client(base_url=bases[1]) as b:
            assert a.post("/token", data=form(assertion)).status_code == 200
            replayed = b.post("/token", data=form(assertion))
            assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"

        # all at once, ten to each process: exactly one is accepted
        assertion = signed(client["client_id"], audience)

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as http:
                sent = [http.post(f"{base}/token", data=form(assertion)) for base in bases for _ in range(10)]
                return [response.status_code for response in await asyncio.gather(*sent)]

        assert sorted(asyncio.run(burst())) == [200] + [401] * 19
